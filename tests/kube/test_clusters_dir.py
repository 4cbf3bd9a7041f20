"""clusters/: the DaskCluster template is what qdask generates, and the RBAC covers what qdask does."""

from __future__ import annotations

from pathlib import Path

import yaml

from qdask.kube import spec

ROOT = Path(__file__).parents[2]


def test_template_is_the_generated_spec_and_valid():
    template = yaml.safe_load((ROOT / "clusters" / "daskcluster.yaml").read_text())
    spec.check_cluster_spec(template)
    assert spec.main([str(ROOT / "configs" / "dp02.yaml")]) == 0


def test_template_matches_the_generator(capsys):
    spec.main([str(ROOT / "configs" / "dp02.yaml")])
    generated = yaml.safe_load(capsys.readouterr().out)
    assert generated == yaml.safe_load((ROOT / "clusters" / "daskcluster.yaml").read_text()), (
        "clusters/daskcluster.yaml is stale: regenerate it with python -m qdask.kube.spec configs/dp02.yaml"
    )


def rules():
    docs = list(yaml.safe_load_all((ROOT / "clusters" / "rbac.yaml").read_text()))
    (role,) = [d for d in docs if d["kind"] == "Role"]
    granted = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted |= {(group, resource, verb) for verb in rule["verbs"]}
    return granted


def test_rbac_grants_port_forward_and_logs():
    granted = rules()
    assert ("", "pods/portforward", "create") in granted and ("", "pods/log", "get") in granted

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


def test_ingest_job_sees_staging_where_the_workers_do():
    job = yaml.safe_load((ROOT / "clusters" / "ingest-job.yaml").read_text())
    template = yaml.safe_load((ROOT / "clusters" / "daskcluster.yaml").read_text())
    pod = job["spec"]["template"]["spec"]
    claim = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    job_mounts = {m["mountPath"]: claim[m["name"]] for m in pod["containers"][0]["volumeMounts"]}
    worker = template["spec"]["worker"]["spec"]
    wclaim = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in worker["volumes"]}
    worker_mounts = {m["mountPath"]: wclaim[m["name"]] for m in worker["containers"][0]["volumeMounts"]}
    assert job_mounts["/scratch/qdask/dp02"] == worker_mounts["/scratch/qdask/dp02"] == "qdask-staging"
    docs = list(yaml.safe_load_all((ROOT / "clusters" / "rbac.yaml").read_text()))
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert pod["serviceAccountName"] == binding["subjects"][0]["name"]

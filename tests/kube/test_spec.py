"""DaskCluster specs built by qdask, checked against the CRD schemas shipped in dask-kubernetes (strictly)."""

from __future__ import annotations

import copy

import pytest
from dask_kubernetes.operator.kubecluster.kubecluster import make_cluster_spec
from distributed.cli import dask_scheduler, dask_worker

from qdask.config import KubernetesConfig
from qdask.kube import spec

GI = 2**30


def k8s(**changes) -> KubernetesConfig:
    base = {
        "image": "ghcr.io/lsst-dm/qdask:0.1.0",
        "namespace": "qserv-ingest",
        "name": "qdask-dp02",
        "adaptive": {"minimum": 2, "maximum": 24},
        "worker": {"cpu": 4, "memory": "16Gi"},
        "scheduler": {"cpu": 2, "memory": "4Gi"},
        "service_account": "qdask",
        "node_selector": {"kubernetes.io/arch": "amd64"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ingest", "effect": "NoSchedule"}],
        "env": [
            {"name": "DAF_BUTLER_REPOSITORY_INDEX", "value": "/etc/butler/repos.yaml"},
            {"name": "AWS_SECRET_ACCESS_KEY", "secret": {"name": "butler-s3", "key": "secret-access-key"}},
        ],
        "spill_volume_size": "50Gi",
    }
    base.update(changes)
    return KubernetesConfig.model_validate(base)


def worker_container(s):
    return s["spec"]["worker"]["spec"]["containers"][0]


def test_spec_fits_the_crds_and_the_dask_worker_command():
    s = spec.cluster_spec(k8s())
    spec.check_cluster_spec(s)  # DaskCluster and the derived DaskWorkerGroup, strictly
    c = worker_container(s)
    # The arguments are ones `dask worker` itself accepts (parsed by its own click command).
    ctx = dask_worker.main.make_context("dask worker", c["args"][2:])
    assert ctx.params["nthreads"] == 4
    assert int(ctx.params["memory_limit"]) == int(0.9 * 16 * GI)
    assert ctx.params["local_directory"] == spec.SPILL_DIR
    assert ctx.params["name"] == "$(DASK_WORKER_NAME)"
    sched = s["spec"]["scheduler"]["spec"]["containers"][0]
    assert sched["args"][:2] == ["dask", "scheduler"]
    dask_scheduler.main.make_context("dask scheduler", sched["args"][2:])
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "4", "memory": "16Gi"}
    assert sched["resources"]["requests"] == sched["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert s["spec"]["worker"]["spec"]["volumes"] == [{"name": "spill", "emptyDir": {"sizeLimit": "50Gi"}}]
    assert s["spec"]["worker"]["replicas"] == 2  # the adaptive minimum; the autoscaler does the rest
    # secrets reach workers only; the scheduler gets the remote allowed-failures setting
    assert {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "butler-s3", "key": "secret-access-key"}},
    } in c["env"]
    assert all(e["name"] != "AWS_SECRET_ACCESS_KEY" for e in sched["env"])
    assert {"name": "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "value": "2"} in sched["env"]
    pod = s["spec"]["worker"]["spec"]
    assert pod["serviceAccountName"] == "qdask" and pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert pod["tolerations"][0]["effect"] == "NoSchedule"
    spec.validate(spec.autoscaler_spec("qdask-dp02", "qserv-ingest", 2, 24))


def test_worker_pods_get_qdasks_allocator_settings_unless_the_config_sets_its_own():
    c = worker_container(spec.cluster_spec(k8s()))
    assert {e["name"]: e.get("value") for e in c["env"]}.items() >= spec.WORKER_MALLOC_ENV.items()
    mine = [{"name": "MALLOC_TRIM_THRESHOLD_", "value": "131072"}]
    c = worker_container(spec.cluster_spec(k8s(env=mine)))
    trims = [e["value"] for e in c["env"] if e["name"] == "MALLOC_TRIM_THRESHOLD_"]
    assert trims == ["131072"]  # once, the operator's
    spec.check_cluster_spec(spec.cluster_spec(k8s(env=mine)))


@pytest.mark.parametrize(("cpu", "threads"), [("500m", 1), ("1.5", 1), (2, 2), ("16", 16)])
def test_threads_are_whole_cores(cpu, threads):
    c = worker_container(
        spec.cluster_spec(k8s(worker={"cpu": cpu, "memory": "3Gi"}, workers=3, adaptive=None))
    )
    assert c["args"][c["args"].index("--nthreads") + 1] == str(threads)


def test_an_explicit_memory_limit_is_used_and_may_not_exceed_the_pod():
    s = spec.cluster_spec(k8s(), memory_limit=10 * GI)
    spec.check_cluster_spec(s)
    assert worker_container(s)["args"][worker_container(s)["args"].index("--memory-limit") + 1] == str(
        10 * GI
    )
    with pytest.raises(spec.SpecError, match="exceeds the pod memory limit"):
        spec.check_cluster_spec(spec.cluster_spec(k8s(), memory_limit=17 * GI))


def test_unknown_and_mistyped_fields_are_rejected():
    s = spec.cluster_spec(k8s())
    bad = copy.deepcopy(s)
    worker_container(bad)["resource"] = {"limits": {"memory": "1Gi"}}  # a typo the API server would prune
    bad["spec"]["workers"] = 3
    bad["spec"]["worker"]["replicas"] = "3"
    with pytest.raises(spec.SpecError) as err:
        spec.check_cluster_spec(bad)
    text = str(err.value)
    assert "containers[0].resource: unknown field" in text
    assert "DaskCluster.spec.workers: unknown field" in text
    assert "replicas: expected integer" in text
    port = copy.deepcopy(s)
    port["spec"]["scheduler"]["service"]["ports"][0]["targetPort"] = 8786  # the CRD types it as a string
    with pytest.raises(spec.SpecError, match="targetPort: expected string"):
        spec.validate(port)
    with pytest.raises(spec.SpecError, match="spec.cluster: required"):
        spec.validate(
            {
                "apiVersion": spec.API_VERSION,
                "kind": "DaskAutoscaler",
                "metadata": {"name": "a"},
                "spec": {"minimum": 1, "maximum": 2},
            }
        )


def test_qdask_rules_beyond_the_schema():
    s = spec.cluster_spec(k8s())
    unequal = copy.deepcopy(s)
    worker_container(unequal)["resources"]["requests"]["memory"] = "8Gi"
    with pytest.raises(spec.SpecError, match="requests must equal limits"):
        spec.check_cluster_spec(unequal)
    ram = copy.deepcopy(s)
    ram["spec"]["worker"]["spec"]["volumes"][0]["emptyDir"]["medium"] = "Memory"
    with pytest.raises(spec.SpecError, match="not a mounted disk-backed emptyDir"):
        spec.check_cluster_spec(ram)


def test_the_stock_dask_kubernetes_spec_is_refused():
    """dask-kubernetes' own generator runs the removed `dask-worker`: why qdask builds its own spec."""
    stock = make_cluster_spec(
        "stock", image="ghcr.io/dask/dask:latest", n_workers=2, resources={"limits": {"memory": "4Gi"}}
    )
    with pytest.raises(spec.SpecError) as err:
        spec.check_cluster_spec(stock)
    assert "'dask-worker' was removed from distributed; use 'dask worker'" in str(err.value)
    assert "requests must equal limits" in str(err.value)
    assert "dask-worker" not in dask_worker.main.name


def test_staging_is_mounted_on_workers_from_a_shared_claim():
    s = spec.cluster_spec(k8s(), staging_directory="/scratch/qdask/dp02")
    spec.check_cluster_spec(s)
    pod = s["spec"]["worker"]["spec"]
    assert {"name": "staging", "mountPath": "/scratch/qdask/dp02"} in pod["containers"][0]["volumeMounts"]
    assert {"name": "staging", "persistentVolumeClaim": {"claimName": "qdask-staging"}} in pod["volumes"]


def test_quantities_the_kubelet_would_refuse_are_caught_here():
    s = spec.cluster_spec(k8s())
    worker_container(s)["resources"]["limits"]["memory"] = "16GiB"
    worker_container(s)["resources"]["requests"]["memory"] = "16GiB"
    s["spec"]["worker"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] = "50 Gi"
    with pytest.raises(spec.SpecError) as err:
        spec.check_cluster_spec(s)
    assert "resources.limits.memory: '16GiB' is not a Kubernetes quantity" in str(err.value)
    assert "emptyDir.sizeLimit: '50 Gi' is not a Kubernetes quantity" in str(err.value)

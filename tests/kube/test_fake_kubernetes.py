"""qdask on Kubernetes, against a fake API server on loopback (see fakekube.py) and a real Dask scheduler.

What KubeCluster sends when qdask creates, scales, adapts and deletes a cluster is recorded and checked
(the DaskCluster that went over the wire is re-validated against the CRDs); a real `dask worker` is
started with the exact command line of the spec; canned pod states drive the OOM report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed.scheduler import KilledWorker

from qdask.cluster import ClusterError, ClusterSpec, open_client
from qdask.config import KubernetesConfig, load_config
from qdask.ingest import cluster_spec
from qdask.kube import oom, spec
from tests.kube.fakekube import FakeKube

DASK_BIN = Path(sys.executable).with_name("dask")
GI = 2**30


@pytest.fixture
def scheduler(tmp_path, fake):
    """A real `dask scheduler` process (what the scheduler pod runs) on loopback, behind the fake service.

    One per cluster, as on Kubernetes: KubeCluster takes its name from the scheduler's cluster info.
    """
    info_file = tmp_path / "scheduler.json"
    proc = subprocess.Popen(
        [str(DASK_BIN), "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(info_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not info_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)
    info = json.loads(info_file.read_text())
    fake.scheduler_port = int(info["address"].rsplit(":", 1)[1])
    fake.dashboard_port = info["services"]["dashboard"]
    yield info
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    server = FakeKube().start()
    kubeconfig = server.kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    yield server
    if old is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = old
    server.stop()


def k8s(**changes) -> KubernetesConfig:
    base = {
        "image": "ghcr.io/lsst-dm/qdask:0.1.0",
        "namespace": "ingest",
        "name": "qd-test",
        "worker": {"cpu": 2, "memory": "1Gi"},
        "scheduler": {"cpu": 1, "memory": "1Gi"},
        "env": [{"name": "AWS_SECRET_ACCESS_KEY", "secret": {"name": "s3", "key": "secret"}}],
    }
    base.update(changes)
    return KubernetesConfig.model_validate(base)


def start_worker_like_the_pod(container: dict, scheduler_address: str, local_dir: Path) -> subprocess.Popen:
    """Run a worker container's args as the kubelet would: $(VAR) expanded from the container's env.

    The operator adds DASK_WORKER_NAME and DASK_SCHEDULER_ADDRESS; only --local-directory moves to a
    temporary directory (there is no /spill volume here).
    """
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(DASK_WORKER_NAME="qd-test-default-worker-0123456789", DASK_SCHEDULER_ADDRESS=scheduler_address)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    args[args.index("--local-directory") + 1] = str(local_dir)
    assert args[:2] == ["dask", "worker"]
    run_env = {**os.environ, **env}
    return subprocess.Popen([str(DASK_BIN), *args[1:]], env=run_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def test_create_run_scale_adapt_delete(fake, scheduler, tmp_path):
    k = k8s(workers=2)
    before = len(fake.requests)
    cs = ClusterSpec(kind="kubernetes", kubernetes=k, memory_per_worker=int(0.9 * GI),
                     scheduler_service_type="LoadBalancer")  # fmt: skip
    with open_client(cs) as client:
        (create,) = [r for r in fake.sent("POST", "daskclusters") if fake.requests.index(r) >= before]
        assert create.path == "/apis/kubernetes.dask.org/v1/namespaces/ingest/daskclusters"
        sent = create.body
        spec.check_cluster_spec(sent)  # what went over the wire fits the CRDs, strictly
        assert sent["metadata"]["name"] == "qd-test" and sent["spec"]["worker"]["replicas"] == 2
        container = sent["spec"]["worker"]["spec"]["containers"][0]
        assert container["args"][container["args"].index("--memory-limit") + 1] == str(int(0.9 * GI))
        assert client.scheduler.address == scheduler["address"]
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        worker = start_worker_like_the_pod(container, scheduler["address"], tmp_path / "spill")
        try:
            client.wait_for_workers(1, timeout=60)
            info = client.scheduler_info()["workers"]
            (w,) = info.values()
            assert w["name"] == "qd-test-default-worker-0123456789"
            assert w["nthreads"] == 2 and w["memory_limit"] == int(0.9 * GI)
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        finally:
            worker.terminate()
            worker.wait(30)
        cluster = client.cluster
        cluster.scale(5)
        cluster.adapt(minimum=1, maximum=8)
        assert fake.get("daskworkergroups", "ingest", "qd-test-default")["spec"]["worker"]["replicas"] == 5
    mine = fake.requests[before:]
    (scale,) = [r for r in mine if r.method == "PATCH" and r.plural == "daskworkergroups"]
    assert scale.path.endswith("/namespaces/ingest/daskworkergroups/qd-test-default")
    assert scale.body == {"spec": {"worker": {"replicas": 5}}}
    assert scale.content_type == "application/merge-patch+json"
    (adapt,) = [r for r in mine if r.method == "POST" and r.plural == "daskautoscalers"]
    assert adapt.body["spec"] == {"cluster": "qd-test", "minimum": 1, "maximum": 8}
    spec.validate({**adapt.body, "metadata": {"name": adapt.body["metadata"]["name"]}})
    (delete,) = [r for r in mine if r.method == "DELETE" and r.plural == "daskclusters"]
    assert delete.path.endswith("/namespaces/ingest/daskclusters/qd-test")
    order = [mine.index(r) for r in (create, scale, adapt, delete)]
    assert order == sorted(order)
    assert fake.get("daskclusters", "ingest", "qd-test") is None


def test_adaptive_bounds_become_an_autoscaler(fake, scheduler):
    before = len(fake.requests)
    k = k8s(name="qd-adapt", adaptive={"minimum": 1, "maximum": 6})
    cs = ClusterSpec(
        kind="kubernetes",
        kubernetes=k,
        memory_per_worker=int(0.9 * GI),
        scheduler_service_type="LoadBalancer",
    )
    with open_client(cs):
        mine = fake.requests[before:]
        (create,) = [r for r in mine if r.method == "POST" and r.plural == "daskclusters"]
        assert create.body["spec"]["worker"]["replicas"] == 1
        (adapt,) = [r for r in mine if r.method == "POST" and r.plural == "daskautoscalers"]
        assert adapt.body["spec"] == {"cluster": "qd-adapt", "minimum": 1, "maximum": 6}
    assert any(
        r.method == "DELETE" and r.path.endswith("/daskclusters/qd-adapt") for r in fake.requests[before:]
    )


def test_invalid_settings_fail_before_any_request(fake):
    before = len(fake.requests)
    too_big = ClusterSpec(kind="kubernetes", kubernetes=k8s(workers=1), memory_per_worker=2 * GI)
    with pytest.raises(ClusterError, match="exceeds the pod memory limit"):
        with open_client(too_big):
            pass
    assert len(fake.requests) == before


def test_the_config_reaches_the_cluster_spec():
    cfg = load_config(Path(__file__).parents[2] / "configs" / "dp02.yaml", check_paths=False)
    cs = cluster_spec(cfg)
    assert cs.kind == "kubernetes" and cs.kubernetes == cfg.cluster.kubernetes
    assert cs.memory_per_worker == int(0.9 * 16 * GI)


def oom_pod(name: str, worker_name: str, reason: str, limit: str = "1Gi", cluster: str = "qd-oom") -> dict:
    """A worker pod as the kubelet reports it after its container was restarted once."""
    resources = {"limits": {"cpu": "2", "memory": limit}, "requests": {"cpu": "2", "memory": limit}}
    container = {"name": "worker", "image": "x", "resources": resources,
                 "env": [{"name": "DASK_WORKER_NAME", "value": worker_name}]}  # fmt: skip
    terminated = {"reason": reason, "exitCode": 137, "finishedAt": "2026-11-26T15:00:00Z"}
    status = {"name": "worker", "restartCount": 1, "ready": True, "state": {"running": {}},
              "lastState": {"terminated": terminated}}  # fmt: skip
    labels = {"dask.org/cluster-name": cluster, "dask.org/component": "worker"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [container]},
        "status": {"phase": "Running", "containerStatuses": [status]},
    }


class _Worker:
    def __init__(self, address, name):
        self.address, self.name = address, name


def test_oom_killed_pod_is_reported_with_unit_and_limit(fake):
    fake.add_pod(
        "ingest", oom_pod("qd-oom-default-worker-aaaa-5d8f7-x1", "qd-oom-default-worker-aaaa", "OOMKilled")
    )
    fake.add_pod(
        "ingest", oom_pod("qd-oom-default-worker-bbbb-5d8f7-x2", "qd-oom-default-worker-bbbb", "Error")
    )
    fake.add_pod(
        "other", oom_pod("qd-oom-default-worker-cccc-5d8f7-x3", "qd-oom-default-worker-cccc", "OOMKilled")
    )
    before = len(fake.requests)
    terms = oom.pod_terminations("qd-oom", "ingest")
    (request,) = fake.requests[before:][-1:]
    assert request.path == "/api/v1/namespaces/ingest/pods"
    assert "dask.org/cluster-name=qd-oom" in request.query["labelSelector"]
    assert {t.pod: t.reason for t in terms} == {
        "qd-oom-default-worker-aaaa-5d8f7-x1": "OOMKilled",
        "qd-oom-default-worker-bbbb-5d8f7-x2": "Error",
    }
    unit = "objectTable_tract:skymap=DC2,tract=3828"
    exc = KilledWorker(f"partition-{unit}", _Worker("tcp://10.0.0.7:40000", "qd-oom-default-worker-aaaa"), 2)
    report = oom.explain_kill(exc, terminations=terms, estimate=3 * GI)
    assert report.reason == "OOMKilled" and report.out_of_memory
    assert (
        report.unit == unit and report.pod == "qd-oom-default-worker-aaaa-5d8f7-x1" and report.limit == "1Gi"
    )
    text = str(report)
    assert text.startswith("OOMKilled: pod qd-oom-default-worker-aaaa-5d8f7-x1")
    assert f"running unit {unit}" in text and "memory limit 1Gi" in text and "estimated peak" in text
    other = oom.explain_kill(
        KilledWorker("partition-u2", _Worker("tcp://10.0.0.8:1", "qd-oom-default-worker-bbbb"), 2),
        terminations=terms,
    )
    assert other.reason == "Error" and not other.out_of_memory and other.unit == "u2"


def test_describe_killed_reads_the_pods_itself(fake):
    pod = oom_pod(
        "qd-oom2-default-worker-dddd-1-a", "qd-oom2-default-worker-dddd", "OOMKilled", "16Gi", "qd-oom2"
    )
    fake.add_pod("ingest", pod)
    exc = KilledWorker("partition-u9", _Worker("tcp://10.0.0.9:1", "qd-oom2-default-worker-dddd"), 2)

    class NoEvents:
        def get_events(self, topic):
            return ()

    text = oom.describe_killed(exc, NoEvents(), cluster=("qd-oom2", "ingest"))
    assert text.startswith("OOMKilled: pod qd-oom2-default-worker-dddd-1-a") and "memory limit 16Gi" in text
    assert oom.describe_killed(ValueError("bad row"), NoEvents()) == "ValueError: bad row"


def test_the_driver_hook_reads_the_pods_of_the_configs_cluster(fake):
    cfg = load_config(Path(__file__).parents[2] / "configs" / "dp02.yaml", check_paths=False)
    name = "qdask-dp02-default-worker-0a1b2c3d4e"
    fake.add_pod("qserv-ingest", oom_pod(f"{name}-7f9c-zz", name, "OOMKilled", "16Gi", "qdask-dp02"))

    class NoEvents:
        def get_events(self, topic):
            return ()

    exc = KilledWorker("partition-objectTable_tract:tract=3828-2", _Worker("tcp://10.1.0.5:1", name), 2)
    text = oom.kill_cause(exc, NoEvents(), cfg)
    assert text.startswith(f"; OOMKilled: pod {name}-7f9c-zz") and "memory limit 16Gi" in text


def test_rbac_covers_every_request_sent(fake):
    """Every resource request of this module (create, scale, adapt, delete, OOM report) is allowed by
    clusters/rbac.yaml (runs last: the fake's record holds the requests of the tests above)."""
    from tests.kube.test_clusters_dir import rules

    granted, needed = rules(), set()
    for r in fake.requests:
        parts = r.path.strip("/").split("/")
        if "namespaces" not in parts:
            continue  # /version and discovery: non-resource URLs every authenticated user may read
        group = "" if parts[0] == "api" else parts[1]
        named = len(parts) > parts.index("namespaces") + 3
        verb = {"GET": "get" if named else "list", "POST": "create", "PATCH": "patch", "DELETE": "delete"}
        needed.add((group, r.plural, verb[r.method]))
    assert {v for _, _, v in needed} >= {"create", "patch", "delete", "get", "list"}
    assert needed <= granted, sorted(needed - granted)

"""The DaskCluster resource qdask sends to the dask-kubernetes operator, and its strict validation.

dask-kubernetes 2026.3 generates worker pods that run ``dask-worker``, a command distributed removed in
2026.6, so qdask builds the whole spec itself (`cluster_spec`) and hands it to
``KubeCluster(custom_cluster_spec=...)``:

- workers run ``dask worker`` with ``--nthreads`` = the CPU limit (whole cores, at least 1) and
  ``--memory-limit`` = 0.9 x the pod's memory limit, so Dask's nanny restarts a worker (at 95% of that)
  before the kernel OOM-kills the pod, and pauses it (at 80%) well before;
- requests equal limits (Guaranteed QoS: a pod is never the first evicted, and never over-committed);
- spill goes to a disk-backed ``emptyDir`` of the configured size (``--local-directory``), never to RAM;
- the staging directory is mounted on every worker from the ReadWriteMany claim ``qdask-staging``;
- the scheduler runs with ``allowed-failures`` = 2 (the local setting of `open_client` does not reach a
  remote scheduler), and gets only the non-secret environment; secrets go to workers only.

`validate(resource)` checks a resource against the CRD schema the operator installs (shipped inside the
dask-kubernetes package), strictly: a field the schema does not declare is an error, because the API server
would silently prune it. `check_cluster_spec` adds the rules the schema cannot express.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

import yaml

from qdask.cluster import WORKER_MALLOC_ENV
from qdask.config import KubernetesConfig, parse_bytes
from qdask.errors import QdaskError

__all__ = [
    "SPILL_DIR",
    "SpecError",
    "autoscaler_spec",
    "check_cluster_spec",
    "cluster_spec",
    "crd_schema",
    "memory_limit_for",
    "nthreads_for",
    "validate",
    "worker_group_spec",
]

API_VERSION = "kubernetes.dask.org/v1"
SPILL_DIR = "/spill"
MEMORY_FRACTION = 0.9  # Dask's --memory-limit as a fraction of the pod limit
ALLOWED_FAILURES = 2
STAGING_CLAIM = "qdask-staging"  # the ReadWriteMany volume holding staging.directory (see clusters/README.md)
_CRDS = "operator/deployment/helm/dask-kubernetes-operator/crds"
_KINDS = {
    "DaskCluster": "daskcluster",
    "DaskWorkerGroup": "daskworkergroup",
    "DaskAutoscaler": "daskautoscaler",
}
# The operator names a worker deployment "<cluster>-default-worker-<10 hex>"; pods add "-<10>-<5>".
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")


class SpecError(QdaskError, ValueError):
    """A resource the cluster would refuse or silently change; `problems` lists each as path: what."""

    def __init__(self, kind: str, problems: list[str]):
        self.kind, self.problems = kind, problems
        super().__init__(
            f"invalid {kind} ({len(problems)} problem(s)):\n" + "\n".join(f"  {p}" for p in problems)
        )


def nthreads_for(cpu_cores: float) -> int:
    """Threads per worker for a CPU limit: whole cores, at least one."""
    return max(1, math.floor(cpu_cores))


def memory_limit_for(pod_memory_bytes: int) -> int:
    """Dask's ``--memory-limit`` for a pod memory limit (0.9 x, leaving room for the nanny and the kernel)."""
    return int(MEMORY_FRACTION * pod_memory_bytes)


def _env(k: KubernetesConfig, *, secrets: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in k.env:
        if e.secret is not None:
            if secrets:
                out.append(
                    {
                        "name": e.name,
                        "valueFrom": {"secretKeyRef": {"name": e.secret.name, "key": e.secret.key}},
                    }
                )
        else:
            out.append({"name": e.name, "value": e.value})
    return out


def _resources(cpu: Any, memory: str) -> dict[str, dict[str, str]]:
    quantities = {"cpu": str(cpu), "memory": str(memory)}
    return {"requests": dict(quantities), "limits": dict(quantities)}


def _pod_extras(k: KubernetesConfig) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if k.service_account:
        extras["serviceAccountName"] = k.service_account
    if k.node_selector:
        extras["nodeSelector"] = dict(k.node_selector)
    if k.tolerations:
        extras["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in k.tolerations]
    return extras


def worker_args(k: KubernetesConfig, memory_limit: int | None = None) -> list[str]:
    """The worker container's command line (``dask worker``; the operator supplies the scheduler address)."""
    limit = memory_limit if memory_limit is not None else memory_limit_for(k.worker.memory_bytes)
    return [
        "dask", "worker",
        "--name", "$(DASK_WORKER_NAME)",
        "--nworkers", "1",
        "--nthreads", str(nthreads_for(k.worker.cores)),
        "--memory-limit", str(limit),
        "--local-directory", SPILL_DIR,
        "--dashboard-address", ":8788",
    ]  # fmt: skip


def scheduler_args() -> list[str]:
    """The scheduler container's command line."""
    return ["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786", "--dashboard-address", ":8787"]


def cluster_spec(
    k: KubernetesConfig,
    *,
    memory_limit: int | None = None,
    service_type: str = "ClusterIP",
    replicas: int | None = None,
    staging_directory: str | None = None,
    staging_claim: str = STAGING_CLAIM,
) -> dict[str, Any]:
    """The DaskCluster resource for a validated `KubernetesConfig` (checked with `check_cluster_spec`).

    `memory_limit` overrides Dask's limit (bytes; default 0.9 x the pod limit); `replicas` the initial
    worker count (default: `workers`, or the adaptive minimum); `service_type` the scheduler service's type
    (ClusterIP: reached by DNS inside the cluster, by port-forward outside; LoadBalancer/NodePort).
    `staging_directory` (the config's staging.directory) is mounted on every worker from the
    ReadWriteMany PersistentVolumeClaim `staging_claim`, since workers write shards the driver reads.
    """
    if replicas is None:
        replicas = k.workers if k.workers is not None else (k.adaptive.minimum if k.adaptive else 1)
    labels = {"app.kubernetes.io/name": "qdask", "app.kubernetes.io/managed-by": "qdask"}
    worker_env = _env(k, secrets=True)
    worker_env.append({"name": "QDASK_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    given = {e["name"] for e in worker_env}
    worker_env += [{"name": n, "value": v} for n, v in WORKER_MALLOC_ENV.items() if n not in given]
    scheduler_env = _env(k, secrets=False)
    scheduler_env.append(
        {"name": "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "value": str(ALLOWED_FAILURES)}
    )
    worker: dict[str, Any] = {
        "replicas": replicas,
        "metadata": {"labels": dict(labels)},
        "spec": {
            **_pod_extras(k),
            "containers": [
                {
                    "name": "worker",
                    "image": k.image,
                    "args": worker_args(k, memory_limit),
                    "env": worker_env,
                    "resources": _resources(k.worker.cpu, k.worker.memory),
                    "ports": [{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}],
                    "volumeMounts": [{"name": "spill", "mountPath": SPILL_DIR}],
                }
            ],
            "volumes": [{"name": "spill", "emptyDir": {"sizeLimit": k.spill_volume_size}}],
        },
    }
    if staging_directory is not None:
        worker["spec"]["containers"][0]["volumeMounts"].append(
            {"name": "staging", "mountPath": staging_directory}
        )
        worker["spec"]["volumes"].append(
            {"name": "staging", "persistentVolumeClaim": {"claimName": staging_claim}}
        )

    def probe() -> dict[str, Any]:
        return {"httpGet": {"port": "http-dashboard", "path": "/health"}}

    scheduler = {
        "metadata": {"labels": dict(labels)},
        "spec": {
            **_pod_extras(k),
            "containers": [
                {
                    "name": "scheduler",
                    "image": k.image,
                    "args": scheduler_args(),
                    "env": scheduler_env,
                    "resources": _resources(k.scheduler.cpu, k.scheduler.memory),
                    "ports": [
                        {"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
                        {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"},
                    ],
                    "readinessProbe": {
                        **probe(),
                        "initialDelaySeconds": 0,
                        "periodSeconds": 1,
                        "timeoutSeconds": 300,
                    },
                    "livenessProbe": {**probe(), "initialDelaySeconds": 15, "periodSeconds": 20},
                }
            ],
        },
        "service": {
            "type": service_type,
            "selector": {"dask.org/cluster-name": k.name, "dask.org/component": "scheduler"},
            "ports": [
                {"name": "tcp-comm", "protocol": "TCP", "port": 8786, "targetPort": "tcp-comm"},
                {"name": "http-dashboard", "protocol": "TCP", "port": 8787, "targetPort": "http-dashboard"},
            ],
        },
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "DaskCluster",
        "metadata": {"name": k.name, "namespace": k.namespace, "labels": dict(labels)},
        "spec": {"idleTimeout": 0, "worker": worker, "scheduler": scheduler},
    }


def worker_group_spec(cluster: Mapping[str, Any]) -> dict[str, Any]:
    """The DaskWorkerGroup the operator derives from a DaskCluster (``<cluster>-default``)."""
    name = cluster["metadata"]["name"]
    return {
        "apiVersion": API_VERSION,
        "kind": "DaskWorkerGroup",
        "metadata": {"name": f"{name}-default", "namespace": cluster["metadata"].get("namespace", "default")},
        "spec": {"cluster": name, "worker": copy.deepcopy(cluster["spec"]["worker"])},
    }


def autoscaler_spec(name: str, namespace: str, minimum: int, maximum: int) -> dict[str, Any]:
    """The DaskAutoscaler `KubeCluster.adapt(minimum, maximum)` creates."""
    return {
        "apiVersion": API_VERSION,
        "kind": "DaskAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"cluster": name, "minimum": minimum, "maximum": maximum},
    }


# -- validation -------------------------------------------------------------------------------------------


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of a dask-kubernetes resource kind, from the CRD shipped in the package."""
    if kind not in _KINDS:
        raise KeyError(f"no CRD for {kind!r}; known: {', '.join(_KINDS)}")
    path = resources.files("dask_kubernetes").joinpath(f"{_CRDS}/{_KINDS[kind]}.yaml")
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return version["schema"]["openAPIV3Schema"]


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def _check(value: Any, schema: Mapping[str, Any], path: str, problems: list[str]) -> None:
    """A structural-schema check as the API server does it, except that unknown fields are errors."""
    kind = schema.get("type")
    if value is None:
        if not schema.get("nullable"):
            problems.append(f"{path}: null (the API server would drop it)")
        return
    if kind and not _TYPES[kind](value):
        problems.append(f"{path}: expected {kind}, got {type(value).__name__} {value!r}"[:200])
        return
    if kind == "integer" and schema.get("format") in _INT_RANGES:
        lo, hi = _INT_RANGES[schema["format"]]
        if not lo <= value <= hi:
            problems.append(f"{path}: {value} is out of {schema['format']} range")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties")
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{path}.{key}: required")
        for key, item in value.items():
            if props is not None and key in props:
                _check(item, props[key], f"{path}.{key}", problems)
            elif isinstance(schema.get("additionalProperties"), dict):
                _check(item, schema["additionalProperties"], f"{path}.{key}", problems)
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                problems.append(f"{path}.{key}: unknown field (the API server would drop it)")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{i}]", problems)
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen = [
                tuple(item.get(k, schema["items"]["properties"].get(k, {}).get("default")) for k in keys)
                for item in value
                if isinstance(item, dict)
            ]
            if len(seen) != len(set(seen)):
                problems.append(f"{path}: duplicate entries for list-map keys {keys}")


def validate(resource: Mapping[str, Any]) -> None:
    """Raise `SpecError` unless `resource` fits its CRD schema exactly (unknown fields are errors)."""
    kind = resource.get("kind", "?")
    problems: list[str] = []
    if resource.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: expected {API_VERSION}, got {resource.get('apiVersion')!r}")
    if kind not in _KINDS:
        raise SpecError(str(kind), [f"kind: expected one of {', '.join(_KINDS)}"])
    meta = resource.get("metadata") or {}
    name = meta.get("name", "")
    if not _NAME_RE.match(name) or len(name) > 63:
        problems.append(f"metadata.name: {name!r} is not an RFC 1123 label of at most 63 characters")
    for key in meta:
        if key not in ("name", "namespace", "labels", "annotations"):
            problems.append(f"metadata.{key}: not something qdask sets")
    body = {k: v for k, v in resource.items() if k not in ("apiVersion", "kind", "metadata")}
    _check(body, crd_schema(kind), kind, problems)
    if problems:
        raise SpecError(kind, problems)


def _limit_bytes(container: Mapping[str, Any]) -> int:
    return parse_bytes(container["resources"]["limits"]["memory"])


_QUANTITY_RE = re.compile(r"[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[mkMGTPE])?\Z")


def _quantities(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Every resource quantity and emptyDir size in the pod specs, with where it is."""
    found = []
    for role in ("worker", "scheduler"):
        pod = spec[role]["spec"]
        for i, c in enumerate(pod.get("containers", [])):
            for kind, values in (c.get("resources") or {}).items():
                for name, value in (values or {}).items():
                    found.append((f"spec.{role}.spec.containers[{i}].resources.{kind}.{name}", value))
        for v in pod.get("volumes", []):
            if "sizeLimit" in (v.get("emptyDir") or {}):
                found.append(
                    (f"spec.{role}.spec.volumes[{v['name']}].emptyDir.sizeLimit", v["emptyDir"]["sizeLimit"])
                )
    return found


def check_cluster_spec(spec: Mapping[str, Any]) -> None:
    """Validate a DaskCluster and the DaskWorkerGroup derived from it, plus qdask's own rules.

    Own rules: ``dask worker`` (never ``dask-worker``), requests equal limits, ``--memory-limit`` at most
    the pod limit, spill directory on a mounted ``emptyDir``, worker deployment/pod names within 63.
    """
    problems: list[str] = []
    for resource in (spec, worker_group_spec(spec)):
        try:
            validate(resource)
        except SpecError as exc:
            problems += exc.problems
    name = spec["metadata"]["name"]
    if len(f"{name}-default-worker-") + 10 > 63:
        problems.append(f"metadata.name: {name!r} makes worker deployment names longer than 63 characters")
    for role in ("worker", "scheduler"):
        for i, c in enumerate(spec["spec"][role]["spec"]["containers"]):
            where = f"spec.{role}.spec.containers[{i}]"
            args = [*c.get("command", []), *c.get("args", [])]
            if any(a.startswith("dask-") for a in args[:1]):
                problems.append(
                    f"{where}: {args[0]!r} was removed from distributed; use 'dask {args[0][5:]}'"
                )
            res = c.get("resources") or {}  # make_cluster_spec may leave it None
            if not res.get("limits") or res.get("requests") != res.get("limits"):
                problems.append(f"{where}.resources: requests must equal limits (got {res})")
    for where, value in _quantities(spec["spec"]):
        if not isinstance(value, str) or not _QUANTITY_RE.match(value):
            problems.append(f"{where}: {value!r} is not a Kubernetes quantity (e.g. 16Gi, 500m, 2)")
    worker = spec["spec"]["worker"]["spec"]
    c = worker["containers"][0]
    args = c.get("args", [])
    if args[:2] != ["dask", "worker"]:
        problems.append(f"spec.worker.spec.containers[0].args: must start with 'dask worker', got {args[:2]}")
    if "--memory-limit" in args and c.get("resources", {}).get("limits", {}).get("memory"):
        limit = int(args[args.index("--memory-limit") + 1])
        if limit > _limit_bytes(c):
            problems.append(f"--memory-limit {limit} exceeds the pod memory limit {_limit_bytes(c)}")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    empty_dirs = {v["name"] for v in worker.get("volumes", []) if "emptyDir" in v}
    if "--local-directory" in args:
        local = args[args.index("--local-directory") + 1]
        if mounts.get(local) not in empty_dirs or any(
            v.get("emptyDir", {}).get("medium") == "Memory" for v in worker.get("volumes", [])
        ):
            problems.append(f"--local-directory {local} is not a mounted disk-backed emptyDir volume")
    if problems:
        raise SpecError("DaskCluster", problems)


def main(argv: list[str] | None = None) -> int:
    """``python -m qdask.kube.spec CONFIG``: print the checked DaskCluster qdask would create, as YAML."""
    import argparse
    import sys

    from qdask.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="python -m qdask.kube.spec", description=main.__doc__)
    parser.add_argument("config")
    parser.add_argument(
        "--service-type", default="ClusterIP", choices=["ClusterIP", "LoadBalancer", "NodePort"]
    )
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, check_paths=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if cfg.cluster.kubernetes is None:
        print(f"{args.config}: no cluster.kubernetes section", file=sys.stderr)
        return 2
    resource = cluster_spec(
        cfg.cluster.kubernetes,
        memory_limit=cfg.cluster.worker_memory_limit,
        service_type=args.service_type,
        staging_directory=str(cfg.staging.directory),
    )
    check_cluster_spec(resource)
    sys.stdout.write(yaml.safe_dump(resource, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where the Dask work runs: a local cluster, an existing scheduler, or a Kubernetes cluster qdask builds."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from qdask.config.base import ConfigModel
from qdask.config.names import K8sName, K8sSubdomain, check_length, k8s_subdomain
from qdask.config.quantities import (
    Bytes,
    CpuQuantity,
    MemoryQuantity,
    cpu_cores,
    memory_bytes,
    parse_bytes_field,
)

__all__ = [
    "Adaptive",
    "ClusterConfig",
    "EnvVar",
    "KubernetesConfig",
    "PodResources",
    "SecretRef",
    "Toleration",
]


class Adaptive(ConfigModel):
    """Adaptive scaling bounds for Kubernetes workers."""

    minimum: int = Field(ge=0)
    maximum: int = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> Adaptive:
        if self.minimum > self.maximum:
            raise ValueError(f"minimum ({self.minimum}) exceeds maximum ({self.maximum})")
        return self


class PodResources(ConfigModel):
    """CPU and memory of a pod; qdask sets requests equal to limits."""

    cpu: CpuQuantity
    memory: MemoryQuantity

    @field_validator("memory", mode="before")
    @classmethod
    def _mem_str(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @property
    def memory_bytes(self) -> int:
        """Memory limit in bytes."""
        return memory_bytes(self.memory)

    @property
    def cores(self) -> float:
        """CPU limit in cores."""
        return cpu_cores(str(self.cpu))


class Toleration(ConfigModel):
    """A Kubernetes pod toleration, spelled as in a pod spec."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds", ge=0)

    @model_validator(mode="after")
    def _rules(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("a toleration with operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without key must use operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies only to effect NoExecute")
        return self


class SecretRef(ConfigModel):
    """A key of a Kubernetes secret."""

    name: K8sSubdomain
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$")


class EnvVar(ConfigModel):
    """An environment variable of the Dask pods: a literal value, or a key of a Kubernetes secret."""

    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str | None = None
    secret: SecretRef | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvVar:
        if (self.value is None) == (self.secret is None):
            raise ValueError("give exactly one of value or secret")
        return self


# dask-kubernetes names worker deployments "<cluster>-default-worker-<10 hex>", which must stay <= 63.
MAX_K8S_CLUSTER_NAME = 63 - len("-default-worker-") - 10
_LABEL_PART_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


class KubernetesConfig(ConfigModel):
    """A Dask cluster on Kubernetes (dask-kubernetes operator), built by qdask with requests = limits."""

    image: str = Field(pattern=r"^[^\s]+$")
    namespace: K8sName = "default"
    name: K8sName = "qdask"
    workers: int | None = Field(default=None, gt=0)
    adaptive: Adaptive | None = None
    worker: PodResources = Field(default_factory=lambda: PodResources(cpu="2", memory="8Gi"))
    scheduler: PodResources = Field(default_factory=lambda: PodResources(cpu="1", memory="2Gi"))
    service_account: K8sSubdomain | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    spill_volume_size: MemoryQuantity = "20Gi"

    @field_validator("name")
    @classmethod
    def _short(cls, v: str) -> str:
        because = "worker deployments are named '<name>-default-worker-<10 hex>' (at most 63)"
        return check_length(v, MAX_K8S_CLUSTER_NAME, "cluster name", because)

    @field_validator("node_selector")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            prefix, _, name = key.rpartition("/")
            if prefix:
                k8s_subdomain(prefix)
            if not _LABEL_PART_RE.fullmatch(name) or len(name) > 63:
                raise ValueError(f"node_selector key {key!r} is not a valid Kubernetes label key")
            if len(value) > 63 or (value and not _LABEL_PART_RE.fullmatch(value)):
                raise ValueError(f"node_selector value {value!r} is not a valid Kubernetes label value")
        return v

    @model_validator(mode="after")
    def _scaling(self) -> KubernetesConfig:
        if self.workers is not None and self.adaptive is not None:
            raise ValueError("give workers (a fixed count) or adaptive (minimum/maximum), not both")
        names = [e.name for e in self.env]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"env sets {', '.join(dups)} more than once")
        return self


_SCHEDULER_RE = re.compile(r"(tcp|tls|ws|wss|inproc|ucx)://[^\s/]+\Z")


class ClusterConfig(ConfigModel):
    """Where the Dask work runs: a local cluster, Kubernetes, or an existing scheduler."""

    kind: Literal["local", "kubernetes", "scheduler"] = "local"
    workers: int = Field(default=2, gt=0)
    threads_per_worker: int = Field(default=1, gt=0)
    memory_per_worker: Bytes = 4 * 2**30
    scheduler_address: str | None = None
    kubernetes: KubernetesConfig | None = None

    _bytes = field_validator("memory_per_worker", mode="before")(parse_bytes_field)

    @field_validator("scheduler_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not _SCHEDULER_RE.match(v):
            raise ValueError(f"expected a Dask scheduler address such as tcp://host:8786, got {v!r}")
        return v

    @model_validator(mode="after")
    def _by_kind(self) -> ClusterConfig:
        if self.kind == "scheduler" and self.scheduler_address is None:
            raise ValueError("kind scheduler needs scheduler_address (e.g. tcp://host:8786)")
        if self.kind == "kubernetes":
            if self.kubernetes is None:
                raise ValueError("kind kubernetes needs a kubernetes section (image, namespace, worker, ...)")
            limit = self.kubernetes.worker.memory_bytes
            if "memory_per_worker" in self.model_fields_set and self.memory_per_worker > limit:
                raise ValueError(
                    f"memory_per_worker ({self.memory_per_worker} bytes) exceeds the worker pod's memory "
                    f"limit {self.kubernetes.worker.memory} ({limit} bytes)"
                )
        return self

    @property
    def worker_count(self) -> int:
        """Workers to start (for adaptive Kubernetes clusters: the adaptive maximum)."""
        if self.kind == "kubernetes" and self.kubernetes is not None:
            if self.kubernetes.adaptive is not None:
                return self.kubernetes.adaptive.maximum
            if self.kubernetes.workers is not None:
                return self.kubernetes.workers
        return self.workers

    @property
    def worker_memory_limit(self) -> int:
        """Dask's memory limit per worker in bytes (on Kubernetes: 0.9 x the pod limit unless set)."""
        if (
            self.kind == "kubernetes"
            and self.kubernetes is not None
            and "memory_per_worker" not in self.model_fields_set
        ):
            return int(0.9 * self.kubernetes.worker.memory_bytes)
        return self.memory_per_worker

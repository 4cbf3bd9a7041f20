"""Where the Dask work runs: a LocalCluster by default, an existing scheduler by address, or Kubernetes.

Workers are processes (so a worker killed by the kernel for memory costs one task, not the driver) with
an explicit memory limit, which Dask's nanny enforces the way a Kubernetes pod limit would. On Kubernetes
(`qdask.kube`), qdask builds the DaskCluster itself and deletes it when the run ends.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dask
from distributed import Client, LocalCluster

from qdask.errors import QdaskError

if TYPE_CHECKING:
    from qdask.config import KubernetesConfig


#: The allocators' settings in worker processes. Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` (give
#: freed memory back at once), which also fixes glibc's mmap threshold at 128 KiB: every buffer larger than
#: that is then a fresh mapping whose pages fault in on first touch, task after task. qdask's tasks allocate
#: the same bounded buffers over and over; keeping up to 64 MiB of freed heap (buffers under 32 MiB from the
#: heap) halved a worker's page faults and its system CPU (benchmarks/results/hats.md). Arrow's allocator
#: (mimalloc 3) asks for transparent huge pages by default: a first touch anywhere in 2 MiB then zeroes all of
#: it, and its small-object pages lie spread over its arena. perf counted 1.9-3.0 CPU s of a worker staging 1M
#: x 43 rows zeroing huge pages, against 0.02-0.24 s with them off. An operator's own value in the environment
#: still wins, as the nanny reads the environment first.
WORKER_MALLOC_ENV = {
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MIMALLOC_ALLOW_THP": "0",
}


class ClusterError(QdaskError, RuntimeError):
    """The requested cluster cannot be started or reached."""


@dataclass(frozen=True)
class ClusterSpec:
    """How many workers, how big, and where (kind: local | scheduler | kubernetes)."""

    kind: str = "local"
    workers: int = 2
    threads_per_worker: int = 1
    memory_per_worker: int | None = None  # bytes; None lets Dask divide the machine's memory
    scheduler_address: str | None = None
    dashboard_address: str = ":0"
    kubernetes: KubernetesConfig | None = None  # kind kubernetes: image, namespace, pods, scaling
    scheduler_service_type: str = "ClusterIP"  # kind kubernetes: how the driver reaches the scheduler
    staging_directory: str | None = None  # kind kubernetes: mounted on workers from the qdask-staging claim


@contextlib.contextmanager
def open_client(spec: ClusterSpec) -> Iterator[Client]:
    """A Dask client for the spec, with the cluster it started (if any) shut down on exit."""
    # Tasks are idempotent and cheap to redo; a worker killed twice on the same task means the task
    # itself is the cause (e.g. out of memory), which the driver reports instead of looping.
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **WORKER_MALLOC_ENV}
    with dask.config.set(
        {"distributed.scheduler.allowed-failures": 2, "distributed.nanny.pre-spawn-environ": environ}
    ):
        if spec.kind == "scheduler":
            if not spec.scheduler_address:
                raise ClusterError("cluster kind 'scheduler' needs a scheduler address")
            try:
                client = Client(spec.scheduler_address, timeout="30s")
            except OSError as exc:
                raise ClusterError(
                    f"cannot reach the Dask scheduler at {spec.scheduler_address}: {exc}"
                ) from exc
            with client:
                yield client
            return
        if spec.kind == "kubernetes":
            with _kubernetes_client(spec) as client:
                yield client
            return
        if spec.kind != "local":
            raise ClusterError(
                f"unknown cluster kind {spec.kind!r}: use local, kubernetes, or scheduler "
                "with the address of a running scheduler"
            )
        logging.getLogger("distributed").setLevel(logging.WARNING)
        with _workers_ignore_ctrl_c():
            cluster = LocalCluster(
                n_workers=spec.workers,
                threads_per_worker=spec.threads_per_worker,
                processes=True,
                memory_limit=spec.memory_per_worker if spec.memory_per_worker else "auto",
                dashboard_address=spec.dashboard_address,
                silence_logs=logging.CRITICAL,  # task errors reach the driver, which reports them per unit
                preload=[__name__],  # `dask_setup` below, in every worker process (restarted ones too)
            )
        with cluster, Client(cluster) as client:
            yield client


# Ctrl-C in a terminal sends SIGINT to the whole process group: the driver and its local worker processes.
# The driver stops the run and closes the cluster; workers must not each die printing a traceback.


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Ignore SIGINT while worker processes are spawned: an ignored signal stays ignored across exec, and
    Python then installs no KeyboardInterrupt handler in them (a Ctrl-C meanwhile is lost, not fatal)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def dask_setup(worker: object) -> None:
    """Dask preload run in each local worker as it starts (also one its nanny restarts): ignore SIGINT;
    import the stages' modules its tasks run and take everything alive then out of the garbage collector's
    full passes (`qdask.long_lived`)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    import qdask.stages.collect  # noqa: F401 - imported by the first task anyway; frozen with the rest
    import qdask.stages.partition  # noqa: F401
    from qdask.long_lived import freeze_long_lived

    freeze_long_lived("worker")


@contextlib.contextmanager
def _kubernetes_client(spec: ClusterSpec) -> Iterator[Client]:
    """A client of a DaskCluster qdask creates (and deletes on exit) with the dask-kubernetes operator."""
    from qdask.kube.launch import kube_cluster
    from qdask.kube.spec import SpecError

    k = spec.kubernetes
    if k is None:
        raise ClusterError("cluster kind 'kubernetes' needs a kubernetes section (image, namespace, ...)")
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(
                kube_cluster(
                    k,
                    memory_limit=spec.memory_per_worker,
                    service_type=spec.scheduler_service_type,
                    staging_directory=spec.staging_directory,
                )
            )
        except SpecError as exc:
            raise ClusterError(f"the DaskCluster qdask would create is invalid: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - kr8s/httpx/operator errors all mean "no cluster"
            raise ClusterError(
                f"cannot create DaskCluster {k.name!r} in namespace {k.namespace!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        yield stack.enter_context(Client(cluster))

"""Why a Dask worker died, and which unit it was running: OOM kills reported, not silent.

A worker can die of memory two ways. Dask's nanny restarts it when its process passes 95% of the
``--memory-limit`` (the scheduler keeps a ``worker-restart-memory`` event with the RSS), and the kernel
kills the container when the pod passes its limit (Kubernetes records ``OOMKilled`` as the container's
last termination reason). Either way Dask retries the task on another worker and, after
``allowed-failures``, raises `KilledWorker` naming only the task and an address. `explain_kill` puts the
pieces together: the unit behind the task, the pod and its limit (read with kr8s), the reason, and the
planner's estimate, so the report says what to change. Nothing here alters the ledger: the unit stays
failed and the same command resumes after the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dask.utils import format_bytes

__all__ = [
    "KillReport",
    "MemoryRestart",
    "Termination",
    "describe_killed",
    "explain_kill",
    "kill_cause",
    "memory_restarts",
    "pod_terminations",
]


@dataclass(frozen=True)
class Termination:
    """A worker container's last termination, as its pod reports it."""

    pod: str
    container: str
    worker_name: str | None  # the Dask worker name (DASK_WORKER_NAME: the worker deployment's name)
    reason: str  # "OOMKilled", "Error", "Completed", ...
    exit_code: int | None
    finished_at: str | None
    restarts: int
    memory_limit: str | None  # the container's limit, as written ("16Gi")


@dataclass(frozen=True)
class MemoryRestart:
    """A nanny restart of a worker that passed its memory limit (Dask's ``worker-restart-memory`` event)."""

    worker: str  # address
    pid: int | None
    rss: int | None
    time: float


def _worker_name(container: dict[str, Any]) -> str | None:
    for env in container.get("env") or []:
        if env.get("name") == "DASK_WORKER_NAME":
            return env.get("value")
    return None


def terminations_of(pods: Iterable[dict[str, Any]]) -> list[Termination]:
    """The terminations recorded in pod objects (``lastState.terminated``, or ``state.terminated``)."""
    out = []
    for pod in pods:
        spec = {c["name"]: c for c in (pod.get("spec") or {}).get("containers", [])}
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (status.get("lastState") or {}).get("terminated") or (status.get("state") or {}).get(
                "terminated"
            )
            if not term:
                continue
            container = spec.get(status["name"], {})
            limits = (container.get("resources") or {}).get("limits") or {}
            out.append(
                Termination(
                    pod=pod["metadata"]["name"],
                    container=status["name"],
                    worker_name=_worker_name(container),
                    reason=term.get("reason") or f"exit code {term.get('exitCode')}",
                    exit_code=term.get("exitCode"),
                    finished_at=term.get("finishedAt"),
                    restarts=int(status.get("restartCount") or 0),
                    memory_limit=limits.get("memory"),
                )
            )
    return out


def pod_terminations(cluster: str, namespace: str) -> list[Termination]:
    """Last terminations of the worker pods of DaskCluster `cluster` (kr8s, with the current kubeconfig)."""
    import kr8s

    pods = kr8s.get(
        "pods",
        namespace=namespace,
        label_selector={"dask.org/cluster-name": cluster, "dask.org/component": "worker"},
    )
    return terminations_of(p.raw for p in pods)


def memory_restarts(client: Any) -> list[MemoryRestart]:
    """The nanny's memory restarts the scheduler recorded (empty when it has none)."""
    events = client.get_events("worker-restart-memory") or ()
    return [
        MemoryRestart(msg.get("worker", ""), msg.get("pid"), msg.get("rss"), float(ts))
        for ts, msg in events
        if isinstance(msg, dict)
    ]


@dataclass(frozen=True)
class KillReport:
    """Why the task of a unit kept killing its workers."""

    task: str
    unit: str | None
    worker: str  # address of the last worker that died running it
    worker_name: str | None
    reason: str  # "OOMKilled" | "memory limit" (nanny restart) | a pod's reason | "unknown"
    pod: str | None = None
    limit: str | None = None  # the limit that was passed (pod limit, or Dask's --memory-limit)
    rss: int | None = None
    estimate: int | None = None  # the planner's estimated peak for the unit

    @property
    def out_of_memory(self) -> bool:
        return self.reason in ("OOMKilled", "memory limit")

    def __str__(self) -> str:
        who = f"unit {self.unit}" if self.unit else f"task {self.task}"
        where = (
            f"pod {self.pod} (Dask worker {self.worker_name or self.worker})"
            if self.pod
            else (f"Dask worker {self.worker_name or self.worker}")
        )
        parts = [f"{self.reason}: {where} died while running {who}"]
        if self.limit:
            parts.append(f"memory limit {self.limit}")
        if self.rss:
            parts.append(f"RSS {format_bytes(self.rss)} when restarted")
        if self.estimate:
            parts.append(f"estimated peak for the unit {format_bytes(self.estimate)}")
        text = "; ".join(parts)
        if self.out_of_memory:
            text += (
                ". Give workers more memory (cluster.kubernetes.worker.memory or cluster.memory_per_worker) "
                "or fewer threads, or select fewer columns; finished units are kept, re-run the same command"
            )
        return text


def _task_text(task: Any) -> str:
    return task if isinstance(task, str) else str(task[0] if isinstance(task, tuple) and task else task)


def unit_of_task(task: Any) -> str | None:
    """The unit id of a partition task key (``partition-<unit id>``)."""
    m = re.match(r"partition-(.+)\Z", _task_text(task), re.S)
    return m.group(1) if m else None


def explain_kill(
    exc: Any,
    *,
    restarts: Sequence[MemoryRestart] = (),
    terminations: Sequence[Termination] = (),
    unit: str | None = None,
    memory_limit: int | None = None,
    estimate: int | None = None,
) -> KillReport:
    """A `KillReport` for a `KilledWorker`, from the nanny's restarts and/or the pods' terminations."""
    worker = exc.last_worker
    address, name = getattr(worker, "address", str(worker)), getattr(worker, "name", None)
    name = str(name) if name is not None else None
    task = _task_text(exc.task)
    unit = unit or unit_of_task(exc.task)
    for t in terminations:
        if name and (t.worker_name == name or t.pod.startswith(f"{name}-")):
            return KillReport(task, unit, address, name, t.reason, t.pod, t.memory_limit, None, estimate)
    for r in sorted(restarts, key=lambda r: -r.time):
        if r.worker == address:
            limit = f"{format_bytes(memory_limit)} (Dask --memory-limit)" if memory_limit else None
            return KillReport(task, unit, address, name, "memory limit", None, limit, r.rss, estimate)
    return KillReport(task, unit, address, name, "unknown", None, None, None, estimate)


def describe_killed(
    exc: BaseException,
    client: Any,
    *,
    unit: str | None = None,
    memory_limit: int | None = None,
    estimate: int | None = None,
    cluster: tuple[str, str] | None = None,
) -> str:
    """The message to report for a failed task: the kill explained for `KilledWorker`, else the error.

    `cluster` is ``(name, namespace)`` of the DaskCluster, to read its pods; the pods are skipped (and
    the nanny's events still used) when Kubernetes cannot be reached.
    """
    from distributed.scheduler import KilledWorker

    if not isinstance(exc, KilledWorker):
        return f"{type(exc).__name__}: {exc}"
    terminations: list[Termination] = []
    if cluster is not None:
        try:
            terminations = pod_terminations(*cluster)
        except Exception:  # noqa: BLE001 - the report must not fail; the nanny's events remain
            terminations = []
    try:
        restarts = memory_restarts(client)
    except Exception:  # noqa: BLE001
        restarts = []
    report = explain_kill(
        exc,
        restarts=restarts,
        terminations=terminations,
        unit=unit,
        memory_limit=memory_limit,
        estimate=estimate,
    )
    return str(report)


def kill_cause(
    exc: BaseException, client: Any, config: Any = None, unit: Any = None, plan: Any = None
) -> str:
    """``"; <KillReport>"`` for a `KilledWorker` (empty otherwise): the driver's one-line hook.

    `config` (an IngestConfig) names the DaskCluster whose pods to read on Kubernetes; `unit` (the
    InputUnit) and `plan` (its table's TablePlan) give the planner's estimate for the unit. The limit is
    the dead worker's own Dask memory limit.
    """
    from distributed.scheduler import KilledWorker

    if not isinstance(exc, KilledWorker):
        return ""
    cluster = None
    c = getattr(config, "cluster", None)
    if c is not None and c.kind == "kubernetes" and c.kubernetes is not None:
        cluster = (c.kubernetes.name, c.kubernetes.namespace)
    estimate = None
    if unit is not None and plan is not None:
        from qdask.kube.memory import unit_footprint

        back = {dst: src for src, dst in plan.rename.items()}
        try:
            fp = unit_footprint(
                unit,
                plan.source_columns,
                layout=plan.layout if plan.partitioned else None,
                ra=back.get(plan.ra, plan.ra),
                dec=back.get(plan.dec, plan.dec),
            )
            estimate = fp.peak() if fp is not None else None
        except Exception:  # noqa: BLE001 - an unreadable footer only loses the estimate
            estimate = None
    limit = getattr(exc.last_worker, "memory_limit", None) or None
    text = describe_killed(
        exc,
        client,
        unit=getattr(unit, "unit_id", None),
        memory_limit=limit,
        estimate=estimate,
        cluster=cluster,
    )
    return f"; {text}"

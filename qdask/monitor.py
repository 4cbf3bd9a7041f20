"""Worker memory seen while a stage runs, so a task that kills its worker can be explained.

A worker killed for memory (by its nanny at the `terminate` fraction, by the kernel, or by Kubernetes)
takes its task with it; after `allowed-failures` such deaths Dask gives up with `KilledWorker`, which
says nothing of memory. `MemoryWatch` samples the scheduler while a stage runs and keeps, for every
running task, the most memory its worker was seen using and the worker's limit, so the report can name
both. (On Kubernetes, `qdask.kube.oom` adds the pod's own termination reason.) Given a `MemorySeries`,
it also keeps every worker's memory over time, which the run report plots against the limit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dask.utils import format_bytes
from distributed import KilledWorker


@dataclass
class MemorySeries:
    """Each worker's memory over a run: (seconds since `start`, worker, bytes used, limit) at most once per
    `every` seconds per worker, halved (every other sample dropped) whenever it exceeds `limit` samples,
    so a run of any length keeps a bounded picture."""

    start: float = field(default_factory=time.time)
    every: float = 1.0
    limit: int = 4000
    samples: list[tuple[float, str, int, int | None]] = field(default_factory=list)
    _last: dict[str, float] = field(default_factory=dict, repr=False)

    def add(self, worker: str, used: int, memory_limit: int | None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if now - self._last.get(worker, -1e18) < self.every:
            return
        self._last[worker] = now
        self.samples.append((round(now - self.start, 3), worker, int(used), memory_limit))
        if len(self.samples) > self.limit:
            self.samples = self.samples[::2]
            self.every *= 2


class MemoryWatch:
    """Samples the Dask workers every `interval` seconds from a thread, while used as a context manager
    (and adds every worker's memory to `series`, when given)."""

    def __init__(self, client: Any, interval: float = 0.2, series: MemorySeries | None = None):
        self.client, self.interval, self.series = client, interval, series
        self.peak: dict[str, tuple[int, int | None]] = {}  # task key → (bytes seen, worker limit)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qdask-memory-watch", daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        """A sample as the stage starts, then one every `interval` until it ends: a stage shorter than
        the interval is still seen (a quick run's report still plots its workers' memory)."""
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def _sample(self) -> None:
        try:
            workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
            processing = self.client.processing()
        except Exception:  # noqa: BLE001 - sampling is best effort; the stage goes on without it
            return
        if self.series is not None:
            for address, info in workers.items():
                used = int((info.get("metrics") or {}).get("memory") or 0)
                self.series.add(str(info.get("name", address)), used, info.get("memory_limit"))
        for address, keys in processing.items():
            info = workers.get(address, {})
            used = int((info.get("metrics") or {}).get("memory") or 0)
            for key in keys:
                seen, _ = self.peak.get(str(key), (0, None))
                self.peak[str(key)] = (max(seen, used), info.get("memory_limit"))

    def explain(self, exc: BaseException, what: str) -> str:
        """A failed task's error as one line; for `KilledWorker`, with the memory seen and the limit."""
        if not isinstance(exc, KilledWorker):
            return f"{what}: {type(exc).__name__}: {exc}"
        used, limit = self.peak.get(str(exc.task), (0, None))
        limit = limit or getattr(exc.last_worker, "memory_limit", None)
        tries = exc.allowed_failures + 1
        memory = (
            f"at least {format_bytes(used)} of its {format_bytes(limit)} memory limit"
            if limit
            else format_bytes(used)
        )
        cause = (
            "most likely it needs more memory than a worker has: give workers more memory "
            "(cluster.memory_per_worker) or split the input into smaller units"
            if limit and used >= 0.6 * limit
            else "the workers died for another reason (killed by the system?); see the worker logs"
        )
        return (
            f"{what}: its task killed its Dask worker {tries} times (the last time using {memory}); "
            f"{cause}. Nothing of it was recorded"
        )

"""Shared pieces of the benchmark suite: machine description, timers, RSS sampling, the timed ingest.

`TimedIngest` is `qdask.ingest.Ingest` measured from outside: it overrides the driver's stage methods
(`_partition`, `_collect`, `_load`, `_check_counters`, `verify`) to time them (wall, and the driver's CPU)
and to sample the resident memory of every Dask worker and of the driver (and the driver's open files)
while each runs; `publish` (a module-level call inside `Ingest.run`) is
timed by wrapping `qdask.ingest.publish` for the duration of the run. Nothing in `qdask` is changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import psutil
from rich.console import Console

import qdask.ingest as ingest_module
from qdask.ingest import Ingest
from qdask.staging_run import StagingRun

from .worker_probes import peak_rss, worker_rss

MiB = 1 << 20


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """What the numbers were measured on, including how busy the machine was."""
    import dask
    import numpy
    import pyarrow

    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
        "dask": dask.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "git": _git(),
    }


def _git() -> str:
    """The commit measured, and whether qdask/ had uncommitted changes (others edit the same tree)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "qdask"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (qdask/ modified in the working tree)" if dirty else "")


def machine_line(m: dict) -> str:
    return (
        f"{m['host']}: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB; python {m['python']}, "
        f"pyarrow {m['pyarrow']}, dask {m['dask']}; qdask {m.get('git', '?')}; "
        f"load average {m['load_average'][0]:.2f}"
    )


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0  # this process's CPU time (all threads); Dask workers are other processes


@contextlib.contextmanager
def timed() -> Iterator[Timing]:
    t = Timing()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield t
    finally:
        t.wall = time.perf_counter() - w0
        t.cpu = time.process_time() - c0


class RssSampler:
    """Samples every Dask worker's RSS (and the driver's) every `interval` s; keeps the peaks per stage."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.client = None
        self.stage: str | None = None
        self.worker_peak: dict[str, dict[str, int]] = defaultdict(dict)  # stage -> worker -> bytes
        self.worker_maxrss: dict[str, dict[str, int]] = {}  # stage -> worker -> lifetime max at stage end
        self.driver_peak: dict[str, int] = defaultdict(int)
        self.driver_fds: dict[str, int] = defaultdict(int)  # stage -> most file descriptors open at once
        self.memory_limit: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._me = psutil.Process()

    def _sample(self) -> None:
        stage, client = self.stage, self.client
        if stage is None:
            return
        self.driver_peak[stage] = max(self.driver_peak[stage], self._me.memory_info().rss)
        self.driver_fds[stage] = max(self.driver_fds[stage], self._me.num_fds())
        if client is None:
            return
        try:
            found = client.run(worker_rss)
        except Exception:  # noqa: BLE001 - a worker going away between samples is not our business
            return
        peaks = self.worker_peak[stage]
        for worker, rss in found.items():
            peaks[worker] = max(peaks.get(worker, 0), rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @contextlib.contextmanager
    def stage_of(self, stage: str, client) -> Iterator[None]:
        self.stage, self.client = stage, client
        if client is not None and self.memory_limit is None:
            with contextlib.suppress(Exception):
                workers = client.scheduler_info(n_workers=-1)["workers"].values()
                self.memory_limit = max(w.get("memory_limit") or 0 for w in workers) or None
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        try:
            self._sample()
            yield
        finally:
            self._sample()
            self._stop.set()
            self._thread.join()
            if client is not None:
                with contextlib.suppress(Exception):
                    self.worker_maxrss[stage] = client.run(peak_rss)
            self.stage = self.client = None


class TimedStagingRun(StagingRun):
    """The `StagingRun` of a `TimedIngest`: partition, key checks and collect each timed by it."""

    def __init__(self, timed: TimedIngest, run: StagingRun):
        fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(run) if f.init}
        super().__init__(**fields)
        self.timed = timed

    def _partition(self, client) -> None:
        with self.timed._stage("partition", client):
            super()._partition(client)

    def _check_keys(self, client) -> bool:  # duplicate-id / orphan checks between partition and collect
        with self.timed._stage("keys", client):
            return super()._check_keys(client)

    def _collect(self, client) -> bool:
        with self.timed._stage("collect", client):
            return super()._collect(client)


class TimedIngest(Ingest):
    """An `Ingest` whose stages are timed and whose memory is sampled (from outside the pipeline)."""

    def __init__(self, config, *, performance_report: Path | None = None, sample_interval: float = 0.2):
        super().__init__(config, console=Console(stderr=True, quiet=True))
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)  # stage -> the driver's CPU seconds (all its threads)
        self.rss = RssSampler(sample_interval)
        self.performance_report = performance_report
        self.load_profiler = None  # a context-manager factory wrapped around the load stage, if set

    @contextlib.contextmanager
    def _stage(self, name: str, client=None) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            with self.rss.stage_of(name, client):
                yield
        finally:
            self.seconds[name] += time.perf_counter() - t0
            self.cpu[name] += time.process_time() - c0

    def plan(self):
        with self._stage("plan"):
            return super().plan()

    def _stage_files(self, client) -> None:
        if client is not None and self.performance_report is not None:
            from distributed import performance_report

            with performance_report(filename=str(self.performance_report)):
                return super()._stage_files(client)
        return super()._stage_files(client)

    def staging_run(self) -> StagingRun:
        return TimedStagingRun(self, super().staging_run())

    def _load(self, qserv) -> None:
        profiler = self.load_profiler() if self.load_profiler else contextlib.nullcontext()
        with self._stage("load"), profiler:
            super()._load(qserv)

    def _check_counters(self, qserv) -> None:  # Qserv's row counters against the ledger, before publish
        with self._stage("counters"):
            super()._check_counters(qserv)

    def verify(self, sample_size: int = 20, **options):
        with self._stage("verify"):
            return super().verify(sample_size, **options)

    def run(self, **kwargs):
        original = ingest_module.publish

        def publish(*args, **kw):
            with self._stage("publish"):
                return original(*args, **kw)

        t0 = time.perf_counter()
        try:
            with mock.patch.object(ingest_module, "publish", publish):
                return super().run(**kwargs)
        finally:
            total = time.perf_counter() - t0
            self.seconds["total"] = total + self.seconds.get("plan", 0.0)
            staged = sum(v for k, v in self.seconds.items() if k not in ("total", "plan", "other"))
            self.seconds["other"] = max(total - staged, 0.0)  # cluster start/stop, ledger, registration


@dataclass
class Figure:
    path: Path
    title: str


@dataclass
class Results:
    """Everything the suite measured, as plain data (written to JSON and rendered to Markdown)."""

    size: str
    command: str
    machine: dict
    started: str
    sections: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)


def footer(fig, command: str, m: dict) -> None:
    """Stamp a matplotlib figure with the command and the machine it ran on."""
    fig.text(0.01, 0.005, f"$ {command}\n{machine_line(m)}", fontsize=6, va="bottom", ha="left", color="0.3")


def dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in Path(path).rglob(pattern) if p.is_file())


DP02_LAYOUT = {"num_stripes": 340, "num_sub_stripes": 3, "overlap": 0.01667}


def director_glob_config(
    database: str,
    inputs: Path,
    staging: dict,
    workers: int,
    *,
    columns: tuple[str, str, str] = ("id", "ra", "dec"),
    memory_per_worker: str = "3GiB",
) -> dict:
    """A config (plain data) of one director table, Object, over every Parquet file in `inputs` (schema
    inferred, DP0.2's layout), for `--stage-only` runs: its Qserv addresses are never contacted.
    `columns`: the id, ra and dec columns; `staging`: the staging section."""
    key, ra, dec = columns
    return {
        "database": {"name": database, "partitioning": DP02_LAYOUT},
        "tables": [
            {
                "name": "Object",
                "kind": "director",
                "id": key,
                "ra": ra,
                "dec": dec,
                "input": {"files": {"glob": str(inputs / "*.parquet")}},
                "schema": {"infer": True},
            }
        ],
        "qserv": {"controller": "http://127.0.0.1:9", "czar": f"mysql://qsmaster@127.0.0.1:9/{database}"},
        "staging": staging,
        "cluster": {"kind": "local", "workers": workers, "memory_per_worker": memory_per_worker},
    }


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a child server: SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

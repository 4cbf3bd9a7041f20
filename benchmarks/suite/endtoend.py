"""Sections 3–7 — load, end to end, memory, scaling, and the Dask performance report.

Every run here is a full `qdask ingest` of a demo repository (Object 991 columns, ForcedSource, CcdVisit)
into the Qserv stand-in on a private MariaDB server, through `TimedIngest` (stage wall times, worker and
driver RSS per stage). One server and one stand-in serve the whole suite; each run has its own database.

The load baseline is the plain client's floor: the same contribution files, loaded one after another by
one pymysql connection with `LOAD DATA LOCAL INFILE` (the stand-in's own statement options) into plain
MyISAM tables of the same columns in the same MariaDB server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.suite.common import TimedIngest, stop_process, timed
from benchmarks.suite.data import ingest_config

AUTH_KEY = "bench-key"


@dataclass
class StandIn:
    controller_url: str
    czar_dsn: str
    pid: int


@contextlib.contextmanager
def stand_in():
    """A private MariaDB server and the Qserv stand-in on it (3 workers) in its own process, as a real
    Qserv is: the driver's load threads and the stand-in's request handling do not share a GIL."""
    from benchmarks.bench_emulator import start_emulator
    from qdask.mariadb import PrivateMariaDB

    with PrivateMariaDB() as server:
        proc, controller, urls = start_emulator(
            server.dsn, workers=3, auth_key=AUTH_KEY, instance="qdask_bench"
        )
        drain = threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True)  # never block it
        drain.start()
        try:
            os.environ["QSERV_AUTH_KEY"] = AUTH_KEY
            yield server, StandIn(controller, urls["czar"], proc.pid)
        finally:
            stop_process(proc)


@contextlib.contextmanager
def py_spy(pids: dict[str, int], prefix: Path, rate: int = 50):
    """Sample the given processes with py-spy while the block runs; on exit, write each one's collapsed
    stacks (`<prefix>-<name>.txt`) and return, in the yielded dict, the top functions by own samples."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    found: dict[str, list] = {}
    if not Path(exe).exists():
        yield found
        return
    procs = {
        name: subprocess.Popen(
            [
                exe,
                "record",
                "-p",
                str(pid),
                "-o",
                f"{prefix}-{name}.txt",
                "--format",
                "raw",
                "-r",
                str(rate),
                "--nonblocking",
                "--threads",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    }
    try:
        yield found
    finally:
        for name, proc in procs.items():
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            found[name] = summarise_stacks(Path(f"{prefix}-{name}.txt"))


def summarise_stacks(path: Path, top: int = 10) -> list[tuple[str, float]]:
    """The leaf functions with the largest share of a collapsed-stack file's samples (idle waits included)."""
    if not path.exists():
        return []
    leaves: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        leaf = leaf.split(" (")[0] + " (" + leaf.split(" (")[-1].split("/")[-1] if " (" in leaf else leaf
        leaves[leaf] = leaves.get(leaf, 0) + int(count)
        total += int(count)
    return [(k, v / total) for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]] if total else []


def ingest_run(
    qserv,
    repo: Path,
    staging: Path,
    database: str,
    *,
    workers: int,
    performance_report: Path | None = None,
    profile_load: Path | None = None,
) -> tuple[dict, TimedIngest]:
    """One full ingest (plan → verify) of a demo repository, measured; with `profile_load`, the driver and
    the stand-in are sampled by py-spy during the load stage."""
    shutil.rmtree(staging, ignore_errors=True)
    config = ingest_config(
        staging=staging,
        database=database,
        repo=repo,
        workers=workers,
        controller=qserv.controller_url,
        czar=qserv.czar_dsn,
    )
    ingest = TimedIngest(config, performance_report=performance_report)
    load_profile: dict = {}
    if profile_load is not None:
        pids = {"driver": os.getpid(), "stand-in": qserv.pid}

        @contextlib.contextmanager
        def profiler():
            with py_spy(pids, profile_load) as found:
                yield
            load_profile.update(found)

        ingest.load_profiler = profiler
    t0 = time.perf_counter()
    ingest.plan()
    summary = ingest.run()
    wall = time.perf_counter() - t0
    files = ingest.ledger.chunk_files()
    rows_in = {}
    for u in ingest.ledger.units():
        rows_in[u.table] = rows_in.get(u.table, 0) + (u.rows_read or 0)
    verify_ok = summary.verify is not None and all(c.ok for c in summary.verify.checks)
    result = {
        "database": database,
        "workers": workers,
        "wall": wall,
        "seconds": dict(ingest.seconds),
        "rows_in": rows_in,
        "rows_loaded": summary.loaded.stored,  # every row Qserv holds: catalog rows, overlap copies, replicas
        "transactions": summary.transactions,
        "contribution_files": len(files),
        "contribution_bytes": sum(f.bytes for f in files),
        "input_bytes": sum(u.est_bytes or 0 for s in ingest.setups.values() for u in s.units),
        "verify_ok": verify_ok,
        "memory_limit": ingest.rss.memory_limit,
        "worker_peak_rss": {k: dict(v) for k, v in ingest.rss.worker_peak.items() if v},
        "worker_maxrss": ingest.rss.worker_maxrss,
        "driver_peak_rss": dict(ingest.rss.driver_peak),
        "load_profile": load_profile,
    }
    return result, ingest


def _worker_schema(conn, database: str, table: str) -> str:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_NAME=%s AND TABLE_SCHEMA LIKE %s"
            " AND ENGINE='MyISAM' ORDER BY TABLE_SCHEMA LIMIT 1",
            (table, f"%{database}"),
        )
        row = cur.fetchone()
    if row is None:
        raise RuntimeError(f"no worker database holds table {table} of {database}")
    return row[0]


def load_baseline(server, ingest: TimedIngest, database: str) -> dict:
    """The same contribution files loaded by one plain client with LOAD DATA LOCAL INFILE."""
    files = ingest.ledger.chunk_files()
    charsets = {t.name: ingest.config.table_charset(t)[0] for t in ingest.config.tables}
    plain = f"plain_{database}"
    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{plain}`")
        cur.execute(f"CREATE DATABASE `{plain}`")
        for table in sorted({f.table for f in files}):
            wdb = _worker_schema(conn, database, table)
            cur.execute(f"CREATE TABLE `{plain}`.`{table}` LIKE `{wdb}`.`{table}`")
            with contextlib.suppress(Exception):
                cur.execute(f"ALTER TABLE `{plain}`.`{table}` REMOVE PARTITIONING")
            with contextlib.suppress(Exception):
                cur.execute(f"ALTER TABLE `{plain}`.`{table}` DROP COLUMN `qserv_trans_id`")
        targets = {}
        for f in files:  # one table per contribution, as Qserv's chunk tables (created before timing)
            name = (
                f.table if f.chunk_id < 0 else f"{f.table}{'FullOverlap' if f.overlap else ''}_{f.chunk_id}"
            )
            if name != f.table:
                cur.execute(f"CREATE TABLE IF NOT EXISTS `{plain}`.`{name}` LIKE `{plain}`.`{f.table}`")
            targets[f.path] = name
        rows = 0
        with timed() as t:
            for f in files:
                cur.execute(
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE `{plain}`.`{targets[f.path]}` CHARACTER SET "
                    f"'{charsets[f.table]}' FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' "
                    "LINES TERMINATED BY '\\n'",
                    (f.path,),
                )
                rows += cur.rowcount
        cur.execute(f"DROP DATABASE `{plain}`")
    conn.close()
    nbytes = sum(f.bytes for f in files)
    return {
        "wall": t.wall,
        "rows": rows,
        "bytes": nbytes,
        "rows_per_s": rows / t.wall,
        "mb_per_s": nbytes / 1e6 / t.wall,
        "files": len(files),
    }


def _noop(i):
    return i


def _rss():
    return psutil.Process().memory_info().rss


def scheduler_memory(counts: list[int]) -> list[dict]:
    """Scheduler RSS while holding N trivial tasks' results, for each N, measured in a fresh Python process
    (a LocalCluster's scheduler lives in its client's process, so the suite's own memory would blur it)."""
    code = (
        "import json, sys; from benchmarks.suite.endtoend import _scheduler_memory; "
        f"print(json.dumps(_scheduler_memory({list(counts)!r})))"
    )
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _scheduler_memory(counts: list[int]) -> list[dict]:
    from distributed import Client, LocalCluster, wait

    out = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        idle = client.run_on_scheduler(_rss)
        for n in counts:
            t0 = time.perf_counter()
            futures = client.map(_noop, range(n), pure=False)
            wait(futures)
            seconds = time.perf_counter() - t0
            held = client.run_on_scheduler(_rss)
            del futures
            time.sleep(1.0)
            out.append(
                {
                    "tasks": n,
                    "scheduler_rss_idle": idle,
                    "scheduler_rss_held": held,
                    "bytes_per_task": (held - idle) / n,
                    "seconds": seconds,
                    "ms_per_task": 1e3 * seconds / n,
                }
            )
    return out

"""qdask's load stage against the best plain loader: parallel ``LOAD DATA LOCAL INFILE`` (issue 14, item 4).

    .venv/bin/python -m benchmarks.bench_load --size-mb 5 --files 40 --concurrency 4 [--repeat 2]

Contribution files of ``--size-mb`` each are made once (kept in ``--dir``): real TSV as collect writes it
(`qdask.tsv.write_tsv`, latin1) of an LSST-like director table, one file per chunk. A private MariaDB
server and the Qserv stand-in on it (its own process, ``--workers`` workers) are started, then two loads
of the same files are measured, interleaved ``--repeat`` times in this one run:

(a) **plain**: ``--concurrency`` pymysql connections, each taking the next file and running
    ``LOAD DATA LOCAL INFILE`` (the stand-in's own statement options) into a MyISAM table of the same
    columns and charset, one table per chunk as Qserv's chunk tables, created before timing;
(b) **qdask**: `qdask.stages.load.Loader` over the same files into a fresh database of the stand-in:
    transactions, bulk chunk allocation, ``/ingest/csv`` uploads (hashed as sent) with
    ``--concurrency`` in total and ``--per-worker`` per worker, every answer checked, the ledger's
    records, commit. ``--transport url`` loads by reference instead (``qserv.transport: url``: each file
    hashed against its checksum, then only its URL sent with ``/ingest/file``, ``file://`` or, with
    ``--url-base serve``, the driver's own HTTP server); ``--transport both`` measures the two in each pair
    (``qdask`` = upload, ``qdask-url`` = by reference).

Per load: wall seconds, MB/s, CPU seconds of this process (the driver, or the plain client), of the
stand-in and of mariadbd, and the ratio of rates qdask / plain. ``--profile DIR`` samples the driver and
the stand-in with py-spy during the last qdask load (collapsed stacks).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

from benchmarks.suite.common import stop_process
from qdask.ledger import ChunkFile, Ledger, shards_digest
from qdask.mariadb import PrivateMariaDB
from qdask.qserv import QservClient
from qdask.sky.chunker import Chunker
from qdask.stages.load import Loader, LoadSettings, plan_transactions
from qdask.tsv import write_tsv

AUTH_KEY = "bench-load-key"
TABLE = "Obj"
CHARSET = "latin1"
LAYOUT = (85, 12, 0.01667)
#: An Object-like director table: ids, positions, fluxes (some NULL), shapes, flags, a band, chunk ids.
COLUMNS: list[tuple[str, str]] = [
    ("objectId", "BIGINT NOT NULL"),
    ("ra", "DOUBLE NOT NULL"),
    ("decl", "DOUBLE NOT NULL"),
    *[(f"{b}_psfFlux", "DOUBLE") for b in "ugrizy"],
    *[(f"{b}_psfFluxErr", "FLOAT") for b in "ugrizy"],
    ("shape_xx", "FLOAT"),
    ("shape_yy", "FLOAT"),
    ("shape_xy", "FLOAT"),
    ("flags", "INT"),
    ("detect_isPrimary", "BOOLEAN"),
    ("band", "CHAR(1)"),
    ("note", "VARCHAR(32)"),
    ("chunkId", "INT NOT NULL"),
    ("subChunkId", "INT NOT NULL"),
]
PLAIN_OPTIONS = "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
LOAD_OPTIONS = f"CHARACTER SET {CHARSET} {PLAIN_OPTIONS}"
PARTITION_7 = "(PARTITION p7 VALUES IN (7))"


# -- contribution files ----------------------------------------------------------------------------


def _batch(rows: int, chunk: int, first_id: int, rng: np.random.Generator) -> pa.Table:
    flux = rng.normal(1e3, 50, (6, rows))
    flux[rng.random((6, rows)) < 0.05] = np.nan
    data: dict[str, pa.Array] = {
        "objectId": pa.array(np.arange(first_id, first_id + rows, dtype=np.int64)),
        "ra": pa.array(rng.uniform(0, 360, rows)),
        "decl": pa.array(rng.uniform(-90, 90, rows)),
    }
    for i, b in enumerate("ugrizy"):
        data[f"{b}_psfFlux"] = pa.array(flux[i], from_pandas=True)  # NaN → NULL (\N)
    for b in "ugrizy":
        data[f"{b}_psfFluxErr"] = pa.array(rng.random(rows).astype(np.float32))
    for name in ("shape_xx", "shape_yy", "shape_xy"):
        data[name] = pa.array(rng.normal(0, 3, rows).astype(np.float32))
    data["flags"] = pa.array(rng.integers(0, 1 << 20, rows).astype(np.int32))
    data["detect_isPrimary"] = pa.array(rng.random(rows) < 0.9)
    data["band"] = pa.array(rng.choice(np.array(list("ugrizy")), rows))
    data["note"] = pa.array(rng.choice(np.array(["", "tab\there", "back\\slash", "plain text", "é"]), rows))
    data["chunkId"] = pa.array(np.full(rows, chunk, dtype=np.int32))
    data["subChunkId"] = pa.array(rng.integers(0, 144, rows).astype(np.int32))
    return pa.table(data)


def make_files(directory: Path, size_mb: float, count: int) -> list[ChunkFile]:
    """``count`` contribution files of about ``size_mb`` MB, one per chunk, made once and kept in
    ``directory`` (a manifest records rows, bytes and checksums)."""
    manifest = directory / "manifest.json"
    if manifest.exists():
        return [ChunkFile(**f) for f in json.loads(manifest.read_text())]
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(14)
    sample = directory / ".sample.tsv"
    per_row = write_tsv(_batch(2000, 0, 0, rng), sample, charset=CHARSET, durable=False).bytes / 2000
    sample.unlink()
    rows = max(1, int(size_mb * 1e6 / per_row))
    chunks = Chunker(*LAYOUT).all_chunks()[1000 : 1000 + count].tolist()
    files = []
    for i, chunk in enumerate(chunks):
        path = directory / f"{TABLE}_{chunk}.tsv"
        info = write_tsv(_batch(rows, chunk, i * rows, rng), path, charset=CHARSET, durable=False)
        files.append(
            ChunkFile(TABLE, chunk, False, str(path), info.rows, info.bytes, info.checksum, shards_digest([]))
        )
    manifest.write_text(json.dumps([{k: v for k, v in f.__dict__.items() if k != "status"} for f in files]))
    return files


# -- measurement -----------------------------------------------------------------------------------


@dataclass
class Measure:
    wall: float
    cpu: dict[str, float]  # who → CPU seconds
    rows: int


class Cpu:
    """CPU seconds of the processes of a run: this one (driver or plain client), the stand-in, mariadbd."""

    def __init__(self, pids: dict[str, int]):
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}

    def now(self) -> dict[str, float]:
        out = {}
        for name, p in self.procs.items():
            t = p.cpu_times()
            out[name] = t.user + t.system
        return out


@contextmanager
def measured(cpu: Cpu, out: dict):
    c0, t0 = cpu.now(), time.perf_counter()
    yield
    wall, c1 = time.perf_counter() - t0, cpu.now()
    out.update(wall=wall, cpu={k: c1[k] - c0[k] for k in c0})


def plain_load(
    server: PrivateMariaDB, files: list[ChunkFile], concurrency: int, cpu: Cpu, run: int
) -> Measure:
    """(a) ``concurrency`` connections, each loading the next file into its own chunk table."""
    db = f"plain_{run}"
    admin = server.connect()
    cols = ",".join(f"`{n}` {t}" for n, t in COLUMNS)
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        cur.execute(f"CREATE DATABASE `{db}`")
        for f in files:
            cur.execute(
                f"CREATE TABLE `{db}`.`{TABLE}_{f.chunk_id}` ({cols}) ENGINE=MyISAM DEFAULT CHARSET={CHARSET}"
            )
    conns = [server.connect() for _ in range(concurrency)]
    todo: queue.Queue[ChunkFile] = queue.Queue()
    for f in files:
        todo.put(f)
    loaded: list[int] = []
    errors: list[BaseException] = []

    def worker(conn) -> None:
        try:
            with conn.cursor() as cur:
                while True:
                    try:
                        f = todo.get_nowait()
                    except queue.Empty:
                        return
                    cur.execute(
                        f"LOAD DATA LOCAL INFILE %s INTO TABLE `{db}`.`{TABLE}_{f.chunk_id}` "
                        f"CHARACTER SET '{CHARSET}' {PLAIN_OPTIONS}",
                        (f.path,),
                    )
                    loaded.append(cur.rowcount)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    out: dict = {}
    threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
    with measured(cpu, out):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for c in conns:
        c.close()
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE `{db}`")
    admin.close()
    if errors:
        raise errors[0]
    return Measure(out["wall"], out["cpu"], sum(loaded))


class TimedClient(QservClient):
    """The load's client, timing each call it makes (seconds per kind) and keeping the stand-in's own
    times of each contribution (create, start, read, load in ms), for the breakdown of a qdask load."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: dict[str, list[float]] = {}
        self.contribs: list[dict] = []
        self._calls_lock = threading.Lock()

    def _timed(self, kind: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._calls_lock:
                self.calls.setdefault(kind, []).append(time.perf_counter() - t0)

    def begin_transaction(self, *args, **kwargs):
        return self._timed("begin", super().begin_transaction, *args, **kwargs)

    def allocate_chunks(self, *args, **kwargs):
        return self._timed("allocate", super().allocate_chunks, *args, **kwargs)

    def commit_transaction(self, *args, **kwargs):
        return self._timed("commit", super().commit_transaction, *args, **kwargs)

    def ingest_csv(self, *args, **kwargs):
        answer = self._timed("ingest_csv", super().ingest_csv, *args, **kwargs)
        with self._calls_lock:
            self.contribs.append(answer.raw)
        return answer

    def ingest_file(self, *args, **kwargs):
        answer = self._timed("ingest_file", super().ingest_file, *args, **kwargs)
        with self._calls_lock:
            self.contribs.append(answer.raw)
        return answer

    def breakdown(self) -> str:
        """Seconds summed per call kind, and the stand-in's median per contribution (ms): receive (start →
        read: upload and row prefixing) and load (read → load: chunk tables, partitions, LOAD DATA)."""
        parts = [f"{k} {sum(v):.2f} s/{len(v)}" for k, v in self.calls.items()]
        if self.contribs:
            med = {
                what: np.median([c[b] - c[a] for c in self.contribs])
                for what, a, b in (("receive", "start_time", "read_time"), ("load", "read_time", "load_time"))
            }
            per = np.median(self.calls.get("ingest_csv") or self.calls["ingest_file"]) * 1e3
            parts.append(
                f"per contribution (median ms): driver {per:.0f}, stand-in receive {med['receive']:.0f}, "
                f"load {med['load']:.0f}"
            )
        return "; ".join(parts)


def register(client: QservClient, db: str) -> None:
    client.register_database(db, *LAYOUT)
    client.register_table(
        db,
        TABLE,
        COLUMNS,
        is_partitioned=True,
        director_key="objectId",
        latitude_key="decl",
        longitude_key="ra",
        charset_name=CHARSET,
    )


def floor_load(
    controller: str, files: list[ChunkFile], args: argparse.Namespace, cpu: Cpu, run: int
) -> Measure:
    """(c) the thinnest client of the same protocol, the floor any Qserv client has against this server:
    the same transactions (`plan_transactions`), bulk allocation, ``--concurrency`` threads posting
    ``/ingest/csv`` (no ledger, no checks, no hashing, no per-worker bound), commit after each."""
    db = f"floor_{run}"
    client = QservClient(controller, AUTH_KEY)
    register(client, db)
    rows = 0
    out: dict = {}
    with measured(cpu, out), ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        for group in plan_transactions(files, 100, 10 << 30):
            tid = client.begin_transaction(db).id
            where = client.allocate_chunks([f.chunk_id for f in group], transaction_id=tid)

            def send(f: ChunkFile, tid: int = tid, where: dict = where) -> int:
                answer = client.ingest_csv(where[f.chunk_id], tid, TABLE, f.path, chunk=f.chunk_id)
                return answer.num_rows_loaded

            rows += sum(pool.map(send, group))
            client.commit_transaction(tid)
    client.delete_database(db)
    client.close()
    return Measure(out["wall"], out["cpu"], rows)


def qdask_load(
    controller: str,
    files: list[ChunkFile],
    args: argparse.Namespace,
    cpu: Cpu,
    run: int,
    ledger_dir: Path,
    profile: Path | None = None,
    transport: str = "upload",
) -> Measure:
    """(b) the load stage: a fresh database in the stand-in, a fresh ledger, `Loader.run`, the files sent
    by `transport` (upload: `/ingest/csv`; url: `/ingest/file`, the stand-in reading them itself)."""
    db = f"qdask_{transport}_{run}"
    client = TimedClient(controller, AUTH_KEY)
    register(client, db)
    ledger = Ledger(ledger_dir / f"ledger-{run}-{uuid.uuid4().hex[:6]}.sqlite")
    ledger.open_run("sha256:bench", run_id=f"bench-{run}")
    ledger.record_chunk_files(files)
    settings = LoadSettings(
        database=db,
        run_id=f"bench-{run}",
        charsets={TABLE: CHARSET},
        concurrency_total=args.concurrency,
        concurrency_per_worker=min(args.per_worker, args.concurrency),
    )
    if transport == "url":
        root = Path(files[0].path).parent.parent  # the "staging directory": files in its contributions/
        base = "serve" if args.url_base == "serve" else f"file://{root}/"
        settings = replace(settings, transport="url", url_base=base, staging_root=str(root))
    out: dict = {}
    spy = (
        profile_with_py_spy(profile, {"driver": os.getpid(), "stand-in": args.standin_pid})
        if profile
        else nullcontext()
    )
    with spy, measured(cpu, out):
        summary = Loader(client, ledger, settings).run(files)
    ledger.close()
    print(f"  qdask {transport} {run}: {client.breakdown()}")
    client.delete_database(db)
    client.close()
    return Measure(out["wall"], out["cpu"], summary.rows)


@contextmanager
def profile_with_py_spy(prefix: Path, pids: dict[str, int]):
    """py-spy on each process while the block runs, only threads holding the GIL (`--gil`: Python CPU,
    not waits); collapsed stacks in ``<prefix>-<name>.txt``, the top leaves printed."""
    from benchmarks.suite.endtoend import summarise_stacks

    exe = shutil.which("py-spy")
    if exe is None:
        print("  (py-spy not found: no profile)")
        yield
        return
    prefix.parent.mkdir(parents=True, exist_ok=True)
    procs = {
        name: subprocess.Popen(
            [exe, "record", "-p", str(pid), "-o", f"{prefix}-{name}.txt", "--format", "raw", "-r", "100"]
            + ["--nonblocking", "--gil"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    }
    try:
        yield
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    for name in pids:
        top = summarise_stacks(Path(f"{prefix}-{name}.txt"), top=8)
        print(f"  py-spy --gil {name}: " + ", ".join(f"{leaf} {share:.0%}" for leaf, share in top))


def statements(server: PrivateMariaDB, files: list[ChunkFile]) -> None:
    """What a worker's MariaDB does per contribution to a new chunk (``IngestFileSvc::loadDataIntoTable``:
    chunk and overlap tables created LIKE the prototype, partition ``p<T>`` added to both, the dummy
    tables' no-op creates, then LOAD DATA), against a plain loader's one CREATE and LOAD DATA LOCAL: wall
    ms and mariadbd CPU ms per contribution, each statement kind run once per file."""
    from qdask.emulator.records import Column
    from qdask.emulator.storage import table_ddl

    assert server._proc is not None
    proc = psutil.Process(server._proc.pid)
    conn = server.connect()
    cur = conn.cursor()
    cols = [Column("qserv_trans_id", "INT NOT NULL")] + [Column(n, t) for n, t in COLUMNS]
    plain_cols = ",".join(f"`{n}` {t}" for n, t in COLUMNS)
    for db in ("stmt_w", "stmt_p"):
        cur.execute(f"DROP DATABASE IF EXISTS {db}")
        cur.execute(f"CREATE DATABASE {db}")
    cur.execute(table_ddl("stmt_w", TABLE, cols, CHARSET, ""))
    cur.execute(f"CREATE TABLE stmt_p.{TABLE} ({plain_cols}) ENGINE=MyISAM DEFAULT CHARSET={CHARSET}")
    prefixed = []
    for f in files:  # what the worker's ingest service writes: each row prefixed with the transaction id
        out = Path(f.path).with_suffix(".prefixed")
        if not out.exists():
            out.write_bytes(b"".join(b"7\t" + row + b"\n" for row in Path(f.path).read_bytes().splitlines()))
        prefixed.append(out)
    o = ("", "FullOverlap")
    kinds = [
        (
            "plain: CREATE TABLE (not timed in (a))",
            lambda i, f: cur.execute(f"CREATE TABLE stmt_p.T_{i} LIKE stmt_p.{TABLE}"),
        ),
        (
            "plain: LOAD DATA LOCAL INFILE",
            lambda i, f: cur.execute(
                f"LOAD DATA LOCAL INFILE '{f.path}' INTO TABLE stmt_p.T_{i} {LOAD_OPTIONS}"
            ),
        ),
        (
            "worker: CREATE TABLE LIKE chunk + overlap",
            lambda i, f: [
                cur.execute(f"CREATE TABLE IF NOT EXISTS stmt_w.{TABLE}{x}_{i} LIKE stmt_w.{TABLE}")
                for x in o
            ],
        ),
        (
            "worker: CREATE TABLE IF NOT EXISTS dummies",
            lambda i, f: [
                cur.execute(f"CREATE TABLE IF NOT EXISTS stmt_w.{TABLE}{x}_1234567890 LIKE stmt_w.{TABLE}")
                for x in o
            ],
        ),
        (
            "worker: ADD PARTITION p<T> chunk + overlap",
            lambda i, f: [
                cur.execute(f"ALTER TABLE stmt_w.{TABLE}{x}_{i} ADD PARTITION IF NOT EXISTS {PARTITION_7}")
                for x in o
            ],
        ),
        (
            "worker: LOAD DATA INFILE (server reads)",
            lambda i, f: cur.execute(
                f"LOAD DATA INFILE '{prefixed[i]}' INTO TABLE stmt_w.{TABLE}_{i} {LOAD_OPTIONS}"
            ),
        ),
    ]
    print("\n| statements per contribution | wall ms | mariadbd CPU ms |\n|---|---|---|")
    for name, run in kinds:
        c0, t0 = sum(proc.cpu_times()[:2]), time.perf_counter()
        for i, f in enumerate(files):
            run(i, f)
        wall, c1 = time.perf_counter() - t0, sum(proc.cpu_times()[:2])
        print(f"| {name} | {1e3 * wall / len(files):.1f} | {1e3 * (c1 - c0) / len(files):.1f} |")
    for db in ("stmt_w", "stmt_p"):
        cur.execute(f"DROP DATABASE {db}")
    conn.close()


def main(argv: list[str] | None = None) -> None:
    from benchmarks.bench_emulator import start_emulator

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=float, default=5.0, help="size of each contribution file (MB)")
    p.add_argument("--files", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=4, help="connections (a) and uploads in total (b)")
    p.add_argument("--per-worker", type=int, default=4, help="(b) uploads per worker (qdask's default 4)")
    p.add_argument("--workers", type=int, default=2, help="the stand-in's workers")
    p.add_argument("--repeat", type=int, default=2, help="interleaved pairs (plain, qdask)")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "qdask-bench-load")
    p.add_argument("--statements", action="store_true", help="only the per-statement costs of a contribution")
    p.add_argument("--floor", action="store_true", help="(c) also the thinnest /ingest/csv client")
    p.add_argument("--profile", type=Path, help="py-spy the driver and stand-in in the last qdask load")
    p.add_argument(
        "--transport",
        choices=("upload", "url", "both"),
        default="upload",
        help="(b) /ingest/csv (upload), /ingest/file by URL (url), or both in each pair",
    )
    p.add_argument(
        "--url-base",
        choices=("file", "serve"),
        default="file",
        help="transport url: file:// URLs, or served by the driver's HTTP server (serve)",
    )
    args = p.parse_args(argv)

    files = make_files(
        args.dir / f"{args.size_mb:g}mb-{args.files}" / "contributions", args.size_mb, args.files
    )
    total_mb = sum(f.bytes for f in files) / 1e6
    total_rows = sum(f.rows for f in files)
    print(f"# {len(files)} files × {total_mb / len(files):.2f} MB = {total_mb:.1f} MB, {total_rows} rows")
    print(f"# {platform.node()} {os.cpu_count()} cpus, load average {os.getloadavg()}")
    if args.statements:
        with PrivateMariaDB() as server:
            statements(server, files)
        return
    with PrivateMariaDB() as server, tempfile.TemporaryDirectory(dir=args.dir) as ledgers:
        proc, controller, _ = start_emulator(
            server.dsn, workers=args.workers, auth_key=AUTH_KEY, instance="qdask_bench_load"
        )
        out = proc.stdout
        assert out is not None
        threading.Thread(target=lambda: [None for _ in out], daemon=True).start()  # never let it block
        args.standin_pid = proc.pid
        try:
            assert server._proc is not None
            cpu = Cpu({"client": os.getpid(), "stand-in": proc.pid, "mariadbd": server._proc.pid})
            rows: list[tuple[str, int, Measure]] = []
            for i in range(args.repeat):
                a = plain_load(server, files, args.concurrency, cpu, i)
                last = i == args.repeat - 1
                loads = [("plain", a)]
                for transport in ("upload", "url") if args.transport == "both" else (args.transport,):
                    profile = (
                        args.profile.with_name(f"{args.profile.name}-{transport}") if args.profile else None
                    )
                    b = qdask_load(
                        controller, files, args, cpu, i, Path(ledgers), profile if last else None, transport
                    )
                    loads.append(("qdask" if transport == "upload" else "qdask-url", b))
                if args.floor:
                    loads.append(("floor", floor_load(controller, files, args, cpu, i)))
                for kind, m in loads:
                    if m.rows != total_rows:
                        raise RuntimeError(f"{kind} loaded {m.rows} rows, not {total_rows}")
                    rows.append((kind, i, m))
                print(
                    f"pair {i}: plain {a.wall:.2f} s, "
                    + ", ".join(f"{k} {m.wall:.2f} s → {a.wall / m.wall:.2f}×" for k, m in loads[1:]),
                    flush=True,
                )
        finally:
            stop_process(proc)
    report(rows, total_mb, args)


def report(rows: list[tuple[str, int, Measure]], total_mb: float, args: argparse.Namespace) -> None:
    print()
    print("| load | pair | wall s | MB/s | CPU s client | CPU s stand-in | CPU s mariadbd | CPU s total |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, i, m in rows:
        c = m.cpu
        print(
            f"| {kind} | {i} | {m.wall:.2f} | {total_mb / m.wall:.1f} | {c['client']:.2f} | "
            f"{c['stand-in']:.2f} | {c['mariadbd']:.2f} | {sum(c.values()):.2f} |"
        )
    plain = [m.wall for k, _, m in rows if k == "plain"]
    print()
    for kind in ("qdask", "qdask-url"):
        ours = [m.wall for k, _, m in rows if k == kind]
        if not ours:
            continue
        ratios = [a / b for a, b in zip(plain, ours, strict=True)]
        driver = [m.cpu["client"] for k, _, m in rows if k == kind]
        print(
            f"ratio {kind}/plain (rate), per pair: {', '.join(f'{r:.2f}' for r in ratios)}; "
            f"best-of: {min(plain) / min(ours):.2f}; median wall plain {np.median(plain):.2f} s, "
            f"{kind} {np.median(ours):.2f} s; median driver CPU {np.median(driver):.2f} s"
        )
    ours = [m.wall for k, _, m in rows if k == "qdask"]
    floor = [m.wall for k, _, m in rows if k == "floor"]
    if floor and ours:
        print(
            "ratio floor/plain per pair: "
            + ", ".join(f"{a / c:.2f}" for a, c in zip(plain, floor, strict=True))
            + ";"
            f" qdask/floor per pair: {', '.join(f'{c / b:.2f}' for b, c in zip(ours, floor, strict=True))}"
        )
    print(f"# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

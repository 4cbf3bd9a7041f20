"""An all-sky catalog staged (and loaded) under the common open-files limit: time and peak memory per stage
at 1x, 4x, 16x.

    .venv/bin/python -m benchmarks.bench_allsky [--rows N] [--scales 1,4,16] [--files K] [--workers W]
        [--many-only] [--no-formats] [--payload] [--load] [--stripes S --substripes s --overlap r]

Rows uniform over the sphere (every unit touches most of DP0.2's ~146k chunks at 340/3/0.01667), `--rows`
at 1x (default 25 000; `--rows 125000` makes 16x 2M rows), written as one Parquet file and as `--files`
files. Each case runs
`qdask ingest --stage-only` (the `Ingest` driver, timed per stage by `benchmarks.suite.common.TimedIngest`,
with peak RSS per stage of the driver and of the Dask workers) in a child process whose open-files limit
is 1024 (`RLIMIT_NOFILE`, inherited by its workers). The yardstick, measured in the same run on the same
files: pyarrow reading every file and writing it back once (Arrow IPC, lz4: what a shard costs at least).
Printed: seconds per stage, µs per row, and the ratio to that floor; time per row should stay flat (or
fall) as the scale grows.

`--load`: the whole `qdask ingest` instead (stage, load, Qserv's row counters checked, publish, verify,
as `Ingest.run()` does by default), in the same child under the same limit, against the Qserv stand-in
on a private MariaDB server (`benchmarks.suite.endtoend.stand_in`: its own process, 3 workers, started
once; each case loads its own database, deleted after it). Printed per stage after staging: seconds, µs
per row, ms per contribution file, the driver's peak RSS, CPU seconds and most open files. `--stripes`,
`--substripes`, `--overlap` choose the layout (default DP0.2's, 340/3/0.01667), checked as Qserv's
partitioner checks it (`qdask.sky.chunker`): a faithful worker spends ~20-30 ms of MariaDB DDL on each
contribution to a new chunk, so loading DP0.2's ~292k all-sky contributions takes hours on this machine,
and a coarser layout makes a load feasible.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from benchmarks.suite.common import DP02_LAYOUT, director_glob_config
from qdask.qserv import QservClient
from qdask.sky.chunker import Chunker
from qdask.tsv import sync_filesystem

FLOATS = 8


def write_inputs(root: Path, rows: int, files: int, seed: int = 0) -> list[Path]:
    """`rows` uniform all-sky rows (id, ra, dec, FLOATS doubles) in `files` Parquet files, each all-sky."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths, start = [], 0
    for k in range(files):
        n = rows // files + (1 if k < rows % files else 0)
        columns = {
            "id": np.arange(start, start + n, dtype=np.int64),
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        }
        columns |= {f"f{j}": rng.standard_normal(n) for j in range(FLOATS)}
        path = root / f"part{k:03d}.parquet"
        pq.write_table(pa.table(columns), path, row_group_size=256 * 1024)
        paths.append(path)
        start += n
    return paths


def floor_seconds(paths: list[Path], out: Path) -> float:
    """pyarrow reading each file and writing it back once as lz4 Arrow IPC (one core)."""
    t0 = time.perf_counter()
    options = ipc.IpcWriteOptions(compression="lz4")
    for path in paths:
        source = pq.ParquetFile(path)
        with ipc.new_stream(out, source.schema_arrow, options=options) as writer:
            for batch in source.iter_batches(batch_size=65536):
                writer.write_batch(batch)
    out.unlink()
    return time.perf_counter() - t0


def file_floor_seconds(folder: Path, count: int, size: int) -> float:
    """Creating `count` files of `size` bytes in one directory, each under a temporary name, written with
    one call, closed and renamed (what one contribution file costs the file system at least), then one
    syncfs (as collect does per task): the per-file yardstick for collect, measured in the same run on the
    same disk."""
    folder.mkdir(parents=True)
    data = b"x" * size
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    t0 = time.perf_counter()
    fd = os.open(folder, os.O_RDONLY)
    for i in range(count):
        name = f"chunk_{i}.txt"
        out = os.open(f".{name}.tmp", flags, 0o644, dir_fd=fd)
        os.write(out, data)
        os.close(out)
        os.rename(f".{name}.tmp", name, src_dir_fd=fd, dst_dir_fd=fd)
    os.close(fd)
    sync_filesystem([folder / f"chunk_{count - 1}.txt"] if count else [])
    return time.perf_counter() - t0


def format_costs(paths: list[Path], out: Path) -> list[tuple[str, float, float, int]]:
    """Write the rows once and read them back once, per shard format: (format, write s, read s, bytes)."""
    table = pa.concat_tables(pq.read_table(p) for p in paths)
    results = []
    for name in ("ipc-none", "ipc-lz4", "ipc-zstd", "parquet-snappy", "parquet-zstd"):
        kind, codec = name.split("-")
        t0 = time.perf_counter()
        if kind == "ipc":
            options = ipc.IpcWriteOptions(compression=None if codec == "none" else codec)
            with ipc.new_stream(out, table.schema, options=options) as writer:
                writer.write_table(table, max_chunksize=65536)
        else:
            pq.write_table(table, out, compression=codec)
        wrote = time.perf_counter() - t0
        t0 = time.perf_counter()
        if kind == "ipc":
            with ipc.open_stream(pa.py_buffer(out.read_bytes())) as reader:  # the bytes read, as a shard is
                for _ in reader:
                    pass
        else:
            for _ in pq.ParquetFile(out).iter_batches(batch_size=65536):
                pass
        results.append((name, wrote, time.perf_counter() - t0, out.stat().st_size))
        out.unlink()
    return results


def task_payload(paths: list[Path], root: Path, layout: tuple[int, int, float]) -> str:
    """What the driver sends the collect tasks for these inputs (one unit per file): each file partitioned
    in-process, `plan_collect` (spread 4: 2 workers x 2 threads) and each group's `collect_task_for`
    pickled, as `client.submit` pickles it."""
    import pickle

    from qdask.kinds import TableKind
    from qdask.ledger import Shard
    from qdask.stages.collect import collect_task_for, plan_collect
    from qdask.stages.partition import TablePlan, partition_batches

    schema = pq.read_schema(paths[0])
    schema = schema.append(pa.field("chunkId", pa.int32())).append(pa.field("subChunkId", pa.int32()))
    plan = TablePlan("Object", TableKind.DIRECTOR, schema, ra="ra", dec="dec", layout=layout)
    shards: list[Shard] = []
    for k, path in enumerate(paths):
        batches = pq.ParquetFile(path).iter_batches(batch_size=65536)
        shards += partition_batches(batches, plan, f"u{k}", root / "s", root / "q").shards
    keys = sorted({k for s in shards for k in s.keys()})
    t0 = time.perf_counter()
    sizes = [
        len(pickle.dumps(collect_task_for(group, held, schema.names, "utf8mb4")))
        for group, held in plan_collect(keys, shards, spread=4)
    ]
    took = time.perf_counter() - t0
    index = sum(len(s.destinations) + len(s.segments) for s in shards)
    return (
        f"{len(keys):,} destinations, {len(shards)} shards (index {index / 1e6:.1f} MB); "
        f"{len(sizes)} collect tasks, pickled: largest {max(sizes) / 1e6:.2f} MB, "
        f"all {sum(sizes) / 1e6:.1f} MB; planned, built and pickled in {took:.1f} s"
    )


def config(
    inputs: Path,
    staging: Path,
    workers: int,
    layout: tuple[int, int, float],
    database: str = "allsky",
    qserv=None,
) -> dict:
    """The one-table config of a case: DP0.2's layout replaced by `layout`; with `qserv` (a
    `benchmarks.suite.endtoend.StandIn`), its controller and czar instead of addresses never contacted."""
    raw = director_glob_config(database, inputs, {"directory": str(staging)}, workers)
    raw["database"]["partitioning"] = dict(zip(DP02_LAYOUT, layout, strict=True))
    if qserv is not None:
        raw["qserv"].update(controller=qserv.controller_url, czar=qserv.czar_dsn)
    return raw


CHILD = "import sys; from benchmarks.bench_allsky import child; child(sys.argv[1:])"
LIMIT = 1024
#: The ledger's writes of the load stage, timed in the child (per contribution, per transaction).
LEDGER_WRITES = ("transaction_started", "record_contribution", "transaction_state")


@contextlib.contextmanager
def timed_ledger_writes() -> Iterator[dict[str, list[float]]]:
    """Every `LEDGER_WRITES` call of any ledger connection (the load's threads open their own) timed while
    the block runs: {method: [seconds summed over threads, calls]}."""
    from qdask.ledger.loads import LoadRecords

    spent: dict[str, list[float]] = {name: [0.0, 0] for name in LEDGER_WRITES}
    lock = threading.Lock()

    def timing(name: str, method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                with lock:
                    spent[name][0] += time.perf_counter() - t0
                    spent[name][1] += 1

        return wrapper

    with contextlib.ExitStack() as stack:
        for name in LEDGER_WRITES:
            stack.enter_context(
                mock.patch.object(LoadRecords, name, timing(name, getattr(LoadRecords, name)))
            )
        yield spent


def child(argv: list[str]) -> None:
    """The ingest of one case, in the process `ingest_case` starts: open files limited to `LIMIT` before
    anything is opened (the Dask workers it starts inherit it), `TimedIngest.run`, then one JSON line of
    what it measured. argv: the raw config (JSON), the directory its paths are relative to, and ``load``
    or ``stage``."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))
    from benchmarks.suite.common import TimedIngest
    from benchmarks.suite.worker_probes import peak_rss
    from qdask.config import config_from_dict
    from qdask.ledger import FileStatus

    raw, base, load = json.loads(argv[0]), Path(argv[1]), argv[2] == "load"
    ingest = TimedIngest(config_from_dict(raw, base))
    with timed_ledger_writes() as ledger_writes:
        summary = ingest.run(stage_only=not load)
    rss = ingest.rss
    peaks = {
        s: [rss.driver_peak.get(s, 0), max(rss.worker_peak.get(s, {}).values(), default=0)]
        for s in ingest.seconds
    }
    files = ingest.ledger.chunk_files()
    counts = ingest.ledger.summary()
    out = {
        "seconds": dict(ingest.seconds),
        "cpu": dict(ingest.cpu),
        "fds": dict(rss.driver_fds),
        "peak": peaks,
        "files": counts["chunk_files"],
        "bytes": sum(f.bytes for f in files),
        "shards": counts["shards"],
        "limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "driver_maxrss": peak_rss(),
        "ledger_bytes": sum(
            p.stat().st_size for p in ingest.ledger_path.parent.glob(ingest.ledger_path.name + "*")
        ),
    }
    if load:
        loaded = [f for f in files if f.status == FileStatus.LOADED]
        out |= {
            "contributions": len(loaded),
            "chunks": len({f.chunk_id for f in loaded}),
            "transactions": summary.transactions,
            "rows_stored": summary.loaded.stored,
            "rows_catalog": summary.loaded.catalog,
            "ledger_writes": ledger_writes,
            "verify": None if summary.verify is None else summary.verify.ok,
            "verify_failed": [
                f"{c.table}: {c.name}: {c.detail}"
                for c in (summary.verify.checks if summary.verify else [])
                if not c.ok
            ],
        }
    print(json.dumps(out))


def ingest_case(raw: dict, base: Path, load: bool) -> dict:
    """`child` in its own process; its JSON, with the process's wall time (cluster start included)."""
    t0 = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(raw), str(base), "load" if load else "stage"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    if run.returncode != 0:
        raise SystemExit(f"{'ingest' if load else 'stage-only'} failed:\n{run.stderr[-4000:]}")
    out = json.loads(run.stdout.strip().splitlines()[-1])
    out["wall"] = time.perf_counter() - t0
    return out


def process_usage(pid: int) -> tuple[float, int]:
    """CPU seconds and RSS bytes of a server process (the stand-in, mariadbd), children included."""
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    cpu = sum(t.user + t.system for t in (p.cpu_times() for p in procs))
    return cpu, sum(p.memory_info().rss for p in procs)


def print_load(
    rows: int, files: int, result: dict, servers: dict[str, tuple[float, int, float, int]]
) -> None:
    """The load's rows of a case's table: per stage after staging, and the servers' CPU and memory."""
    n = max(result["contributions"], 1)
    for stage in ("load", "counters", "publish", "verify"):
        if stage not in result["seconds"]:
            continue
        s = result["seconds"][stage]
        driver = result["peak"].get(stage, (0, 0))[0] / 2**20
        print(
            f"| {rows:,} | {files} | {stage} | {s:.2f} | {1e6 * s / rows:.2f} "
            f"| {1e3 * s / n:.2f} ms/contribution | {driver:.0f} / - "
            f"| driver CPU {result['cpu'].get(stage, 0):.1f} s, open files {result['fds'].get(stage, 0)} |"
        )
    usage = ", ".join(
        f"{name} CPU {c1 - c0:.0f} s, RSS {r0 / 2**20:.0f} -> {r1 / 2**20:.0f} MiB"
        for name, (c0, r0, c1, r1) in servers.items()
    )
    writes = ", ".join(
        f"{name} {seconds:.1f} s / {calls:,}" for name, (seconds, calls) in result["ledger_writes"].items()
    )
    failed = "; ".join(result["verify_failed"][:5])
    print(
        f"<!-- load: {result['contributions']:,} contributions into {result['chunks']:,} chunks, "
        f"{result['transactions']} transactions; rows stored {result['rows_stored']:,} "
        f"(catalog {result['rows_catalog']:,}); verify {'ok' if result['verify'] else 'FAILED ' + failed}; "
        f"driver max RSS {result['driver_maxrss'] / 2**20:.0f} MiB; "
        f"ledger {result['ledger_bytes'] / 2**20:.1f} MiB, its writes (summed over threads): {writes}; "
        f"{usage} -->"
    )


def layout_of(args: argparse.Namespace) -> tuple[tuple[int, int, float], int]:
    """The layout asked for, refused as Qserv's partitioner refuses it (overlap <= sub-stripe height,
    overlap half-width <= sub-chunk width, ...), and its number of chunks."""
    from qdask.sky.chunker import LayoutError

    layout = (args.stripes, args.substripes, args.overlap)
    try:
        chunks = len(Chunker(*layout).all_chunks())
    except LayoutError as exc:
        raise SystemExit(f"--stripes/--substripes/--overlap: {exc}") from exc
    return layout, chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=25_000, help="rows at 1x")
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--files", type=int, default=8, help="files of the many-files case")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the inputs and staging here (default: a temp dir)")
    parser.add_argument("--many-only", action="store_true", help="only the --files case (not one file)")
    parser.add_argument("--no-formats", action="store_true", help="leave out the shard format table")
    parser.add_argument(
        "--payload", action="store_true", help="also print the pickled size of each case's collect tasks"
    )
    parser.add_argument(
        "--load",
        action="store_true",
        help="the whole ingest (load, counters, publish, verify) into the stand-in",
    )
    parser.add_argument("--stripes", type=int, default=DP02_LAYOUT["num_stripes"])
    parser.add_argument("--substripes", type=int, default=DP02_LAYOUT["num_sub_stripes"])
    parser.add_argument("--overlap", type=float, default=DP02_LAYOUT["overlap"], help="degrees")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    layout, chunks = layout_of(args)
    print(
        f"# bench_allsky  pyarrow {pa.__version__}  numpy {np.__version__}"
        f"  python {platform.python_version()}  cpus {os.cpu_count()}  load {os.getloadavg()[0]:.1f}"
        f"  RLIMIT_NOFILE {LIMIT} in the ingest  layout {'/'.join(map(str, layout))} ({chunks:,} chunks)"
    )
    print(
        "| rows | files | stage | seconds | µs/row | µs/chunk file | peak RSS MiB (driver / largest worker) "
        "| / floor |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qdask-allsky-", dir=args.keep)))
        qserv = server = None
        if args.load:
            from benchmarks.suite.endtoend import AUTH_KEY, stand_in

            server, qserv = stack.enter_context(stand_in())
        for scale in scales:
            rows = args.rows * scale
            for files in (args.files,) if args.many_only else (1, args.files):
                case = root / f"{rows}-{files}"
                paths = write_inputs(case / "in", rows, files)
                floor = floor_seconds(paths, case / "floor.arrows")
                database = f"allsky_{rows}_{files}"
                raw = config(case / "in", case / "staging", args.workers, layout, database, qserv)
                servers = {}
                if qserv is not None and server is not None:
                    pids = {
                        "stand-in": qserv.pid,
                        "mariadbd": int((server.base_dir / "mysqld.pid").read_text()),
                    }
                    before = {name: process_usage(pid) for name, pid in pids.items()}
                result = ingest_case(raw, case, args.load)
                if qserv is not None:
                    servers = {name: (*before[name], *process_usage(pid)) for name, pid in pids.items()}
                    with QservClient(qserv.controller_url, AUTH_KEY) as client:
                        client.delete_database(database, admin_key="admin")  # the stand-in's default
                assert result["limit"] == LIMIT
                staged = sum(result["seconds"].get(s, 0.0) for s in ("partition", "keys", "collect"))
                count = sum(result["files"].values())
                per_file = result["bytes"] // max(count, 1)
                files_floor = file_floor_seconds(case / "file-floor", count, per_file)
                print(
                    f"| {rows:,} | {files} | floor (pyarrow read+write) | {floor:.2f} "
                    f"| {1e6 * floor / rows:.2f} | | | 1.00 |"
                )
                print(
                    f"| {rows:,} | {files} | file floor ({count:,} files of {per_file} B: create, write, "
                    f"rename; sync) | {files_floor:.2f} | {1e6 * files_floor / rows:.2f} "
                    f"| {1e6 * files_floor / count:.1f} | | |"
                )
                for stage in ("plan", "partition", "keys", "collect"):
                    if stage in result["seconds"]:
                        s = result["seconds"][stage]
                        driver, worker = (p / 2**20 for p in result["peak"].get(stage, (0, 0)))
                        versus = f" (file floor x {s / files_floor:.2f})" if stage == "collect" else ""
                        print(
                            f"| {rows:,} | {files} | {stage} | {s:.2f} | {1e6 * s / rows:.2f} "
                            f"| {1e6 * s / count:.1f} | {driver:.0f} / {worker:.0f} "
                            f"| {s / floor:.1f}{versus} |"
                        )
                print(
                    f"| {rows:,} | {files} | staging (partition+keys+collect) | {staged:.2f} "
                    f"| {1e6 * staged / rows:.2f} | {1e6 * staged / count:.1f} | | {staged / floor:.1f} |"
                )
                if args.load:
                    print_load(rows, files, result, servers)
                print(
                    f"| {rows:,} | {files} | wall (process, incl. cluster start) | {result['wall']:.2f} "
                    f"| {1e6 * result['wall'] / rows:.2f} | | | |"
                )
                if args.payload:
                    print(f"<!-- collect payload: {task_payload(paths, case / 'payload', layout)} -->")
                print(
                    f"<!-- {rows:,} rows, {files} file(s): {result['files']} chunk files, shards "
                    f"{result['shards']} -->",
                    flush=True,
                )
        if not args.no_formats:
            print("\n| shard format (1x rows, write once + read once) | write s | read s | total s | MB |")
            print("|---|---|---|---|---|")
            sample = write_inputs(root / "formats", args.rows, 1)
            for name, wrote, read, size in format_costs(sample, root / "formats" / "out"):
                print(f"| {name} | {wrote:.2f} | {read:.2f} | {wrote + read:.2f} | {size / 1e6:.1f} |")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"# children CPU {usage.ru_utime + usage.ru_stime:.1f} s, load at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

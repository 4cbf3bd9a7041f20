"""`qdask ingest --stage-only` against hats-import at the same compression, with the pyarrow floor (issue 14).

    .venv/bin/python -m benchmarks.bench_hats --rows N --columns C --shape tract|allsky \\
        --compression snappy|zstd [--shard-compression none|snappy|zstd] [--repeat 2] [--workers 2] \
        [--profile DIR]

The input is written once: `--rows` rows of the first `--columns` columns of DP0.2's Object table (its
Felis schema less its two string columns; values from `qdask.demo`'s generator: fluxes, errors, flags,
NaNs), in Parquet files of at most `--file-rows` rows (row groups of 128k). *tract*: each file is one
DP0.2-sized tract (1.7° × 1.7°, ~20 chunks of the 340/3/0.01667 layout); *allsky*: every file is
uniform over the whole sphere.

Then, interleaved (A B A B …), each in a child process so that its workers' CPU is counted:

* **qdask**: `Ingest.run(stage_only=True)` on a local Dask cluster of `--workers` worker processes (1 thread
  each), shards at `--shard-compression` (`staging.shard_compression`, default qdask's own default, none;
  zstd at level 3): partition + key checks + collect, i.e. ready-to-load TSV contributions with their
  checksums. qdask's output is text (what Qserv loads), so `--compression` is hats-import's alone.
* **hats**: hats-import's catalog pipeline on the same files, `--workers` workers of 1 thread, output Parquet
  at the same compression (`write_table_kwargs`), run with `--hats-python` (a separate venv, so its pins never
  meet the project's).
* **floor**: pyarrow reading every input file and writing it back once as Parquet at that compression,
  one core, in this process.
* **text floor**: the least any tool writing Qserv's text pays: pyarrow reading every file and polars
  writing it once as tab-separated lines (`\\N` for NULL, as qdask's files), hashed with SHA-256 as it is
  written (a checksum per file, as qdask records), in this process; CPU seconds of all its threads. It has
  no cluster, no sort by chunk, no key checks and no NaN handling: no tool that produces contribution files
  can cost less.

Wall time is the child's, cluster start and stop included. CPU seconds are the child's and all its
descendants' (`RUSAGE_CHILDREN` after it is reaped; a psutil sample of the process tree while it runs is
kept as a check, and the larger of the two is reported). The ratios are hats / qdask of the same run
(> 1: qdask is faster). With `--profile DIR`, cProfiles of one partition task and of the biggest collect
task are written there after the timed runs (in this process, no cluster).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.suite.common import director_glob_config
from qdask.config.staging import StagingConfig

TRACT_SIDE = 1.7  # degrees: a DP0.2 tract
ROW_GROUP = 128 * 1024
ROOT = Path(__file__).resolve().parents[1]
KEYS = ("objectId", "coord_ra", "coord_dec")


def object_schema(columns: int) -> pa.Schema:
    """The first `columns` columns of DP0.2's Object (its key columns always among them), leaving out its
    two string columns (an inferred schema makes them TEXT, which Qserv refuses in a director table)."""
    from qdask.demo import _felis_schema

    full = _felis_schema("Object")
    rest = [f.name for f in full if f.name not in KEYS and not pa.types.is_string(f.type)]
    names = list(KEYS) + rest[: max(columns - len(KEYS), 0)]
    return pa.schema([full.field(n) for n in names])


def _box(shape: str, index: int) -> tuple[float, float, float, float]:
    if shape == "allsky":
        return (0.0, 360.0, -90.0, 90.0)
    ra0 = 50.0 + TRACT_SIDE * 1.2 * index  # tracts side by side along RA at DP0.2's declinations
    return (ra0, ra0 + TRACT_SIDE, -35.0, -35.0 + TRACT_SIDE)


def write_inputs(
    root: Path, rows: int, columns: int, shape: str, file_rows: int, seed: int = 0
) -> list[Path]:
    """The input Parquet files (snappy, as DP0.2's are), written in batches of bounded size."""
    from qdask.demo import _column, _objects

    schema = object_schema(columns)
    root.mkdir(parents=True, exist_ok=True)
    batch_rows = max(1000, min(100_000, (200 << 20) // (8 * len(schema))))
    paths, written, index = [], 0, 0
    while written < rows:
        n_file = min(file_rows, rows - written)
        path = root / f"part{index:03d}.parquet"
        box = _box(shape, index)
        with pq.ParquetWriter(path, schema, compression="snappy") as writer:
            for first in range(0, n_file, batch_rows):
                n = min(batch_rows, n_file - first)
                rng = np.random.default_rng([seed, index, first])
                ctx = _objects(rng, 3828 + index, 0, box, written + first, n, box)
                ctx["objectId"] = np.arange(written + first, written + first + n, dtype=np.int64)
                ctx["known"] = {"objectId": ctx["objectId"], "coord_ra": ctx["ra"], "coord_dec": ctx["dec"]}
                arrays = [_column(f, n, rng, ctx) for f in schema]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=ROW_GROUP)
        paths.append(path)
        written += n_file
        index += 1
    return paths


def qdask_config(inputs: Path, staging: Path, workers: int, compression: str) -> dict:
    """`compression`: the shards' (`staging.shard_compression`)."""
    staging_cfg: dict = {"directory": str(staging), "shard_compression": compression}
    if compression == "zstd":
        staging_cfg["shard_compression_level"] = 3
    return director_glob_config("bench", inputs, staging_cfg, workers, columns=KEYS, memory_per_worker="4GiB")


QDASK_CHILD = """
import json, sys
from collections.abc import Iterator
from pathlib import Path
from qdask.long_lived import setting_up
with setting_up("driver"):  # as `qdask ingest` sets up before its run
    from qdask.config import config_from_dict
    from benchmarks.suite.common import TimedIngest
    ingest = TimedIngest(config_from_dict(json.loads(sys.argv[1]), Path(sys.argv[2])), sample_interval=30)
ingest.run(stage_only=True)
summary = ingest.ledger.summary()
seconds, files, shards = dict(ingest.seconds), summary["chunk_files"], summary["shards"]
print(json.dumps({"seconds": seconds, "files": files, "shards": shards}))
"""

HATS_CHILD = """
import json, sys
import hats_import
from hats_import.catalog.arguments import ImportArguments
from hats_import.pipeline import pipeline
a = json.loads(sys.argv[1])
args = ImportArguments(
    output_artifact_name="object", output_path=a["out"], input_file_list=a["files"], file_reader="parquet",
    ra_column="coord_ra", dec_column="coord_dec", dask_n_workers=a["workers"], dask_threads_per_worker=1,
    dask_tmp=a["out"] + "/dask-tmp", tmp_dir=a["out"] + "/tmp", progress_bar=False, resume=False,
    write_table_kwargs=a["compression"],
)
pipeline(args)
print(json.dumps({"version": hats_import.__version__}))
"""


class Sample(NamedTuple):
    """The last reading of one process of a child's tree."""

    user: float
    system: float
    faults: int  # minor page faults (/proc/PID/stat)
    peak_rss: int  # bytes, the largest seen


def _faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[7])


def _tree_cpu(proc: psutil.Process, seen: dict[int, Sample], stop: threading.Event, every: float) -> None:
    """Keep the last reading of every process in `proc`'s tree (CPU: a check on RUSAGE_CHILDREN)."""
    while not stop.wait(every):
        try:
            members = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return
        for p in members:
            try:
                t, rss = p.cpu_times(), p.memory_info().rss
                peak = max(rss, seen[p.pid].peak_rss) if p.pid in seen else rss
                seen[p.pid] = Sample(t.user, t.system, _faults(p.pid), peak)
            except (psutil.Error, OSError):
                continue


def run_child(argv: list[str], env: dict[str, str] | None = None, every: float = 0.5) -> dict:
    """Run a child to completion: its wall time, its tree's CPU seconds, its last stdout line (JSON), and
    the last `Sample` of each process of its tree (`processes`, by pid; the child's own is `pid`)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seen: dict[int, Sample] = {}
    stop = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    watcher = threading.Thread(
        target=_tree_cpu, args=(psutil.Process(proc.pid), seen, stop, every), daemon=True
    )
    watcher.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{err[-4000:]}")
    rusage = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sampled = sum(s.user + s.system for s in seen.values())
    driver = seen.get(proc.pid)
    result = json.loads(out.strip().splitlines()[-1])
    result |= {
        "wall": wall,
        "cpu": max(rusage, sampled),
        "cpu_rusage": rusage,
        "cpu_sampled": sampled,
        # the child itself; the rest is its workers (and nannies)
        "cpu_driver": driver.user + driver.system if driver else 0.0,
        "processes": dict(seen),
        "pid": proc.pid,
    }
    return result


@contextlib.contextmanager
def qdask_child(
    inputs: Path, work: Path, workers: int, compression: str, env: dict[str, str] | None = None
) -> Iterator[tuple[list[str], dict[str, str]]]:
    """The argv and environment of one `qdask --stage-only` child (`QDASK_CHILD`) working in `work`,
    emptied before and removed after; `env` is added to this process's environment."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    raw = json.dumps(qdask_config(inputs, work / "staging", workers, compression))
    try:
        yield (
            [sys.executable, "-c", QDASK_CHILD, raw, str(work)],
            os.environ | {"PYTHONPATH": str(ROOT)} | (env or {}),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_qdask(inputs: Path, work: Path, workers: int, compression: str) -> dict:
    with qdask_child(inputs, work, workers, compression) as (argv, env):
        return run_child(argv, env)


def profile_qdask(
    profiler: str, inputs: Path, work: Path, workers: int, compression: str, out_dir: Path
) -> None:
    """One `qdask --stage-only` run, driver and workers, sampled by py-spy (``spy``: Python frames, waits
    left out, `benchmarks.suite.spy`) or perf (``perf``: the kernel included, the collector and the page
    costs counted, `benchmarks.suite.kernel_profile`): the raw samples and a per-process summary, in
    `out_dir`."""
    from benchmarks.suite import kernel_profile, spy

    tool, name, raw_name, note = {
        "spy": (spy, "py-spy", "spy-stage-only.raw.txt", "waits left out"),
        "perf": (kernel_profile, "perf", "perf-stage-only.data", "kernel included"),
    }[profiler]
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / raw_name
    with qdask_child(inputs, work, workers, compression) as (argv, env):
        tool.record(argv, raw, env)
    summary = out_dir / f"{profiler}-stage-only.txt"
    summary.write_text(
        f"# {name} of one qdask --stage-only run ({tool.RATE} samples/s, every process, {note})"
        f"\n\n{tool.summary(raw)}"
    )
    print(f"# {name} profile: {summary}", flush=True)


def hats_compression(compression: str) -> dict:
    return (
        {"compression": "zstd", "compression_level": 3}
        if compression == "zstd"
        else {"compression": "snappy"}
    )


def run_hats(python: str, files: list[Path], work: Path, workers: int, compression: str) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    raw = json.dumps(
        {
            "out": str(work),
            "files": [str(f) for f in files],
            "workers": workers,
            "compression": hats_compression(compression),
        }
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        return run_child([python, "-c", HATS_CHILD, raw], env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_floor(files: list[Path], out: Path, compression: str) -> dict:
    """pyarrow reading every file and writing it back once as Parquet at the compression (one core)."""
    kwargs = hats_compression(compression)
    w0, c0 = time.perf_counter(), time.process_time()
    for path in files:
        source = pq.ParquetFile(path)
        with pq.ParquetWriter(out, source.schema_arrow, **kwargs) as writer:
            for batch in source.iter_batches(batch_size=ROW_GROUP, use_threads=False):
                writer.write_batch(batch)
        out.unlink()
    return {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0}


def run_text_floor(files: list[Path], out: Path) -> dict:
    """pyarrow reading every file and polars writing it once as tab-separated text, SHA-256 while written."""
    import hashlib
    import io

    import polars as pl

    w0, c0 = time.perf_counter(), time.process_time()
    for path in files:
        digest = hashlib.sha256()
        with open(out, "wb") as sink:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP, use_threads=False):
                text = io.BytesIO()
                pl.DataFrame(pl.from_arrow(batch)).write_csv(
                    text, separator="\t", include_header=False, null_value="\\N", quote_style="never"
                )
                digest.update(text.getbuffer())
                sink.write(text.getbuffer())
        out.unlink()
    return {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0}


def profile(inputs: Path, work: Path, compression: str, out_dir: Path, top: int = 30) -> None:
    """cProfiles of qdask's partition tasks (every unit) and collect tasks (every group), run one after
    another in this process (no cluster, one core), written to `out_dir`; the totals are printed."""
    import cProfile
    import io
    import pstats

    from qdask.config import config_from_dict
    from qdask.ingest import Ingest
    from qdask.ledger import ChunkKey
    from qdask.stages.collect import collect_chunks, collect_task_for, plan_collect
    from qdask.stages.partition import partition_task

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = config_from_dict(qdask_config(inputs, work / "staging", 1, compression), work)
    (setup,) = Ingest(config).plan()
    charset, _ = config.table_charset(setup.config)

    def write(prof: cProfile.Profile, name: str, what: str) -> None:
        stream = io.StringIO()
        stats = pstats.Stats(prof, stream=stream).sort_stats("tottime")
        stats.print_stats(top)
        (out_dir / name).write_text(f"# cProfile of {what}, sorted by own time\n\n{stream.getvalue()}")
        print(f"# profile {name}: {stats.total_tt:.2f} s ({what})", flush=True)  # type: ignore[attr-defined]

    prof = cProfile.Profile()
    shards: list = []
    prof.enable()
    for unit in setup.units:
        result = partition_task(unit, setup.plan, setup.input_schema, str(work / "shards"), str(work / "q"))
        shards += result.shards
    prof.disable()
    write(prof, "profile-partition.txt", f"partition_task of {len(setup.units)} unit(s)")
    keys = sorted(
        {ChunkKey("Object", int(d) >> 1, bool(d & 1)) for s in shards for d in s.dests()["dest"].tolist()},
        key=lambda k: (k.chunk_id, k.overlap),
    )
    columns = list(setup.plan.schema.names)
    groups = plan_collect(keys, shards)
    prof = cProfile.Profile()
    prof.enable()
    for group_keys, group_shards in groups:
        task = collect_task_for(group_keys, group_shards, columns, charset)
        collect_chunks(task, work / "contrib")
    prof.disable()
    write(prof, "profile-collect.txt", f"collect_chunks of {len(groups)} group(s), {len(keys)} destinations")
    shutil.rmtree(work, ignore_errors=True)


def profile_only(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="qdask-hats-", dir=args.keep) as tmp:
        root = Path(tmp)
        write_inputs(root / "in", args.rows, args.columns, args.shape, args.file_rows)
        profile(root / "in", root / "p", args.shard_compression, args.profile_only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=43)
    parser.add_argument("--shape", choices=("tract", "allsky"), default="tract")
    parser.add_argument(
        "--compression", choices=("snappy", "zstd"), default="snappy", help="hats-import's and the floor's"
    )
    parser.add_argument(
        "--shard-compression",
        choices=("none", "snappy", "zstd"),
        default=StagingConfig.model_fields["shard_compression"].default,
        help="qdask's shards (default: qdask's default)",
    )
    parser.add_argument("--file-rows", type=int, default=1_000_000, help="rows per input file at most")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hats-python", default="/work/hats-venv/bin/python")
    parser.add_argument("--skip-hats", action="store_true")
    parser.add_argument(
        "--profile", type=Path, help="write cProfiles of the partition and collect tasks here"
    )
    parser.add_argument("--profile-only", type=Path, help="only the cProfiles (no timed runs), here")
    parser.add_argument(
        "--spy", type=Path, help="after the timed runs, one more qdask run sampled by py-spy, written here"
    )
    parser.add_argument(
        "--perf", type=Path, help="after the timed runs, one more qdask run recorded by perf, written here"
    )
    parser.add_argument("--keep", type=Path, help="work under this directory (default: a temp dir)")
    args = parser.parse_args()
    if args.profile_only:
        return profile_only(args)
    hats = not args.skip_hats and Path(args.hats_python).exists()
    label = (
        f"{args.rows:,} rows x {args.columns} columns, {args.shape}, hats {args.compression}, "
        f"qdask shards {args.shard_compression}"
    )
    print(
        f"# bench_hats {label}; python {platform.python_version()} pyarrow {pa.__version__}; "
        f"cpus {os.cpu_count()}; load {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="qdask-hats-", dir=args.keep) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        files = write_inputs(root / "in", args.rows, args.columns, args.shape, args.file_rows)
        size = sum(f.stat().st_size for f in files)
        print(
            f"# input: {len(files)} file(s), {size / 1e6:.0f} MB, "
            f"written in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        floor = run_floor(files, root / "floor.parquet", args.compression)
        text = run_text_floor(files, root / "floor.txt")
        print(
            f"| run | tool | wall s | CPU s | detail |\n|---|---|---|---|---|\n"
            f"| - | pyarrow floor | {floor['wall']:.1f} | {floor['cpu']:.1f} | read + write once, one core |"
            f"\n| - | text floor | {text['wall']:.1f} | {text['cpu']:.1f} | read + polars text + SHA-256 |",
            flush=True,
        )
        runs: dict[str, list[dict]] = {"qdask": [], "hats": []}
        for i in range(args.repeat):
            q = run_qdask(root / "in", root / "q", args.workers, args.shard_compression)
            runs["qdask"].append(q)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in q["seconds"].items() if k != "total")
            print(
                f"| {i + 1} | qdask --stage-only | {q['wall']:.1f} | {q['cpu']:.1f} | {stages}; "
                f"files {q['files']}; CPU rusage {q['cpu_rusage']:.1f} / sampled {q['cpu_sampled']:.1f}, "
                f"of which the driver {q['cpu_driver']:.1f} |",
                flush=True,
            )
            if hats:
                h = run_hats(args.hats_python, files, root / "h", args.workers, args.compression)
                runs["hats"].append(h)
                print(
                    f"| {i + 1} | hats-import {h['version']} | {h['wall']:.1f} | {h['cpu']:.1f} | "
                    f"CPU rusage {h['cpu_rusage']:.1f} / sampled {h['cpu_sampled']:.1f}, "
                    f"of which the driver {h['cpu_driver']:.1f} |",
                    flush=True,
                )
        print(
            "\n| measure (median of runs) | qdask | hats-import | pyarrow floor | text floor "
            "| hats / qdask | floor / qdask | text floor / qdask | hats / text floor |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for what in ("wall", "cpu"):
            mq = statistics.median(r[what] for r in runs["qdask"])
            mh = statistics.median(r[what] for r in runs["hats"]) if runs["hats"] else float("nan")
            print(
                f"| {what} s | {mq:.1f} | {mh:.1f} | {floor[what]:.1f} | {text[what]:.1f} "
                f"| **{mh / mq:.2f}** | {floor[what] / mq:.2f} | {text[what] / mq:.2f} "
                f"| {mh / text[what]:.2f} |"
            )
        print(f"# load at end {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        if args.profile:
            profile(root / "in", root / "p", args.shard_compression, args.profile)
        for profiler, out_dir in (("spy", args.spy), ("perf", args.perf)):
            if out_dir:
                shards = args.shard_compression
                profile_qdask(profiler, root / "in", root / "q", args.workers, shards, out_dir)


if __name__ == "__main__":
    main()

"""Section 1 — the partition (map) stage against pyarrow alone and against hats-import, same data, same run.

* **map stage vs pyarrow floor** (one process, one core, units one after another): qdask's partition task
  (`qdask.stages.partition.partition_task`: read the unit through qdask's source, conform, locate home +
  overlap, write per-chunk shards) against the floor of reading the same columns of the same file with
  `pq.ParquetFile.iter_batches` and writing them back with one `pq.ParquetWriter` at the shards' compression.
* **stage-only vs hats-import** (a 2-worker LocalCluster each, cluster start included for both):
  `Ingest.run(stage_only=True)` (partition + collect: ready-to-load TSV contributions with checksums)
  against hats-import's full catalog import of the same files (`hats_import.pipeline`), with its default
  compression (zstd level 15) and with zstd-3 / snappy.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.suite.common import MiB, TimedIngest, timed
from benchmarks.suite.data import local_path
from qdask.ingest import Ingest
from qdask.stages.partition import partition_task

BATCH_BYTES = 32 * MiB


def setup_for(config):
    ingest = Ingest(config)
    (setup,) = [s for s in ingest.plan() if s.name == "Object"]
    return setup


def _qdask_map(setup, out: Path) -> tuple[int, int]:
    shutil.rmtree(out, ignore_errors=True)
    rows = 0
    for unit in setup.units:
        r = partition_task(unit, setup.plan, setup.input_schema, str(out / "shards"), str(out / "q"))
        rows += r.rows_read
    return rows, sum(s.stat().st_size for s in (out / "shards").rglob("*") if s.is_file())


def _floor(setup, out: Path) -> tuple[int, int]:
    """Read the same columns of the same files with pyarrow and write them back, one file each, at the
    compression qdask's shards use (`staging.shard_compression`), so only the work differs."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rows = written = 0
    columns = setup.plan.source_columns
    for i, unit in enumerate(setup.units):
        pf = pq.ParquetFile(local_path(unit.uri))
        width = max(pf.metadata.serialized_size // max(pf.metadata.num_rows, 1), 8 * len(columns))
        batch_rows = max(1024, min(1 << 20, BATCH_BYTES // width))
        schema = pa.schema([pf.schema_arrow.field(c) for c in columns])
        target = out / f"{i}.parquet"
        with pq.ParquetWriter(
            target, schema, compression=setup.plan.compression, compression_level=setup.plan.compression_level
        ) as w:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False):
                w.write_batch(batch)
                rows += batch.num_rows
        written += target.stat().st_size
    return rows, written


def map_vs_floor(setup, workdir: Path, repeat: int) -> dict:
    """Best of `repeat` runs of each, alternating; rows/s and input MB/s (file bytes on disk)."""
    in_bytes = sum(local_path(u.uri).stat().st_size for u in setup.units)
    best = {"qdask": None, "floor": None}
    for _ in range(repeat):
        for name, fn in (("qdask", _qdask_map), ("floor", _floor)):
            with timed() as t:
                rows, out_bytes = fn(setup, workdir / name)
            if best[name] is None or t.wall < best[name]["wall"]:
                best[name] = {"wall": t.wall, "cpu": t.cpu, "rows": rows, "out_bytes": out_bytes}
    for b in best.values():
        b["rows_per_s"] = b["rows"] / b["wall"]
        b["mb_per_s"] = in_bytes / 1e6 / b["wall"]
        b["cpu_rows_per_s"] = b["rows"] / max(b["cpu"], 1e-9)
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "shard_compression": f"{setup.plan.compression}"
        + (f"-{setup.plan.compression_level}" if setup.plan.compression_level else ""),
        "columns": len(setup.plan.source_columns),
        "units": len(setup.units),
        "input_bytes": in_bytes,
        **best,
        "ratio_wall": best["qdask"]["rows_per_s"] / best["floor"]["rows_per_s"],
        "ratio_cpu": best["qdask"]["cpu_rows_per_s"] / best["floor"]["cpu_rows_per_s"],
    }


def profile_map(setup, workdir: Path, out_txt: Path, top: int = 25) -> list[tuple[str, float, float]]:
    """cProfile of qdask's partition task on the first unit; the top functions by own time, to a file."""
    unit = setup.units[0]
    prof = cProfile.Profile()
    prof.enable()
    partition_task(unit, setup.plan, setup.input_schema, str(workdir / "shards"), str(workdir / "q"))
    prof.disable()
    shutil.rmtree(workdir, ignore_errors=True)
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream).sort_stats("tottime")
    stats.print_stats(top)
    out_txt.write_text(
        f"# cProfile of qdask partition_task on {unit.unit_id} "
        f"({len(setup.plan.source_columns)} columns), sorted by own time\n\n" + stream.getvalue()
    )
    total = sum(v[2] for v in stats.stats.values())
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]
    return [(f"{Path(k[0]).name}:{k[2]}", v[2], v[2] / total) for k, v in rows]


def profile_collect(ingest, out_txt: Path, top: int = 25) -> list[tuple[str, float, float]]:
    """cProfile of the collect task of the chunk with the most rows, re-run in this process after the
    stage-only run (it rewrites the same contribution file); the top functions by own time, to a file."""
    from qdask.stages.collect import collect_chunks, collect_task_for

    biggest = max(ingest.ledger.chunk_files(), key=lambda f: f.rows)
    key = biggest.key
    setup = ingest.setups[key.table]
    charset, _ = ingest.config.table_charset(setup.config)
    task = collect_task_for([key], ingest.ledger.shards(key), setup.plan.schema.names, charset)
    prof = cProfile.Profile()
    prof.enable()
    collect_chunks(task, ingest.staging_run().contrib_root)
    prof.disable()
    return _write_profile(
        prof,
        out_txt,
        f"collect_chunks of chunk {key.chunk_id} of {key.table} "
        f"({biggest.rows:,} rows, {len(task.columns)} columns)",
        top,
    )


def _write_profile(
    prof: cProfile.Profile, out_txt: Path, what: str, top: int
) -> list[tuple[str, float, float]]:
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream).sort_stats("tottime")
    stats.print_stats(top)
    out_txt.write_text(f"# cProfile of {what}, sorted by own time\n\n" + stream.getvalue())
    total = sum(v[2] for v in stats.stats.values())
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]
    return [(f"{Path(k[0]).name}:{k[2]}", v[2], v[2] / total) for k, v in rows]


def stage_only(config, staging: Path, profile: Path | None = None) -> dict:
    """`qdask ingest --stage-only` of the config (a fresh staging directory), timed by stage; with
    `profile`, a cProfile of its biggest collect task is written there."""
    shutil.rmtree(staging, ignore_errors=True)
    ingest = TimedIngest(config)
    t0 = time.perf_counter()
    ingest.plan()
    ingest.run(stage_only=True)
    wall = time.perf_counter() - t0
    rows = sum(u.rows_read or 0 for u in ingest.ledger.units())
    files = ingest.ledger.chunk_files()
    result = {
        "wall": wall,
        "rows": rows,
        "rows_per_s": rows / wall,
        "input_bytes": sum(u.est_bytes or 0 for s in ingest.setups.values() for u in s.units),
        "workers": config.cluster.workers,
        "seconds": dict(ingest.seconds),
        "contribution_files": len(files),
        "contribution_bytes": sum(f.bytes for f in files),
        "worker_peak_rss": {k: max(v.values()) for k, v in ingest.rss.worker_peak.items() if v},
        "worker_maxrss": {k: max(v.values()) for k, v in ingest.rss.worker_maxrss.items() if v},
        "memory_limit": ingest.rss.memory_limit,
    }
    if profile is not None:
        result["collect_profile"] = {"file": profile.name, "top": profile_collect(ingest, profile)}
    ingest.ledger.close()
    shutil.rmtree(staging, ignore_errors=True)
    return result


def hats_import(files: list[Path], out: Path, *, workers: int, compression: dict | None) -> dict:
    """hats-import's full catalog import of `files` (its own LocalCluster of `workers` processes)."""
    from hats_import.catalog.arguments import ImportArguments
    from hats_import.pipeline import pipeline

    shutil.rmtree(out, ignore_errors=True)
    kwargs = {"write_table_kwargs": compression} if compression else {}
    t0 = time.perf_counter()
    args = ImportArguments(
        output_artifact_name="object",
        output_path=str(out),
        input_file_list=[str(f) for f in files],
        file_reader="parquet",
        ra_column="coord_ra",
        dec_column="coord_dec",
        dask_n_workers=workers,
        dask_threads_per_worker=1,
        dask_tmp=str(out / "dask-tmp"),
        tmp_dir=str(out / "tmp"),
        progress_bar=False,
        resume=False,
        **kwargs,
    )
    pipeline(args)
    wall = time.perf_counter() - t0
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    catalog = out / "object"
    size = sum(p.stat().st_size for p in catalog.rglob("*.parquet") if "dataset" in p.parts)
    shutil.rmtree(out, ignore_errors=True)
    return {"wall": wall, "rows": rows, "rows_per_s": rows / wall, "output_bytes": size}


HATS_COMPRESSIONS = {
    "zstd-15 (hats default)": None,
    "zstd-3": {"compression": "zstd", "compression_level": 3},
    "snappy": {"compression": "snappy"},
}

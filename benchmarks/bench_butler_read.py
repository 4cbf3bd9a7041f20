"""Read throughput of the Butler source against pyarrow reading the same file, same run.

    .venv/bin/python -m benchmarks.bench_butler_read [--rows-per-patch N] [--repeat R] [--keep DIR]

Builds a demo repository (qdask.demo) with one 991-column ``objectTable_tract`` (storage class
DataFrame, objectId as pandas index, like DP0.2), then reads it

- through the Butler source: ``ButlerSource.discover()`` then ``read_unit`` over every unit, batches of
  ``DEFAULT_BATCH_BYTES`` (discovery is timed apart: it runs once per plan, not per task);
- directly with pyarrow: ``ParquetFile.iter_batches`` with pyarrow's defaults (65 536-row batches), and
  ``pq.read_table`` of the whole file (the fastest pyarrow path, at the cost of holding it all),

for all 991 columns and for a 12-column selection. The file is read once first so every reader sees a
warm page cache; readers alternate and the best of ``--repeat`` runs is reported, both wall-clock and
CPU seconds (all threads): on a shared machine the CPU ratio is the steadier one. MB/s counts decoded
Arrow bytes per wall second (the file's own size is printed once).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from qdask.demo import make_demo_repo
from qdask.sources.butler import DEFAULT_BATCH_BYTES, ButlerSource, read_unit

SUBSET = [
    "objectId",
    "coord_ra",
    "coord_dec",
    "tract",
    "patch",
    "detect_isPrimary",
    "g_psfFlux",
    "g_psfFluxErr",
    "r_psfFlux",
    "r_psfFluxErr",
    "i_cModelFlux",
    "i_extendedness",
]


def consume(batches: Iterable[pa.RecordBatch]) -> tuple[int, int]:
    rows = nbytes = 0
    for batch in batches:
        rows += batch.num_rows
        nbytes += batch.nbytes
    return rows, nbytes


def timed(fn: Callable[[], tuple[int, int]]) -> tuple[float, float, int, int]:
    """Wall and CPU (all threads) seconds of one run, with the rows and Arrow bytes it read."""
    w0, c0 = time.perf_counter(), time.process_time()
    rows, nbytes = fn()
    return time.perf_counter() - w0, time.process_time() - c0, rows, nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-per-patch", type=int, default=25_000, help="objects per patch (4 patches)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep", type=Path, help="build (or reuse) the repository here instead of a temp dir"
    )
    args = parser.parse_args()

    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-butler-")
        root = Path(tmp.name) / "repo"
    else:
        root = args.keep
    t0 = time.perf_counter()
    if not (root / "butler.yaml").exists():
        make_demo_repo(root, tracts=1, rows_per_patch=args.rows_per_patch, patches_per_tract=4, seed=0)
    build = time.perf_counter() - t0

    t0 = time.perf_counter()
    source = ButlerSource(str(root), "objectTable_tract", "DC2/demo", where="skymap = 'DC2'")
    units = source.discover()
    discover = time.perf_counter() - t0
    path = units[0].uri.removeprefix("file://")
    size = os.path.getsize(path)
    meta = pq.ParquetFile(path).metadata
    print(f"# {platform.python_version()} pyarrow {pa.__version__}, {os.cpu_count()} cpus")
    print(
        f"file: {meta.num_rows} rows x {meta.num_columns} columns, {meta.num_row_groups} row groups, "
        f"{size / 1e6:.1f} MB on disk; repository built in {build:.1f} s (0 if reused), "
        f"discovery {discover * 1e3:.0f} ms for {len(units)} unit(s)"
    )
    consume(pq.ParquetFile(path).iter_batches())  # warm the page cache

    for label, columns in (("all 991 columns", None), (f"{len(SUBSET)} columns", SUBSET)):
        readers = {
            "qdask ButlerSource read_unit": lambda c=columns: consume(
                b for u in units for b in read_unit(u, c)
            ),
            "pyarrow ParquetFile.iter_batches": lambda c=columns: consume(
                pq.ParquetFile(path).iter_batches(columns=c)
            ),
            "pyarrow pq.read_table (whole file)": lambda c=columns: consume(
                pq.read_table(path, columns=c).to_batches()
            ),
        }
        results: dict[str, list[tuple[float, float, int, int]]] = {name: [] for name in readers}
        for _ in range(args.repeat):  # alternate readers so load from elsewhere hits all alike
            for name, fn in readers.items():
                results[name].append(timed(fn))
        print(f"\n## {label} (batch budget {DEFAULT_BATCH_BYTES >> 20} MiB; best of {args.repeat})")
        print(
            f"{'reader':36s} {'wall s':>7s} {'cpu s':>7s} {'rows/s':>11s} {'MB/s':>6s} "
            f"{'wall ratio':>10s} {'cpu ratio':>9s}"
        )
        ref = "pyarrow ParquetFile.iter_batches"
        ref_wall = min(r[0] for r in results[ref])
        ref_cpu = min(r[1] for r in results[ref])
        for name, runs in results.items():
            wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
            rows, nbytes = runs[0][2], runs[0][3]
            assert all(r[2] == meta.num_rows for r in runs), (name, rows)
            print(
                f"{name:36s} {wall:7.3f} {cpu:7.3f} {rows / wall:11,.0f} {nbytes / wall / 1e6:6.0f} "
                f"{ref_wall / wall:10.2f} {ref_cpu / cpu:9.2f}"
            )
        print("(ratios: pyarrow iter_batches time / this reader's time; >= 1 is as fast or faster)")
        ours = min(r[0] for r in results["qdask ButlerSource read_unit"])
        fastest = min(min(r[0] for r in runs) for name, runs in results.items() if name.startswith("pyarrow"))
        print(f"qdask vs the fastest pyarrow reader (wall): {fastest / ours:.2f} (target >= 0.9)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

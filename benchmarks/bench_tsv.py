"""Throughput of qdask.tsv.write_tsv against pyarrow.csv.write_csv on the same batches, same run.

    .venv/bin/python -m benchmarks.bench_tsv [--rows-narrow N] [--rows-wide N] [--rows-magnitudes N]
        [--rows-dp02 N] [--tables narrow,wide,magnitudes,dp02] [--repeat R]

Four tables shaped like LSST catalogs: *narrow*, 40 columns (ids, doubles N(0,1) x 10^k with NaN, floats,
flags, two strings); *wide*, 991 columns (objectTable_tract-like: double/float/int64/bool); *magnitudes*,
40 float64 columns over a catalog's magnitudes (`make_magnitudes`); *dp02*, DP0.2's Object columns less
its strings, values from `qdask.demo`'s generator (`make_dp02`). Both writers get the same record
batches and both end with an fsync of the file; the best of ``--repeat`` runs is reported. pyarrow's
CSV writer is the yardstick, not a substitute: it writes ``nan``/``inf``, quotes strings and has no
LOAD DATA escaping, so its output is not loadable as Qserv contributions.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from qdask.tsv import encode_batch, write_tsv

BATCH_ROWS = 65536


def make_table(rows: int, cols: int, *, strings: int, seed: int = 0) -> pa.Table:
    """Random columns cycling double (5% NaN) / float32 / int64 / bool, plus ``strings`` text columns."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, pa.Array] = {"objectId": pa.array(np.arange(rows, dtype=np.int64) * 7919)}
    for k in range(cols - 1 - strings):
        kind = k % 4
        if kind == 0:
            values = rng.standard_normal(rows) * 10.0 ** rng.integers(-8, 8)
            values[rng.random(rows) < 0.05] = np.nan
            arrays[f"d{k}"] = pa.array(values)
        elif kind == 1:
            arrays[f"f{k}"] = pa.array(rng.standard_normal(rows).astype(np.float32))
        elif kind == 2:
            arrays[f"i{k}"] = pa.array(rng.integers(-(2**40), 2**40, rows))
        else:
            arrays[f"b{k}"] = pa.array(rng.random(rows) < 0.5)
    words = np.array(["g", "r", "i", "z", "y", "u", "tab\there", "back\\slash", "\\N", "ünï"])
    for k in range(strings):
        arrays[f"s{k}"] = pa.array(words[rng.integers(0, len(words), rows)])
    return pa.table(arrays)


def make_magnitudes(rows: int, cols: int = 40, seed: int = 0) -> pa.Table:
    """``cols`` float64 columns over the magnitudes of a catalog's doubles, 3% NaN and 2% NULL each:
    positions (0..360), fluxes in nJy (~1e1..1e6, some negative) and their errors, magnitudes, moments,
    N(0, 1) values, errors in degrees (~1e-6..1e-5), small offsets N(0, 1e-4), and large values
    (~1e10..1e15); the notations of polars and pyarrow differ in [1e-6, 1e-5) and [1e10, 1e16)."""
    rng = np.random.default_rng(seed)
    kinds = [
        lambda: rng.uniform(0, 360, rows),
        lambda: np.where(rng.random(rows) < 0.1, -1, 1) * rng.lognormal(np.log(1e3), 1.5, rows),
        lambda: rng.lognormal(np.log(50), 0.5, rows),
        lambda: rng.uniform(15, 30, rows),
        lambda: rng.lognormal(np.log(4), 0.4, rows),
        lambda: rng.standard_normal(rows),
        lambda: rng.lognormal(np.log(3e-6), 0.5, rows),
        lambda: rng.normal(0, 1e-4, rows),
        lambda: rng.lognormal(np.log(1e12), 1.5, rows),
        lambda: rng.chisquare(5, rows),
    ]
    arrays = {}
    for k in range(cols):
        values = kinds[k % len(kinds)]()
        values[rng.random(rows) < 0.03] = np.nan
        arrays[f"m{k}"] = pa.array(values, mask=rng.random(rows) < 0.02)
    return pa.table(arrays)


def make_dp02(rows: int, seed: int = 0) -> pa.Table:
    """``rows`` rows of a DP0.2 Object-shaped table (991 columns: double, float, bool, int), values from
    `qdask.demo`'s generator, as benchmarks/bench_hats.py writes its inputs."""
    from benchmarks.bench_hats import _box, object_schema
    from qdask.demo import _column, _objects

    schema = object_schema(991)
    box = _box("tract", 0)
    rng = np.random.default_rng([seed, 0, 0])
    ctx = _objects(rng, 3828, 0, box, 0, rows, box)
    ctx["objectId"] = np.arange(rows, dtype=np.int64)
    ctx["known"] = {"objectId": ctx["objectId"], "coord_ra": ctx["ra"], "coord_dec": ctx["dec"]}
    return pa.Table.from_arrays([_column(f, rows, rng, ctx) for f in schema], schema=schema)


def notation_pieces(batches: list[pa.RecordBatch]) -> tuple[int, int]:
    """Float column pieces (a slice's column in one CSV writer call) and how many hold a value in
    [1e-6, 1e-5) or [1e10, 1e16), where polars' notation is not pyarrow's: before issue 14 item 2 such
    a piece was formatted whole by pyarrow's cast (~2x slower) instead of polars."""
    from qdask.tsv import CSV_PIECES, _slice_rows

    pieces = differing = 0
    for batch in batches:
        step = _slice_rows(batch)
        for start in range(0, batch.num_rows, step):
            rows = min(step, batch.num_rows - start)
            part = max(1, -(-rows // CSV_PIECES))
            for col in batch.columns:
                if not pa.types.is_floating(col.type):
                    continue
                for first in range(0, rows, part):
                    piece = col.slice(start + first, part).cast(pa.float64())
                    size = np.abs(piece.to_numpy(zero_copy_only=False))
                    with np.errstate(invalid="ignore"):
                        hit = (((size >= 1e-6) & (size < 1e-5)) | ((size >= 1e10) & (size < 1e16))).any()
                    pieces += 1
                    differing += int(hit)
    return pieces, differing


def run_csv(batches: list[pa.RecordBatch], path: Path) -> int:
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", batch_size=BATCH_ROWS)
    with open(path, "wb") as out:
        with pacsv.CSVWriter(out, batches[0].schema, write_options=options) as writer:
            for batch in batches:
                writer.write_batch(batch)
        out.flush()
        os.fsync(out.fileno())
    return path.stat().st_size


def run_tsv(batches: list[pa.RecordBatch], path: Path) -> int:
    return write_tsv(batches, path, charset="utf8mb4").bytes


def run_encode(batches: list[pa.RecordBatch], path: Path) -> int:
    """The encoder alone (`encode_batch`, bytes counted, nothing written): no disk, no checksum."""
    path.touch()
    return sum(len(piece) for batch in batches for piece in encode_batch(batch, charset="utf8mb4"))


def best_time(fn, batches, path, repeat: int) -> tuple[float, float, int]:
    """Best wall-clock and best process CPU seconds (all threads) over ``repeat`` runs, and output size."""
    best_wall = best_cpu = float("inf")
    size = 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        size = fn(batches, path)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        path.unlink()
    return best_wall, best_cpu, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-narrow", type=int, default=500_000)
    parser.add_argument("--rows-wide", type=int, default=30_000)
    parser.add_argument("--rows-magnitudes", type=int, default=500_000)
    parser.add_argument("--rows-dp02", type=int, default=30_000)
    parser.add_argument("--tables", default="narrow,wide,magnitudes,dp02")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--encode-only",
        action="store_true",
        help="time encode_batch alone (no file, checksum or fsync) instead of write_tsv",
    )
    parser.add_argument(
        "--notation-stats",
        action="store_true",
        help="only count the float pieces holding a value where polars' notation differs",
    )
    args = parser.parse_args()
    print(
        f"# bench_tsv  pyarrow {pa.__version__}  numpy {np.__version__}  python {platform.python_version()}"
        f"  cpus {os.cpu_count()}"
    )
    print(
        "| table | rows | cols | writer | wall s | CPU s | rows/s | MB/s (output) | output MB "
        "| write_tsv / csv (wall, CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    makers = {
        "narrow": lambda: make_table(args.rows_narrow, 40, strings=2),
        "wide": lambda: make_table(args.rows_wide, 991, strings=0),
        "magnitudes": lambda: make_magnitudes(args.rows_magnitudes),
        "dp02": lambda: make_dp02(args.rows_dp02),
    }
    with tempfile.TemporaryDirectory(prefix="bench-tsv-") as tmp:
        for name in args.tables.split(","):
            table = makers[name]()
            rows, cols = table.num_rows, table.num_columns
            batches = table.to_batches(max_chunksize=BATCH_ROWS)
            if args.notation_stats:
                pieces, differing = notation_pieces(batches)
                print(
                    f"| {name} | {rows} | {cols} | float pieces {pieces}, with a value in [1e-6, 1e-5) or "
                    f"[1e10, 1e16): {differing} ({100 * differing / max(pieces, 1):.1f}%) |"
                )
                continue
            t_csv, c_csv, b_csv = best_time(run_csv, batches, Path(tmp) / "out.csv", args.repeat)
            tsv = run_encode if args.encode_only else run_tsv
            t_tsv, c_tsv, b_tsv = best_time(tsv, batches, Path(tmp) / "out.tsv", args.repeat)
            label = "encode_batch" if args.encode_only else "write_tsv"
            results = (("pyarrow.csv", t_csv, c_csv, b_csv), (label, t_tsv, c_tsv, b_tsv))
            for writer, secs, cpu, size in results:
                ratio = f"{t_tsv / t_csv:.2f}, {c_tsv / c_csv:.2f}" if writer == label else ""
                print(
                    f"| {name} | {rows} | {cols} | {writer} | {secs:.2f} | {cpu:.2f} | "
                    f"{rows / secs:,.0f} | {size / secs / 1e6:.0f} | {size / 1e6:.0f} | {ratio} |"
                )


if __name__ == "__main__":
    main()

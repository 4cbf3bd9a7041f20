"""Throughput of qdask.sky.Chunker on random all-sky points, against baselines measured in the same run.

Run:  .venv/bin/python -m benchmarks.bench_chunker [--rows 10000000] [--repeat 3]

Prints rows/s (one core: numpy runs these ops single-threaded) for
  * locate            home chunkId/subChunkId,
  * locate_all        home + every overlap copy (what the partition stage needs for a director table),
  * locate_overlap    the overlap copies alone (recomputes home internally),
and two baselines: the "numpy floor" (the bare divisions/floors/casts any vectorised locate must do, with
constant widths and no table lookups or boundary rules) and lsst.sphgeom's per-point rate (a degenerate box
query per point, on a subset), each as a ratio. Also the peak extra memory per row of locate_all.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc

import numpy as np

from qdask.sky import Chunker

LAYOUT = (340, 3, 0.01667)  # DP0.2


def _best(fn, repeat: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds over `repeat` runs after a warm-up (CPU time is robust to a busy
    machine, wall time is what a task sees)."""
    fn()  # untimed warm-up: first-touch page faults of the big outputs would otherwise favour later runs
    wall = cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def _numpy_floor(ra: np.ndarray, dec: np.ndarray) -> None:
    """The irreducible numpy work of a home location: 2 divisions, 2 floors, 2 int32 casts per row."""
    h, w = 180.0 / 1020, 360.0 / 2037
    ss = np.floor((dec + 90.0) / h).astype(np.int32)
    sc = np.floor(ra / w).astype(np.int32)
    del ss, sc


def _sphgeom_rate(ra: np.ndarray, dec: np.ndarray) -> float:
    import lsst.sphgeom as sg

    sph = sg.Chunker(LAYOUT[0], LAYOUT[1])
    t0 = time.perf_counter()
    for x, y in zip(ra.tolist(), dec.tolist(), strict=True):
        p = sg.LonLat.fromDegrees(x, y)
        sph.getSubChunksIntersecting(sg.Box(p, p))
    return ra.size / (time.perf_counter() - t0)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sphgeom-rows", type=int, default=50_000)
    args = parser.parse_args()

    n = args.rows
    rng = np.random.default_rng(42)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    ch = Chunker(*LAYOUT)
    ch.locate(ra[:1000], dec[:1000])  # warm the table cache

    print(
        f"# qdask.sky.Chunker benchmark  layout S,SS,overlap = {LAYOUT}  rows = {n:,}  best of {args.repeat}"
    )
    print(
        f"# {platform.node()}  {_cpu_model()}  {os.cpu_count()} CPUs  python {platform.python_version()}"
        f"  numpy {np.__version__}  load average {os.getloadavg()[0]:.2f}"
    )
    t_floor = _best(lambda: _numpy_floor(ra, dec), args.repeat)
    t_home = _best(lambda: ch.locate(ra, dec), args.repeat)
    t_all = _best(lambda: ch.locate_all(ra, dec), args.repeat)
    t_ovl = _best(lambda: ch.locate_overlap(ra, dec), args.repeat)
    copies = ch.locate_all(ra, dec).overlap_row.size
    m = min(args.sphgeom_rows, n)
    sph = _sphgeom_rate(ra[:m], dec[:m])

    floor_rate = n / t_floor[1]
    rows = [
        ("numpy floor (2 div, 2 floor, 2 cast)", t_floor),
        ("locate (home)", t_home),
        ("locate_all (home + overlap)", t_all),
        ("locate_overlap (overlap only)", t_ovl),
    ]
    print(
        f"{'what':38s} {'wall s':>7s} {'cpu s':>7s} {'rows/s (wall)':>14s} {'rows/s (cpu)':>14s} "
        f"{'cpu vs floor':>12s} {'vs sphgeom':>10s}"
    )
    for name, (wall, cpu) in rows:
        print(
            f"{name:38s} {wall:7.3f} {cpu:7.3f} {n / wall:14,.0f} {n / cpu:14,.0f} "
            f"{n / cpu / floor_rate:12.3f} {n / cpu / sph:9.0f}x"
        )
    print(
        f"{'sphgeom box query per point':38s} {m / sph:7.3f} {'':7s} {sph:14,.0f} {'':14s} "
        f"{sph / floor_rate:12.4f} {1:9.0f}x   (on {m:,} rows)"
    )
    print(f"overlap copies: {copies:,} ({copies / n:.3f} per row)")

    k = min(n, 1_000_000)
    tracemalloc.start()
    ch.locate_all(ra[:k], dec[:k])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"locate_all peak allocation on {k:,} rows: {peak / 2**20:.1f} MiB ({peak / k:.1f} bytes/row, "
        f"outputs included: 8 home + ~{16 * copies / n:.1f} overlap)"
    )


if __name__ == "__main__":
    main()

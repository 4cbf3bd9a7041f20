"""Dask's allocator setting for workers against qdask's, on the same `--stage-only` run (issue 14).

    .venv/bin/python -m benchmarks.bench_allocator [--rows 2000000] [--columns 43] [--repeat 2]

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's mmap threshold
at 128 KiB; qdask's cluster gives its workers `qdask.cluster.WORKER_MALLOC_ENV` instead. Both are run on
the same tract-shaped input (`benchmarks.bench_hats`' DP0.2 Object columns), alternating, each as
`Ingest.run(stage_only=True)` on 2 local workers in a child process: *dask* with Dask's values put back
through the environment (which the nanny reads first: trim 65536, mmap 131072, glibc's fixed default),
*qdask* with the environment left alone. A sampler reads every process of the child's tree every 0.3 s:
CPU seconds (user, system), minor page faults, peak RSS. Printed per run and as the median ratio
dask / qdask (> 1: qdask's setting costs less).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

from benchmarks.bench_hats import qdask_child, run_child, write_inputs
from qdask.cluster import WORKER_MALLOC_ENV

DASK_DEFAULT = {"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "131072"}


def run(inputs: Path, work: Path, env: dict[str, str]) -> dict:
    """One stage-only run in a child process (`run_child`, its tree read every 0.3 s): the whole tree's
    CPU, and its workers' CPU, page faults and peak RSS."""
    with qdask_child(inputs, work, 2, "none", env) as (argv, child_env):
        r = run_child(argv, child_env, every=0.3)
    workers = [s for pid, s in r["processes"].items() if pid != r["pid"] and s.user + s.system > 0.5]
    return {
        "wall": r["wall"],
        "cpu": r["cpu"],
        "worker_user": sum(w.user for w in workers),
        "worker_sys": sum(w.system for w in workers),
        "worker_faults": sum(w.faults for w in workers),
        "worker_peak_mib": max((w.peak_rss for w in workers), default=0) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--columns", type=int, default=43)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(
        f"# bench_allocator {args.rows:,} rows x {args.columns} columns, tract, 2 workers; "
        f"python {platform.python_version()}; cpus {os.cpu_count()}; "
        f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())}; qdask {WORKER_MALLOC_ENV}",
        flush=True,
    )
    print("| run | setting | wall s | tree CPU s | workers user / sys s | worker faults | worker peak MiB |")
    print("|---|---|---|---|---|---|---|")
    runs: dict[str, list[dict]] = {"dask": [], "qdask": []}
    with tempfile.TemporaryDirectory(prefix="qdask-alloc-") as tmp:
        inputs = Path(tmp) / "in"
        write_inputs(inputs, args.rows, args.columns, "tract", 1_000_000)
        for i in range(args.repeat):
            for name, env in (("dask", DASK_DEFAULT), ("qdask", {})):
                r = run(inputs, Path(tmp) / "w", env)
                runs[name].append(r)
                print(
                    f"| {i + 1} | {name} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['worker_user']:.1f} / "
                    f"{r['worker_sys']:.1f} | {r['worker_faults']:,} | {r['worker_peak_mib']:.0f} |",
                    flush=True,
                )
    print("\n| measure (median) | dask | qdask | dask / qdask |\n|---|---|---|---|")
    for what in ("wall", "cpu", "worker_sys", "worker_faults", "worker_peak_mib"):
        d = statistics.median(r[what] for r in runs["dask"])
        q = statistics.median(r[what] for r in runs["qdask"])
        print(f"| {what} | {d:,.1f} | {q:,.1f} | **{d / q:.2f}** |")
    print(f"# load at end {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()

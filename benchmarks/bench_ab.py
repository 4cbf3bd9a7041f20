"""`qdask ingest --stage-only` of two code trees, alternated on the same inputs: which is faster.

On a shared 2-core machine one run's CPU swings by a third; only runs alternated in one session compare.
Each tree (a checkout, or a ``git archive`` of a commit) runs bench_hats' own stage-only child from its own
directory, so the code measured is that tree's, driver and workers alike. The inputs are written once,
before the first run. Per run: wall, CPU of the whole tree of processes, its user and system parts, the
driver's CPU; then the median of each tree and the ratio B / A.

    python -m benchmarks.bench_ab /tmp/snapA /tmp/snapB --rows 5000000 --columns 43 --pairs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_hats import write_inputs

ONE_RUN = """
import json, sys
from pathlib import Path
import benchmarks.bench_hats as bh
r = bh.run_qdask(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), "none")
user = sum(s.user for s in r["processes"].values())
system = sum(s.system for s in r["processes"].values())
out = {"wall": r["wall"], "cpu": r["cpu"], "user": user, "system": system, "driver": r["cpu_driver"]}
print(json.dumps(out))
"""
MEASURES = ("wall", "cpu", "user", "system", "driver")


def run(tree: Path, inputs: Path, work: Path, workers: int) -> dict[str, float]:
    """One stage-only run of the code in `tree` (its bench_hats child, from its own directory)."""
    env = os.environ | {"PYTHONPATH": str(tree)}
    argv = [sys.executable, "-c", ONE_RUN, str(inputs), str(work), str(workers)]
    out = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: the run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", type=Path, help="the first code tree (the baseline)")
    parser.add_argument("b", type=Path, help="the second code tree")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--columns", type=int, default=43)
    parser.add_argument("--shape", choices=("tract", "allsky"), default="tract")
    parser.add_argument("--file-rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    with tempfile.TemporaryDirectory(prefix="qdask-ab-") as tmp:
        inputs = Path(tmp) / "in"
        write_inputs(inputs, args.rows, args.columns, args.shape, args.file_rows)
        what = f"{args.rows:,} rows x {args.columns} columns, {args.shape}"
        print(f"# {what}; A = {trees['A']}, B = {trees['B']}")
        print("| pair | tree | " + " | ".join(f"{m} s" for m in MEASURES) + " |")
        print("|---|---|" + "---|" * len(MEASURES))
        runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
        for pair in range(1, args.pairs + 1):
            for name, tree in trees.items():
                r = run(tree, inputs, Path(tmp) / "work", args.workers)
                runs[name].append(r)
                cells = " | ".join(f"{r[m]:.1f}" for m in MEASURES)
                print(f"| {pair} | {name} | {cells} |", flush=True)
    print("\n| median | A | B | B / A |\n|---|---|---|---|")
    for m in MEASURES:
        a, b = (statistics.median(r[m] for r in runs[n]) for n in ("A", "B"))
        print(f"| {m} s | {a:.1f} | {b:.1f} | **{b / a:.2f}** |")


if __name__ == "__main__":
    main()

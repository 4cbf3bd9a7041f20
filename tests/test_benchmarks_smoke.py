"""Smoke test of the benchmark suite: `python -m benchmarks --size small` runs end to end and writes its
results with numbers in them. Nothing here asserts on speed: CI machines are too noisy for that."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import matplotlib  # noqa: F401 - a dev dependency the suite plots with: missing, the test fails (never skips)
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))


@pytest.mark.timeout(1200)
def test_small_suite_writes_results_with_numbers(tmp_path: Path) -> None:
    from benchmarks.__main__ import main

    results = tmp_path / "results"
    argv = ["--size", "small", "--results", str(results), "--workdir", str(tmp_path / "work")]
    if importlib.util.find_spec("hats_import") is None:
        argv.append("--skip-hats")
    assert main(argv) == 0

    md = (results / "suite-small.md").read_text()
    for heading in (
        "## 1. Partition",
        "## 2. Chunker",
        "## 3. Load",
        "## 4. End to end",
        "## 5. Memory",
        "## 6. Scaling",
        "### Projection",
    ):
        assert heading in md
    for name in ("partition", "endtoend", "memory", "load"):
        png = results / f"suite-small-{name}.png"
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    data = json.loads((results / "suite-small.json").read_text())
    s = data["sections"]

    def positive(x) -> bool:
        return isinstance(x, (int, float)) and math.isfinite(x) and x > 0

    for width in ("991", "40"):
        assert positive(s["partition"]["map"][width]["ratio_wall"])
        assert positive(s["partition"]["stage_only"][width]["rows_per_s"])
    assert positive(s["partition"]["stage_only"]["3"]["rows_per_s"])
    assert positive(s["chunker"]["results"]["locate_all"]["rows_per_s_cpu"])
    assert positive(s["load"]["baseline"]["rows_per_s"]) and positive(s["load"]["pipeline_seconds"])
    assert s["load"]["baseline"]["rows"] == s["load"]["rows"]
    for run in s["e2e"].values():
        assert run["verify_ok"]
        assert all(positive(run["seconds"][k]) for k in ("partition", "collect", "load", "total"))
    assert positive(s["scaling"]["1"]["seconds"]["total"])
    assert all(positive(r["scheduler_rss_held"]) for r in s["scheduler"])


@pytest.mark.timeout(600)
def test_bench_hats_runs_and_profiles(tmp_path: Path) -> None:
    """`benchmarks.bench_hats` (issue 14) end to end at a tiny size, without hats-import: the floor and one
    qdask stage-only run with its CPU seconds, then the in-process profiles."""
    import subprocess

    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    common = [sys.executable, "-m", "benchmarks.bench_hats", "--rows", "3000", "--columns", "8"]
    run = subprocess.run(
        [*common, "--repeat", "1", "--skip-hats", "--keep", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    [row] = [line for line in run.stdout.splitlines() if line.startswith("| 1 | qdask --stage-only |")]
    wall, cpu = (float(x) for x in row.split("|")[3:5])
    assert wall > 0 and cpu > 0 and "'staged'" in row
    profiles = tmp_path / "profiles"
    run = subprocess.run(
        [*common, "--profile-only", str(profiles), "--keep", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("profile-partition.txt", "profile-collect.txt"):
        assert "sorted by own time" in (profiles / name).read_text()


@pytest.mark.timeout(600)
def test_bench_ab_alternates_two_trees_on_the_same_inputs() -> None:
    """`benchmarks.bench_ab` with this checkout as both trees, at a tiny size: a row per run, A then B in
    each pair, every measure positive, and the medians' ratio."""
    import subprocess

    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    argv = [
        sys.executable,
        "-m",
        "benchmarks.bench_ab",
        str(ROOT),
        str(ROOT),
        "--rows",
        "3000",
        "--columns",
        "8",
    ]
    run = subprocess.run(
        [*argv, "--pairs", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=500
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [
        line.split("|")[1:-1]
        for line in run.stdout.splitlines()
        if line.startswith("| 1 |") or line.startswith("| 2 |")
    ]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [("1", "A"), ("1", "B"), ("2", "A"), ("2", "B")]
    assert all(float(x) > 0 for r in rows for x in r[2:6])  # wall, CPU, user, system
    [cpu] = [line for line in run.stdout.splitlines() if line.startswith("| cpu s |")]
    assert float(cpu.split("**")[1]) > 0


def test_spy_summary_splits_processes_and_leaves_waits_out(tmp_path: Path) -> None:
    """`benchmarks.suite.spy.summary` on py-spy's raw format (a child's stacks nested under its parent's,
    command lines holding ';', quotes and newlines): busy seconds per process, waits not counted, a
    function's lines counted together."""
    from benchmarks.suite import spy

    driver = 'process 10:"python -c import x; run()\nprint({"a": "b;c"}) {"d": 1}"'
    worker = 'process 11:"python -c from multiprocessing.spawn import spawn_main; spawn_main(fd=3)"'
    task = "_run_task (distributed/worker.py:9)"
    raw = tmp_path / "raw.txt"
    raw.write_text(
        f"{driver};<module> (<string>:1);plan (qdask/ingest.py:10) 30\n"
        f"{driver};run (distributed/utils.py:5);Condition.wait (threading.py:327) 500\n"
        f"{driver};{worker};{task};collect_chunks (qdask/stages/collect.py:470) 70\n"
        f"{driver};{worker};{task};collect_chunks (qdask/stages/collect.py:471) 50\n"
        f"{driver};{worker};loop (asyncio/base_events.py:1);EpollSelector.select (selectors.py:468) 900\n"
    )
    text = spy.summary(raw, rate=100)
    assert "== process 11 (worker (or nanny)): 1.20 s busy" in text
    assert "== process 10 (driver): 0.30 s busy" in text
    assert "1.20  collect_chunks (qdask/stages/collect.py)" in text  # two lines of one function together
    assert "select" not in text and "Condition.wait" not in text


def test_kernel_profile_summary_counts_each_processes_collector_and_page_zeroing() -> None:
    """`benchmarks.suite.kernel_profile.summarize` on the text `perf script` prints: a sample's innermost
    frame decides its category, the process started first is the driver, a process under 0.1 s is left
    out."""
    from benchmarks.suite import kernel_profile

    def sample(pid: int, tid: int, *frames: str) -> str:
        return f" {pid}/{tid}  \n" + "".join(f"\t    7f00{i:04x} {f}\n" for i, f in enumerate(frames)) + "\n"

    script = (
        sample(100, 100, "gc_collect_main+0x1f", "_PyEval_EvalFrameDefault")
        + sample(100, 101, "visit_decref+0x4", "gc_collect_main")
        + sample(100, 100, "_PyEval_EvalFrameDefault+0x9")
        + sample(200, 203, "clear_page_erms+0x2", "folio_zero_user", "asm_exc_page_fault")
        + sample(200, 200, "copy_folio_from_iter_atomic+0x10", "generic_perform_write")
        + sample(300, 300, "_PyEval_EvalFrameDefault")
    )
    text = kernel_profile.summarize(script, rate=20)  # 0.05 s a sample; under 2 samples, left out
    driver, worker = text.split("\n\n")[:2]
    assert driver.startswith("== process 100 (driver): 0.15 CPU s")
    assert "0.10  collector (CPython gc)" in driver and "0.00  new pages zeroed" in driver
    assert worker.startswith("== process 200 (worker (or nanny)): 0.10 CPU s")
    assert "0.05  new pages zeroed" in worker and "0.05  page-cache copies" in worker
    assert "process 300" not in text

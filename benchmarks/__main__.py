"""The qdask benchmark suite: every stage against its baseline, measured in the same run.

    .venv/bin/python -m benchmarks [--size small|medium|large] [--results DIR] [--workdir DIR]

Writes to DIR (default benchmarks/results/): `suite-<size>.md` (the tables, targets and ratios, the
projection to DP0.2), `suite-<size>.json` (every number), `suite-<size>-*.png` (plots stamped with the
command and the machine), `suite-<size>-profile-*.txt` (cProfile of the partition and collect tasks,
py-spy stacks of the load stage) and, for medium and large, `suite-<size>-performance-report.html` (a Dask
performance report of one ingest's staging). benchmarks/README.md lists them.

Sections (see benchmarks/suite/*.py for the method of each):
 1. partition: map stage vs a pyarrow read+write floor (40, 991 and a dense 991-column input); `--stage-only`
    vs hats-import; 3 columns vs the recorded sph-partition figure
 2. chunker: bench_chunker's measurements (locate, locate_all vs the numpy floor)
 3. load: the load stage into the Qserv stand-in vs a plain client's LOAD DATA LOCAL INFILE of the same files
 4. end to end: `qdask ingest` wall time by stage at 1x, 4x, 16x the input
 5. memory: peak RSS per Dask worker per stage vs the worker limit; scheduler RSS vs number of tasks
 6. scaling: 1 vs 2 workers; a projection to 24 workers and a DP0.2-size catalog
 7. a Dask performance_report of one medium run

Demo repositories are built once into --workdir (default /tmp/qdask-bench) and reused by later runs.
The numbers are only as quiet as the machine: ratios between things measured in the same run are what to
read; the load average at start and end is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

SIZES = {
    # e2e repos: `tracts` tracts × 4 patches × base·factor objects per patch; the 16x repo is also the
    # partition section's input.
    "small": dict(
        tracts=1,
        base=40,
        factors=(1, 4, 16),
        map_repeat=1,
        chunker_rows=1_000_000,
        narrow_rows=200_000,
        sched_tasks=(500, 2000),
        hats={"40": ["zstd-15 (hats default)"]},
        perf_report=False,
    ),
    "medium": dict(
        tracts=2,
        base=250,
        factors=(1, 4, 16),
        map_repeat=2,
        chunker_rows=5_000_000,
        narrow_rows=2_000_000,
        sched_tasks=(1000, 5000, 20000),
        hats={
            "991": ["zstd-15 (hats default)", "zstd-3", "snappy"],
            "991-dense": ["zstd-15 (hats default)", "zstd-3", "snappy"],
            "40": ["zstd-15 (hats default)", "zstd-3", "snappy"],
        },
        perf_report=True,
    ),
    "large": dict(
        tracts=4,
        base=300,
        factors=(1, 4, 16),
        map_repeat=1,
        chunker_rows=10_000_000,
        narrow_rows=5_000_000,
        sched_tasks=(1000, 10000, 50000),
        hats={
            "991": ["zstd-15 (hats default)", "zstd-3"],
            "991-dense": ["zstd-15 (hats default)", "zstd-3"],
            "40": ["zstd-15 (hats default)", "zstd-3"],
        },
        perf_report=True,
    ),
}

RESULTS = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write (default: %(default)s)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/qdask-bench"),
        help="demo repositories (kept and reused) and scratch space",
    )
    parser.add_argument("--skip-hats", action="store_true", help="do not run hats-import (if not installed)")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only re-render the Markdown and plots of a recorded suite-<size>.json",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        from benchmarks.suite.common import Results
        from benchmarks.suite.report import write_report

        res = Results(**json.loads(args.render.read_text()))
        write_report(res, args.render.with_suffix(""))
        log(f"re-rendered {args.render.with_suffix('.md')}")
        return 0

    from benchmarks.suite import endtoend, partition
    from benchmarks.suite.common import Results, machine
    from benchmarks.suite.data import demo_repo, dense_files, ingest_config, narrow_files, object_files
    from benchmarks.suite.report import write_report

    def stop(*_):  # SIGTERM unwinds like Ctrl-C, so the private MariaDB and the stand-in are stopped
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    size = SIZES[args.size]
    args.results.mkdir(parents=True, exist_ok=True)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    scratch = work / f"scratch-{os.getpid()}"
    prefix = args.results / f"suite-{args.size}"
    command = "python -m benchmarks " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    res = Results(
        size=args.size,
        command=command.strip(),
        machine=machine(),
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    res.sections["parameters"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in size.items()}
    t_start = time.perf_counter()

    log("building/reusing demo repositories")
    repos = {
        f: demo_repo(work, tracts=size["tracts"], rows_per_patch=size["base"] * f) for f in size["factors"]
    }
    big = repos[max(size["factors"])]

    # 1. partition -----------------------------------------------------------------------------------
    sec = res.sections["partition"] = {"map": {}, "stage_only": {}, "hats": {}, "profiles": {}}
    inputs = {"991": (None, None), "991-dense": (dense_files(big), None)}
    for width in (40, 3):
        inputs[str(width)] = narrow_files(big, width, size["narrow_rows"])
    for label, (files, columns) in inputs.items():
        config = ingest_config(
            staging=scratch / f"st{label}",
            database=f"p{label.replace('-', '_')}",
            repo=big,
            files=files,
            columns=columns,
            tables=("Object",),
        )
        setup = partition.setup_for(config)
        if label != "3":
            log(f"partition: map stage vs pyarrow floor, {label} columns")
            sec["map"][label] = partition.map_vs_floor(setup, scratch / "map", size["map_repeat"])
            prof = Path(f"{prefix}-profile-partition-{label}.txt")
            sec["profiles"][label] = {
                "file": prof.name,
                "top": partition.profile_map(setup, scratch / "prof", prof),
            }
        log(f"partition: qdask ingest --stage-only, {label} columns")
        sec["stage_only"][label] = partition.stage_only(
            config, scratch / f"st{label}", profile=Path(f"{prefix}-profile-collect-{label}.txt")
        )
        if args.skip_hats or label not in size["hats"]:
            continue
        hats_files = object_files(big) if files is None else sorted(Path(files).glob("*.parquet"))
        sec["hats"][label] = {}
        for name in size["hats"][label]:
            log(f"partition: hats-import {name}, {label} columns")
            try:
                sec["hats"][label][name] = partition.hats_import(
                    hats_files, scratch / "hats", workers=2, compression=partition.HATS_COMPRESSIONS[name]
                )
            except Exception as exc:  # noqa: BLE001 - recorded; the rest of the suite still runs
                sec["hats"][label][name] = {"error": f"{type(exc).__name__}: {exc}"}

    # 2. chunker ------------------------------------------------------------------------------------
    log("chunker (bench_chunker)")
    from benchmarks.suite.chunker import chunker_section

    res.sections["chunker"] = chunker_section(size["chunker_rows"])

    # 3-7. stand-in runs ------------------------------------------------------------------------------
    res.sections["scheduler"] = None
    with endtoend.stand_in() as (server, qserv):
        e2e = res.sections["e2e"] = {}
        for f in size["factors"]:
            log(f"end to end: {f}x ({repos[f].name}), 2 workers")
            report = Path(f"{prefix}-performance-report.html") if size["perf_report"] and f == 4 else None
            result, ingest = endtoend.ingest_run(
                qserv,
                repos[f],
                scratch / f"e2e{f}",
                f"bench_e{f}",
                workers=2,
                performance_report=report,
                profile_load=Path(f"{prefix}-profile-load") if f == max(size["factors"]) else None,
            )
            result["tracts"] = size["tracts"]
            if report is not None:
                result["performance_report"] = report.name
            e2e[str(f)] = result
            log(f"load: the {f}x contribution files by a plain client (LOAD DATA LOCAL INFILE)")
            load = {
                "factor": f,
                "pipeline_seconds": result["seconds"]["load"],
                "rows": sum(cf.rows for cf in ingest.ledger.chunk_files()),
                "rows_loaded_by_qserv": result["rows_loaded"],
                "bytes": result["contribution_bytes"],
                "baseline": endtoend.load_baseline(server, ingest, f"bench_e{f}"),
            }
            res.sections.setdefault("load_by_size", []).append(load)
            if f == max(size["factors"]):  # the headline: the biggest contributions, closest to real chunks
                res.sections["load"] = load
            ingest.ledger.close()
        log("scaling: 4x with 1 worker")
        one, ingest = endtoend.ingest_run(qserv, repos[4], scratch / "e2e4w1", "bench_e4w1", workers=1)
        ingest.ledger.close()
        one["tracts"] = size["tracts"]
        res.sections["scaling"] = {"1": one, "2": e2e["4"]}
    log("scheduler memory vs number of tasks")
    res.sections["scheduler"] = endtoend.scheduler_memory(list(size["sched_tasks"]))

    import shutil

    shutil.rmtree(scratch, ignore_errors=True)
    res.sections["elapsed_s"] = time.perf_counter() - t_start
    res.machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(f"{prefix}.json").write_text(json.dumps(asdict(res), indent=1, default=str) + "\n")
    write_report(res, prefix)
    log(f"wrote {prefix}.md, .json and plots in {res.sections['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

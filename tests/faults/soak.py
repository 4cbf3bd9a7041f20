"""Recovery report: inject each fault class N times into `qdask ingest` runs of case01, check every final
catalog against the source, and measure the time lost to recovery as a fraction of a clean run.

    .venv/bin/python -m tests.faults.soak [--repeat N] [--out docs/recovery-results.json]

Every scenario runs in a database of its own on a private MariaDB with the Qserv stand-in, `qdask ingest`
as a real process (as in the tests). Time lost = (wall time of every run the scenario needed, killed and
resumed, minus the clean run's) / the clean run's; a driver kill also pays a process and cluster restart.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from qdask.emulator.server import EmulatorThread
from qdask.mariadb import PrivateMariaDB
from tests.faults.conftest import Runner, Truth, load_plain, write_case01
from tests.faults.test_kill_driver import CHAIN_A, CHAIN_B, CHAIN_C, CHAIN_D

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "qserv-itest" / "case01" / "data"

QSERV_FAULTS = {  # class → (stand-in rule kind, match, nth)
    "READ_FAILED (retry in transaction)": ("read_failed", {"table": "Source"}, 2),
    "LOAD_FAILED (abort + redo)": ("load_failed", {"table": "Object", "overlap": 0}, 2),
    "lost contribution answer (abort + redo)": ("drop_response", {"table": "Source"}, 2),
    "upload cut mid-body": ("drop_upload", {"table": "Object", "overlap": 1}, 1),
    "commit FINISH_FAILED (abort + redo)": ("fail_commit", {}, 2),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="injections per named point / fault kind")
    parser.add_argument("--random-kills", type=int, default=6, help="random-time kill scenarios")
    parser.add_argument("--out", type=Path, default=Path("docs/recovery-results.json"))
    args = parser.parse_args()
    results: dict[str, list[dict]] = {}
    with PrivateMariaDB() as mariadb, tempfile.TemporaryDirectory(prefix="qdask-soak-") as tmp:
        tmp = Path(tmp)
        with EmulatorThread(
            mariadb.dsn, workers=3, auth_key="ingest-key", admin_auth_key="admin-key", instance="qserv"
        ) as qserv:
            truth = Truth(mariadb, load_plain(mariadb, DATA, tmp))
            counter = iter(range(1_000_000))

            def scenario(label: str) -> tuple[Path, Runner, str]:
                n = next(counter)
                db = f"soak_{n}"
                config = write_case01(tmp / db / "case01.yaml", qserv, tmp / db / "staging", db)
                return config, Runner(qserv, tmp / db / "faults"), db

            def finish(label, runner, config, db, spent, injected=1, kill_at=None):
                final = runner.ingest(config, kill_at=kill_at)
                spent += final.seconds
                problems = (
                    truth.problems(qserv, db) if final.returncode == 0 else [f"exit {final.returncode}"]
                )
                results.setdefault(label, []).append(
                    {"injected": injected, "exact": not problems, "seconds": spent, "problems": problems}
                )
                print(f"{label:55s} {spent:6.1f}s exact={not problems}", flush=True)

            clean = []

            def clean_run() -> float:
                """A run without faults; they are spread through the soak, the baseline is their median."""
                config, runner, db = scenario("clean")
                outcome = runner.ingest(config)
                assert outcome.returncode == 0 and not truth.problems(qserv, db), outcome.output[-2000:]
                clean.append(outcome.seconds)
                print(f"{'clean run':55s} {outcome.seconds:6.1f}s", flush=True)
                return statistics.median(clean)

            baseline = clean_run()

            for _ in range(args.repeat):
                for i, point in enumerate(CHAIN_A + CHAIN_B + CHAIN_C + CHAIN_D):
                    if i % 6 == 0:
                        baseline = clean_run()
                    config, runner, db = scenario(point.spec)
                    spent = 0.0
                    if point.spec.startswith("recover."):  # needs an open transaction to recover from
                        spent += runner.ingest(config, kill_at="transaction.recorded:1").seconds
                    if point.delay_path:
                        qserv.faults.add(
                            "delay", match={"path": point.delay_path, "method": point.method}, seconds=2.0
                        )
                    killed = runner.ingest(config, kill_at=point.spec)
                    qserv.faults.clear()
                    assert killed.killed and killed.fired, (point.spec, killed.output[-2000:])
                    finish(
                        f"SIGKILL qdask at {point.stage.split(':')[0]}",
                        runner,
                        config,
                        db,
                        spent + killed.seconds,
                    )

                baseline = clean_run()
                for label, (kind, match, nth) in QSERV_FAULTS.items():
                    config, runner, db = scenario(label)
                    qserv.faults.add(kind, match=match, nth=nth)
                    finish(label, runner, config, db, 0.0)
                    qserv.faults.clear()

                config, runner, db = scenario("worker")
                finish(
                    "Dask worker killed mid-task (partition + collect)",
                    runner,
                    config,
                    db,
                    0.0,
                    injected=2,
                    kill_at="partition.batch=Source:1!,collect.task=Object:1!",
                )

            rng = random.Random(int(time.time()))
            baseline = clean_run()
            for _ in range(args.random_kills * args.repeat):
                config, runner, db = scenario("random")
                delay = rng.uniform(1.0, baseline)
                killed = runner.ingest(config, kill_after=delay)
                finish("SIGKILL qdask + workers at a random time", runner, config, db, killed.seconds)
    baseline = statistics.median(clean)
    report = {
        "clean_run_seconds": {
            "median": round(baseline, 1),
            "min": round(min(clean), 1),
            "max": round(max(clean), 1),
            "runs": len(clean),
        },
        "command": " ".join([Path(sys.executable).name, "-m", "tests.faults.soak", *sys.argv[1:]]),
        "classes": {
            label: {
                "scenarios": len(rows),
                "injected": sum(r["injected"] for r in rows),
                "exact": sum(r["exact"] for r in rows),
                "time_lost_fraction_median": round(
                    statistics.median(r["seconds"] for r in rows) / baseline - 1, 2
                ),
                "time_lost_fraction_max": round(max(r["seconds"] for r in rows) / baseline - 1, 2),
                "problems": [p for r in rows for p in r["problems"]],
            }
            for label, rows in results.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0 if all(c["exact"] == c["scenarios"] for c in report["classes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

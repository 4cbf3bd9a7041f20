"""The `qdask ingest` process SIGKILLed at named points of every stage, and at random times; the same
command re-run finishes, and the catalog then equals the source exactly (czar and every worker).

Kills are chained to keep the suite fast: in a chain, each run is killed at the next point, so every run
after the first starts from the state the previous kill left (an open transaction, a file the ledger
does not know, a commit Qserv did but the ledger did not hear of, ...) and must get past it to reach its
own point; the chain ends with a run that finishes, and the truth check. A point counts only if the
killed process logged it (QDASK_FAULT_DIR/kills.log) and died of SIGKILL.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from tests.faults.conftest import SOAK, Outcome, verify_in_process, write_case01


@dataclass(frozen=True)
class Point:
    spec: str  # QDASK_KILL_AT
    stage: str
    delay_path: str | None = None  # a stand-in delay on this request path, so the kill lands in flight
    method: str = "PUT"


# Chain A: staging and the first steps of the load (no stand-in delays: it may run beside chain B).
CHAIN_A = [
    Point("plan.recorded:1", "plan"),
    Point("partition.submitted:1", "partition"),
    Point("partition.result:2", "partition"),
    Point("partition.recorded:3", "partition"),
    Point("collect.submitted:1", "collect"),
    Point("collect.result:4", "collect"),
    Point("collect.recorded:9", "collect"),
    Point("load.registered:1", "load"),
    Point("transaction.begun:1", "load: Qserv transaction started, ledger not yet told"),
]
# Chain B: contributions and commits.
CHAIN_B = [
    Point("transaction.recorded:2", "load: transaction recorded, nothing uploaded"),
    Point("recover.aborting:1", "load: while aborting the transaction the last kill left open"),
    Point("transaction.allocated:1", "load: chunks allocated"),
    Point("upload.block:3", "upload: mid-body of a contribution"),
    Point("upload.answered:4", "upload: contribution loaded, answer not kept"),
    Point("upload.recorded:6", "upload: answer kept for the commit, not yet in the ledger"),
    Point("commit.sending:2", "commit: every contribution in, commit not sent"),
    Point("commit.answered:2", "commit: Qserv committed, ledger not told"),
    Point("commit.recorded:1", "commit: recorded, the next transaction sending meanwhile"),
]
# Chain C: requests in flight when the process dies (the stand-in holds the request 2 s), and publish.
CHAIN_C = [
    Point("upload.sending:1+0.5", "upload: contribution in flight", "/ingest/csv", "POST"),
    Point("commit.sending:1+0.5", "commit: commit in flight", "/ingest/trans/", "PUT"),
    Point("publish.sending:1", "publish: before the publish request"),
    Point("publish.sending:1+0.5", "publish: publish in flight", "/ingest/database/", "PUT"),
]
CHAIN_D = [
    Point("publish.answered:1", "publish: published, director index and verify not done"),
    Point("verify.started:1", "verify"),
]


def _chain(runner, qserv, config, points: list[Point]) -> list[tuple[Point, Outcome]]:
    results = []
    for point in points:
        if point.delay_path:
            # Hold every matching request for a while (not just the first): a run that first aborts the
            # transaction a previous kill left open sends a PUT to /ingest/trans/ before its own commit,
            # and a one-shot delay spent on that abort let the commit and publish finish before the kill.
            qserv.faults.clear()
            qserv.faults.add(
                "delay", match={"path": point.delay_path, "method": point.method}, seconds=2.0, times=4
            )
        outcome = runner.ingest(config, kill_at=point.spec)
        results.append((point, outcome))
    return results


def _final(runner, truth, qserv, config, database: str) -> list[str]:
    outcome = runner.ingest(config)
    problems = (
        [] if outcome.returncode == 0 else [f"final run exit {outcome.returncode}:\n{outcome.output[-3000:]}"]
    )
    problems += truth.problems(qserv, database)
    report = verify_in_process(config)
    problems += [f"verify: {c.table} {c.name}: {c.detail}" for c in report.checks if not c.ok]
    return problems


def _missed(results: list[tuple[Point, Outcome]]) -> list[str]:
    """Points where the process was not killed as asked (wrong exit, or the point not logged)."""
    return [
        f"{p.spec}: exit {o.returncode}, fired {o.fired}\n{o.output[-1500:]}"
        for p, o in results
        if not (o.killed and any(p.spec.split(":")[0] in line for line in o.fired))
    ]


def test_sigkill_at_every_stage_then_rerun_is_exact(qserv, truth, tmp_path, runner):
    """24 kill points over plan, partition, collect, load, upload, commit, publish and verify."""
    from tests.faults.conftest import Runner

    configs = {
        name: write_case01(
            tmp_path / name / "case01.yaml", qserv, tmp_path / name / "staging", f"faults_kill_{name}"
        )
        for name in "abcd"
    }
    runners = {name: Runner(qserv, tmp_path / name / "faults") for name in "abcd"}
    results: dict[str, list] = {}
    finals: dict[str, list[str]] = {}

    def run_chain(name, points):
        results[name] = _chain(runners[name], qserv, configs[name], points)
        finals[name] = _final(runners[name], truth, qserv, configs[name], f"faults_kill_{name}")

    # A (staging) and B (load) need no stand-in delays, so they run side by side; C and D then run alone.
    threads = [threading.Thread(target=run_chain, args=(n, p)) for n, p in (("a", CHAIN_A), ("b", CHAIN_B))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run_chain("c", CHAIN_C)
    qserv.faults.clear()
    run_chain("d", CHAIN_D)
    all_results = [r for name in "abcd" for r in results[name]]
    assert len(all_results) >= 20
    assert _missed(all_results) == []
    assert {p.stage.split(":")[0] for p, _ in all_results} >= {
        "plan",
        "partition",
        "collect",
        "load",
        "upload",
        "commit",
        "publish",
        "verify",
    }
    assert finals == {n: [] for n in "abcd"}


def test_sigkill_at_random_times_then_rerun_is_exact(qserv, truth, tmp_path, runner):
    """Kills of the whole process group (driver and its Dask workers, as a pod kill) at random moments."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "faults_kill_random")
    outcomes = []
    for _ in range(4 * SOAK):
        outcomes.append(runner.ingest(config, kill_after=rng.uniform(1.0, 12.0)))
        if outcomes[-1].returncode == 0:
            break
    problems = _final(runner, truth, qserv, config, "faults_kill_random")
    assert problems == [], f"seed {seed}: {problems}"
    assert all(o.killed or o.returncode == 0 for o in outcomes), f"seed {seed}: " + "\n".join(
        o.output[-1500:] for o in outcomes if not o.killed
    )

"""Two ledgers, one database: two `qdask ingest` processes with different staging directories race into
one Qserv database, in several interleavings (held at named points with ``QDASK_FAULT_MODE=hold``, or
started together), and a run whose staging directory is lost after it committed is taken over. Each case
ends with every row exactly once (the czar's and every worker's rows against a plain load of the source,
and `qdask verify`), or with a clear refusal naming the other owner and nothing loaded twice.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from qdask.qserv import QservClient
from tests.faults.conftest import Outcome, Runner, verify_in_process, write_case01


class Background:
    """`runner.ingest(...)` in a thread; `outcome()` waits for it."""

    def __init__(self, runner: Runner, config: Path, *args: str, **kw):
        self.runner = runner
        self.result: list[Outcome] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(runner.run("ingest", str(config), *args, **kw))
        )
        self.thread.start()

    def wait_held(self, point: str, timeout: float = 300) -> None:
        """Until the process logs that it holds at `point` (or ends: then fail with its output)."""
        log = self.runner.fault_dir / "kills.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.exists() and point in log.read_text():
                return
            if not self.thread.is_alive():
                pytest.fail(f"the run ended before holding at {point}:\n{self.result[0].output[-3000:]}")
            time.sleep(0.1)
        pytest.fail(f"the run did not reach {point} in {timeout} s")

    def release(self) -> None:
        (self.runner.fault_dir / "release").touch()

    def outcome(self, timeout: float = 600) -> Outcome:
        self.thread.join(timeout)
        assert self.result, "the run did not end"
        return self.result[0]


def _two(qserv, tmp_path: Path, database: str) -> tuple[list[Path], list[Runner]]:
    configs = [
        write_case01(tmp_path / n / "case01.yaml", qserv, tmp_path / n / "staging", database) for n in "ab"
    ]
    return configs, [Runner(qserv, tmp_path / n / "faults") for n in "ab"]


def _exact(qserv, truth, config: Path, database: str) -> list[str]:
    problems = truth.problems(qserv, database)
    report = verify_in_process(config)
    return problems + [f"verify: {c.table} {c.name}: {c.detail}" for c in report.checks if not c.ok]


def _held_at(runner: Runner, point: str) -> int:
    """The detail (a transaction id) the process logged when it held at `point`."""
    return int(re.findall(rf"{re.escape(point)} (\d+)", (runner.fault_dir / "kills.log").read_text())[0])


def _transactions(qserv, database: str):
    with QservClient(qserv.controller_url, qserv.auth_key) as client:
        return client.list_transactions(database, include_context=True)


def _clean(outcome: Outcome) -> None:
    assert "Traceback" not in outcome.output, outcome.output[-3000:]


def test_simultaneous_start_lower_transaction_wins(qserv, truth, tmp_path):
    """Both runs pass the ownership check before either begins a transaction (both held there, then
    released), and both begin one before either looks again (held right after the begin, released
    together): the one with the lower transaction id loads, the other aborts its own transaction and
    stops; nothing of it is loaded."""
    database = "own_simultaneous"
    configs, runners = _two(qserv, tmp_path, database)
    hold = {"kill_at": "load.owner_checked:1,transaction.begun:1", "mode": "hold"}
    runs = [Background(r, c, **hold) for r, c in zip(runners, configs, strict=True)]
    for point in ("load.owner_checked", "transaction.begun"):
        for run in runs:
            run.wait_held(point)
        if point == "load.owner_checked":
            for run in runs:
                run.release()
    first = {run: _held_at(run.runner, "transaction.begun") for run in runs}
    for run in runs:
        run.release()
    outcomes = {run: run.outcome() for run in runs}
    winner = min(runs, key=lambda r: first[r])
    loser = max(runs, key=lambda r: first[r])
    assert outcomes[winner].returncode == 0, outcomes[winner].output[-3000:]
    lost = outcomes[loser]
    assert lost.returncode == 1, lost.output[-3000:]
    _clean(lost)
    assert "began loading database own_simultaneous before this one" in lost.output
    assert f"transaction {first[winner]} < {first[loser]}" in lost.output
    states = {t.id: t.state for t in _transactions(qserv, database)}
    assert states[first[loser]] == "ABORTED"
    assert _exact(qserv, truth, configs[runs.index(winner)], database) == []


def test_started_together_one_loads_the_other_refuses(qserv, truth, tmp_path):
    """No holds: both processes start at once; whichever way the timing falls (refused before loading, or
    the race rule after a begin), one loads everything and the other loads nothing."""
    database = "own_together"
    configs, runners = _two(qserv, tmp_path, database)
    runs = [Background(r, c) for r, c in zip(runners, configs, strict=True)]
    outcomes = [run.outcome() for run in runs]
    codes = sorted(o.returncode for o in outcomes)
    assert codes == [0, 1], "\n\n".join(o.output[-2000:] for o in outcomes)
    winner = configs[[o.returncode for o in outcomes].index(0)]
    refused = outcomes[[o.returncode for o in outcomes].index(1)]
    _clean(refused)
    assert (
        "database own_together" in refused.output
        and "Nothing was loaded by this run" in refused.output
        or ("nothing of it was loaded" in refused.output)
    )
    assert _exact(qserv, truth, winner, database) == []


@pytest.mark.parametrize(
    ("point", "committed", "open_"),
    [("commit.recorded:1", 1, 0), ("transaction.recorded:1", 0, 1)],
    ids=["beside-committed", "beside-open"],
)
def test_second_run_refuses_beside_another_runs_transactions(qserv, truth, tmp_path, point, committed, open_):
    """Run A holds after its first commit (or with its first transaction open); run B, another staging
    directory, refuses before staging anything, naming A's run id, host and staging directory; A then
    finishes and the catalog is exact."""
    database = f"own_beside_{'committed' if committed else 'open'}"
    configs, runners = _two(qserv, tmp_path, database)
    a = Background(runners[0], configs[0], kill_at=point, mode="hold")
    a.wait_held(point.split(":")[0])
    b = runners[1].ingest(configs[1])
    held = [t.state for t in _transactions(qserv, database)]  # what B found: A is held until released
    a.release()
    done = a.outcome()
    assert done.returncode == 0, done.output[-3000:]
    assert b.returncode == 1, b.output[-3000:]
    _clean(b)
    run_a = next(t.context["qdask_owner"] for t in _transactions(qserv, database) if t.state == "FINISHED")
    assert f"run {run_a['run']} (host {run_a['host']}, staging directory {run_a['staging']})" in b.output
    # held after its first commit, A has already begun its next transaction if it has one: the commit of
    # a transaction runs while the next one's files are sent (`stages.load`)
    assert held.count("FINISHED") == committed and held.count("STARTED") - open_ in (
        (0, 1) if committed else (0,)
    )
    open_ = held.count("STARTED")
    assert f"{committed} committed and {open_} open transaction(s)" in b.output
    assert not (tmp_path / "b" / "staging" / "contributions").exists()  # refused before staging
    owners = {t.context["qdask_run"] for t in _transactions(qserv, database)}
    assert owners == {run_a["run"]}
    assert _exact(qserv, truth, configs[0], database) == []


@pytest.mark.parametrize(
    "point", ["commit.recorded:1", "transaction.recorded:2"], ids=["after-commit", "with-open-transaction"]
)
def test_lost_staging_is_taken_over_from_qserv(qserv, truth, tmp_path, runner, point):
    """SIGKILL after a commit (and with the next transaction open), staging directory deleted: the
    re-run refuses and says how to proceed; with --take-over it rebuilds the ledger from the committed
    transactions' contexts, aborts the open one, loads only what is missing, and the catalog is exact."""
    database = f"own_lost_{point.split('.')[0]}"
    staging = tmp_path / "staging"
    config = write_case01(tmp_path / "case01.yaml", qserv, staging, database)
    killed = runner.ingest(config, kill_at=point)
    assert killed.killed, killed.output[-3000:]
    before = [t for t in _transactions(qserv, database) if t.state == "FINISHED"]
    assert before
    shutil.rmtree(staging)

    refused = runner.ingest(config)
    assert refused.returncode == 1, refused.output[-3000:]
    _clean(refused)
    assert "--take-over" in refused.output and str(staging.resolve()) in refused.output
    assert before[0].context["qdask_run"] in refused.output

    taken = runner.run("ingest", str(config), "--take-over")
    assert taken.returncode == 0, taken.output[-3000:]
    after = _transactions(qserv, database)
    # what the killed run committed is kept as it was, never loaded again
    assert {t.id for t in before} <= {t.id for t in after if t.state == "FINISHED"}
    assert all(t.state in ("FINISHED", "ABORTED") for t in after)
    assert _exact(qserv, truth, config, database) == []

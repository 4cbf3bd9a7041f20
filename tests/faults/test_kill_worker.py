"""Dask workers killed mid-task, as the kernel or Kubernetes kills a process out of memory.

A worker killed once costs only its task, which Dask runs again elsewhere: the run completes exactly. A
unit whose task kills every worker it runs on (a real out-of-memory kill by the worker's nanny) ends the
run after `allowed-failures` with a message naming the unit, the memory its worker was seen using and the
limit, and a ledger from which the same command resumes once the cause is gone.
"""

from __future__ import annotations

from qdask.config import load_config
from qdask.ledger import Ledger
from tests.faults.conftest import verify_in_process, write_case01


def test_workers_killed_once_mid_task_the_run_completes_exactly(qserv, truth, tmp_path, runner):
    """One partition task (mid-stream, shard files half written) and one collect task lose their worker."""
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "faults_worker_once")
    outcome = runner.ingest(config, kill_at="partition.batch=Source:1!,collect.task=Object:1!")
    assert outcome.returncode == 0, outcome.output[-3000:]
    assert len(outcome.fired) == 2, outcome.fired
    assert all(int(line.split()[0]) != outcome.pid for line in outcome.fired)  # workers died, not the driver
    assert truth.problems(qserv, "faults_worker_once") == []
    assert verify_in_process(config).ok


def test_a_unit_that_always_kills_its_worker_is_reported_and_resumable(qserv, truth, tmp_path, runner):
    """Every attempt at the Source unit balloons its worker past the 1 GiB limit; the nanny kills it."""
    config = write_case01(
        tmp_path / "case01.yaml", qserv, tmp_path / "staging", "faults_worker_oom", memory="1GiB"
    )
    outcome = runner.ingest(config, kill_at="partition.batch=Source:*", mode="oom")
    assert outcome.returncode == 1, outcome.output[-3000:]
    text = " ".join(outcome.output.split())
    assert "killed its Dask worker 3 times" in text, text[-3000:]
    assert "table Source" in text and "1.00 GiB memory limit" in text and "more memory" in text
    assert "re-run the same command" in text
    assert len(outcome.fired) == 3  # three workers died on it, then the run stopped instead of looping
    cfg = load_config(config)
    with Ledger(cfg.staging.directory / "ledger.sqlite") as ledger:
        status = {u.table: (u.status, u.attempts) for u in ledger.units()}
        failed = ledger.units(status="failed")
    assert status["Source"][0] == "failed" and "memory limit" in failed[0].error
    assert {t for t, (s, _) in status.items() if s == "partitioned"} == {"Object", "Filter", "LeapSeconds"}

    again = runner.ingest(config)  # the cause gone (here: the fault), the same command resumes
    assert again.returncode == 0, again.output[-3000:]
    assert "1 unit(s) partitioned" in again.output
    assert truth.problems(qserv, "faults_worker_oom") == []
    assert verify_in_process(config).ok

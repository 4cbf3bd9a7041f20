"""Ctrl-C during `qdask ingest`: SIGINT to the whole process group (the driver and its local Dask
workers, as a terminal sends it) ends the run with one line saying how to resume, no traceback, and the
same command then finishes with the catalog exact."""

from __future__ import annotations

import pytest

from tests.faults.conftest import verify_in_process, write_case01

POINTS = [
    ("partition.submitted:1", "partition tasks running on the workers"),
    ("collect.result:2", "collect tasks running, results being recorded"),
    ("upload.sending:3", "contributions in flight in an open transaction"),
]


@pytest.mark.parametrize(("point", "what"), POINTS, ids=[p.split(":")[0] for p, _ in POINTS])
def test_ctrl_c_ends_with_one_line_and_the_rerun_resumes(qserv, truth, tmp_path, runner, point, what):
    database = f"faults_ctrl_c_{point.split('.')[0]}"
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", database)
    stopped = runner.ingest(config, kill_at=point, mode="interrupt")
    print(stopped.output)
    assert stopped.returncode == 130, stopped.output[-3000:]
    assert len(stopped.fired) == 1, stopped.fired  # interrupted there (while {what})
    lines = [line for line in stopped.output.splitlines() if line.strip()]
    assert lines[-1] == (
        "qdask ingest interrupted: everything finished so far is recorded; re-run the same command to resume"
    )
    assert "Traceback" not in stopped.output and "KeyboardInterrupt" not in stopped.output

    again = runner.ingest(config)
    assert again.returncode == 0, again.output[-3000:]
    assert truth.problems(qserv, database) == []
    assert verify_in_process(config).ok

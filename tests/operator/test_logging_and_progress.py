"""Logs and progress where there is no terminal (a log file, `kubectl logs`): `--log-file`, `--log-level`,
stage-boundary and per-unit lines, and plain progress lines with rows, rate and ETA."""

from __future__ import annotations

import io
import re
import threading
import time

from rich.console import Console

from qdask.progress import stage_progress


def test_the_log_file_has_each_stage_and_each_unit(ingested):
    log = ingested.log.read_text()
    line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|DEBUG) +qdask\.[\w.]+: "
    assert re.search(line + r"partition: 4 unit\(s\) to partition$", log, re.M)
    assert re.search(line + r"partition: 4 unit\(s\) partitioned, 0 failed in [\d.]+ s$", log, re.M)
    assert re.search(line + r"collect: \d+ chunk file\(s\) written, 0 failed in", log, re.M)
    assert re.search(line + r"load: \d+ catalog row\(s\) \(\+ \d+ overlap copies, \+ \d+ replicas", log, re.M)
    assert "publish: done in" in log and "verify: passed in" in log
    assert len(re.findall(r"DEBUG +qdask\.ingest: partition: unit file:.* recorded", log)) == 4  # per unit


def test_with_a_log_file_stderr_keeps_warnings_and_plain_progress_lines(ingested):
    err = ingested.result.stderr
    assert " INFO " not in err and " DEBUG " not in err  # the log lines went to the file
    for stage, what in (("partition", "unit(s)"), ("collect", "chunk file(s)"), ("load", "chunk file(s)")):
        assert re.search(rf"^{stage}: \d+ {re.escape(what)} to do$", err, re.M), stage
        done = re.search(
            rf"^{stage}: (\d+)/\1 {re.escape(what)} \(100%\), ([\d,]+) rows, [\d,]+ rows/s", err, re.M
        )
        assert done and int(done.group(2).replace(",", "")) > 0, stage
    assert "\x1b[" not in err  # no terminal control sequences in a log


def test_a_plain_progress_line_comes_every_few_seconds_with_rate_and_eta():
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert not console.is_terminal
    with stage_progress(console, "partition", 10, "unit(s)", every=0.05) as progress:
        progress.advance(3, rows=3000)
        deadline = time.monotonic() + 30
        while "ETA" not in out.getvalue() and time.monotonic() < deadline:  # a tick while the stage runs
            threading.Event().wait(0.02)
        progress.advance(7, rows=7000)
    lines = out.getvalue().splitlines()
    assert lines[0] == "partition: 10 unit(s) to do"
    ticking = [line for line in lines if "ETA" in line]
    assert ticking and re.match(
        r"partition: 3/10 unit\(s\) \(30%\), 3,000 rows, [\d,]+ rows/s, elapsed "
        r"\d+:\d\d:\d\d, ETA \d+:\d\d:\d\d$",
        ticking[0],
    )
    assert re.match(r"partition: 10/10 unit\(s\) \(100%\), 10,000 rows", lines[-1]) and "ETA" not in lines[-1]


def test_log_level_decides_what_stderr_shows(ingested, qserv, tmp_path):
    from tests.operator.conftest import run_qdask

    quiet = run_qdask(qserv, "plan", ingested.config, cwd=tmp_path)
    told = run_qdask(qserv, "plan", ingested.config, "--log-level", "info", cwd=tmp_path)
    assert quiet.returncode == told.returncode == 0
    plan_line = re.compile(r"INFO +qdask\.ingest: plan: 4 table\(s\), 4 unit\(s\) in [\d.]+ s")
    assert plan_line.search(told.stderr) and not plan_line.search(quiet.stderr)
    to_file = run_qdask(qserv, "plan", ingested.config, "--log-file", tmp_path / "plan.log", cwd=tmp_path)
    assert plan_line.search((tmp_path / "plan.log").read_text()) and not plan_line.search(to_file.stderr)

"""Every Qserv failure mode of the contract, injected by the stand-in during a real load; each ends with
the catalog exactly equal to the source (czar and every worker).

The contribution files are staged once for the module (`qdask ingest --stage-only`); each test loads them
into a database of its own with its own copy of the ledger (the staged files do not depend on the
database name, so the copy's run fingerprint is set to the test's config).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from qdask.config import load_config
from qdask.ingest import Ingest, IngestError, fingerprint
from qdask.ledger import Ledger
from qdask.qserv import QservClient
from tests.faults.conftest import write_case01


@pytest.fixture(scope="module")
def staged(qserv, tmp_path_factory):
    """Staging of the fault tables with its ledger, made once: (staging directory, ledger path)."""
    root = tmp_path_factory.mktemp("qserv-failures")
    config = write_case01(root / "case01.yaml", qserv, root / "staging", "faults_q_staged")
    Ingest(load_config(config)).run(stage_only=True)
    return root / "staging", root / "staging" / "ledger.sqlite"


@pytest.fixture
def keys(qserv, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    monkeypatch.setenv("QSERV_ADMIN_AUTH_KEY", qserv.admin_auth_key)
    yield
    qserv.faults.clear()
    for name in list(qserv.faults.down_workers):
        qserv.set_worker_down(name, False)


def loader(qserv, staged, tmp_path: Path, database: str, **qserv_overrides):
    """A config loading the shared staging into `database`, with its own ledger copy."""
    staging, ledger = staged
    path = write_case01(tmp_path / "case01.yaml", qserv, staging, database, **qserv_overrides)
    text = path.read_text().replace(
        f"directory: {staging}", f"directory: {staging}\n  ledger: {tmp_path}/ledger.sqlite"
    )
    path.write_text(text)
    config = load_config(path)
    with sqlite3.connect(ledger) as src, sqlite3.connect(tmp_path / "ledger.sqlite") as dst:
        src.backup(dst)
        dst.execute("UPDATE run SET fingerprint = ?", (fingerprint(config),))
    return config


def exact(truth, qserv, config, summary) -> None:
    assert summary.verify is not None and summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    assert truth.problems(qserv, config.database.name) == []


def register(config) -> None:
    """Register the database and its tables, as a run does first (a worker must be up for that)."""
    from qdask.ingest import qserv_client
    from qdask.stages.register import register_catalog

    setups = Ingest(config).plan()
    with qserv_client(config) as qserv:
        register_catalog(qserv, config, {s.name: s.qserv_schema for s in setups})


def transactions(config) -> dict[str, int]:
    with Ledger(config.staging.ledger) as ledger:
        out = {}
        for t in ledger.transactions():
            out[t.state] = out.get(t.state, 0) + 1
        return out


def test_read_failed_is_retried_within_the_transaction(qserv, truth, staged, tmp_path, keys):
    config = loader(qserv, staged, tmp_path, "faults_q_read")
    fault = qserv.faults.add("read_failed", match={"table": "Source"}, nth=2, times=2)
    summary = Ingest(config).run()
    assert fault.fired == 2
    exact(truth, qserv, config, summary)
    assert transactions(config).get("aborted", 0) == 0  # retry_allowed=1: no abort, same transaction
    with Ledger(config.staging.ledger) as ledger:
        retried = [c for c in ledger.contributions() if c.retries]
    assert retried and all(c.status == "FINISHED" and c.file.table == "Source" for c in retried)


@pytest.mark.parametrize(
    "kind, match",
    [
        ("load_failed", {"table": "Object", "overlap": 0}),  # rows half-loaded, LOAD_FAILED, retry_allowed=0
        ("drop_response", {"table": "Source"}),  # loaded, answer lost: unknown outcome
        ("drop_upload", {"table": "Object", "overlap": 1}),  # connection cut mid-body
        ("fail_commit", {}),  # FINISH_FAILED
    ],
)
def test_failure_aborts_and_redoes_the_transaction(qserv, truth, staged, tmp_path, keys, kind, match):
    config = loader(qserv, staged, tmp_path, f"faults_q_{kind}")
    fault = qserv.faults.add(kind, match=match, nth=2)
    summary = Ingest(config).run()
    assert fault.fired == 1
    exact(truth, qserv, config, summary)
    states = transactions(config)
    if kind != "drop_upload":  # a cut upload is READ_FAILED (retry_allowed=1) on the stand-in: retried
        assert states.get("aborted") == 1, states
        assert any("transaction redone" in n for n in summary.notes), summary.notes


def test_worker_unreachable_for_a_while_is_waited_for(qserv, truth, staged, tmp_path, keys):
    """Connections refused for ~3 s: the client's bounded retries with backoff ride it out."""
    config = loader(qserv, staged, tmp_path, "faults_q_down_short")
    register(config)
    qserv.set_worker_down("worker-2")
    back = threading.Timer(3.0, qserv.set_worker_down, args=("worker-2", False))
    back.start()
    summary = Ingest(config).run()
    back.join()
    exact(truth, qserv, config, summary)


def test_worker_unreachable_too_long_stops_clearly_and_rerun_resumes(qserv, truth, staged, tmp_path, keys):
    config = loader(
        qserv,
        staged,
        tmp_path,
        "faults_q_down_long",
        retries={"attempts": 3, "backoff": 0.2, "backoff_max": 1},
    )
    register(config)
    qserv.set_worker_down("worker-3")
    with pytest.raises(IngestError) as stopped:
        Ingest(config).run()
    message = str(stopped.value)
    assert "worker-3" in message and "unreachable" in message and "re-run the same command" in message
    qserv.set_worker_down("worker-3", False)
    summary = Ingest(config).run()
    exact(truth, qserv, config, summary)


@pytest.mark.parametrize("damage", ["warning", "first row", "row count"])
def test_contribution_not_loaded_exactly_is_never_accepted(qserv, truth, tmp_path, keys, damage):
    """A staged file that MariaDB loads with a warning (text in a BIGINT column of a later row), that it
    refuses (the same in the first row: the worker's server-side LOAD DATA into MyISAM under the default
    strict sql_mode stops there, as on a Qserv worker), or with one row fewer than the ledger says: every
    attempt is aborted, the run stops, nothing is published; once the file is rebuilt the load is exact."""
    assert not any(node.storage.load_local for node in qserv.emulator.nodes.values())  # server-side
    database = "faults_q_" + damage.replace(" ", "_")
    config = load_config(write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", database))
    Ingest(config).run(stage_only=True)
    ledger_path = config.staging.directory / "ledger.sqlite"
    with Ledger(ledger_path) as ledger:
        file = next(f for f in ledger.chunk_files(table="Source") if f.rows > 1)
    path = Path(file.path)
    lines = path.read_bytes().rstrip(b"\n").split(b"\n")
    if damage in ("warning", "first row"):
        row = 0 if damage == "first row" else len(lines) - 1
        fields = lines[row].split(b"\t")
        fields[3] = b"oops"
        lines[row] = b"\t".join(fields)
    else:
        lines = lines[:-1]
    path.write_bytes(b"\n".join(lines) + b"\n")
    from qdask.checksums import file_checksum

    with sqlite3.connect(ledger_path) as db:  # as if qdask had staged this file: its checksum matches
        db.execute(
            "UPDATE chunk_files SET checksum = ?, bytes = ? WHERE path = ?",
            (file_checksum(path), path.stat().st_size, str(path)),
        )
    with pytest.raises(IngestError) as stopped:
        Ingest(config).run()
    causes = {"warning": "num_warnings", "first row": "Incorrect integer value"}
    expected = causes.get(damage, "num_rows_loaded")
    assert expected in str(stopped.value)
    with Ledger(ledger_path) as ledger:
        tried = [c for c in ledger.contributions() if c.file == file.key]
        assert len(tried) == 4  # the first attempt and 3 redos, each in a new transaction, none accepted
        if damage == "warning":
            assert all(c.num_warnings for c in tried)
        elif damage == "first row":
            assert all(c.error and "Incorrect integer value" in c.error for c in tried), tried
        else:
            assert all(c.num_rows_loaded == file.rows - 1 for c in tried)
        assert {t.state for t in ledger.transactions() if file.key in t.files} == {"aborted"}
        assert next(f for f in ledger.chunk_files() if f.key == file.key).status == "staged"
        ledger.drop_chunk_file(file.key)  # the user removes the bad file; the next run rebuilds it
    with QservClient(qserv.controller_url, qserv.auth_key) as client:
        assert not (client.database_info(database) or {}).get("is_published")
    summary = Ingest(config).run()
    exact(truth, qserv, config, summary)


def test_stand_in_restarted_mid_load(qserv, truth, staged, tmp_path, keys):
    """Controller and workers restart while contributions are in flight (held 1 s each by the stand-in):
    the client's retries ride it out, or the run stops clearly and the re-run finishes; exact either way."""
    config = loader(qserv, staged, tmp_path, "faults_q_restart")
    qserv.faults.add("delay", match={"path": "/ingest/csv"}, seconds=1.0, times=0)
    events = {}

    def restart():
        events["restart"] = time.monotonic()
        qserv.restart()
        events["back"] = time.monotonic()

    timer = threading.Timer(1.5, restart)
    start = time.monotonic()
    timer.start()
    try:
        summary = Ingest(config).run()
    except IngestError as exc:  # a clear stop is allowed; the re-run must then finish exactly
        assert "re-run the same command" in str(exc)
        timer.join()
        summary = Ingest(config).run()
    end = time.monotonic()
    timer.join()
    qserv.faults.clear()
    assert start < events["restart"] < events["back"] < end  # the stand-in went away during the ingest
    exact(truth, qserv, config, summary)

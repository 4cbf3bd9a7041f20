"""Contributions by reference (`qserv.transport: url`, `POST /ingest/file`): the stand-in's workers read the
staged files themselves, by ``file://`` or from the driver's own HTTP server (`url_base: serve`). The catalog
must come out exactly as with the upload transport; a staged file altered since it was written is never
sent; an answer with warnings is never accepted; the contract's retry and redo rules hold as for
`/ingest/csv`.

Like test_qserv_failures.py, the contribution files are staged once for the module and each test loads a
copy of the ledger into a database of its own.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qdask.checksums import file_checksum
from qdask.config import load_config
from qdask.ingest import Ingest, IngestError, fingerprint
from qdask.ledger import Ledger
from qdask.qserv import QservClient
from tests.faults.conftest import write_case01


@pytest.fixture(scope="module")
def staged(qserv, tmp_path_factory):
    root = tmp_path_factory.mktemp("by-reference")
    config = write_case01(root / "case01.yaml", qserv, root / "staging", "byref_staged")
    Ingest(load_config(config)).run(stage_only=True)
    return root / "staging"


@pytest.fixture
def keys(qserv, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    yield
    qserv.faults.clear()


def loader(qserv, staging: Path, tmp_path: Path, database: str, **qserv_keys):
    """A config loading the shared staging into `database` with its own copy of the ledger."""
    path = write_case01(tmp_path / "case01.yaml", qserv, staging, database, **qserv_keys)
    text = path.read_text().replace(
        f"directory: {staging}", f"directory: {staging}\n  ledger: {tmp_path}/ledger.sqlite"
    )
    path.write_text(text)
    config = load_config(path)
    copy = tmp_path / "ledger.sqlite"
    with sqlite3.connect(staging / "ledger.sqlite") as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
        dst.execute("UPDATE run SET fingerprint = ?", (fingerprint(config),))
    return config


def by_file(staging: Path) -> dict:
    return {"transport": "url", "url_base": f"file://{staging}/"}


def exact(truth, qserv, config, summary) -> None:
    assert summary.verify is not None and summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    assert truth.problems(qserv, config.database.name) == []


def recorded(qserv, config) -> list:
    """Every contribution Qserv recorded for the committed transactions of the run."""
    with Ledger(config.staging.ledger) as ledger, QservClient(qserv.controller_url, qserv.auth_key) as client:
        committed = [t.transaction_id for t in ledger.transactions() if t.state == "committed"]
        return [c for tid in committed for c in client.get_transaction(tid, contributions=True).contributions]


def staged_alone(qserv, tmp_path: Path, database: str):
    """A staging of its own loaded by file:// URLs (its files are damaged by the test): the config and a
    Source file of several rows."""
    staging = tmp_path / "staging"
    config = load_config(write_case01(tmp_path / "case01.yaml", qserv, staging, database, **by_file(staging)))
    Ingest(config).run(stage_only=True)
    with Ledger(config.staging.ledger) as ledger:
        return config, next(f for f in ledger.chunk_files(table="Source") if f.rows > 1)


def counting(qserv, path: str):
    return qserv.faults.add("delay", match={"path": path}, seconds=0, times=0)


@pytest.mark.parametrize("base", ["file", "serve"])
def test_a_load_by_reference_equals_the_upload_load(qserv, truth, staged, tmp_path, keys, base):
    """The same staging loaded both ways: both exact (every row once, on the czar and on every worker, and
    verify passes), the same rows counted; by reference the stand-in got no `/ingest/csv` at all and one
    `/ingest/file` per contribution, each naming its file."""
    upload = loader(qserv, staged, tmp_path / "upload", f"byref_upload_{base}")
    uploaded = Ingest(upload).run()
    exact(truth, qserv, upload, uploaded)

    keys_ = by_file(staged) if base == "file" else {"transport": "url", "url_base": "serve"}
    config = loader(qserv, staged, tmp_path / "url", f"byref_url_{base}", **keys_)
    csv, file = counting(qserv, "/ingest/csv"), counting(qserv, "/ingest/file")
    summary = Ingest(config).run()
    exact(truth, qserv, config, summary)
    assert summary.rows == uploaded.rows and summary.transactions == uploaded.transactions
    contributions = recorded(qserv, config)
    assert csv.fired == 0
    assert file.fired == len(contributions) > 10
    scheme = "file://" if base == "file" else "http://127.0.0.1:"
    assert all(c.raw["url"].startswith(scheme) and c.status == "FINISHED" for c in contributions)
    assert {c.raw["url"].rsplit("/contributions/", 1)[1] for c in contributions} == {
        str(p.relative_to(staged / "contributions")) for p in (staged / "contributions").rglob("*.txt")
    }


def test_an_altered_staged_file_is_never_sent_and_is_rebuilt(qserv, truth, tmp_path, keys):
    """One digit of a staged file changed, same size: the rows still load without a warning, so only its
    checksum, taken before its URL is sent, can tell. It is refused, collected again, and the catalog is
    exact (were it sent, the changed value would be in it)."""
    config, file = staged_alone(qserv, tmp_path, "byref_altered")
    data = bytearray(Path(file.path).read_bytes())
    data[10] = ord("7") if data[10] != ord("7") else ord("8")
    Path(file.path).write_bytes(bytes(data))
    summary = Ingest(config).run()
    exact(truth, qserv, config, summary)
    assert any(file.path in n and "checksum" in n for n in summary.notes), summary.notes
    with Ledger(config.staging.ledger) as ledger:
        tried = [c for c in ledger.contributions() if c.file == file.key]
        assert [c.status for c in tried] == ["FINISHED"]  # only the rebuilt file reached a worker
        assert next(f for f in ledger.chunk_files() if f.key == file.key).checksum == file.checksum


def test_an_answer_with_warnings_is_never_accepted(qserv, truth, tmp_path, keys):
    """Text in a BIGINT column of a file's last row, with a checksum that matches (as if qdask had staged
    it): the worker loads it with a warning; every attempt is aborted, the run stops, nothing is
    published; once the file is rebuilt the load is exact."""
    config, file = staged_alone(qserv, tmp_path, "byref_warning")
    path = Path(file.path)
    lines = path.read_bytes().rstrip(b"\n").split(b"\n")
    fields = lines[-1].split(b"\t")
    fields[3] = b"oops"
    lines[-1] = b"\t".join(fields)
    path.write_bytes(b"\n".join(lines) + b"\n")
    with sqlite3.connect(config.staging.ledger) as db:
        db.execute(
            "UPDATE chunk_files SET checksum = ?, bytes = ? WHERE path = ?",
            (file_checksum(path), path.stat().st_size, str(path)),
        )
    with pytest.raises(IngestError, match="num_warnings"):
        Ingest(config).run()
    with Ledger(config.staging.ledger) as ledger:
        tried = [c for c in ledger.contributions() if c.file == file.key]
        assert len(tried) == 4 and all(c.num_warnings for c in tried)  # the first attempt and 3 redos
        assert {t.state for t in ledger.transactions() if file.key in t.files} == {"aborted"}
        ledger.drop_chunk_file(file.key)
    with QservClient(qserv.controller_url, qserv.auth_key) as client:
        assert not (client.database_info("byref_warning") or {}).get("is_published")
    exact(truth, qserv, config, Ingest(config).run())


def test_read_failed_is_retried_within_the_transaction(qserv, truth, staged, tmp_path, keys):
    """READ_FAILED with retry_allowed=1 (twice in a row: the worker's own re-read fails too): resent in the
    same transaction, never aborted."""
    config = loader(qserv, staged, tmp_path, "byref_read", **by_file(staged))
    with Ledger(config.staging.ledger) as ledger:
        file = next(f for f in ledger.chunk_files(table="Source"))
    where = {"table": "Source", "chunk": file.chunk_id, "overlap": 0}
    fault = qserv.faults.add("read_failed", match=where, times=2)
    summary = Ingest(config).run()
    assert fault.fired == 2
    exact(truth, qserv, config, summary)
    with Ledger(config.staging.ledger) as ledger:
        assert not [t for t in ledger.transactions() if t.state == "aborted"]
        retried = [c for c in ledger.contributions() if c.retries]
    assert retried and all(c.status == "FINISHED" and c.file.table == "Source" for c in retried)


@pytest.mark.parametrize("kind", ["load_failed", "drop_response"])
def test_a_failure_past_reading_aborts_and_redoes_the_transaction(qserv, truth, staged, tmp_path, keys, kind):
    config = loader(qserv, staged, tmp_path, f"byref_{kind}", **by_file(staged))
    fault = qserv.faults.add(kind, match={"table": "Object", "overlap": 0}, nth=2)
    summary = Ingest(config).run()
    assert fault.fired == 1
    exact(truth, qserv, config, summary)
    with Ledger(config.staging.ledger) as ledger:
        assert len([t for t in ledger.transactions() if t.state == "aborted"]) == 1
    assert any("transaction redone" in n for n in summary.notes), summary.notes


def test_a_url_base_the_workers_cannot_read_stops_the_run_clearly(qserv, truth, staged, tmp_path, keys):
    """url_base naming a directory the workers do not have: every contribution READ_FAILED (retry allowed,
    nothing loaded), each transaction redone until the attempts are spent; the run stops with the worker's
    own reason and the re-run command, every transaction aborted, nothing committed; fixed, it loads."""
    wrong = {"transport": "url", "url_base": f"file://{tmp_path}/not-mounted/"}
    config = loader(qserv, staged, tmp_path, "byref_unreadable", retries={"attempts": 1}, **wrong)
    with pytest.raises(IngestError) as stopped:
        Ingest(config).run()
    message = str(stopped.value)
    assert "READ_FAILED" in message or "failed to open the file" in message, message
    assert f"{tmp_path}/not-mounted/contributions/" in message
    assert "re-run the same command" in message.lower()
    with Ledger(config.staging.ledger) as ledger:
        assert {t.state for t in ledger.transactions()} == {"aborted"}
        assert len(ledger.files_to_load()) == len(ledger.chunk_files())
    fixed = loader(qserv, staged, tmp_path / "fixed", "byref_unreadable", **by_file(staged))
    exact(truth, qserv, fixed, Ingest(fixed).run())

"""Qserv failure modes through the stand-in's fault injection: the client raises what `classify` needs, and
applying the recovery it returns leaves exactly the staged rows in Qserv (contract §6).

Each test ingests test101's Object chunk 7480 (1000 rows) into its own database, breaks one thing, recovers
the way the load stage will, then publishes and counts through the czar.
"""

from __future__ import annotations

import json

import pytest

from qdask.qserv import (
    CSV,
    QservClient,
    QservError,
    QservTransportError,
    Recovery,
    check_contribution,
    classify,
)
from qdask.qserv.czar import Czar

CHUNK = 7480


@pytest.fixture
def standin(qserv_standin):
    yield qserv_standin
    qserv_standin.faults.clear()
    for name in list(qserv_standin.faults.down_workers):
        qserv_standin.set_worker_down(name, False)


@pytest.fixture
def obj(shared_data):
    """test101's Object: (register_table kwargs, chunk file, its row count)."""
    t101 = shared_data / "qserv-itest" / "test101"
    body = json.loads((t101 / "table_Object.json").read_text())
    kwargs = {k: body[k] for k in ("schema", "director_key", "latitude_key", "longitude_key")}
    path = t101 / "data" / "Object" / f"chunk_{CHUNK}.txt"
    return {**kwargs, "is_partitioned": True}, path, path.read_bytes().count(b"\n")


def start(standin, db, obj, **client_kw):
    qc = QservClient(
        standin.controller_url,
        standin.auth_key,
        admin_auth_key=standin.admin_auth_key,
        retries=client_kw.pop("retries", 2),
        backoff=0.01,
        **client_kw,
    )
    qc.register_database(db, 85, 12, 0.01667)
    qc.register_table(db, "Object", **obj[0])
    return qc


def finish(qc, standin, db) -> int:
    """Publish, count Object through the czar, drop the database; returns the count."""
    qc.publish_database(db)
    n = Czar(standin.czar_dsn).count(db, "Object")
    qc.delete_database(db, admin=True)
    qc.close()
    return n


def upload(qc, t, loc, path):
    return qc.ingest_csv(loc, t.id, "Object", path, chunk=CHUNK, dialect=CSV)


def test_read_failed_is_retried_in_the_same_transaction(standin, obj):
    db = "qc_fault_read"
    qc = start(standin, db, obj)
    _, path, rows = obj
    t = qc.begin_transaction(db)
    loc = qc.allocate_chunks([CHUNK], transaction_id=t.id)[CHUNK]
    standin.faults.add("read_failed", match={"database": db, "table": "Object"})
    with pytest.raises(QservError) as err:
        upload(qc, t, loc, path)
    assert err.value.retry_allowed and classify(err.value) is Recovery.RETRY_IN_TRANSACTION
    check_contribution(upload(qc, t, loc, path), rows, path.stat().st_size)
    assert qc.commit_transaction(t.id).state == "FINISHED"
    assert finish(qc, standin, db) == rows


@pytest.mark.parametrize("kind", ["load_failed", "drop_response", "drop_upload"])
def test_loaded_or_unknown_outcome_means_abort_and_redo(standin, obj, kind):
    db = f"qc_fault_{kind}"
    qc = start(standin, db, obj)
    _, path, rows = obj
    t = qc.begin_transaction(db)
    loc = qc.allocate_chunks([CHUNK], transaction_id=t.id)[CHUNK]
    standin.faults.add(kind, match={"database": db, "table": "Object"})
    with pytest.raises((QservError, QservTransportError)) as err:
        upload(qc, t, loc, path)
    if kind == "load_failed":
        assert not isinstance(err.value, QservTransportError) and not err.value.retry_allowed
    else:  # the request reached the worker, the answer never came back
        assert isinstance(err.value, QservTransportError) and err.value.outcome_unknown
    assert classify(err.value) is Recovery.ABORT_AND_REDO
    assert qc.abort_transaction(t.id).state == "ABORTED"

    redo = qc.begin_transaction(db, context={"redo_of": t.id})
    check_contribution(upload(qc, redo, loc, path), rows, path.stat().st_size)
    assert qc.commit_transaction(redo.id).state == "FINISHED"
    assert finish(qc, standin, db) == rows  # what the failed attempt may have loaded is gone


def test_failed_commit_is_aborted_and_redone(standin, obj):
    db = "qc_fault_commit"
    qc = start(standin, db, obj)
    _, path, rows = obj
    t = qc.begin_transaction(db)
    loc = qc.allocate_chunks([CHUNK], transaction_id=t.id)[CHUNK]
    check_contribution(upload(qc, t, loc, path), rows, path.stat().st_size)
    standin.faults.add("fail_commit", match={"database": db})
    with pytest.raises(QservError) as err:
        qc.commit_transaction(t.id)
    assert classify(err.value) is Recovery.ABORT_AND_REDO
    assert qc.get_transaction(t.id).state == "FINISH_FAILED"
    assert qc.abort_transaction(t.id).state == "ABORTED"
    redo = qc.begin_transaction(db)
    check_contribution(upload(qc, redo, loc, path), rows, path.stat().st_size)
    assert qc.commit_transaction(redo.id).state == "FINISHED"
    assert finish(qc, standin, db) == rows


def test_unreachable_worker_is_retried_then_reported_and_resumable(standin, obj):
    db = "qc_fault_down"
    qc = start(standin, db, obj, retries=3)
    _, path, rows = obj
    t = qc.begin_transaction(db)
    loc = qc.allocate_chunks([CHUNK], transaction_id=t.id)[CHUNK]
    assert qc.check_worker_version(loc).kind == "replication-worker-ingest"
    qc.close()  # no kept-alive connection: the next request opens a new one
    standin.set_worker_down(loc.worker)
    with pytest.raises(QservTransportError) as err:
        upload(qc, t, loc, path)
    assert not err.value.request_sent and err.value.attempts == 4
    assert classify(err.value) is Recovery.RETRY_WITH_BACKOFF  # nothing reached the worker
    standin.set_worker_down(loc.worker, False)
    check_contribution(upload(qc, t, loc, path), rows, path.stat().st_size)
    assert qc.commit_transaction(t.id).state == "FINISHED"
    assert finish(qc, standin, db) == rows


def test_by_reference_sync_async_and_explicit_retry(standin, obj, tmp_path):
    db = "qc_byref"
    qc = start(standin, db, obj)
    _, path, rows = obj
    t = qc.begin_transaction(db)
    loc = qc.allocate_chunks([CHUNK], transaction_id=t.id)[CHUNK]
    # overlap rows of the same chunk, pulled by the worker from a file:// URL, asynchronously
    overlap = path.parent / f"chunk_{CHUNK}_overlap.txt"
    queued = qc.ingest_file(
        loc, t.id, "Object", overlap.as_uri(), chunk=CHUNK, overlap=True, dialect=CSV, asynchronous=True
    )
    assert queued.async_ and queued.id is not None
    done = qc.wait_async(loc, queued.id, poll=0.05, timeout=60)
    check_contribution(done, overlap.read_bytes().count(b"\n"), overlap.stat().st_size)
    assert [c.id for c in qc.async_transaction_status(loc, t.id)] == [queued.id]

    # one failed read is absorbed by the worker's automatic re-read (max_retries defaults to 1, §4.1)...
    standin.faults.add("read_failed", match={"database": db, "overlap": 0})
    absorbed = qc.ingest_file(loc, t.id, "Object", path.as_uri(), chunk=CHUNK, dialect=CSV)
    assert absorbed.num_failed_retries == 1 and absorbed.status == "FINISHED"
    assert qc.abort_transaction(t.id).state == "ABORTED"
    t = qc.begin_transaction(db)
    # ...and surfaces when automatic re-reads are off
    standin.faults.add("read_failed", match={"database": db, "overlap": 0})
    with pytest.raises(QservError) as err:
        qc.ingest_file(loc, t.id, "Object", path.as_uri(), chunk=CHUNK, dialect=CSV, max_retries=0)
    assert classify(err.value) is Recovery.RETRY_IN_TRANSACTION
    # the failed contribution is found through the controller and retried at its worker (PUT /ingest/file/:id)
    failed = [
        c
        for c in qc.get_transaction(t.id, contrib=True, contrib_long=True).contributions
        if c.status == "READ_FAILED"
    ]
    assert len(failed) == 1 and failed[0].retry_allowed
    check_contribution(qc.retry_file(loc, failed[0].id), rows, path.stat().st_size)
    assert qc.commit_transaction(t.id).state == "FINISHED"
    assert finish(qc, standin, db) == rows


def test_ingest_data_rows_as_strings(standin):
    db = "qc_data"
    qc = QservClient(standin.controller_url, standin.auth_key, admin_auth_key=standin.admin_auth_key)
    qc.register_database(db, 85, 12, 0.01667)
    qc.register_table(
        db, "Calib", [("id", "INT NOT NULL"), ("x", "DOUBLE"), ("name", "VARCHAR(16)")], is_partitioned=False
    )
    t = qc.begin_transaction(db)
    qc.allocate_chunk(CHUNK, database=db)  # publishing needs at least one allocated chunk (§3.2)
    values = [[1, "0.123456789012", "a"], [2, "-1e-300", r"\N"]]
    for loc in qc.regular_locations(database=db):
        c = qc.ingest_data(loc, t.id, "Calib", values)
        assert (c.status, c.num_rows, c.num_rows_loaded, c.num_warnings) == ("FINISHED", 2, 2, 0)
    qc.commit_transaction(t.id)
    qc.publish_database(db)
    with Czar(standin.czar_dsn).query(f"SELECT id, x, name FROM {db}.Calib ORDER BY id") as rows:
        assert list(rows) == [(1, 0.123456789012, "a"), (2, -1e-300, None)]  # full precision, NULL from \N
    qc.delete_database(db, admin=True)

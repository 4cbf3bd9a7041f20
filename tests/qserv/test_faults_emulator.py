"""Qserv failure modes through the stand-in's fault injection: the client raises what `classify` needs, and
applying the recovery it returns leaves exactly the staged rows in Qserv (contract §6).

Each test ingests test101's Object chunk 7480 (1000 rows) into its own database, breaks one thing, recovers
the way the load stage will, then publishes and counts through the czar.
"""

from __future__ import annotations

import pytest
from itest101 import lines, table_args

from qdask.qserv import CSV, QservClient, QservError, QservTransportError, check_contribution
from qdask.qserv.czar import Czar
from qdask.qserv.errors import Recovery, classify

CHUNK = 7480


@pytest.fixture
def standin(qserv_standin):
    yield qserv_standin
    qserv_standin.faults.clear()
    for name in list(qserv_standin.faults.down_workers):
        qserv_standin.set_worker_down(name, False)


@pytest.fixture
def obj(test101):
    """test101's Object: (register_table kwargs, chunk file, its row count)."""
    path = test101 / "data" / "Object" / f"chunk_{CHUNK}.txt"
    return table_args(test101 / "table_Object.json"), path, lines(path)


def start(standin, db, obj, retries=2):
    """A client, `db` with Object registered, a transaction and the location of the chunk in it."""
    qc = QservClient(standin.controller_url, standin.auth_key, retries=retries, backoff=0.01)
    qc.register_database(db, 85, 12, 0.01667)
    qc.register_table(db, "Object", **obj[0])
    t = qc.begin_transaction(db)
    return qc, t, qc.allocate_chunks([CHUNK], transaction_id=t.id)[CHUNK]


def finish(qc, standin, db) -> int:
    """Publish and count Object through the czar; returns the count."""
    qc.publish_database(db)
    n = Czar(standin.czar_dsn).count(db, "Object")
    qc.close()
    return n


def upload(qc, t, loc, path):
    return qc.ingest_csv(loc, t.id, "Object", path, chunk=CHUNK, dialect=CSV)


def load_exactly(qc, t, loc, obj) -> None:
    """Upload the chunk in transaction `t` and check that exactly its rows went in."""
    _, path, rows = obj
    check_contribution(upload(qc, t, loc, path), rows, path.stat().st_size)


def test_read_failed_is_retried_in_the_same_transaction(standin, obj):
    db = "qc_fault_read"
    qc, t, loc = start(standin, db, obj)
    _, path, rows = obj
    standin.faults.add("read_failed", match={"database": db, "table": "Object"})
    with pytest.raises(QservError) as err:
        upload(qc, t, loc, path)
    assert err.value.retry_allowed and classify(err.value) is Recovery.RETRY_IN_TRANSACTION
    load_exactly(qc, t, loc, obj)
    assert qc.commit_transaction(t.id).state == "FINISHED"
    assert finish(qc, standin, db) == rows


@pytest.mark.parametrize("kind", ["load_failed", "drop_response", "drop_upload"])
def test_loaded_or_unknown_outcome_means_abort_and_redo(standin, obj, kind):
    db = f"qc_fault_{kind}"
    qc, t, loc = start(standin, db, obj)
    _, path, rows = obj
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
    load_exactly(qc, redo, loc, obj)
    assert qc.commit_transaction(redo.id).state == "FINISHED"
    assert finish(qc, standin, db) == rows  # what the failed attempt may have loaded is gone


def test_failed_commit_is_aborted_and_redone(standin, obj):
    db = "qc_fault_commit"
    qc, t, loc = start(standin, db, obj)
    _, path, rows = obj
    load_exactly(qc, t, loc, obj)
    standin.faults.add("fail_commit", match={"database": db})
    with pytest.raises(QservError) as err:
        qc.commit_transaction(t.id)
    assert classify(err.value) is Recovery.ABORT_AND_REDO
    assert qc.get_transaction(t.id).state == "FINISH_FAILED"
    assert qc.abort_transaction(t.id).state == "ABORTED"
    redo = qc.begin_transaction(db)
    load_exactly(qc, redo, loc, obj)
    assert qc.commit_transaction(redo.id).state == "FINISHED"
    assert finish(qc, standin, db) == rows


def test_unreachable_worker_is_retried_then_reported_and_resumable(standin, obj):
    db = "qc_fault_down"
    qc, t, loc = start(standin, db, obj, retries=3)
    _, path, rows = obj
    assert qc.check_version(loc.http_url).kind == "replication-worker-ingest"
    qc.close()  # no kept-alive connection: the next request opens a new one
    standin.set_worker_down(loc.worker)
    with pytest.raises(QservTransportError) as err:
        upload(qc, t, loc, path)
    assert not err.value.request_sent and err.value.attempts == 4
    assert classify(err.value) is Recovery.RETRY_WITH_BACKOFF  # nothing reached the worker
    standin.set_worker_down(loc.worker, False)
    load_exactly(qc, t, loc, obj)
    assert qc.commit_transaction(t.id).state == "FINISHED"
    assert finish(qc, standin, db) == rows

"""What the client puts on the wire and how it reads Qserv's answers, against a real loopback HTTP server.

These cover what the stand-in cannot easily show: the exact headers and bodies received, version windows
that exclude 55, an auth key echoed back by a server, dropped and late answers.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading

import pytest
from fakeqserv import DROP, Slow, error

from qdask.dialect import CSV, Dialect
from qdask.mariadb import free_port
from qdask.qserv import Location, QservClient
from qdask.qserv.errors import (
    QservAuthError,
    QservError,
    QservProtocolError,
    QservTransportError,
    QservVersionError,
    Recovery,
    classify,
)

KEY = "s3cr3t-ingest-key"

TRANS = {
    "databases": {
        "db1": {
            "num_chunks": 0,
            "transactions": [{"id": 7, "database": "db1", "state": "STARTED", "begin_time": 1}],
        }
    }
}
CONTRIB = {
    "id": 3,
    "transaction_id": 7,
    "worker": "w1",
    "database": "db1",
    "table": "Object",
    "chunk": 57,
    "overlap": 0,
    "status": "FINISHED",
    "num_bytes": 10,
    "num_rows": 2,
    "num_rows_loaded": 2,
    "num_warnings": 0,
    "warnings": [],
    "retry_allowed": 0,
    "async": 0,
}


def client_for(server, **kw) -> QservClient:
    kw.setdefault("retries", 2)
    kw.setdefault("backoff", 0.01)
    return QservClient(server.url, kw.pop("auth_key", KEY), **kw)


def test_json_requests_carry_exact_content_type_version_and_auth(fake_qserv):
    fake_qserv.route("POST", "/ingest/trans", TRANS)
    fake_qserv.route("GET", "/ingest/regular", {"locations": []})
    fake_qserv.route("GET", "/ingest/table/db1", {"tables": [{"name": "Object", "is_partitioned": 1}]})
    with client_for(fake_qserv) as qc:
        t = qc.begin_transaction("db1", context={"run": "r1"})
        assert (t.id, t.database, t.state) == (7, "db1", "STARTED")
        qc.regular_locations(database="db1")
        assert qc.list_tables("db1") == [{"name": "Object", "is_partitioned": 1}]

    post = fake_qserv.calls("POST", "/ingest/trans")[0]
    assert post.headers["Content-Type"] == "application/json"
    assert post.json == {"auth_key": KEY, "database": "db1", "context": {"run": "r1"}, "version": 55}
    # the GET that reads a JSON body (a Qserv wart) gets one, with the version, and no key (no auth needed)
    regular = fake_qserv.calls("GET", "/ingest/regular")[0]
    assert regular.headers["Content-Type"] == "application/json"
    assert regular.json == {"database": "db1", "version": 55}
    # a body-less GET sends the version in the query string
    assert fake_qserv.calls("GET", "/ingest/table/db1")[0].query == {"version": "55"}
    # the version window was read exactly once, before the first call
    assert [r.path for r in fake_qserv.requests][0] == "/meta/version"
    assert len(fake_qserv.calls("GET", "/meta/version")) == 1


def test_empty_auth_key_is_still_sent(fake_qserv):
    fake_qserv.route(
        "POST", "/ingest/database", {"database": {"database": "db1", "family_name": "layout_340_3"}}
    )
    with client_for(fake_qserv, auth_key="") as qc:
        db = qc.register_database("db1", 340, 3, 0.01667)
    assert db["family_name"] == "layout_340_3"
    body = fake_qserv.calls("POST", "/ingest/database")[0].json
    assert body == {
        "auth_key": "",
        "database": "db1",
        "num_stripes": 340,
        "num_sub_stripes": 3,
        "overlap": 0.01667,
        "auto_build_secondary_index": 1,
        "version": 55,
    }


def test_commit_and_abort_use_the_abort_query_parameter(fake_qserv):
    done = {**TRANS, "secondary-index-build-success": 1}
    done["databases"]["db1"]["transactions"][0]["state"] = "FINISHED"
    fake_qserv.route("PUT", "/ingest/trans/7", done)
    with client_for(fake_qserv) as qc:
        t = qc.commit_transaction(7)
        qc.abort_transaction(7)
    assert t.state == "FINISHED" and t.secondary_index_build_success is True
    commit, abort = fake_qserv.calls("PUT", "/ingest/trans/7")
    assert commit.query == {"abort": "0"} and commit.json == {"auth_key": KEY, "version": 55}
    assert abort.query == {"abort": "1"} and abort.json == {"auth_key": KEY, "version": 55}


def test_envelope_error_raises_typed_error_with_server_message(fake_qserv):
    fake_qserv.route("POST", "/ingest/trans", error("no such database 'nope'.", {"hint": 1}))
    fake_qserv.route(
        "POST", "/ingest/chunks", error("authorization key 'auth_key' in the request doesn't match")
    )
    with client_for(fake_qserv) as qc:
        with pytest.raises(QservError) as err:
            qc.begin_transaction("nope")
        with pytest.raises(QservAuthError):
            qc.allocate_chunks([57], database="nope")
    assert err.value.endpoint == "POST /ingest/trans"
    assert err.value.error == "no such database 'nope'."
    assert err.value.error_ext == {"hint": 1}
    assert "no such database 'nope'." in str(err.value)
    assert classify(err.value) is Recovery.ABORT_AND_REDO


def test_non_envelope_answers_are_protocol_errors(fake_qserv):
    fake_qserv.route("GET", "/ingest/table/db1", (200, "<html>proxy</html>"))
    with client_for(fake_qserv) as qc:
        with pytest.raises(QservProtocolError, match="not JSON"):
            qc.list_tables("db1")
        with pytest.raises(QservProtocolError) as err:
            qc.database_info("db1")  # no route: HTTP 404
    assert err.value.status_code == 404


def test_server_warning_is_logged_and_none_without_it(fake_qserv, caplog):
    fake_qserv.route(
        "GET", "/ingest/table/db1", {"tables": [], "warning": "local_load_secondary_index is obsolete"}
    )
    fake_qserv.route("GET", "/replication/config", {"config": {"databases": []}})
    with client_for(fake_qserv) as qc, caplog.at_level(logging.WARNING, logger="qdask.qserv"):
        assert qc.database_info("db1") is None
        assert caplog.records == []
        qc.list_tables("db1")
    assert [r.getMessage() for r in caplog.records] == [
        "Qserv GET /ingest/table/db1 warned: local_load_secondary_index is obsolete"
    ]


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"version": 54}, r"window \[\?, 54\] does not include version 55"),
        ({"version": 60, "min_version": 56}, r"window \[56, 60\] does not include version 55"),
        ({"version": 16}, r"window \[\?, 16\]"),
    ],
)
def test_version_window_without_55_is_refused_before_anything_is_sent(fake_qserv, meta, match):
    fake_qserv.meta.update(meta)
    fake_qserv.route("POST", "/ingest/trans", TRANS)
    with client_for(fake_qserv) as qc:
        with pytest.raises(QservVersionError, match=match) as err:
            qc.begin_transaction("db1")
        with pytest.raises(QservVersionError):  # refused again, without a transaction ever being started
            qc.begin_transaction("db1")
    assert fake_qserv.calls("POST", "/ingest/trans") == []
    assert classify(err.value) is Recovery.FATAL


def test_newer_server_accepts_55(fake_qserv):
    fake_qserv.meta["version"] = 58
    fake_qserv.route("GET", "/ingest/table/db1", {"tables": [{"name": "Object", "is_partitioned": 1}]})
    with client_for(fake_qserv) as qc:
        assert qc.list_tables("db1") == [{"name": "Object", "is_partitioned": 1}]
        assert qc.check_version().version == 58


def test_worker_version_checked_before_first_contribution(fake_qserv, tmp_path):
    fake_qserv.worker_meta["version"] = 50
    f = tmp_path / "chunk_57.txt"
    f.write_bytes(b"1\t2\n")
    with client_for(fake_qserv) as qc, pytest.raises(QservVersionError, match="50"):
        qc.ingest_csv(fake_qserv.worker_url, 7, "Object", f, chunk=57)
    assert fake_qserv.calls("POST", "/ingest/csv") == []


def test_wrong_service_kind_is_refused(fake_qserv):
    fake_qserv.meta["kind"] = "replication-worker-ingest"
    with (
        client_for(fake_qserv) as qc,
        pytest.raises(QservProtocolError, match="expected a replication-controller"),
    ):
        qc.list_tables("db1")


def test_server_side_version_error_is_typed(fake_qserv):
    msg = "The requested version 55 of the API is not in the range supported by the service."
    fake_qserv.route("POST", "/ingest/chunks", error(msg, {"min_version": 56, "max_version": 58}))
    with client_for(fake_qserv) as qc, pytest.raises(QservVersionError) as err:
        qc.allocate_chunks([1, 2], database="db1")
    assert err.value.error_ext == {"min_version": 56, "max_version": 58}


def test_client_pinned_below_endpoint_minimum_refuses_locally(fake_qserv):
    fake_qserv.meta["version"] = 55
    with client_for(fake_qserv, version=38) as qc, pytest.raises(QservVersionError, match=">= 54"):
        qc.allocate_chunks([1], database="db1")
    assert fake_qserv.requests == []


def test_auth_key_never_in_errors_reprs_or_logs(fake_qserv, caplog):
    # a (hypothetical) server that echoes the request, key included, in its error and warning
    fake_qserv.route(
        "POST",
        "/ingest/trans",
        lambda rec: error(
            f"bad request {rec.body.decode()}", {"body": rec.json}, warning=f"echo {rec.body.decode()}"
        ),
    )
    qc = client_for(fake_qserv)
    with caplog.at_level(logging.DEBUG), pytest.raises(QservError) as err:
        qc.begin_transaction("db1", context={"run": 1})
    assert KEY in fake_qserv.calls("POST", "/ingest/trans")[0].body.decode()  # it was sent...
    texts = [
        str(err.value),
        repr(err.value),
        str(err.value.error_ext),
        repr(qc),
        str(qc.__dict__),
        *(r.getMessage() for r in caplog.records),
    ]
    for text in texts:  # ...and shows nowhere
        assert KEY not in text
    assert "***" in str(err.value)
    # a context that contains a key is refused before sending
    with pytest.raises(ValueError, match="must not contain an authorization key"):
        qc.begin_transaction("db1", context={"oops": f"key={KEY}"})
    assert len(fake_qserv.calls("POST", "/ingest/trans")) == 1
    # pickling (to ship the client to Dask workers) keeps it working, key included
    clone = pickle.loads(pickle.dumps(qc))
    assert type(clone) is QservClient and repr(clone) == repr(qc)
    with pytest.raises(QservError):
        clone.begin_transaction("db2")
    assert fake_qserv.calls("POST", "/ingest/trans")[-1].json["auth_key"] == KEY
    qc.close()
    clone.close()


def test_transport_error_text_has_no_key(tmp_path):
    qc = QservClient(f"http://127.0.0.1:{free_port()}", KEY, retries=1, backoff=0.01)
    with pytest.raises(QservTransportError) as err:
        qc.begin_transaction("db1", context={"k": 1})
    assert KEY not in str(err.value) and KEY not in repr(err.value)
    assert err.value.request_sent is False and err.value.attempts == 2
    assert classify(err.value) is Recovery.RETRY_WITH_BACKOFF


def test_csv_upload_is_multipart_fields_then_one_file(fake_qserv, tmp_path):
    data = b"".join(b"%d\t%d.5\tname %d\n" % (i, i, i) for i in range(50_000))
    f = tmp_path / "chunk_57_overlap.txt"
    f.write_bytes(data)
    fake_qserv.route("POST", "/ingest/csv", {"contrib": {**CONTRIB, "overlap": 1, "num_bytes": len(data)}})
    loc = Location(worker="w1", http_host_name="", http_host="127.0.0.1", http_port=0)
    with client_for(fake_qserv) as qc:
        c = qc.ingest_csv(
            fake_qserv.worker_url,
            7,
            "Object",
            f,
            chunk=57,
            overlap=True,
            dialect=CSV,
            charset_name="utf8mb4",
        )
        with pytest.raises(ValueError, match="no HTTP ingest address"):
            qc.ingest_csv(loc, 7, "Object", f)
    assert (c.id, c.status, c.overlap, c.num_bytes) == (3, "FINISHED", 1, len(data))
    rec = fake_qserv.calls("POST", "/ingest/csv")[0]
    assert rec.role == "worker"
    assert rec.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert int(rec.headers["Content-Length"]) > len(data)  # length known up front: no chunked re-buffering
    names = [p["name"] for p in rec.parts]
    assert names == [
        "auth_key",
        "transaction_id",
        "table",
        "chunk",
        "overlap",
        "fields_terminated_by",
        "fields_enclosed_by",
        "fields_escaped_by",
        "lines_terminated_by",
        "charset_name",
        "version",
        "file",
    ]
    fields = {p["name"]: p["text"] for p in rec.parts[:-1]}
    assert fields == {
        "auth_key": KEY,
        "transaction_id": "7",
        "table": "Object",
        "chunk": "57",
        "overlap": "1",
        "fields_terminated_by": ",",
        "fields_enclosed_by": "\\0",
        "fields_escaped_by": "\\\\",
        "lines_terminated_by": "\\n",
        "charset_name": "utf8mb4",
        "version": "55",
    }
    assert all(p["filename"] is None for p in rec.parts[:-1])
    file_part = rec.parts[-1]
    assert file_part["filename"] == "chunk_57_overlap.txt"
    assert (file_part["size"], file_part["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def test_file_by_reference_is_one_json_body_with_the_csv_fields_and_the_url(fake_qserv):
    """`POST /ingest/file` (IngestHttpSvcMod.cc, _createRequest): the same fields as the csv form, typed as
    Qserv's JSON reader wants them (numbers as numbers), plus `url`; the answer is the contribution."""
    fake_qserv.route("POST", "/ingest/file", {"contrib": {**CONTRIB, "url": "file:///s/Object/chunk_57.txt"}})
    with client_for(fake_qserv) as qc:
        c = qc.ingest_file(
            fake_qserv.worker_url,
            7,
            "Object",
            "file:///s/Object/chunk_57.txt",
            chunk=57,
            overlap=False,
            charset_name="latin1",
            max_num_warnings=64,
        )
    assert (c.id, c.status, c.raw["url"]) == (3, "FINISHED", "file:///s/Object/chunk_57.txt")
    rec = fake_qserv.calls("POST", "/ingest/file")[0]
    assert rec.role == "worker" and rec.headers["Content-Type"] == "application/json"
    assert rec.json == {
        "auth_key": KEY,
        "transaction_id": 7,
        "table": "Object",
        "chunk": 57,
        "overlap": 0,
        "fields_terminated_by": "\\t",
        "fields_enclosed_by": "\\0",
        "fields_escaped_by": "\\\\",
        "lines_terminated_by": "\\n",
        "charset_name": "latin1",
        "max_num_warnings": 64,
        "url": "file:///s/Object/chunk_57.txt",
        "version": 55,
    }


def test_get_is_retried_on_503_and_dropped_connections(fake_qserv):
    answers = iter([(503, "busy"), DROP, {"tables": [{"name": "Object", "is_partitioned": 1}]}])
    fake_qserv.route("GET", "/ingest/table/db1", lambda rec: next(answers))
    with client_for(fake_qserv, retries=3) as qc:
        assert qc.list_tables("db1") == [{"name": "Object", "is_partitioned": 1}]
    assert len(fake_qserv.calls("GET", "/ingest/table/db1")) == 3


def test_contribution_with_lost_answer_is_not_retried_and_means_abort(fake_qserv, tmp_path):
    f = tmp_path / "chunk_1.txt"
    f.write_bytes(b"1\n")
    fake_qserv.route("POST", "/ingest/csv", DROP)
    fake_qserv.route("PUT", "/ingest/trans/7", Slow(5, TRANS))
    with client_for(fake_qserv, retries=3, load_timeout=0.5) as qc:
        with pytest.raises(QservTransportError) as dropped:
            qc.ingest_csv(fake_qserv.worker_url, 7, "Object", f, chunk=1)
        with pytest.raises(QservTransportError) as late:
            qc.commit_transaction(7)
    assert len(fake_qserv.calls("POST", "/ingest/csv")) == 1  # sent once: the outcome is unknown
    assert len(fake_qserv.calls("PUT", "/ingest/trans/7")) == 1
    for err in (dropped.value, late.value):
        assert err.request_sent and err.outcome_unknown
        assert classify(err) is Recovery.ABORT_AND_REDO
    assert "ReadTimeout" in late.value.error


def test_an_upload_hashes_the_bytes_it_sends_so_nothing_reads_the_file_only_to_hash_it(fake_qserv, tmp_path):
    data = b"".join(b"%d\t%d\n" % (i, i) for i in range(100_000))  # several upload blocks
    f = tmp_path / "chunk_3.txt"
    f.write_bytes(data)
    fake_qserv.route("POST", "/ingest/csv", {"contrib": {**CONTRIB, "num_bytes": len(data)}})
    made = []

    def digest():
        made.append(hashlib.sha256())
        return made[-1]

    with client_for(fake_qserv) as qc:
        qc.ingest_csv(fake_qserv.worker_url, 7, "Object", f, chunk=3, digest=digest)
    assert len(made) == 1 and made[0].hexdigest() == hashlib.sha256(data).hexdigest()
    assert fake_qserv.calls("POST", "/ingest/csv")[0].parts[-1]["sha256"] == made[0].hexdigest()


def test_unreachable_worker_is_retried_with_backoff_then_reported(tmp_path, fake_qserv):
    f = tmp_path / "chunk_1.txt"
    f.write_bytes(b"1\n")
    dead = f"http://127.0.0.1:{free_port()}"
    with client_for(fake_qserv, retries=2) as qc, pytest.raises(QservTransportError) as err:
        qc.ingest_csv(dead, 7, "Object", f, chunk=1)
    assert err.value.attempts == 3 and not err.value.request_sent
    assert err.value.endpoint == "GET /meta/version"  # the worker's window is read first
    assert classify(err.value) is Recovery.RETRY_WITH_BACKOFF


def test_retry_decisions_follow_retry_allowed_as_qserv_sets_it(fake_qserv, tmp_path):
    """`/ingest/csv` failures answered, then recorded, the way Qserv's worker does it.

    Answers: a temporary file that cannot be created is raised with `retry_allowed` in `error_ext`
    (IngestFileSvc.cc:144-149, src/http/Exceptions.cc:33-39); an inactive transaction
    (IngestFileHttpSvcMod.cc:133-138), a chunk not allocated to the worker (IngestFileSvc.cc:127-131,
    FileUploadModule.cc:86) and a failed LOAD DATA (IngestFileHttpSvcMod.cc:217-223) answer `error_ext` {}.
    Records: the service set the flag before its checks (IngestFileHttpSvcMod.cc:101), so the refusals
    are stored with 1 (DatabaseServicesMySQL.cc:1686-1690), and it cleared it before loading (:209).
    """
    f = tmp_path / "chunk_57.txt"
    f.write_bytes(b"1\t2\n")
    tmp = "/qserv/data/ingest/db1-Object-57-7-a1b2-c3d4-e5f6-a7b8.csv"
    no_tmp = f"failed to create a temporary file '{tmp}', error: 'No space left on device', errno: 28"
    inactive = "INGEST-FILE-HTTP-SVC onStartOfFile transactionId=7 is not active"
    elsewhere = (
        "invalid parameters of the request, ex: INGEST-FILE-SVC openFile chunk 57 of the UNPUBLISHED"
        " database 'db1' is not allocated to worker 'w1'"
    )
    load = "MySQL load failed, ex: Connection::execute  mysql_real_query failed"
    answers = iter(
        [
            error(no_tmp, {"http_error": 0, "system_error": 28, "retry_allowed": 1}),
            error(inactive),
            error(elsewhere),
            error(load),
        ]
    )
    fake_qserv.route("POST", "/ingest/csv", lambda rec: next(answers))
    records = [
        {
            **CONTRIB,
            "id": 3,
            "status": "START_FAILED",
            "retry_allowed": 1,
            "error": no_tmp,
            "system_error": 28,
        },
        {**CONTRIB, "id": 4, "status": "CREATE_FAILED", "retry_allowed": 1, "error": inactive},
        {**CONTRIB, "id": 5, "status": "START_FAILED", "retry_allowed": 1, "error": elsewhere},
        {**CONTRIB, "id": 6, "status": "LOAD_FAILED", "retry_allowed": 0, "error": load},
    ]
    trans = {"id": 7, "database": "db1", "state": "STARTED", "contrib": {"summary": {}, "files": records}}
    fake_qserv.route("GET", "/ingest/trans/7", {"databases": {"db1": {"transactions": [trans]}}})
    answered = []
    with client_for(fake_qserv) as qc:
        for _ in records:
            with pytest.raises(QservError) as err:
                qc.ingest_csv(fake_qserv.worker_url, 7, "Object", f, chunk=57)
            answered.append((err.value.retry_allowed, classify(err.value)))
        recorded = qc.get_transaction(7, contributions=True).contributions
    retry, redo = Recovery.RETRY_IN_TRANSACTION, Recovery.ABORT_AND_REDO
    # resending helps only where the answer says so; the others would be refused again the same way
    assert answered == [(True, retry), (False, redo), (False, redo), (False, redo)]
    # a record is decided by its flag, whatever its status, until loading began
    assert [(c.id, c.status, c.retry_allowed, classify(c)) for c in recorded] == [
        (3, "START_FAILED", True, retry),
        (4, "CREATE_FAILED", True, retry),
        (5, "START_FAILED", True, retry),
        (6, "LOAD_FAILED", False, redo),
    ]
    assert fake_qserv.calls("GET", "/ingest/trans/7")[0].query["contrib_long"] == "1"


def test_allocate_chunks_and_locations(fake_qserv):
    loc = {  # as HttpIngestChunksModule.cc:259-266 writes it: http_host is the address, then the name
        "worker": "w2",
        "host": "10.0.0.2",
        "host_name": "qserv-w2",
        "port": 25002,
        "http_host": "10.0.0.2",
        "http_host_name": "qserv-w2,w2.local",
        "http_port": 25004,
    }
    fake_qserv.route(
        "POST", "/ingest/chunks", lambda rec: {"locations": [{**loc, "chunk": c} for c in rec.json["chunks"]]}
    )
    with client_for(fake_qserv) as qc:
        locs = qc.allocate_chunks([57, 58], transaction_id=7)
        with pytest.raises(ValueError, match="exactly one"):
            qc.allocate_chunks([59])
    assert sorted(locs) == [57, 58] and (locs[58].chunk, locs[58].worker) == (58, "w2")
    assert locs[57].http_url == "http://10.0.0.2:25004"
    assert locs[57].raw["port"] == 25002  # the rest of the answer is kept
    assert fake_qserv.calls("POST", "/ingest/chunks")[0].json == {
        "auth_key": KEY,
        "chunks": [57, 58],
        "transaction_id": 7,
        "version": 55,
    }


def test_workers_are_reached_by_address_and_by_name_only_without_one(fake_qserv, tmp_path):
    """Qserv's own loader posts to `http_host` (replication_interface.py:333-336, 458); a worker's name
    may be unknown where the loader runs (ConfigHost.h:41-51)."""
    f = tmp_path / "chunk_57.txt"
    f.write_bytes(b"1\t2\n")
    unresolvable = "qserv-worker-1.invalid"
    loc = {
        "worker": "w1",
        "host": "127.0.0.1",
        "host_name": unresolvable,
        "port": 25002,
        "http_host": "127.0.0.1",
        "http_host_name": unresolvable,
        "http_port": fake_qserv.worker_port,
    }
    fake_qserv.route("POST", "/ingest/chunks", {"locations": [{**loc, "chunk": 57}]})
    fake_qserv.route("POST", "/ingest/csv", {"contrib": CONTRIB})
    with client_for(fake_qserv, retries=0) as qc:
        place = qc.allocate_chunks([57], transaction_id=7)[57]
        assert qc.ingest_csv(place, 7, "Object", f, chunk=57).status == "FINISHED"
        by_name = Location("w1", http_host_name=unresolvable, http_port=fake_qserv.worker_port)
        with pytest.raises(QservTransportError) as err:
            qc.ingest_csv(by_name, 7, "Object", f, chunk=57)
    assert [r.role for r in fake_qserv.calls("POST", "/ingest/csv")] == ["worker"]
    assert not err.value.request_sent  # the name alone does not lead anywhere
    # without an address the first name offered is used
    named = Location("w2", http_host="", http_host_name="qserv-w2,w2.local", http_port=25004)
    assert named.http_url == "http://qserv-w2:25004"
    assert Location("w3", http_host="fd00::3", http_port=25004).http_url == "http://[fd00::3]:25004"


def test_register_table_bodies_and_local_checks(fake_qserv):
    fake_qserv.route("POST", "/ingest/table", {"database": {"database": "db1"}})
    obj = [
        ("objectId", "BIGINT NOT NULL"),
        ("ra", "DOUBLE"),
        ("decl", "DOUBLE"),
        ("chunkId", "INT NOT NULL"),
        ("subChunkId", "INT NOT NULL"),
    ]
    src = [("sourceId", "BIGINT"), ("objectId", "BIGINT"), ("chunkId", "INT"), ("subChunkId", "INT")]
    with client_for(fake_qserv) as qc:
        qc.register_table(
            "db1",
            "Object",
            obj,
            is_partitioned=True,
            director_key="objectId",
            latitude_key="decl",
            longitude_key="ra",
            chunk_id_key="chunkId",
            charset_name="latin1",
            collation_name="latin1_general_ci",
        )
        qc.register_table(
            "db1",
            "Source",
            src,
            is_partitioned=True,
            director_table="Object",
            director_key="objectId",
            unique_primary_key=False,
        )
        qc.register_table("db1", "Filter", [{"name": "id", "type": "INT"}], is_partitioned=False)
        bad = [
            (
                {"is_partitioned": True, "director_key": "objectId", "latitude_key": "decl"},
                "latitude_key and",
            ),
            (
                {
                    "is_partitioned": True,
                    "director_key": "nope",
                    "latitude_key": "decl",
                    "longitude_key": "ra",
                },
                "no matching column 'nope'",
            ),
            ({"is_partitioned": False, "director_key": "objectId"}, "may not carry director_key"),
            (
                {
                    "is_partitioned": True,
                    "director_key": "objectId",
                    "latitude_key": "decl",
                    "longitude_key": "ra",
                    "sub_chunk_id_key": "sc",
                },
                "fixes this role",
            ),
        ]
        for kwargs, match in bad:
            with pytest.raises(ValueError, match=match):
                qc.register_table("db1", "Object", obj, **kwargs)
        with pytest.raises(ValueError, match="subChunkId"):
            qc.register_table(
                "db1",
                "O2",
                obj[:4],
                is_partitioned=True,
                director_key="objectId",
                latitude_key="decl",
                longitude_key="ra",
            )
        with pytest.raises(ValueError, match="reserved"):
            qc.register_table("db1", "R", [("qserv_trans_id", "INT")], is_partitioned=False)
    director, child, regular = (r.json for r in fake_qserv.calls("POST", "/ingest/table"))
    schema = [{"name": n, "type": t} for n, t in obj]
    assert director == {
        "auth_key": KEY,
        "database": "db1",
        "table": "Object",
        "is_partitioned": 1,
        "schema": schema,
        "director_table": "",
        "director_key": "objectId",
        "latitude_key": "decl",
        "longitude_key": "ra",
        "charset_name": "latin1",
        "collation_name": "latin1_general_ci",
        "version": 55,
    }
    assert child == {
        "auth_key": KEY,
        "database": "db1",
        "table": "Source",
        "is_partitioned": 1,
        "schema": [{"name": n, "type": t} for n, t in src],
        "director_table": "Object",
        "director_key": "objectId",
        "unique_primary_key": 0,
        "version": 55,
    }
    assert regular == {
        "auth_key": KEY,
        "database": "db1",
        "table": "Filter",
        "is_partitioned": 0,
        "schema": [{"name": "id", "type": "INT"}],
        "version": 55,
    }


def test_transaction_reads(fake_qserv):
    files = [CONTRIB, {**CONTRIB, "id": 4, "chunk": 58}]
    listing = {
        "databases": {
            "db1": {
                "is_published": 0,
                "num_chunks": 2,
                "transactions": [
                    {
                        "id": 7,
                        "database": "db1",
                        "state": "STARTED",
                        "context": {"run": "r1"},
                        "contrib": {"summary": {"num_rows": 4}, "files": files},
                    },
                    {"id": 8, "database": "db1", "state": "ABORTED"},
                ],
            },
            "db2": {"transactions": [{"id": 9, "database": "db2", "state": "STARTED"}]},
        }
    }
    fake_qserv.route("GET", "/ingest/trans", listing)
    fake_qserv.route(
        "GET",
        "/ingest/trans/7",
        {"databases": {"db1": {"transactions": listing["databases"]["db1"]["transactions"][:1]}}},
    )
    with client_for(fake_qserv) as qc:
        ts = qc.list_transactions("db1", include_context=True)
        t = qc.get_transaction(7, contributions=True, include_context=True)
    assert [(x.id, x.state) for x in ts] == [(7, "STARTED"), (8, "ABORTED")]  # only db1's
    assert t.context == {"run": "r1"} and t.contrib["summary"]["num_rows"] == 4
    assert [(c.id, c.chunk, c.num_rows_loaded) for c in t.contributions] == [(3, 57, 2), (4, 58, 2)]
    q = fake_qserv.calls("GET", "/ingest/trans")[0].query
    assert q == {"database": "db1", "include_context": "1", "version": "55"}
    q7 = fake_qserv.calls("GET", "/ingest/trans/7")[0].query
    assert (q7["contrib"], q7["contrib_long"], q7["include_context"]) == ("1", "1", "1")


def test_one_client_shared_by_threads(fake_qserv):
    def listing(rec):
        db = rec.query["database"]
        return {
            "databases": {db: {"transactions": [{"id": int(db[2:]), "database": db, "state": "STARTED"}]}}
        }

    fake_qserv.route("GET", "/ingest/trans", listing)
    qc = client_for(fake_qserv)
    results, errors = {}, []

    def work(i):
        try:
            for j in range(10):
                results[(i, j)] = qc.list_transactions(f"db{i * 100 + j}")[0].id
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and all(v == i * 100 + j for (i, j), v in results.items()) and len(results) == 60
    assert len(qc._clients) == 6  # one connection pool per thread
    qc.close()
    assert qc._clients == []


def test_dialect_values_are_checked():
    assert Dialect().form_fields()["fields_terminated_by"] == "\\t"
    with pytest.raises(ValueError, match="escaped notation"):
        Dialect(fields_terminated_by="\t")

"""Worker ingest services: /ingest/csv, /ingest/file (sync/async, retry, cancel), /ingest/data (§4, §6)."""

from __future__ import annotations

import httpx
import lsst.sphgeom
import pytest

from tests.emulator.api import Api, Source, rows, unique_db, wait_final

CHUNKS = sorted(lsst.sphgeom.Chunker(85, 12).getAllChunks())[2000:2010]
CONTRIB_KEYS = {
    "id",
    "transaction_id",
    "worker",
    "database",
    "table",
    "chunk",
    "overlap",
    "url",
    "charset_name",
    "async",
    "dialect_input",
    "http_method",
    "http_data",
    "http_headers",
    "max_retries",
    "num_failed_retries",
    "failed_retries",
    "num_bytes",
    "num_rows",
    "num_rows_loaded",
    "create_time",
    "start_time",
    "read_time",
    "load_time",
    "status",
    "tmp_file",
    "http_error",
    "system_error",
    "error",
    "retry_allowed",
    "max_num_warnings",
    "num_warnings",
    "warnings",
}


@pytest.fixture
def setup(qserv):
    """A fresh catalog with a director table ``Obj`` and a regular table ``Reg``, one open transaction."""
    api = Api(qserv)
    db = unique_db("wrk")
    api.create_db(db)
    api.create_director(db)
    api.create_regular(db)
    tid = api.begin(db)
    return api, db, tid


def contribs(api, tid, db):
    answer = api.get(
        f"/ingest/trans/{tid}",
        params={"contrib": 1, "contrib_long": 1, "include_warnings": 1, "include_retries": 1},
    )
    return answer["databases"][db]["transactions"][0]["contrib"]["files"]


def count(qserv, worker: str, db: str, table: str, partition: str | None = None) -> int:
    schema = f"qserv_w{worker.split('-')[1]}__{db}"
    part = f" PARTITION (`{partition}`)" if partition else ""
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM `{schema}`.`{table}`{part}")
        return cur.fetchone()[0]


def test_csv_happy_path_contribution_object(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[0]
    loc = api.allocate(tid, chunk)
    answer = api.ok(api.csv(loc["worker"], tid, "Obj", chunk, rows(1, 10, chunk), filename="chunk_x.txt"))
    c = answer["contrib"]
    assert set(c) == CONTRIB_KEYS
    assert (c["status"], c["num_rows"], c["num_rows_loaded"], c["num_warnings"], c["retry_allowed"]) == (
        "FINISHED",
        10,
        10,
        0,
        0,
    )
    assert c["num_bytes"] == len(rows(1, 10, chunk))
    assert c["url"] == "data-csv://127.0.0.1/chunk_x.txt" and c["async"] == 0
    assert c["dialect_input"] == {
        "fields_terminated_by": "\\t",
        "fields_enclosed_by": "\\0",
        "fields_escaped_by": "\\\\",
        "lines_terminated_by": "\\n",
    }
    assert c["charset_name"] == "latin1" and c["max_num_warnings"] == 64
    assert c["create_time"] <= c["start_time"] <= c["read_time"] <= c["load_time"]
    # rows sit in partition p<T> of Obj_<chunk>, every row tagged with the transaction id
    assert count(qserv, loc["worker"], db, f"Obj_{chunk}", f"p{tid}") == 10
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        wdb = f"qserv_w{loc['worker'].split('-')[1]}__{db}"
        cur.execute(f"SELECT DISTINCT qserv_trans_id FROM `{wdb}`.`Obj_{chunk}`")
        assert cur.fetchall() == ((tid,),)
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (wdb,))
        names = {r[0] for r in cur.fetchall()}
        assert {f"Obj_{chunk}", f"ObjFullOverlap_{chunk}"} <= names
        cur.execute(
            "SELECT PARTITION_NAME FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA=%s AND"
            " TABLE_NAME=%s ORDER BY PARTITION_ORDINAL_POSITION",
            (wdb, f"ObjFullOverlap_{chunk}"),
        )
        assert [r[0] for r in cur.fetchall()] == ["p0", f"p{tid}"]


def test_csv_dialect_warnings_and_nulls(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[1]
    loc = api.allocate(tid, chunk)
    data = b'1,0.5,1.5,"a,b",%d,1\n2,0.5,1.5,\\N,%d,1\n3,0.5\n' % (chunk, chunk)
    answer = api.ok(
        api.csv(
            loc["worker"],
            tid,
            "Obj",
            chunk,
            data,
            fields={"fields_terminated_by": ",", "fields_enclosed_by": '"'},
        )
    )
    c = answer["contrib"]
    assert c["num_rows"] == 3 and c["num_rows_loaded"] == 3
    assert c["num_warnings"] >= 1 and {"level", "code", "message"} == set(c["warnings"][0])
    assert 1261 in {w["code"] for w in c["warnings"]}  # the short third row
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        wdb = f"qserv_w{loc['worker'].split('-')[1]}__{db}"
        cur.execute(f"SELECT id, val FROM `{wdb}`.`Obj_{chunk}` ORDER BY id")
        assert cur.fetchall()[:2] == ((1, "a,b"), (2, None))
    bad = api.csv(loc["worker"], tid, "Obj", chunk, b"1\n", fields={"fields_terminated_by": "\t"})
    assert bad["success"] == 0
    assert bad["error"].endswith(
        "the value '\t' of the parameter 'fieldsTerminatedBy' is not allowed for the given parameter."
    )
    # an escaped newline stays inside its row
    escaped = api.ok(api.csv(loc["worker"], tid, "Obj", chunk, b"9\t0\t0\tx\\\ny\t%d\t1\n" % chunk))
    assert escaped["contrib"]["num_rows"] == 1 and escaped["contrib"]["num_warnings"] == 0


def test_csv_errors(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[2]
    loc = api.allocate(tid, chunk)
    worker = loc["worker"]
    other = next(w for w in qserv.worker_urls if w != worker)
    wrong = api.csv(other, tid, "Obj", chunk, rows(1, 2, chunk))
    assert wrong["success"] == 0
    assert wrong["error"] == (  # IngestFileSvc.cc:126-132, a std::invalid_argument
        "invalid parameters of the request, ex: INGEST-FILE-SVC openFile chunk"
        f" {chunk} of the UNPUBLISHED database '{db}' is not allocated to worker '{other}'"
    )
    bad_trans = api.csv(worker, 999999, "Obj", chunk, rows(1, 2, chunk))
    assert bad_trans["error"] == (  # IngestFileHttpSvcMod.cc:121, not caught there
        "operation failed due to: DatabaseServicesMySQL::_findTransactionImpl predicate=`id`=999999"
        " no such transaction"
    )
    url = qserv.worker_urls[worker] + "/ingest/csv"
    not_multipart = httpx.post(url, json={"auth_key": qserv.auth_key}).json()
    assert not_multipart["error"] == (  # FileUploadModule.cc:47-49
        "failed to pass authorization requirements, ex: INGEST-FILE-HTTP-SVC the request is not a"
        " multipart form data"
    )
    form = {
        "transaction_id": str(tid),
        "table": "Obj",
        "chunk": str(chunk),
        "overlap": "0",
        "auth_key": qserv.auth_key,
        "version": "55",
    }
    no_file = httpx.post(url, data=form, files={"x": (None, "y")}).json()
    assert no_file["error"] == "no file was sent in the request"
    two = httpx.post(url, data=form, files=[("a", ("a.txt", rows(1, 1, chunk))), ("b", ("b.txt", b"2\n"))])
    assert two.json()["error"] == "the service only allows one file per request"
    noauth = httpx.post(
        url, data={k: v for k, v in form.items() if k != "auth_key"}, files={"f": ("f.txt", b"1\n")}
    ).json()
    assert noauth["error"].startswith(
        "failed to pass authorization requirements, ex: INGEST-FILE-HTTP-SVC none of the"
    )
    old = httpx.post(url, data={**form, "version": "37"}, files={"f": ("f.txt", b"1\n")}).json()
    assert old["error_ext"] == {"min_version": 38, "max_version": 55}
    # a contribution into a transaction that is no longer active is recorded as CREATE_FAILED
    api.ok(api.end(tid))
    late = api.csv(worker, tid, "Obj", chunk, rows(1, 2, chunk))
    assert late["error"] == f"INGEST-FILE-HTTP-SVC onStartOfFile transactionId={tid} is not active"
    failed = [c for c in contribs(api, tid, db) if c["status"] != "FINISHED"]
    # IngestFileHttpSvcMod.cc:99-101 with DatabaseServicesMySQL.cc:1690: recorded retry-allowed
    assert [(c["status"], c["retry_allowed"]) for c in failed][-1] == ("CREATE_FAILED", 1)


def test_regular_table_goes_to_every_worker(qserv, setup, tmp_path):
    api, db, tid = setup
    path = tmp_path / "reg.tsv"
    path.write_bytes(b"1\tone\n2\ttwo\n3\\\tx\tthree\n")
    for loc in api.get("/ingest/regular", {"transaction_id": tid})["locations"]:
        answer = api.ok(
            api.post(
                "/ingest/file",
                {"transaction_id": tid, "table": "Reg", "chunk": 0, "overlap": 0, "url": f"file://{path}"},
                worker=loc["worker"],
            )
        )
        assert answer["contrib"]["num_rows_loaded"] == 3 and answer["contrib"]["url"] == f"file://{path}"
        assert count(qserv, loc["worker"], db, "Reg", f"p{tid}") == 3


def test_file_read_failure_retry_and_rules(qserv, setup, tmp_path):
    api, db, tid = setup
    chunk = CHUNKS[3]
    loc = api.allocate(tid, chunk)
    path = tmp_path / "late.tsv"
    body = {
        "transaction_id": tid,
        "table": "Obj",
        "chunk": chunk,
        "overlap": 0,
        "url": f"file://{path}",
        "max_retries": 2,
    }
    failed = api.post("/ingest/file", body, worker=loc["worker"])
    assert failed["success"] == 0 and "failed to open the file" in failed["error"]
    assert failed["error_ext"] == {"http_error": 0, "system_error": 2, "retry_allowed": 1}
    c = contribs(api, tid, db)[-1]
    assert (c["status"], c["retry_allowed"], c["num_failed_retries"], len(c["failed_retries"])) == (
        "READ_FAILED",
        1,
        2,
        2,
    )
    other = next(w for w in qserv.worker_urls if w != loc["worker"])
    elsewhere = api.put(f"/ingest/file/{c['id']}", worker=other)
    assert elsewhere["error"] == (  # IngestRequest.cc:204-208
        f"invalid parameters of the request, ex: contribution id={c['id']} was originally processed by"
        f" worker '{loc['worker']}', while this retry operation was request at worker '{other}'."
    )
    path.write_bytes(rows(1, 4, chunk))
    retried = api.ok(api.put(f"/ingest/file/{c['id']}", worker=loc["worker"]))
    assert retried["contrib"]["status"] == "FINISHED" and retried["contrib"]["num_rows_loaded"] == 4
    assert retried["contrib"]["num_failed_retries"] == 3
    again = api.put(f"/ingest/file/{c['id']}", worker=loc["worker"])
    assert again["error"] == (  # IngestRequest.cc:198-203
        f"invalid parameters of the request, ex: contribution id={c['id']} is not in state READ_FAILED,"
        " the actual state is FINISHED."
    )
    unsupported = api.post("/ingest/file", {**body, "url": "ftp://x/y"}, worker=loc["worker"])
    assert unsupported["error"] == (  # http::Url (Url.cc:64-162)
        "invalid parameters of the request, ex: Url::_translate: invalid url 'ftp://x/y'"
    )
    created = contribs(api, tid, db)[-1]
    assert (created["status"], created["retry_allowed"]) == ("CREATE_FAILED", 0)  # IngestRequest.cc:300-306


def test_file_over_http_and_async(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[4]
    loc = api.allocate(tid, chunk)
    source = Source(rows(1, 6, chunk))
    try:
        answer = api.ok(
            api.post(
                "/ingest/file-async",
                {
                    "transaction_id": tid,
                    "table": "Obj",
                    "chunk": chunk,
                    "overlap": 0,
                    "url": source.base + "/data.tsv",
                },
                worker=loc["worker"],
            )
        )
        cid = answer["contrib"]["id"]
        assert answer["contrib"]["async"] == 1
        status = wait_final(api, loc["worker"], cid)
        assert status["status"] == "FINISHED" and status["num_rows_loaded"] == 6
        listed = api.get(f"/ingest/file-async/trans/{tid}", worker=loc["worker"])["contribs"]
        assert [c["id"] for c in listed] == [cid]
        missing = api.post(
            "/ingest/file",
            {
                "transaction_id": tid,
                "table": "Obj",
                "chunk": chunk,
                "overlap": 0,
                "url": source.base + "/missing",
                "max_retries": 0,
            },
            worker=loc["worker"],
        )
        assert missing["error_ext"] == {"http_error": 404, "system_error": 0, "retry_allowed": 1}
        unknown = api.get("/ingest/file-async/987654", worker=loc["worker"])
        assert unknown["error"] == (  # IngestRequestMgr.cc:247
            "operation failed due to: INGEST-REQUEST-MGR  find request 987654 was not found"
        )
    finally:
        source.close()


def test_async_cancel_of_queued_request(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[5]
    loc = api.allocate(tid, chunk)
    source = Source(rows(1, 3, chunk))
    body = {
        "transaction_id": tid,
        "table": "Obj",
        "chunk": chunk,
        "overlap": 0,
        "url": source.base + "/block",
    }
    try:
        # the worker's two async threads block on /block, so the third request stays queued
        ids = [
            api.ok(api.post("/ingest/file-async", body, worker=loc["worker"]))["contrib"]["id"]
            for _ in range(3)
        ]
        cancelled = api.ok(api.delete(f"/ingest/file-async/{ids[2]}", worker=loc["worker"]))["contrib"]
        assert (cancelled["status"], cancelled["retry_allowed"]) == ("CANCELLED", 1)
        source.release.set()
        finals = [wait_final(api, loc["worker"], i)["status"] for i in ids]
        assert finals == ["FINISHED", "FINISHED", "CANCELLED"]
        assert count(qserv, loc["worker"], db, f"Obj_{chunk}", f"p{tid}") == 6
    finally:
        source.close()


def test_ingest_data_json_rows(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[6]
    loc = api.allocate(tid, chunk)
    body = {
        "transaction_id": tid,
        "table": "Obj",
        "chunk": chunk,
        "overlap": 0,
        "rows": [[1, 0.123456789, "1.25", "v", chunk, 3], [2, 2.5, "3", True, chunk, 4]],
    }
    answer = api.ok(api.post("/ingest/data", body, worker=loc["worker"]))
    c = answer["contrib"]
    assert c["url"] == "data-json://127.0.0.1/" and c["num_rows_loaded"] == 2
    assert c["dialect_input"]["fields_enclosed_by"] == '"'
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        wdb = f"qserv_w{loc['worker'].split('-')[1]}__{db}"
        cur.execute(f"SELECT id, ra, val FROM `{wdb}`.`Obj_{chunk}` ORDER BY id")
        assert cur.fetchall() == ((1, 0.123457, "v"), (2, 2.5, "1"))  # floats cut to 6 decimals
    errors = {
        "a collection of rows is missing in the request": {k: v for k, v in body.items() if k != "rows"},
        "a collection of rows found in the request is not the JSON array": {**body, "rows": {}},
        "a collection of rows in the request is empty": {**body, "rows": []},
        "the row size in the request doesn't match the table schema": {**body, "rows": [[1, 2]]},
        "unsupported type name 'null' found at row 0 and column 3 where the boolean, numeric or string"
        " type was expected": {
            **body,
            "rows": [[1, 1, 1, None, chunk, 1]],
        },
    }
    for message, bad in errors.items():
        answer = api.post("/ingest/data", bad, worker=loc["worker"])
        assert answer["success"] == 0 and answer["error"].endswith(message), (message, answer)
    old = api.post("/ingest/data", {**body, "version": 34}, worker=loc["worker"])
    assert old["error_ext"] == {"min_version": 35, "max_version": 55}


def test_transaction_aborted_while_reading(qserv, setup):
    """An abort that lands while a contribution is still being read fails it at the load stage."""
    api, db, tid = setup
    chunk = CHUNKS[7]
    loc = api.allocate(tid, chunk)
    source = Source(rows(1, 3, chunk))
    try:
        body = {
            "transaction_id": tid,
            "table": "Obj",
            "chunk": chunk,
            "overlap": 0,
            "url": source.base + "/block",
        }
        cid = api.ok(api.post("/ingest/file-async", body, worker=loc["worker"]))["contrib"]["id"]
        api.ok(api.end(tid, abort=True))
        source.release.set()
        final = wait_final(api, loc["worker"], cid)
        assert (final["status"], final["retry_allowed"]) == ("LOAD_FAILED", 0)
        assert final["error"] == (  # IngestFileSvc.cc:173-178
            f"INGEST-FILE-SVC loadDataIntoTable transaction {tid} changed state to ABORTED while the input"
            " file was being prepared for the ingest."
        )
        with qserv.czar_connect() as conn, conn.cursor() as cur:  # loading never began: no chunk table
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME=%s AND TABLE_SCHEMA LIKE %s",
                (f"Obj_{chunk}", f"%\\_\\_{db}"),
            )
            assert cur.fetchone() == (0,)
    finally:
        source.close()


def test_cancel_all_async_of_a_transaction(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[8]
    loc = api.allocate(tid, chunk)
    source = Source(rows(1, 3, chunk))
    try:
        body = {
            "transaction_id": tid,
            "table": "Obj",
            "chunk": chunk,
            "overlap": 0,
            "url": source.base + "/block",
        }
        ids = [
            api.ok(api.post("/ingest/file-async", body, worker=loc["worker"]))["contrib"]["id"]
            for _ in range(4)
        ]
        answer = api.ok(api.delete(f"/ingest/file-async/trans/{tid}", worker=loc["worker"]))
        assert [c["id"] for c in answer["contribs"]] == ids
        source.release.set()
        finals = [wait_final(api, loc["worker"], i)["status"] for i in ids]
        assert finals == ["CANCELLED"] * 4  # reading ones stop at the next checkpoint, queued ones at once
    finally:
        source.close()

"""Probes of issue 17: raw HTTP requests to the stand-in, each asserting the answer Qserv's source gives
(commit 5314826; the file and lines that decide it are named at each probe)."""

from __future__ import annotations

import httpx
import lsst.sphgeom
import pytest

from tests.emulator.api import VERSION, Api, rows, unique_db

CHUNKS = sorted(lsst.sphgeom.Chunker(85, 12).getAllChunks())[5000:5010]
REF_MATCH_SCHEMA = [
    {"name": "oid1", "type": "BIGINT"},
    {"name": "oid2", "type": "BIGINT"},
    {"name": "flags", "type": "INT"},
    {"name": "chunkId", "type": "INT"},
    {"name": "subChunkId", "type": "INT"},
]


def post(qserv, path: str, body: dict, *, worker: str | None = None, params: dict | None = None) -> dict:
    """A JSON request exactly as a Qserv client sends it (Content-Type: application/json), keyed."""
    base = qserv.worker_urls[worker] if worker else qserv.controller_url
    resp = httpx.post(base + path, json={"auth_key": qserv.auth_key, **body}, params=params, timeout=60)
    assert resp.status_code == 200  # Qserv answers errors with HTTP 200 and success=0
    return resp.json()


def table_body(db: str, name: str, schema: list, **extra) -> dict:
    return {"database": db, "table": name, "version": VERSION, "schema": schema, **extra}


def director(db: str, name: str = "Obj", **extra) -> dict:
    schema = [
        {"name": "id", "type": "BIGINT NOT NULL"},
        {"name": "ra", "type": "DOUBLE"},
        {"name": "decl", "type": "DOUBLE"},
        {"name": "chunkId", "type": "INT"},
        {"name": "subChunkId", "type": "INT"},
        *extra.pop("more", []),
    ]
    return table_body(
        db,
        name,
        schema,
        is_partitioned=1,
        director_key="id",
        latitude_key="decl",
        longitude_key="ra",
        **extra,
    )


@pytest.fixture
def db(qserv):
    name = unique_db("probe")
    Api(qserv).create_db(name)
    return name


# ------------------------------------------------------------------------------- POST /ingest/table
@pytest.mark.parametrize("ctype", ["TEXT", "MEDIUMBLOB", "tinytext NOT NULL"])
def test_director_refuses_any_blob_or_text_column(qserv, db, ctype):
    """HttpIngestModule.cc:106-113 (validateColumnType), applied to every column at :590-596."""
    answer = post(qserv, "/ingest/table", director(db, more=[{"name": "note", "type": ctype}]))
    assert answer["success"] == 0
    assert answer["error"] == (
        f"the prohibited type '{ctype}' detected in a definition of the column 'note' of the director table"
    )
    # the same column is fine in a regular table
    regular = table_body(db, "Reg", [{"name": "note", "type": ctype}], is_partitioned=0)
    assert post(qserv, "/ingest/table", regular)["success"] == 1


def test_ref_match_needs_both_directors(qserv, db):
    """ConfigTable.h:128-131: director_table2 alone leaves director_table empty, which makes a director,
    sanitized of its second director (ConfigDatabase.cc:381-385) and then refused for its missing key
    (:241-242); both make a RefMatch table, whose spatial keys sanitize drops (:386-389)."""
    assert post(qserv, "/ingest/table", director(db))["success"] == 1
    assert post(qserv, "/ingest/table", director(db, "Obj2"))["success"] == 1
    alone = post(
        qserv,
        "/ingest/table",
        table_body(
            db, "M1", REF_MATCH_SCHEMA, is_partitioned=1, director_table2="Obj2", director_key2="oid2"
        ),
    )
    assert alone["error"].startswith(
        "invalid parameters of the request, ex: DatabaseInfo::validate the director table definition"
        f" requires a valid director key [database={db}] {{"
    )
    both = post(
        qserv,
        "/ingest/table",
        table_body(
            db,
            "M2",
            REF_MATCH_SCHEMA,
            is_partitioned=1,
            director_table="Obj",
            director_key="oid1",
            director_table2="Obj2",
            director_key2="oid2",
            flag="flags",
            ang_sep=0.01,
            latitude_key="ra",
            longitude_key="decl",
        ),
    )
    table = next(t for t in both["database"]["tables"] if t["name"] == "M2")
    assert (table["is_ref_match"], table["is_director"], table["is_partitioned"]) == (1, 0, 1)
    assert (
        table["director_table"],
        table["director_key"],
        table["director_table2"],
        table["director_key2"],
    ) == (
        "Obj",
        "oid1",
        "Obj2",
        "oid2",
    )
    assert (table["flag"], table["ang_sep"], table["latitude_key"], table["longitude_key"]) == (
        "flags",
        0.01,
        "",
        "",
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [  # ConfigDatabase.cc:257-302 (RefMatch), ConfigTable.cc:51-52 (DirectorTableRef)
        ({"flag": "", "ang_sep": 0.01}, "the RefMatch table requires the special column to store flags"),
        (
            {"flag": "flags", "ang_sep": 0},
            "the RefMatch table requires the angular separation to be more than 0",
        ),
        (  # DirectorTableRef's operator== compares the key too (ConfigTable.cc:72-75)
            {"flag": "flags", "ang_sep": 0.01, "director_table2": "Obj", "director_key2": "oid1"},
            "the director tables of the RefMatch table can't be the same",
        ),
        ({"flag": "flags", "ang_sep": 0.01, "director_table2": "Nope"}, "non-existing director 'Nope'"),
        (
            {"flag": "nope", "ang_sep": 0.01},
            "no matching column 'nope' found in schema for parameter 'flagColName'",
        ),
    ],
)
def test_ref_match_validation(qserv, db, extra, message):
    post(qserv, "/ingest/table", director(db))
    post(qserv, "/ingest/table", director(db, "Obj2"))
    body = {
        "director_table": "Obj",
        "director_key": "oid1",
        "director_table2": "Obj2",
        "director_key2": "oid2",
    }
    answer = post(
        qserv, "/ingest/table", table_body(db, "M", REF_MATCH_SCHEMA, is_partitioned=1, **{**body, **extra})
    )
    assert answer["error"].startswith("invalid parameters of the request, ex: DatabaseInfo::validate ")
    assert message in answer["error"]


def test_director_key2_without_table2_key_is_refused(qserv, db):
    """ConfigTable.cc:51-52: a table named without its key column."""
    answer = post(
        qserv,
        "/ingest/table",
        table_body(db, "M", REF_MATCH_SCHEMA, is_partitioned=1, director_table2="Obj2", director_key2=""),
    )
    assert answer["error"] == (
        "invalid parameters of the request, ex: DirectorTableRef: primary key column name can not be empty"
    )


def test_regular_table_is_sanitized(qserv, db):
    """ConfigDatabase.cc:413-419: a regular table keeps none of the director or spatial attributes."""
    body = table_body(
        db,
        "Reg",
        [{"name": "a", "type": "INT"}],
        is_partitioned=0,
        director_table="Obj",
        director_key="a",
        latitude_key="a",
        longitude_key="a",
        flag="a",
        ang_sep=1.5,
    )
    table = post(qserv, "/ingest/table", body)["database"]["tables"][0]
    kept = {k: table[k] for k in ("director_table", "director_key", "latitude_key", "longitude_key", "flag")}
    assert kept == dict.fromkeys(kept, "") and table["ang_sep"] == 0 and table["is_director"] == 0


def test_director_database_name_stays_empty_unless_given(qserv, db):
    """ConfigTable.cc:40-48: the database part is what precedes a '.' in director_table, nothing else."""
    post(qserv, "/ingest/table", director(db))
    dependent = [
        {"name": "oid", "type": "BIGINT"},
        {"name": "chunkId", "type": "INT"},
        {"name": "subChunkId", "type": "INT"},
    ]
    for name, spec, database_name in (("Dep1", "Obj", ""), ("Dep2", f"{db}.Obj", db)):
        body = table_body(db, name, dependent, is_partitioned=1, director_table=spec, director_key="oid")
        table = next(t for t in post(qserv, "/ingest/table", body)["database"]["tables"] if t["name"] == name)
        assert (table["director_table"], table["director_database_name"], table["director_table_name"]) == (
            spec,
            database_name,
            "Obj",
        )


def test_duplicate_table_and_published_database(qserv, db):
    """HttpIngestModule.cc:559-560: 'already published' is checked first, then the bare duplicate error."""
    assert post(qserv, "/ingest/table", director(db))["success"] == 1
    assert post(qserv, "/ingest/table", director(db))["error"] == "table already exists"
    api = Api(qserv)
    tid = api.begin(db)
    loc = api.allocate(tid, CHUNKS[0])
    api.ok(api.csv(loc["worker"], tid, "Obj", CHUNKS[0], b"1\t0\t0\t%d\t1\n" % CHUNKS[0]))
    api.ok(api.end(tid))
    api.ok(api.put(f"/ingest/database/{db}"))
    assert post(qserv, "/ingest/table", director(db))["error"] == "the database is already published"


@pytest.mark.parametrize(
    ("schema", "message"),
    [({"a": 1}, "table schema is not defined as an array"), (None, "table schema is empty")],
)
def test_schema_must_be_an_array(qserv, db, schema, message):
    """HttpIngestModule.cc:563-564."""
    body = {"database": db, "table": "T", "is_partitioned": 0, "schema": schema, "version": VERSION}
    assert post(qserv, "/ingest/table", body)["error"] == message


# ------------------------------------------------------------------------------- POST /ingest/database
def test_negative_overlap_is_a_bare_error(qserv):
    """HttpIngestModule.cc:227: an http::Error, so no prefix."""
    body = {"database": unique_db("neg"), "num_stripes": 85, "num_sub_stripes": 12, "overlap": -0.1}
    answer = post(qserv, "/ingest/database", {**body, "version": VERSION})
    assert (answer["success"], answer["error"]) == (0, "overlap can't have a negative value")


# ------------------------------------------------------------------------------- versions
def test_non_numeric_version_in_query_is_refused_even_with_a_good_body(qserv):
    """src/http/BaseModule.cc:73-82: the query's version is parsed first, the body's only overrides it."""
    body = {
        "database": unique_db("ver"),
        "num_stripes": 85,
        "num_sub_stripes": 12,
        "overlap": 0.1,
        "version": 55,
    }
    answer = post(qserv, "/ingest/database", body, params={"version": "abc"})
    assert answer["error"] == "The optional parameter version is not a number."
    assert answer["error_ext"] == {"min_version": 12, "max_version": 55}
    assert post(qserv, "/ingest/database", body, params={"version": "54"})["success"] == 1


# ------------------------------------------------------------------------------- worker services
@pytest.fixture
def trans(qserv, db):
    """An open transaction on a director table, with one chunk placed; also a worker not holding it."""
    api = Api(qserv)
    post(qserv, "/ingest/table", director(db))
    tid = api.begin(db)
    loc = api.allocate(tid, CHUNKS[1])
    other = next(w for w in qserv.worker_urls if w != loc["worker"])
    return api, tid, loc["worker"], other


def contributions(api, db, tid) -> list[dict]:
    answer = api.get(f"/ingest/trans/{tid}", params={"contrib": 1, "contrib_long": 1})
    return answer["databases"][db]["transactions"][0]["contrib"]["files"]


def csv_upload(qserv, worker: str, fields: dict, data: bytes | None = b"1\t0\t0\t0\t0\n") -> dict:
    files = {"file": ("part.txt", data)} if data is not None else {"x": (None, "y")}
    resp = httpx.post(qserv.worker_urls[worker] + "/ingest/csv", data=fields, files=files, timeout=60)
    assert resp.status_code == 200
    return resp.json()


def test_csv_retry_allowed_on_create_and_start_failures(qserv, db, trans):
    """IngestFileHttpSvcMod.cc:99-101 keeps retry allowed until loading; DatabaseServicesMySQL.cc:1686-1690
    records it on CREATE_FAILED; the START_FAILED path (:163-180) keeps it too."""
    api, tid, worker, other = trans
    form = {"auth_key": qserv.auth_key, "transaction_id": str(tid), "table": "Obj", "chunk": str(CHUNKS[1])}
    misplaced = csv_upload(qserv, other, {**form, "overlap": "0"})
    # IngestFileSvc.cc:126-132: a std::invalid_argument, hence the prefix
    assert misplaced["error"] == (
        "invalid parameters of the request, ex: INGEST-FILE-SVC openFile chunk"
        f" {CHUNKS[1]} of the UNPUBLISHED database '{db}' is not allocated to worker '{other}'"
    )
    api.ok(api.end(tid))
    late = csv_upload(qserv, worker, {**form, "overlap": "0"})
    assert late["error"] == f"INGEST-FILE-HTTP-SVC onStartOfFile transactionId={tid} is not active"
    recorded = [(c["status"], c["retry_allowed"]) for c in contributions(api, db, tid)]
    assert recorded == [("START_FAILED", 1), ("CREATE_FAILED", 1)]


def test_file_retry_allowed_as_ingest_request_sets_it(qserv, db, trans, tmp_path):
    """IngestRequest.cc:405-432: openFile failures are START_FAILED with retry allowed. Where the source
    differs from issue 17's list: a CREATE_FAILED of /ingest/file records retry_allowed=0 (:300-306)."""
    api, tid, worker, other = trans
    path = tmp_path / "part.txt"
    path.write_bytes(rows(1, 3, CHUNKS[1]))
    body = {
        "transaction_id": tid,
        "table": "Obj",
        "chunk": CHUNKS[1],
        "overlap": 0,
        "url": f"file://{path}",
        "version": 55,
    }
    misplaced = post(qserv, "/ingest/file", body, worker=other)
    assert misplaced["error"] == (
        "invalid parameters of the request, ex: INGEST-FILE-SVC openFile chunk"
        f" {CHUNKS[1]} of the UNPUBLISHED database '{db}' is not allocated to worker '{other}'"
    )
    api.ok(api.end(tid))
    late = post(qserv, "/ingest/file", body, worker=worker)
    assert (
        late["error"] == f"operation failed due to: transactionId={tid} is not active"
    )  # a std::logic_error
    recorded = [(c["status"], c["retry_allowed"], c["error"]) for c in contributions(api, db, tid)]
    assert recorded[0][:2] == ("START_FAILED", 1)
    assert recorded[1] == (
        "CREATE_FAILED",
        0,
        f"INGEST-REQUEST  IngestRequest transactionId={tid} is not active",
    )


def test_data_rows_on_a_misplaced_chunk(qserv, db, trans):
    """IngestDataHttpSvcMod.cc:197-207: openFile's failure is recorded START_FAILED (retry allowed, :118-120)
    and answered as an http::Error, without prefix."""
    api, tid, worker, other = trans
    body = {
        "transaction_id": tid,
        "table": "Obj",
        "chunk": CHUNKS[1],
        "overlap": 0,
        "rows": [[1, 0, 0, 0, 0]],
    }
    answer = post(qserv, "/ingest/data", {**body, "version": 55}, worker=other)
    assert answer["error"] == (
        f"INGEST-FILE-SVC openFile chunk {CHUNKS[1]} of the UNPUBLISHED database '{db}' is not allocated to"
        f" worker '{other}'"
    )
    assert [(c["status"], c["retry_allowed"]) for c in contributions(api, db, tid)] == [("START_FAILED", 1)]


def test_csv_not_multipart_is_an_authorization_error(qserv, trans):
    """FileUploadModule.cc:47-49: an http::AuthError, its text starting with the module's context."""
    _, _, worker, _ = trans
    resp = httpx.post(qserv.worker_urls[worker] + "/ingest/csv", json={"auth_key": qserv.auth_key}).json()
    assert resp["error"] == (
        "failed to pass authorization requirements, ex: INGEST-FILE-HTTP-SVC the request is not a multipart"
        " form data"
    )


def test_csv_no_file_wins_over_a_bad_key(qserv, trans):
    """FileUploadModule.cc:60-66: keys are checked when a file part starts, so without one the answer is
    IngestFileHttpSvcMod::onEndOfBody's (:227-231)."""
    _, tid, worker, _ = trans
    fields = {"auth_key": "wrong", "transaction_id": str(tid), "table": "Obj", "chunk": "0", "overlap": "0"}
    assert csv_upload(qserv, worker, fields, data=None)["error"] == "no file was sent in the request"
    assert csv_upload(qserv, worker, fields)["error"] == (
        "failed to pass authorization requirements, ex: INGEST-FILE-HTTP-SVC authorization key 'auth_key' in"
        " the request doesn't match the one in server configuration"
    )


# ------------------------------------------------------------------------------- transactions
def test_begin_and_end_answers_carry_context_and_log(qserv, db):
    """HttpIngestTransModule.cc:316 and :494 answer transaction.toJson() of a record read with context and
    log (DatabaseServicesMySQL.cc:1346-1350, 1400-1402)."""
    post(qserv, "/ingest/table", director(db))
    begun = post(qserv, "/ingest/trans", {"database": db, "context": {"run": "r1"}, "version": 55})
    t = begun["databases"][db]["transactions"][0]
    assert t["context"] == {"run": "r1"}
    assert [(e["name"], e["data"]) for e in t["log"]] == [
        ("begin add dir idx part", {"table": "Obj"}),
        ("end add dir idx part", {"table": "Obj", "success": 1, "error": ""}),
    ]
    resp = httpx.put(
        f"{qserv.controller_url}/ingest/trans/{t['id']}",
        params={"abort": 0, "version": 55},
        json={"auth_key": qserv.auth_key, "context": {"run": "r2"}},
    ).json()
    ended = resp["databases"][db]["transactions"][0]
    assert (ended["state"], ended["context"]) == ("FINISHED", {"run": "r2"})
    assert [e["name"] for e in ended["log"]][2:] == ["begin bld dir idx", "end bld dir idx"]


def test_unknown_database_uses_the_generic_prefix(qserv):
    """Configuration.cc:880-886 throws ConfigUnknownDatabase, a std::runtime_error (Module.cc:50-51)."""
    answer = post(qserv, "/ingest/trans", {"database": "no_such_db", "version": 55})
    assert answer["error"] == "operation failed due to: CONFIG  _databaseInfo no such database 'no_such_db'."


# ------------------------------------------------------------------------------- director index
def test_index_of_a_table_that_is_not_a_director(qserv, db):
    """HttpDirectorIndexModule.cc:82-87."""
    post(qserv, "/ingest/table", table_body(db, "Reg", [{"name": "a", "type": "INT"}], is_partitioned=0))
    answer = post(qserv, "/ingest/index/secondary", {"database": db, "director_table": "Reg", "version": 55})
    assert answer["error"] == f"table 'Reg' is not configured as a director table in database '{db}'"


def test_index_exists_without_rebuild_is_a_plain_failure(qserv, db):
    """HttpDirectorIndexModule.cc:149-166: CREATE TABLE without IF NOT EXISTS, so MySQL's error, through
    Connection::execute (DatabaseMySQL.cc:185-187), as a std::runtime_error."""
    api = Api(qserv)
    post(qserv, "/ingest/table", director(db))
    tid = api.begin(db)
    loc = api.allocate(tid, CHUNKS[2])
    api.ok(api.csv(loc["worker"], tid, "Obj", CHUNKS[2], b"7\t0\t0\t%d\t1\n" % CHUNKS[2]))
    api.ok(api.end(tid))
    api.ok(api.put(f"/ingest/database/{db}"))
    body = {"database": db, "director_table": "Obj", "version": 55}
    answer = post(qserv, "/ingest/index/secondary", {**body, "rebuild": 0})
    assert answer["error"].startswith("operation failed due to: Connection[")
    assert answer["error"].endswith("already exists, errno: 1050") and answer["error_ext"] == {}
    assert post(qserv, "/ingest/index/secondary", {**body, "rebuild": 1})["success"] == 1


def test_table_stats_one_counter_per_key_kept_across_rescans(qserv):
    """``saveTableRowStats`` upserts on the UNIQUE KEY (database, table, transaction_id, chunk, is_overlap)
    of ``stats_table_rows`` (DatabaseServicesMySQL.cc:2278-2306, schema migrate-5-to-6.sql): a regular
    table's rows on every worker give one counter, and a rescan never deletes a counter, so one of a
    transaction aborted since stays until ``DELETE /ingest/table-stats`` (``deleteTableRowStats``)."""
    api = Api(qserv)
    db = unique_db("stk")
    api.create_db(db)
    api.create_regular(db)
    scan = {"database": db, "table": "Reg", "row_counters_state_update_policy": "ENABLED", "force_rescan": 1}

    def load(tid: int, n: int) -> None:
        for loc in api.ok(api.get("/ingest/regular", {"transaction_id": tid}))["locations"]:
            data = b"".join(f"{i}\tr{i}\n".encode() for i in range(n))
            api.ok(api.csv(loc["worker"], tid, "Reg", 0, data))

    def counters() -> set[tuple[int, int]]:
        return {
            (e["transaction_id"], e["num_rows"]) for e in api.get(f"/ingest/table-stats/{db}/Reg")["entries"]
        }

    kept = api.begin(db)
    load(kept, 3)
    api.ok(api.end(kept))
    gone = api.begin(db)
    load(gone, 5)
    api.ok(api.post("/ingest/table-stats", scan))
    assert len(api.get(f"/ingest/table-stats/{db}/Reg")["entries"]) == 2  # 3 replicas, one counter each
    assert counters() == {(kept, 3), (gone, 5)}
    api.ok(api.end(gone, abort=True))
    api.ok(api.post("/ingest/table-stats", scan))
    assert counters() == {(kept, 3), (gone, 5)}  # kept: a rescan only adds or updates
    api.ok(api.delete(f"/ingest/table-stats/{db}/Reg", {}))
    api.ok(api.post("/ingest/table-stats", scan))
    assert counters() == {(kept, 3)}

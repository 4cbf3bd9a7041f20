"""Controller services: databases, tables, transactions and their state machine, chunk allocation (§3, §5)."""

from __future__ import annotations

import lsst.sphgeom

from tests.emulator.api import Api, rows, unique_db

CHUNKS = sorted(lsst.sphgeom.Chunker(85, 12).getAllChunks())[1000:1012]


# ---------------------------------------------------------------- databases
def test_database_registration_and_errors(qserv):
    api = Api(qserv)
    db = unique_db("dbreg")
    answer = api.create_db(db, local_load_secondary_index=1)
    assert answer["database"]["database"] == db and answer["database"]["is_published"] == 0
    assert answer["database"]["family_name"] == "layout_85_12" and answer["database"]["tables"] == []
    # HttpIngestModule.cc:217-219
    assert answer["warning"] == (
        "Option 'local_load_secondary_index' is obsolete as of the version 20 of the API."
    )
    dup = api.post(
        "/ingest/database", {"database": db, "num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.1}
    )
    assert dup["success"] == 0
    # Configuration.cc:561-564: a std::logic_error, after the worker job
    assert dup["error"] == f"operation failed due to: CONFIG  addDatabase the database '{db}' already exists."
    neg = api.post(
        "/ingest/database",
        {"database": unique_db("neg"), "num_stripes": 85, "num_sub_stripes": 12, "overlap": -1},
    )
    assert neg["error"] == "overlap can't have a negative value"  # HttpIngestModule.cc:227, http::Error
    listed = api.get("/ingest/database")["databases"]
    assert {"name": db, "family": "layout_85_12", "is_published": 0} in listed
    # the family is shared by any database with the same stripes/sub-stripes, overlap not compared
    other = unique_db("dbreg")
    assert api.create_db(other, overlap=0.5)["database"]["family_name"] == "layout_85_12"
    families = api.get("/replication/config")["config"]["database_families"]
    assert [f["overlap"] for f in families if f["name"] == "layout_85_12"] == [0.01667] or families
    # every worker got the database
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (f"qserv\\_w%\\_\\_{db}",))
        assert len(cur.fetchall()) == len(qserv.worker_urls)


def test_list_databases_filters(qserv):
    api = Api(qserv)
    db = unique_db("lst")
    api.create_db(db, stripes=10, sub=3)
    answer = api.get("/ingest/database", {"family": "layout_10_3", "all": 0, "published": 0})
    assert [d["name"] for d in answer["databases"]] == [db]
    answer = api.get("/ingest/database", {"family": "layout_10_3", "all": 0})
    assert answer["success"] == 0 and "published" in answer["error"]


# ---------------------------------------------------------------- tables
def test_table_registration_and_validation(qserv):
    api = Api(qserv)
    db = unique_db("tbl")
    api.create_db(db)
    answer = api.create_director(db)
    table = answer["database"]["tables"][0]
    assert table["columns"][0] == {"name": "qserv_trans_id", "type": "INT NOT NULL"}
    assert (table["is_director"], table["is_partitioned"], table["unique_primary_key"]) == (1, 1, 1)
    assert (table["charset_name"], table["collation_name"]) == ("latin1", "latin1_general_ci")
    assert api.create_director(db, table="Obj2")["success"] == 1
    dup = api.post(
        "/ingest/table",
        {"database": db, "table": "Obj", "is_partitioned": 0, "schema": [{"name": "a", "type": "INT"}]},
    )
    assert dup["success"] == 0 and dup["error"].endswith("table already exists")
    reserved = api.post(
        "/ingest/table",
        {
            "database": db,
            "table": "R",
            "is_partitioned": 0,
            "schema": [{"name": "qserv_trans_id", "type": "INT"}],
        },
    )
    assert reserved["error"].endswith("reserved column 'qserv_trans_id' is not allowed")
    missing = api.post(
        "/ingest/table",
        {
            "database": db,
            "table": "D",
            "is_partitioned": 1,
            "director_table": "",
            "director_key": "nope",
            "latitude_key": "a",
            "longitude_key": "a",
            "schema": [{"name": "a", "type": "INT"}],
        },
    )
    # ConfigDatabase.cc:201-205, 347-354: the role is Qserv's, the table JSON follows the message
    assert missing["error"].startswith(
        "invalid parameters of the request, ex: DatabaseInfo::validate no matching column 'nope' found in"
        f" schema for parameter 'directorTable.primaryKeyColumn()' [database={db}] {{"
    )
    nosub = api.post(
        "/ingest/table",
        {
            "database": db,
            "table": "D",
            "is_partitioned": 1,
            "director_table": "",
            "director_key": "a",
            "latitude_key": "a",
            "longitude_key": "a",
            "schema": [{"name": "a", "type": "INT"}],
        },
    )
    assert (
        "no matching column 'subChunkId' found in schema for parameter 'subChunkIdColName'"
        in (nosub["error"])
    )
    notobj = api.post("/ingest/table", {"database": db, "table": "D", "is_partitioned": 0, "schema": ["a"]})
    assert notobj["error"] == "columns definitions in table schema are not JSON objects"
    old = api.post(
        "/ingest/table",
        {
            "database": db,
            "table": "D",
            "is_partitioned": 0,
            "charset_name": "utf8",
            "schema": [{"name": "a", "type": "INT"}],
            "version": 48,
        },
    )
    assert old["error_ext"] == {"min_version": 49, "max_version": 55}
    assert (
        api.post("/ingest/table", {"database": "nosuch", "table": "T", "is_partitioned": 0, "schema": []})[
            "error"
        ]
        == "operation failed due to: CONFIG  _databaseInfo no such database 'nosuch'."
    )
    dep = api.post(
        "/ingest/table",
        {
            "database": db,
            "table": "Dep",
            "is_partitioned": 1,
            "director_table": "Obj",
            "director_key": "oid",
            "schema": [
                {"name": "oid", "type": "BIGINT"},
                {"name": "chunkId", "type": "INT"},
                {"name": "subChunkId", "type": "INT"},
            ],
        },
    )
    assert dep["success"] == 1
    listed = api.get(f"/ingest/table/{db}")["tables"]
    assert listed == [  # HttpIngestModule.cc:498-504 over a std::map: partitioned first, by name
        {"name": "Dep", "is_partitioned": 1},
        {"name": "Obj", "is_partitioned": 1},
        {"name": "Obj2", "is_partitioned": 1},
    ]
    # MariaDB side: prototype + dummy chunk tables, MyISAM, partitioned by transaction with p0
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, ENGINE, CREATE_OPTIONS FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s"
            " ORDER BY TABLE_NAME",
            (f"qserv_w1__{db}",),
        )
        found = {r[0]: r[1:] for r in cur.fetchall()}
        assert {"Obj", "Obj_1234567890", "ObjFullOverlap_1234567890", "Dep_1234567890"} <= found.keys()
        assert all(engine == "MyISAM" and "partitioned" in opts for engine, opts in found.values())
        cur.execute(
            "SELECT PARTITION_NAME FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA=%s AND"
            " TABLE_NAME='Obj'",
            (f"qserv_w1__{db}",),
        )
        assert [r[0] for r in cur.fetchall()] == ["p0"]
    # delete a table
    assert api.delete(f"/ingest/table/{db}/Obj2")["success"] == 1
    assert [t["name"] for t in api.get(f"/ingest/table/{db}")["tables"]] == ["Dep", "Obj"]
    assert api.delete(f"/ingest/table/{db}/Obj2")["error"] == (  # ConfigDatabase.cc:181-183
        f"operation failed due to: DatabaseInfo::findTable no such table 'Obj2' found in the database '{db}'."
    )


# ---------------------------------------------------------------- transactions
def test_transaction_state_machine(qserv):
    api = Api(qserv)
    db = unique_db("trn")
    api.create_db(db)
    api.create_director(db)
    answer = api.ok(api.post("/ingest/trans", {"database": db, "context": {"pod": "p1"}}))
    trans = answer["databases"][db]["transactions"][0]
    tid = trans["id"]
    assert trans["state"] == "STARTED" and trans["begin_time"] > 0 and trans["start_time"] > 0
    # HttpIngestTransModule.cc:316: the answer carries the transaction as recorded, context and log included
    assert trans["end_time"] == 0 and trans["context"] == {"pod": "p1"}
    assert [e["name"] for e in trans["log"]] == ["begin add dir idx part", "end add dir idx part"]
    got = api.get(f"/ingest/trans/{tid}", params={"include_context": 1, "include_log": 1})
    t = got["databases"][db]["transactions"][0]
    assert t["context"] == {"pod": "p1"}
    assert [e["name"] for e in t["log"]] == ["begin add dir idx part", "end add dir idx part"]
    missing = api.put(f"/ingest/trans/{tid}")
    assert missing["error"] == (  # RequestQuery.cc:37-40
        "invalid parameters of the request, ex: RequestQuery::requiredBool mandatory parameter 'abort'"
        " is missing"
    )
    committed = api.end(tid)
    assert committed["success"] == 1 and committed["secondary-index-build-success"] == 1
    t = committed["databases"][db]["transactions"][0]
    assert t["state"] == "FINISHED" and t["end_time"] >= t["transition_time"] > 0
    assert t["context"] == {"pod": "p1"} and [e["name"] for e in t["log"]][-2:] == [
        "begin bld dir idx",
        "end bld dir idx",
    ]  # HttpIngestTransModule.cc:494
    again = api.end(tid)
    assert again["error"] == f"transaction id={tid} can't be ended at this time because of state=FINISHED."
    assert api.end(tid, abort=True)["error"] == (
        f"transaction id={tid} can't be ended at this time because of state=FINISHED."
    )
    t2 = api.begin(db)
    assert t2 > tid
    aborted = api.end(t2, abort=True)
    assert aborted["databases"][db]["transactions"][0]["state"] == "ABORTED"
    assert api.end(t2)["error"].endswith("because of state=ABORTED.")
    unknown = api.get("/ingest/trans/999999")
    assert unknown["success"] == 0 and "no such transaction" in unknown["error"]
    listed = api.get("/ingest/trans", params={"database": db})["databases"][db]
    # DatabaseServicesMySQL.cc:1519: newest first; context and log only when asked for
    assert [x["state"] for x in listed["transactions"]] == ["ABORTED", "FINISHED"]
    assert all(x["context"] == {} and x["log"] == [] for x in listed["transactions"])
    only = api.get("/ingest/trans", params={"database": db, "trans_state": "!FINISHED"})["databases"][db]
    assert [x["id"] for x in only["transactions"]] == [t2]
    by_zero = api.get("/ingest/trans/0", params={"database": db})["databases"][db]
    assert len(by_zero["transactions"]) == 2
    assert api.post("/ingest/trans", {"database": "nosuch"})["error"] == (
        "operation failed due to: CONFIG  _databaseInfo no such database 'nosuch'."
    )


def test_failed_commit_then_abort(qserv):
    api = Api(qserv)
    db = unique_db("fc")
    api.create_db(db)
    api.create_director(db)
    tid = api.begin(db)
    qserv.faults.add("fail_commit", match={"transaction_id": tid})
    failed = api.end(tid)
    assert failed["success"] == 0
    state = api.get(f"/ingest/trans/{tid}")["databases"][db]["transactions"][0]["state"]
    assert state == "FINISH_FAILED"
    assert (
        api.end(tid)["error"]
        == f"transaction id={tid} can't be ended at this time because of state=FINISH_FAILED."
    )
    assert api.end(tid, abort=True)["databases"][db]["transactions"][0]["state"] == "ABORTED"


def test_contrib_summary_and_long_listing(qserv):
    api = Api(qserv)
    db = unique_db("sum")
    api.create_db(db)
    api.create_director(db)
    tid = api.begin(db)
    loc = api.allocate(tid, CHUNKS[0])
    api.ok(api.csv(loc["worker"], tid, "Obj", CHUNKS[0], rows(1, 5, CHUNKS[0])))
    api.ok(api.csv(loc["worker"], tid, "Obj", CHUNKS[0], rows(100, 3, CHUNKS[0]), overlap=1))
    answer = api.get(f"/ingest/trans/{tid}", params={"contrib": 1})["databases"][db]["transactions"][0]
    summary = answer["contrib"]["summary"]
    assert answer["contrib"]["files"] == []
    assert summary["num_files_by_status"] == {  # every status, as HttpIngestTransModule.cc:614-617
        "IN_PROGRESS": 0,
        "CREATE_FAILED": 0,
        "START_FAILED": 0,
        "READ_FAILED": 0,
        "LOAD_FAILED": 0,
        "CANCELLED": 0,
        "FINISHED": 2,
    }
    assert (
        summary["num_rows"],
        summary["num_rows_loaded"],
        summary["num_chunk_files"],
        summary["num_chunk_overlap_files"],
        summary["num_workers"],
    ) == (8, 8, 1, 1, 1)
    assert summary["table"]["Obj"]["num_rows"] == 5 and summary["table"]["Obj"]["overlap"]["num_rows"] == 3
    worker = summary["worker"][loc["worker"]]  # HttpIngestTransModule.cc:658-666: no num_files here
    assert (worker["num_chunk_files"], worker["num_chunk_overlap_files"], worker["num_rows"]) == (1, 1, 8)
    files = api.get(f"/ingest/trans/{tid}", params={"contrib": 1, "contrib_long": 1})
    files = files["databases"][db]["transactions"][0]["contrib"]["files"]
    assert [f["overlap"] for f in files] == [0, 1]
    one = api.get(f"/ingest/trans/contrib/{files[0]['id']}")
    assert one["contribution"]["id"] == files[0]["id"] and one["contribution"]["status"] == "FINISHED"
    api.ok(api.end(tid))


# ---------------------------------------------------------------- chunk placement
def test_chunk_allocation_rules(qserv):
    api = Api(qserv)
    db = unique_db("chk")
    api.create_db(db)
    api.create_director(db)
    tid = api.begin(db)
    bad = api.post("/ingest/chunk", {"transaction_id": tid, "chunk": 1})
    assert bad["success"] == 0 and bad["error"] == "this chunk number is not valid"
    bad = api.post("/ingest/chunks", {"database": db, "chunks": [CHUNKS[0], 5]})
    assert bad["error"] == "chunk 5 is not valid"
    dummy = api.post("/ingest/chunk", {"database": db, "chunk": 1234567890})
    assert dummy["success"] == 1
    first = api.allocate(tid, CHUNKS[0])
    assert set(first) == {
        "chunk",
        "worker",
        "host",
        "host_name",
        "port",
        "http_host",
        "http_host_name",
        "http_port",
    }
    assert api.allocate(tid, CHUNKS[0]) == first  # sticky
    # least-loaded: each new chunk goes to a worker holding the fewest chunk replicas (all databases)
    for chunk in CHUNKS[1:4]:
        load = qserv.state.chunk_load()
        chosen = api.allocate(tid, chunk)["worker"]
        assert load[chosen] == min(load.values())
    answer = api.ok(api.post("/ingest/chunks", {"database": db, "chunks": CHUNKS[1:7]}))
    locations = answer["locations"]
    assert [loc["chunk"] for loc in locations] == CHUNKS[1:7]
    used = [loc["worker"] for loc in locations]
    replicas = api.get("/ingest/chunks", params={"database": db})["replica"]
    assert {(r["chunk"], r["worker"]) for r in replicas} >= {
        (loc["chunk"], loc["worker"]) for loc in locations
    }
    assert replicas[0]["Obj"]["rows"] == 0
    # co-location: a chunk already held for another DB of the same family goes to the same worker
    other = unique_db("chk")
    api.create_db(other)
    same = api.ok(api.post("/ingest/chunks", {"database": other, "chunks": CHUNKS[1:7]}))["locations"]
    assert [loc["worker"] for loc in same] == used
    regular = api.get("/ingest/regular", {"database": db})
    assert sorted(loc["worker"] for loc in regular["locations"]) == sorted(qserv.worker_urls)
    assert "chunk" not in regular["locations"][0]
    multi = api.ok(api.post("/ingest/chunks-multi", {"database": db, "chunks": [CHUNKS[0]]}))["locations"]
    assert multi == [first]
    api.ok(api.end(tid))


def test_ingest_config_and_deletions(qserv):
    api = Api(qserv)
    db = unique_db("cfg")
    api.create_db(db)
    answer = api.ok(api.put("/ingest/config", {"database": db, "ASYNC_PROC_LIMIT": 2, "CAINFO": "/etc/ca"}))
    assert "config" not in answer  # HttpIngestConfigModule.cc:171: an empty object
    assert api.get("/ingest/config", params={"database": db})["config"] == {
        "database": db,
        "CAINFO": "/etc/ca",
        "ASYNC_PROC_LIMIT": 2,
    }
    assert api.get("/ingest/config", params={"database": db})["config"]["ASYNC_PROC_LIMIT"] == 2
    assert api.put("/ingest/config", {"database": db, "version": 13})["error_ext"]["min_version"] == 14
    api.create_regular(db)
    api.ok(api.delete(f"/ingest/database/{db}"))  # unpublished: the plain key is enough
    assert api.get("/ingest/config", params={"database": db})["error"].endswith(f"no such database '{db}'.")
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (f"qserv\\_w%\\_\\_{db}",))
        assert cur.fetchall() == ()
    api.create_db(db)  # the name is reusable


def test_table_stats_and_published_table_deletion(qserv):
    api = Api(qserv)
    db = unique_db("sts")
    api.create_db(db)
    api.create_director(db)
    tid = api.begin(db)
    loc = api.allocate(tid, CHUNKS[9])
    api.ok(api.csv(loc["worker"], tid, "Obj", CHUNKS[9], rows(1, 4, CHUNKS[9])))
    api.ok(api.csv(loc["worker"], tid, "Obj", CHUNKS[9], rows(50, 2, CHUNKS[9]), overlap=1))
    api.ok(api.end(tid))
    bad = api.post("/ingest/table-stats", {"database": db, "table": "Obj", "overlap_selector": "X"})
    assert bad["error"] == (  # replica/util/Common.cc:60-69
        "invalid parameters of the request, ex: lsst::qserv::replica::str2overlapSelector the input string"
        " 'X' doesn't match any selector."
    )
    # the default policy (DISABLED) scans but keeps nothing (SqlRowStatsJob.h:70-74)
    api.ok(api.post("/ingest/table-stats", {"database": db, "table": "Obj"}))
    assert api.get(f"/ingest/table-stats/{db}/Obj")["entries"] == []
    api.ok(
        api.post(
            "/ingest/table-stats",
            {
                "database": db,
                "table": "Obj",
                "overlap_selector": "CHUNK_AND_OVERLAP",
                "row_counters_state_update_policy": "ENABLED",
            },
        )
    )
    entries = api.get(f"/ingest/table-stats/{db}/Obj")["entries"]
    assert {(e["transaction_id"], e["chunk"], e["is_overlap"], e["num_rows"]) for e in entries} == {
        (tid, CHUNKS[9], 0, 4),
        (tid, CHUNKS[9], 1, 2),
    }
    api.ok(api.delete(f"/ingest/table-stats/{db}/Obj", {"overlap_selector": "OVERLAP"}))
    entries = api.get(f"/ingest/table-stats/{db}/Obj")["entries"]
    assert [(e["is_overlap"], e["num_rows"]) for e in entries] == [(0, 4)]
    api.ok(api.put(f"/ingest/database/{db}"))
    denied = api.delete(f"/ingest/table/{db}/Obj")
    assert denied["error"] == "deleting tables of published databases requires administrator's privileges."
    api.ok(api.delete(f"/ingest/table/{db}/Obj", {"admin_auth_key": qserv.admin_auth_key}))
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME LIKE 'Obj%%' AND"
            " TABLE_SCHEMA IN (%s, %s)",
            (db, f"qserv_w{loc['worker'].split('-')[1]}__{db}"),
        )
        assert cur.fetchone() == (0,)

"""Publishing (§3.2), the czar view, director index, row counters, deletion rules; concurrency and the
qserv-itest test101 catalog loaded through the API."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import lsst.sphgeom

from tests.emulator.api import Api, rows, unique_db

CHUNKS = sorted(lsst.sphgeom.Chunker(85, 12).getAllChunks())[3000:3010]


def test_publish_preconditions_and_czar(qserv):
    api = Api(qserv)
    db = unique_db("pub")
    api.create_db(db)
    api.create_director(db)
    api.create_regular(db)
    assert api.put(f"/ingest/database/{db}")["error"] == "the database doesn't have any chunks"
    tid = api.begin(db)
    chunks = CHUNKS[:3]
    locs = {c: api.allocate(tid, c) for c in chunks}
    for i, c in enumerate(chunks):
        api.ok(api.csv(locs[c]["worker"], tid, "Obj", c, rows(i * 100, 10 + i, c)))
    for loc in api.get("/ingest/regular", {"database": db})["locations"]:
        api.ok(api.csv(loc["worker"], tid, "Reg", 0, b"1\ta\n2\tb\n"))
    assert api.put(f"/ingest/database/{db}")["error"] == "database has uncommitted transactions"
    empty = api.ok(api.post("/ingest/chunk/empty", {"database": db}))
    assert (empty["num_chunks_ingested"], empty["num_chunks_all"]) == (3, 8983)
    api.ok(api.end(tid))
    published = api.ok(api.put(f"/ingest/database/{db}", {"row_counters_deploy_at_qserv": 1}))
    assert published["database"]["is_published"] == 1 and published["database"]["publish_time"] > 0
    assert all(t["is_published"] == 1 for t in published["database"]["tables"])
    assert api.put(f"/ingest/database/{db}")["error"] == "the database is already published"
    assert api.post("/ingest/trans", {"database": db})["error"] == "the database is already published"
    assert api.get("/ingest/regular", {"database": db})["error"] == f"database '{db} is already published."
    assert api.post("/ingest/chunk", {"database": db, "chunk": CHUNKS[5]})["error"] == (
        f"database '{db} is already published."  # HttpModule.cc:136-139 (the missing quote is Qserv's)
    )
    with qserv.czar_connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT chunkId), MIN(qserv_trans_id) FROM Obj")
        assert cur.fetchone() == (33, 3, tid)
        cur.execute("SELECT COUNT(*) FROM Reg")
        assert cur.fetchone() == (2,)  # one copy, although every worker holds the rows
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA LIKE %s AND"
            " PARTITION_NAME IS NOT NULL",
            (f"qserv\\_w%\\_\\_{db}",),
        )
        assert cur.fetchone() == (0,)  # partitioning removed everywhere at publish
        cur.execute(f"SELECT COUNT(*) FROM qserv_qservMeta.{db}__Obj")
        assert cur.fetchone() == (33,)
        cur.execute(
            f"SELECT COUNT(*), SUM(chunkId IN ({','.join(map(str, chunks))})) FROM"
            f" qserv_qservCssData.{db}_EmptyChunks"
        )
        assert cur.fetchone() == (8980, 0)
        cur.execute(f"SELECT chunk, num_rows FROM qserv_qservMeta.{db}__Obj__rows ORDER BY chunk")
        assert cur.fetchall() == tuple((c, 10 + i) for i, c in enumerate(chunks))
    stats = api.get(f"/ingest/table-stats/{db}/Obj")
    assert {(e["chunk"], e["is_overlap"], e["num_rows"]) for e in stats["entries"] if e["num_rows"]} == {
        (c, 0, 10 + i) for i, c in enumerate(chunks)
    }
    # director index rebuild after publish
    built = api.post("/ingest/index/secondary", {"database": db, "director_table": "Obj", "rebuild": 1})
    assert built["success"] == 1
    exists = api.post("/ingest/index/secondary", {"database": db, "director_table": "Obj", "rebuild": 0})
    assert exists["error"].startswith("operation failed due to: ")  # HttpDirectorIndexModule.cc:154-166
    assert exists["error"].endswith("already exists, errno: 1050")
    # deleting a published database needs the admin key
    denied = api.delete(f"/ingest/database/{db}")
    assert denied["error"] == "deleting published databases requires administrator's privileges."
    api.ok(api.delete(f"/ingest/database/{db}", {"admin_auth_key": qserv.admin_auth_key}))
    assert api.get(f"/ingest/table/{db}")["error"].endswith(f"no such database '{db}'.")
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (db,))
        assert cur.fetchall() == ()


def test_index_requires_published_director(qserv):
    api = Api(qserv)
    db = unique_db("idx")
    api.create_db(db, auto_build_secondary_index=0)
    api.create_director(db)
    answer = api.post("/ingest/index/secondary", {"database": db, "director_table": "Obj", "local": 1})
    # HttpDirectorIndexModule.cc:88-92 (the leading blank is Qserv's)
    assert answer["error"] == f" the director table 'Obj' of the database '{db}' is not published."
    assert "obsolete" in answer["warning"]


def test_parallel_transactions_on_same_chunks_and_abort(qserv):
    """Four transactions load the same chunk tables at once; aborting one removes only its rows."""
    api = Api(qserv)
    db = unique_db("conc")
    api.create_db(db)
    api.create_director(db)
    chunks = CHUNKS[5:8]
    tids = [api.begin(db) for _ in range(4)]
    locs = {c: api.allocate(tids[0], c) for c in chunks}

    def load(k: int) -> list[dict]:
        client = Api(qserv)
        out = []
        for j, c in enumerate(chunks):
            start = 1_000_000 * (k + 1) + 1000 * j
            out.append(client.csv(locs[c]["worker"], tids[k], "Obj", c, rows(start, 500, c, tag=f"t{k}-")))
            out.append(client.csv(locs[c]["worker"], tids[k], "Obj", c, rows(start + 900, 20, c), overlap=1))
        return out

    with ThreadPoolExecutor(4) as pool:
        answers = [a for result in pool.map(load, range(4)) for a in result]
    assert all(a["success"] == 1 and a["contrib"]["num_rows_loaded"] in (500, 20) for a in answers)
    aborted = tids[2]
    api.ok(api.end(aborted, abort=True))
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        for c in chunks:
            wdb = f"qserv_w{locs[c]['worker'].split('-')[1]}__{db}"
            cur.execute(f"SELECT qserv_trans_id, COUNT(*) FROM `{wdb}`.`Obj_{c}` GROUP BY 1 ORDER BY 1")
            assert cur.fetchall() == tuple((t, 500) for t in tids if t != aborted)
    for t in tids:
        if t != aborted:
            api.ok(api.end(t))
    api.ok(api.put(f"/ingest/database/{db}"))
    with qserv.czar_connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM Obj WHERE qserv_trans_id=%s OR val LIKE 't2-%%'", (aborted,))
        assert cur.fetchone() == (0,)
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM Obj")
        assert cur.fetchone() == (3 * 500 * 3, 3 * 500 * 3)
        cur.execute(f"SELECT COUNT(*) FROM qserv_qservMeta.{db}__Obj")
        assert cur.fetchone() == (3 * 500 * 3,)


def test_itest_test101_through_the_api(qserv, shared_data):
    """Load qserv-itest test101 (its REST bodies and chunk files) and find every row in the czar."""
    base = shared_data / "qserv-itest" / "test101"
    api = Api(qserv)
    api.delete(
        "/ingest/database/test101", {"admin_auth_key": qserv.admin_auth_key}
    )  # another test's leftover
    db_body = json.loads((base / "database_test101.json").read_text())
    db_body.update(auth_key=qserv.auth_key, version=55)
    api.ok(api.post("/ingest/database", db_body))
    tables = {}
    for name in ("Object", "Source", "Filter"):
        body = json.loads((base / f"table_{name}.json").read_text())
        body.update(auth_key=qserv.auth_key, version=55)
        tables[name] = body
        api.ok(api.post("/ingest/table", body))
    tid = api.begin("test101")
    expected: dict[str, int] = {"Object": 0, "Source": 0, "Filter": 0}
    for name in ("Object", "Source"):
        sep = tables[name].get("fields_terminated_by", "\\t")
        for path in sorted((base / "data" / name).glob("chunk_*.txt")):
            parts = path.stem.split("_")
            chunk, overlap = int(parts[1]), int(len(parts) == 3)
            loc = api.allocate(tid, chunk)
            answer = api.ok(
                api.csv(
                    loc["worker"],
                    tid,
                    name,
                    chunk,
                    path.read_bytes(),
                    overlap=overlap,
                    fields={"fields_terminated_by": sep},
                    filename=path.name,
                )
            )
            c = answer["contrib"]
            assert c["num_warnings"] == 0 and c["num_rows"] == c["num_rows_loaded"]
            if not overlap:
                expected[name] += c["num_rows_loaded"]
    for loc in api.get("/ingest/regular", {"transaction_id": tid})["locations"]:
        answer = api.ok(
            api.post(
                "/ingest/file",
                {
                    "transaction_id": tid,
                    "table": "Filter",
                    "chunk": 0,
                    "overlap": 0,
                    "url": f"file://{base / 'data' / 'Filter.csv'}",
                },
                worker=loc["worker"],
            )
        )
        expected["Filter"] = answer["contrib"]["num_rows_loaded"]
    assert api.end(tid)["secondary-index-build-success"] == 1
    api.ok(api.put("/ingest/database/test101"))
    file_rows = {
        "Object": len((base / "data/Object/chunk_7480.txt").read_bytes().splitlines()),
        "Source": len((base / "data/Source/chunk_7480.txt").read_bytes().splitlines()),
        "Filter": len((base / "data/Filter.csv").read_bytes().splitlines()),
    }
    assert expected == file_rows
    with qserv.czar_connect("test101") as conn, conn.cursor() as cur:
        for name, n in file_rows.items():
            cur.execute(f"SELECT COUNT(*) FROM {name}")
            assert cur.fetchone() == (n,)
        cur.execute("SELECT COUNT(DISTINCT objectId) FROM Object")
        assert cur.fetchone() == (file_rows["Object"],)
        # spot-check full rows: the first line of the Object chunk file, as MariaDB parsed it
        first = (base / "data/Object/chunk_7480.txt").read_text().splitlines()[0].split(",")
        cur.execute(
            "SELECT objectId, ra_PS, decl_PS, chunkId FROM Object WHERE objectId=%s", (int(first[0]),)
        )
        oid, ra, dec, chunk = cur.fetchone()
        assert (oid, chunk) == (int(first[0]), 7480)
        assert abs(ra - float(first[2])) < 1e-9 and abs(dec - float(first[4])) < 1e-9
        cur.execute("SELECT COUNT(*) FROM qserv_qservMeta.test101__Object")
        assert cur.fetchone() == (file_rows["Object"],)
    api.ok(api.delete("/ingest/database/test101", {"admin_auth_key": qserv.admin_auth_key}))


def test_unpublish_requires_admin(qserv):
    api = Api(qserv)
    db = unique_db("unp")
    api.create_db(db)
    answer = api.put(f"/replication/config/database/{db}", {"publish": 0})
    assert answer["error"] == "administrator's privileges are required to (un-)publish databases."
    assert httpx.get(qserv.controller_url + "/replication/config").status_code == 200


def test_generated_columns_read_through_the_czar(qserv):
    """MERGE tables cannot carry generated columns; the czar serves such tables as UNION ALL views."""
    api = Api(qserv)
    db = unique_db("gen")
    api.create_db(db)
    schema = [
        {"name": "id", "type": "BIGINT NOT NULL"},
        {"name": "ra", "type": "DOUBLE NOT NULL"},
        {"name": "decl", "type": "DOUBLE NOT NULL"},
        {"name": "twice", "type": "DOUBLE GENERATED ALWAYS AS (ra * 2) VIRTUAL"},
        {"name": "chunkId", "type": "INT NOT NULL"},
        {"name": "subChunkId", "type": "INT NOT NULL"},
    ]
    api.ok(
        api.post(
            "/ingest/table",
            {
                "database": db,
                "table": "G",
                "is_partitioned": 1,
                "director_table": "",
                "director_key": "id",
                "latitude_key": "decl",
                "longitude_key": "ra",
                "schema": schema,
            },
        )
    )
    tid = api.begin(db)
    for i, chunk in enumerate(CHUNKS[8:10]):
        loc = api.allocate(tid, chunk)
        data = b"".join(b"%d\t%d.5\t0\t\\N\t%d\t0\n" % (i * 10 + k, k, chunk) for k in range(3))
        answer = api.ok(api.csv(loc["worker"], tid, "G", chunk, data))
        assert answer["contrib"]["num_warnings"] == 0
    api.ok(api.end(tid))
    api.ok(api.put(f"/ingest/database/{db}"))
    with qserv.czar_connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), SUM(twice) FROM G")
        assert cur.fetchone() == (6, 2 * (0.5 + 1.5 + 2.5) * 2)
    api.ok(
        api.put(f"/replication/config/database/{db}", {"admin_auth_key": qserv.admin_auth_key, "publish": 0})
    )
    api.ok(api.put(f"/ingest/database/{db}"))  # re-publish leaves the published table's view as it is
    with qserv.czar_connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM G")
        assert cur.fetchone() == (6,)

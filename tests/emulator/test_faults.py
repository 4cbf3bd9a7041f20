"""Fault injection: each fault is visible to the client as Qserv would show it and leaves MariaDB as
Qserv would leave it."""

from __future__ import annotations

import httpx
import lsst.sphgeom
import pytest

from tests.emulator.api import Api, rows, unique_db

CHUNKS = sorted(lsst.sphgeom.Chunker(85, 12).getAllChunks())[4000:4010]


@pytest.fixture
def setup(qserv):
    api = Api(qserv)
    db = unique_db("flt")
    api.create_db(db)
    api.create_director(db)
    tid = api.begin(db)
    return api, db, tid


def in_partition(qserv, worker: str, db: str, table: str, tid: int) -> int:
    wdb = f"qserv_w{worker.split('-')[1]}__{db}"
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s"
            " AND PARTITION_NAME=%s",
            (wdb, table, f"p{tid}"),
        )
        if cur.fetchone()[0] == 0:
            return -1  # no such partition
        cur.execute(f"SELECT COUNT(*) FROM `{wdb}`.`{table}` PARTITION (`p{tid}`)")
        return cur.fetchone()[0]


def last_contrib(api, db, tid):
    answer = api.get(f"/ingest/trans/{tid}", params={"contrib": 1, "contrib_long": 1})
    return answer["databases"][db]["transactions"][0]["contrib"]["files"][-1]


def test_read_failed_on_the_nth_matching_contribution(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[0]
    loc = api.allocate(tid, chunk)
    qserv.faults.add("read_failed", match={"table": "Obj", "chunk": chunk}, nth=2)
    api.ok(api.csv(loc["worker"], tid, "Obj", chunk, rows(1, 5, chunk)))
    failed = api.csv(loc["worker"], tid, "Obj", chunk, rows(10, 5, chunk))
    assert failed["success"] == 0 and failed["error_ext"]["retry_allowed"] == 1
    c = last_contrib(api, db, tid)
    assert (c["status"], c["retry_allowed"]) == ("READ_FAILED", 1)
    assert in_partition(qserv, loc["worker"], db, f"Obj_{chunk}", tid) == 5  # table untouched by the failure
    api.ok(api.csv(loc["worker"], tid, "Obj", chunk, rows(10, 5, chunk)))  # a retry in the same transaction
    assert in_partition(qserv, loc["worker"], db, f"Obj_{chunk}", tid) == 10


def test_load_failed_leaves_rows_until_abort(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[1]
    loc = api.allocate(tid, chunk)
    qserv.faults.add("load_failed", match={"worker": loc["worker"], "chunk": chunk})
    failed = api.csv(loc["worker"], tid, "Obj", chunk, rows(1, 7, chunk))
    assert failed["success"] == 0 and failed["error"] == "MySQL load failed, ex: injected fault"
    assert failed["error_ext"] == {}
    c = last_contrib(api, db, tid)
    assert (c["status"], c["retry_allowed"]) == ("LOAD_FAILED", 0)
    assert in_partition(qserv, loc["worker"], db, f"Obj_{chunk}", tid) == 7  # the table was modified
    api.ok(api.end(tid, abort=True))
    assert in_partition(qserv, loc["worker"], db, f"Obj_{chunk}", tid) == -1  # p<T> dropped


def test_connection_dropped_mid_upload(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[2]
    loc = api.allocate(tid, chunk)
    qserv.faults.add("drop_upload", match={"chunk": chunk})
    big = rows(1, 60_000, chunk)  # several blocks, so the drop happens while the body is still arriving
    with pytest.raises(httpx.TransportError):
        api.csv(loc["worker"], tid, "Obj", chunk, big)
    c = last_contrib(api, db, tid)
    assert (c["status"], c["retry_allowed"]) == ("READ_FAILED", 1)
    assert in_partition(qserv, loc["worker"], db, f"Obj_{chunk}", tid) == -1  # nothing loaded
    answer = api.ok(api.csv(loc["worker"], tid, "Obj", chunk, big))
    assert answer["contrib"]["num_rows_loaded"] == 60_000


def test_lost_answer_after_load(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[3]
    loc = api.allocate(tid, chunk)
    qserv.faults.add("drop_response", match={"chunk": chunk})
    with pytest.raises(httpx.TransportError):
        api.csv(loc["worker"], tid, "Obj", chunk, rows(1, 4, chunk))
    assert last_contrib(api, db, tid)["status"] == "FINISHED"
    assert in_partition(qserv, loc["worker"], db, f"Obj_{chunk}", tid) == 4
    api.ok(api.end(tid, abort=True))  # the only safe recovery for an unknown outcome
    assert in_partition(qserv, loc["worker"], db, f"Obj_{chunk}", tid) == -1


def test_delay_a_response(qserv, setup):
    api, db, tid = setup
    qserv.faults.add("delay", match={"path": "/ingest/trans"}, seconds=10)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(qserv.controller_url + "/ingest/trans", params={"database": db, "version": 55}, timeout=1)
    fault = qserv.faults.list()[0]
    assert (fault["kind"], fault["fired"]) == ("delay", 1)
    assert api.get("/ingest/trans", params={"database": db})["success"] == 1  # fired once only


def test_worker_unreachable(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[4]
    loc = api.allocate(tid, chunk)
    worker = loc["worker"]
    api.ok(api.csv(worker, tid, "Obj", chunk, rows(1, 3, chunk)))
    qserv.set_worker_down(worker)
    with pytest.raises(httpx.ConnectError):
        httpx.get(qserv.worker_urls[worker] + "/meta/version")
    created = api.post(
        "/ingest/table",
        {"database": db, "table": "R2", "is_partitioned": 0, "schema": [{"name": "a", "type": "INT"}]},
    )
    assert created["success"] == 0
    # jobCompletionErrorIfAny (HttpIngestModule.cc:71-97); the table was registered before the job (:606)
    assert created["error"].startswith(f"table creation failed for: 'R2', worker: {worker},  error: ")
    assert {"name": "R2", "is_partitioned": 0} in api.get(f"/ingest/table/{db}")["tables"]
    aborted = api.end(tid, abort=True)
    assert aborted["error"] == "failed to drop table partitions" and worker in aborted["error_ext"]["workers"]
    state = api.get(f"/ingest/trans/{tid}")["databases"][db]["transactions"][0]["state"]
    assert state == "ABORT_FAILED"
    assert in_partition(qserv, worker, db, f"Obj_{chunk}", tid) == 3
    qserv.set_worker_down(worker, False)
    assert httpx.get(qserv.worker_urls[worker] + "/meta/version").json()["id"] == worker
    api.ok(api.end(tid, abort=True))  # abort can be re-issued after ABORT_FAILED
    assert in_partition(qserv, worker, db, f"Obj_{chunk}", tid) == -1


def test_admin_route_installs_faults(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[5]
    loc = api.allocate(tid, chunk)
    admin = qserv.controller_url + "/emulator/faults"
    added = httpx.post(admin, json={"kind": "load_failed", "match": {"chunk": chunk}}).json()
    assert added["success"] == 1 and added["fault"]["kind"] == "load_failed"
    assert [f["id"] for f in httpx.get(admin).json()["faults"]] == [added["fault"]["id"]]
    assert api.csv(loc["worker"], tid, "Obj", chunk, rows(1, 2, chunk))["success"] == 0
    assert httpx.post(admin, json={"kind": "nonsense"}).json()["success"] == 0
    down = httpx.post(admin, json={"kind": "worker_down", "worker": loc["worker"]}).json()
    assert down["success"] == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(qserv.worker_urls[loc["worker"]] + "/meta/version")
    assert httpx.delete(admin).json()["success"] == 1  # clears rules and brings workers back
    assert httpx.get(admin).json()["faults"] == [] and httpx.get(admin).json()["down_workers"] == []
    assert httpx.get(qserv.worker_urls[loc["worker"]] + "/meta/version").status_code == 200
    api.ok(api.end(tid, abort=True))


def test_lost_answer_of_file_and_data_contributions(qserv, setup, tmp_path):
    api, db, tid = setup
    chunk = CHUNKS[6]
    loc = api.allocate(tid, chunk)
    path = tmp_path / "f.tsv"
    path.write_bytes(rows(1, 3, chunk))
    qserv.faults.add("drop_response", match={"chunk": chunk}, times=2)
    with pytest.raises(httpx.TransportError):
        api.post(
            "/ingest/file",
            {"transaction_id": tid, "table": "Obj", "chunk": chunk, "overlap": 0, "url": f"file://{path}"},
            worker=loc["worker"],
        )
    with pytest.raises(httpx.TransportError):
        api.post(
            "/ingest/data",
            {
                "transaction_id": tid,
                "table": "Obj",
                "chunk": chunk,
                "overlap": 0,
                "rows": [[9, "1", "2", "v", chunk, 1]],
            },
            worker=loc["worker"],
        )
    assert in_partition(qserv, loc["worker"], db, f"Obj_{chunk}", tid) == 4
    assert last_contrib(api, db, tid)["status"] == "FINISHED"
    api.ok(
        api.post(
            "/ingest/data",
            {
                "transaction_id": tid,
                "table": "Obj",
                "chunk": chunk,
                "overlap": 0,
                "rows": [[10, "1", "2", "v", chunk, 1]],
            },
            worker=loc["worker"],
        )
    )


def test_worker_down_during_database_creation_and_publish(qserv, setup):
    api, db, tid = setup
    chunk = CHUNKS[7]
    loc = api.allocate(tid, chunk)
    api.ok(api.csv(loc["worker"], tid, "Obj", chunk, rows(1, 3, chunk)))
    api.ok(api.end(tid))
    qserv.set_worker_down(loc["worker"])
    other = unique_db("down")
    created = api.post(
        "/ingest/database", {"database": other, "num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.1}
    )
    assert created["error"].startswith(f"database creation failed, worker: {loc['worker']},  error: ")
    published = api.put(f"/ingest/database/{db}")
    assert published["success"] == 0 and loc["worker"] in published["error"]
    assert api.get("/ingest/database", {"all": 0, "published": 0})["databases"] and not any(
        d["is_published"] for d in api.get("/ingest/database")["databases"] if d["name"] == db
    )
    qserv.set_worker_down(loc["worker"], False)
    api.ok(api.put(f"/ingest/database/{db}"))  # re-sent after the worker is back
    with qserv.czar_connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM Obj")
        assert cur.fetchone() == (3,)

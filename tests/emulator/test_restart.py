"""Durable state: a restarted stand-in knows its databases, tables, chunks, transactions and contributions."""

from __future__ import annotations

import lsst.sphgeom

from qdask.emulator.server import EmulatorThread
from tests.emulator.api import Api, Source, rows, wait_final

CHUNKS = sorted(lsst.sphgeom.Chunker(85, 12).getAllChunks())[5000:5004]


def test_state_survives_restart(mariadb):
    db = "restarted"
    with EmulatorThread(mariadb.dsn, workers=2, auth_key="k", admin_auth_key="a", instance="rst") as qserv:
        api = Api(qserv)
        api.create_db(db)
        api.create_director(db)
        done = api.begin(db)
        locs = {c: api.allocate(done, c) for c in CHUNKS[:2]}
        for c in CHUNKS[:2]:
            api.ok(api.csv(locs[c]["worker"], done, "Obj", c, rows(c * 10, 5, c)))
        api.ok(api.end(done))
        open_tid = api.begin(db)
        api.ok(api.csv(locs[CHUNKS[0]]["worker"], open_tid, "Obj", CHUNKS[0], rows(1, 3, CHUNKS[0])))
        urls = dict(qserv.worker_urls)
        before = api.get("/ingest/trans", params={"database": db, "contrib": 1, "contrib_long": 1})

        qserv.restart()

        assert qserv.worker_urls == urls  # workers come back where clients knew them
        api = Api(qserv)
        after = api.get("/ingest/trans", params={"database": db, "contrib": 1, "contrib_long": 1})
        assert after["databases"] == before["databases"]
        states = {t["id"]: t["state"] for t in after["databases"][db]["transactions"]}
        assert states == {done: "FINISHED", open_tid: "STARTED"}
        assert [t["name"] for t in api.get(f"/ingest/table/{db}")["tables"]] == ["Obj"]
        assert api.allocate(open_tid, CHUNKS[0]) == locs[CHUNKS[0]]  # allocations are remembered
        assert api.begin(db) > open_tid  # transaction ids are never reused
        # the open transaction continues: one more contribution, commit, publish, all rows in the czar
        api.ok(api.csv(locs[CHUNKS[1]]["worker"], open_tid, "Obj", CHUNKS[1], rows(500, 2, CHUNKS[1])))
        api.ok(api.end(open_tid))
        for t in api.get("/ingest/trans", params={"database": db, "trans_state": "STARTED"})["databases"][db][
            "transactions"
        ]:
            api.ok(api.end(t["id"], abort=True))
        api.ok(api.put(f"/ingest/database/{db}"))
        with qserv.czar_connect(db) as conn, conn.cursor() as cur:
            cur.execute("SELECT qserv_trans_id, COUNT(*) FROM Obj GROUP BY 1 ORDER BY 1")
            assert cur.fetchall() == ((done, 10), (open_tid, 5))
        api.ok(api.delete(f"/ingest/database/{db}", {"admin_auth_key": "a"}))


def test_async_requests_resume_after_restart(mariadb, tmp_path):
    """Queued or reading async contributions are resumed by a restarted worker (async-loader-auto-resume)."""
    db = "resumed"
    with EmulatorThread(mariadb.dsn, workers=1, auth_key="k", admin_auth_key="a", instance="rsm") as qserv:
        api = Api(qserv)
        api.create_db(db)
        api.create_director(db)
        tid = api.begin(db)
        chunk = CHUNKS[3]
        loc = api.allocate(tid, chunk)
        source = Source(rows(1, 5, chunk))
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
                for _ in range(3)
            ]
            qserv.restart()  # two requests were reading (blocked), one was queued
            source.release.set()
            api = Api(qserv)
            finals = [wait_final(api, loc["worker"], i) for i in ids]
            assert [(f["status"], f["num_rows_loaded"]) for f in finals] == [("FINISHED", 5)] * 3
        finally:
            source.close()
        api.ok(api.end(tid))
        api.ok(api.delete(f"/ingest/database/{db}"))

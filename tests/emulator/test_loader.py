"""The worker's binary loader on ``loader-port`` (Qserv's ``IngestSvcConn``, ``IngestSvcConn.cc:124-357``),
driven by a client written from ``protocol.proto`` and ``IngestClient.cc`` (``loader_client.py``)."""

from __future__ import annotations

import lsst.sphgeom

from qdask.emulator.worker.wire import decode, encode
from tests.emulator.api import Api, rows, unique_db
from tests.emulator.loader_client import FAILED, FINISHED, READY, LoaderClient, field_bytes, field_varint

CHUNKS = sorted(lsst.sphgeom.Chunker(85, 12).getAllChunks())[4000:4010]


def contribs(api, tid, db):
    answer = api.get(f"/ingest/trans/{tid}", params={"contrib": 1, "contrib_long": 1})
    return answer["databases"][db]["transactions"][0]["contrib"]["files"]


def test_wire_format_matches_protobuf_encoding_examples():
    """protobuf's encoding guide: field 1 = 150 is ``08 96 01``, field 2 = "testing" is ``12 07 74…67``."""
    example = bytes.fromhex("089601120774657374696e67")
    assert field_varint(1, 150) + field_bytes(2, "testing") == example
    assert encode([(1, 150), (2, "testing")]) == example
    assert decode(example) == {1: 150, 2: b"testing"}


def test_locations_report_the_loader_port(qserv):
    api = Api(qserv)
    db = unique_db("lport")
    api.create_db(db)
    api.create_director(db)
    tid = api.begin(db)
    loc = api.allocate(tid, CHUNKS[0])
    workers = {w["name"]: w for w in api.get("/replication/config")["config"]["workers"]}
    assert loc["port"] == workers[loc["worker"]]["loader-port"] > 0
    assert loc["port"] != loc["http_port"]
    regular = {r["worker"]: r["port"] for r in api.get("/ingest/regular", {"database": db})["locations"]}
    assert regular == {name: w["loader-port"] for name, w in workers.items()}
    api.ok(api.end(tid, abort=True))


def test_contribution_over_the_binary_protocol(qserv, tmp_path):
    api = Api(qserv)
    db = unique_db("bin")
    api.create_db(db)
    api.create_director(db)
    tid = api.begin(db)
    chunk = CHUNKS[1]
    loc = api.allocate(tid, chunk)
    path = tmp_path / "chunk.txt"
    path.write_bytes(rows(1, 2500, chunk))
    client = LoaderClient(loc["host"], loc["port"])
    try:
        first = client.handshake(qserv.auth_key, tid, "Obj", chunk, False, f"file://localhost{path}")
        assert (first.status, first.retry_allowed) == (READY, True) and first.id > 0
        answers = client.send_file(path, 16 << 10)  # several records: READY after each but the last
    finally:
        client.close()
    assert [a.status for a in answers[:-1]] == [READY] * (len(answers) - 1) and len(answers) > 3
    last = answers[-1]
    assert (last.status, last.num_rows, last.num_rows_loaded, last.retry_allowed) == (
        FINISHED,
        2500,
        2500,
        False,
    )
    c = next(c for c in contribs(api, tid, db) if c["id"] == first.id)
    assert (c["status"], c["url"], c["async"], c["num_bytes"]) == (
        "FINISHED",
        f"file://localhost{path}",
        0,
        path.stat().st_size,
    )
    api.ok(api.end(tid))
    api.ok(api.put(f"/ingest/database/{db}"))
    with qserv.czar_connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM Obj")
        assert cur.fetchone() == (2500, 1, 2500)


def test_binary_protocol_refusals(qserv, tmp_path):
    api = Api(qserv)
    db = unique_db("binerr")
    api.create_db(db)
    api.create_director(db)
    tid = api.begin(db)
    chunk = CHUNKS[2]
    loc = api.allocate(tid, chunk)
    other = next(
        w for w in api.get("/ingest/regular", {"database": db})["locations"] if w["worker"] != loc["worker"]
    )

    def handshake(host, port, key, url="file://localhost/tmp/x.txt"):
        client = LoaderClient(host, port)
        try:
            return client.handshake(key, tid, "Obj", chunk, False, url)
        finally:
            client.close()

    # IngestSvcConn.cc:143-147: a wrong key ends the session before anything is recorded
    refused = handshake(loc["host"], loc["port"], "wrong")
    assert (refused.status, refused.error, refused.id) == (FAILED, "not authorized", 0)
    # the chunk lives elsewhere: openFile refuses it (IngestFileSvc.cc:126-132) → START_FAILED, retry allowed
    misplaced = handshake(other["host"], other["port"], qserv.auth_key)
    assert misplaced.status == FAILED and misplaced.retry_allowed
    assert misplaced.error == (
        f"INGEST-FILE-SVC openFile chunk {chunk} of the UNPUBLISHED database '{db}' is not allocated to"
        f" worker '{other['worker']}'"
    )
    # IngestSvcConn.cc:185-196: only file:// URLs → CREATE_FAILED with retry_allowed kept at 1 (:159)
    http = handshake(loc["host"], loc["port"], qserv.auth_key, "http://localhost/x.txt")
    assert http.status == FAILED and http.error.endswith("unsupported url 'http://localhost/x.txt'")
    api.ok(api.end(tid))
    late = handshake(loc["host"], loc["port"], qserv.auth_key)
    assert late.error == f"INGEST-SVC-CONN  _handshakeReceived transactionId={tid} is not active"
    recorded = [(c["status"], c["retry_allowed"]) for c in contribs(api, tid, db)]
    assert recorded == [("START_FAILED", 1), ("CREATE_FAILED", 1), ("CREATE_FAILED", 1)]

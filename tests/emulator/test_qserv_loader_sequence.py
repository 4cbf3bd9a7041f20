"""Qserv's own loading sequence against the stand-in, on case01.

The requests are written here from Qserv's integration loader (``python/lsst/qserv/admin/itest_load.py``
``_load_database`` with ``replication_interface.py``, commit 5314826) — not its code: the database, then
per table (``etc/integration_tests.yaml``: Object, Source, Filter, LeapSeconds, Logs, RefSrcMatch) its
registration, a transaction, chunk allocation (``POST /ingest/chunks``) or the regular-table locations
(``GET /ingest/regular``), one contribution per chunk file and overlap file (``/ingest/csv`` with the
HTTP option, the binary protocol on ``loader-port`` otherwise), the commit; then the publish and the row
counters (``POST /ingest/table-stats``). Object and Source are partitioned first, as ``sph-partition``
writes them (``chunk_<id>.txt``, ``chunk_<id>_overlap.txt``, ``chunkId``/``subChunkId`` appended).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from qdask.sky.chunker import Chunker
from tests.emulator.api import unique_db
from tests.emulator.loader_client import FINISHED, load_file

TABLES = ["Object", "Source", "Filter", "LeapSeconds", "Logs", "RefSrcMatch"]
API = 55  # replication_interface.py:46
JSON = {"Content-Type": "application/json"}


def partition(data: Path, table: str, out: Path) -> dict[int, list[int]]:
    """Chunk files of one table as sph-partition writes them; returns chunk → object ids (Object only)."""
    part = json.loads((data / "partition" / f"{table}.json").read_text())
    common = json.loads((data / "partition" / "common.json").read_text())["part"]
    fields = part["in"]["csv"]["field"]
    i_ra, i_dec = (fields.index(s.strip()) for s in part["part"]["pos"].split(","))
    with gzip.open(data / f"{table}.tsv.gz", "rb") as f:
        lines = [line.rstrip(b"\n") for line in f]
    cells = [line.split(b"\t") for line in lines]
    ra = np.array([float(c[i_ra]) for c in cells])
    dec = np.array([float(c[i_dec]) for c in cells])
    chunker = Chunker(common["num-stripes"], common["num-sub-stripes"], part["part"]["overlap"])
    cids, scids = chunker.locate(ra, dec)
    out.mkdir(parents=True)
    files: dict[str, list[bytes]] = {}
    ids: dict[int, list[int]] = {}
    for k, (c, s) in enumerate(zip(cids.tolist(), scids.tolist(), strict=True)):
        files.setdefault(f"chunk_{c}.txt", []).append(lines[k] + b"\t%d\t%d\n" % (c, s))
        ids.setdefault(c, []).append(int(cells[k][0]))
    rows, ocids, oscids = chunker.locate_overlap(ra, dec)
    for k, c, s in zip(rows.tolist(), ocids.tolist(), oscids.tolist(), strict=True):
        files.setdefault(f"chunk_{c}_overlap.txt", []).append(lines[k] + b"\t%d\t%d\n" % (c, s))
    for name, content in files.items():
        (out / name).write_bytes(b"".join(content))
    chunks = sorted({int(n.split("_")[1].split(".")[0]) for n in files})
    (out / "chunk_info.json").write_text(json.dumps({"chunks": [{"id": c} for c in chunks]}))
    return ids


class QservLoader:
    """The requests Qserv's loader sends, in its order and shapes (query ``version``, JSON bodies, a GET
    with a body, multipart fields without a version)."""

    def __init__(self, qserv, load_http: bool):
        self.qserv = qserv
        self.load_http = load_http
        self.http = httpx.Client(timeout=120)
        self.ctl = qserv.controller_url
        self.contributions = 0

    def _check(self, resp: httpx.Response) -> dict:
        answer = resp.json()
        assert answer["success"] == 1, (resp.request.method, str(resp.request.url), answer)  # _check (:66-78)
        return answer

    def _call(self, method: str, url: str, body: dict) -> dict:
        return self._check(self.http.request(method, url, content=json.dumps(body), headers=JSON))

    def get_databases(self) -> list[str]:
        config = self._call("GET", f"{self.ctl}/replication/config?version={API}", {})["config"]
        return [d["database"] for d in config["databases"] or []]

    def ingest_database(self, body: dict) -> None:
        self._call("POST", f"{self.ctl}/ingest/database", {**body, "auth_key": self.qserv.auth_key})

    def ingest_table_config(self, body: dict) -> None:
        self._call("POST", f"{self.ctl}/ingest/table", {**body, "auth_key": self.qserv.auth_key})

    def start_transaction(self, db: str) -> int:
        body = {"database": db, "auth_key": self.qserv.auth_key}
        answer = self._call("POST", f"{self.ctl}/ingest/trans?version={API}", body)
        return int(answer["databases"][db]["transactions"][0]["id"])

    def commit_transaction(self, tid: int) -> None:
        url = f"{self.ctl}/ingest/trans/{tid}?version={API}&abort=0"
        self._call("PUT", url, {"auth_key": self.qserv.auth_key})

    def ingest_chunks_data(self, tid: int, table: str, folder: Path) -> None:
        chunks = [c["id"] for c in json.loads((folder / "chunk_info.json").read_text())["chunks"]]
        body = {"transaction_id": tid, "chunks": chunks, "auth_key": self.qserv.auth_key}
        for loc in self._call("POST", f"{self.ctl}/ingest/chunks?version={API}", body)["locations"]:
            for name, overlap in (
                (f"chunk_{loc['chunk']}.txt", False),
                (f"chunk_{loc['chunk']}_overlap.txt", True),
            ):
                if (folder / name).exists():
                    self.ingest_data_file(tid, str(loc["chunk"]), overlap, loc, folder / name, table)

    def ingest_table_data(self, tid: int, table: str, path: Path) -> None:
        body = {"auth_key": self.qserv.auth_key, "transaction_id": tid}
        for loc in self._call("GET", f"{self.ctl}/ingest/regular?version={API}", body)["locations"]:
            self.ingest_data_file(tid, "0", False, loc, path, table)

    def ingest_data_file(
        self, tid: int, chunk: str, overlap: bool, loc: dict, path: Path, table: str
    ) -> None:
        self.contributions += 1
        if self.load_http:
            fields = {
                "auth_key": self.qserv.auth_key,
                "transaction_id": str(tid),
                "table": table,
                "chunk": chunk,
                "overlap": "1" if overlap else "0",
                "fields_terminated_by": "\\t",  # LoadTable's defaults (itest_table.py)
                "fields_enclosed_by": "",
                "fields_escaped_by": "\\\\",
                "lines_terminated_by": "\\n",
            }
            url = f"http://{loc['http_host']}:{loc['http_port']}/ingest/csv"
            with path.open("rb") as f:
                self._check(self.http.post(url, data=fields, files={"file": (path.name, f, "text/plain")}))
        else:
            key = self.qserv.auth_key
            answer = load_file(loc["host"], int(loc["port"]), key, tid, table, int(chunk), overlap, path)
            assert answer.status == FINISHED, answer

    def publish_database(self, db: str) -> None:
        self._call("PUT", f"{self.ctl}/ingest/database/{db}?version={API}", {"auth_key": self.qserv.auth_key})

    def build_table_stats(self, db: str, tables: list[str]) -> None:
        for table in tables:
            body = {
                "database": db,
                "table": table,
                "row_counters_deploy_at_qserv": 1,
                "row_counters_state_update_policy": "ENABLED",
                "force_rescan": 1,
                "auth_key": self.qserv.auth_key,
                "admin_auth_key": self.qserv.admin_auth_key,
                "instance_id": "qserv_proj",
            }
            self._call("POST", f"{self.ctl}/ingest/table-stats?version={API}", body)


@pytest.mark.parametrize("load_http", [True, False], ids=["csv-upload", "binary-loader"])
def test_qserv_loader_sequence_on_case01(qserv, shared_data, tmp_path, load_http):
    data = shared_data / "qserv-itest" / "case01" / "data"
    db = unique_db("qcase01_")
    ingest = {
        name: json.loads((data / "ingest" / f"{name}.json").read_text()) for name in ["database", *TABLES]
    }
    for body in ingest.values():
        body["database"] = db
    object_chunks = partition(data, "Object", tmp_path / "Object")
    partition(data, "Source", tmp_path / "Source")
    expected = {}
    for table in TABLES:
        with gzip.open(data / f"{table}.tsv.gz", "rb") as f:
            raw = f.read()
        (tmp_path / f"{table}.tsv").write_bytes(raw)
        expected[table] = raw.count(b"\n")

    loader = QservLoader(qserv, load_http)
    assert db not in loader.get_databases()
    loader.ingest_database(ingest["database"])
    transactions = []
    for table in TABLES:
        loader.ingest_table_config(ingest[table])
        tid = loader.start_transaction(db)
        transactions.append(tid)
        if ingest[table]["is_partitioned"]:
            loader.ingest_chunks_data(tid, table, tmp_path / table)
        else:
            loader.ingest_table_data(tid, table, tmp_path / f"{table}.tsv")
        loader.commit_transaction(tid)
    loader.publish_database(db)
    loader.build_table_stats(db, TABLES)

    # every transaction committed, every contribution loaded all the rows it read
    report = loader.http.get(
        f"{qserv.controller_url}/ingest/trans",
        params={"database": db, "contrib": 1, "contrib_long": 1, "version": API},
    ).json()["databases"][db]
    assert sorted(t["id"] for t in report["transactions"]) == transactions
    assert {t["state"] for t in report["transactions"]} == {"FINISHED"}
    files = [c for t in report["transactions"] for c in t["contrib"]["files"]]
    assert len(files) == loader.contributions
    assert all(c["status"] == "FINISHED" and c["num_rows"] == c["num_rows_loaded"] for c in files)
    assert {c["url"].split(":")[0] for c in files} == {"data-csv" if load_http else "file"}

    with qserv.czar_connect(db) as conn, conn.cursor() as cur:
        for table in TABLES:  # every row once: chunk tables without overlaps, one copy of a regular table
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            assert cur.fetchone() == (expected[table],), table
        # the director index, built at each commit: every object with the chunk its row went to
        cur.execute(f"SELECT objectId, chunkId FROM qserv_qservMeta.`{db}__Object`")
        index = dict(cur.fetchall())
        assert index == {oid: c for c, oids in object_chunks.items() for oid in oids}
        # the row counters deployed for the czar
        for table in TABLES:
            cur.execute(f"SELECT SUM(num_rows) FROM qserv_qservMeta.`{db}__{table}__rows`")
            assert cur.fetchone() == (expected[table],), table
        cur.execute(f"SELECT DISTINCT chunk FROM qserv_qservMeta.`{db}__Object__rows`")
        assert sorted(r[0] for r in cur.fetchall()) == sorted(object_chunks)

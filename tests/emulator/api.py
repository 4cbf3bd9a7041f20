"""A minimal synchronous REST caller for the stand-in's tests (deliberately not qdask's own client)."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

VERSION = 55
_names = itertools.count(1)


def unique_db(stem: str) -> str:
    """A database name no other test of the session uses."""
    return f"{stem}{next(_names)}"


class Api:
    """Sends JSON exactly as a Qserv client does (``Content-Type: application/json``) and returns the body."""

    def __init__(self, qserv, key: str | None = None):
        self.qserv = qserv
        self.key = qserv.auth_key if key is None else key
        self.http = httpx.Client(timeout=60)

    def url(self, path: str, worker: str | None = None) -> str:
        base = self.qserv.worker_urls[worker] if worker else self.qserv.controller_url
        return base + path

    def call(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        worker: str | None = None,
        auth: bool = True,
        version: int | None = VERSION,
        params: dict | None = None,
    ) -> dict:
        body = dict(body or {})
        if auth and "auth_key" not in body and "admin_auth_key" not in body:
            body["auth_key"] = self.key
        if version is not None and "version" not in body and method != "GET":
            body["version"] = version
        params = dict(params or {})
        if method == "GET" and version is not None:
            params.setdefault("version", version)
        resp = self.http.request(
            method,
            self.url(path, worker),
            content=json.dumps(body),
            headers={"Content-Type": "application/json"},
            params=params,
        )
        assert resp.status_code == 200, (resp.status_code, resp.text)
        return resp.json()

    def get(self, path, body=None, **kw):
        return self.call("GET", path, body, auth=False, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def delete(self, path, body=None, **kw):
        return self.call("DELETE", path, body, **kw)

    # ---- workflow helpers
    def ok(self, answer: dict) -> dict:
        assert answer["success"] == 1, answer
        return answer

    def create_db(
        self, name: str, stripes: int = 85, sub: int = 12, overlap: float = 0.01667, **extra
    ) -> dict:
        return self.ok(
            self.post(
                "/ingest/database",
                {
                    "database": name,
                    "num_stripes": stripes,
                    "num_sub_stripes": sub,
                    "overlap": overlap,
                    **extra,
                },
            )
        )

    def create_director(self, db: str, table: str = "Obj", **extra) -> dict:
        schema = [
            {"name": "id", "type": "BIGINT NOT NULL"},
            {"name": "ra", "type": "DOUBLE NOT NULL"},
            {"name": "decl", "type": "DOUBLE NOT NULL"},
            {"name": "val", "type": "VARCHAR(32)"},
            {"name": "chunkId", "type": "INT NOT NULL"},
            {"name": "subChunkId", "type": "INT NOT NULL"},
        ]
        return self.ok(
            self.post(
                "/ingest/table",
                {
                    "database": db,
                    "table": table,
                    "is_partitioned": 1,
                    "director_table": "",
                    "director_key": "id",
                    "latitude_key": "decl",
                    "longitude_key": "ra",
                    "schema": schema,
                    **extra,
                },
            )
        )

    def create_regular(self, db: str, table: str = "Reg") -> dict:
        schema = [{"name": "k", "type": "INT NOT NULL"}, {"name": "name", "type": "VARCHAR(16)"}]
        return self.ok(
            self.post(
                "/ingest/table", {"database": db, "table": table, "is_partitioned": 0, "schema": schema}
            )
        )

    def begin(self, db: str) -> int:
        answer = self.ok(self.post("/ingest/trans", {"database": db}))
        return answer["databases"][db]["transactions"][0]["id"]

    def end(self, tid: int, abort: bool = False) -> dict:
        return self.put(f"/ingest/trans/{tid}", params={"abort": int(abort)})

    def allocate(self, tid: int, chunk: int) -> dict:
        return self.ok(self.post("/ingest/chunk", {"transaction_id": tid, "chunk": chunk}))["location"]

    def worker_of(self, location: dict) -> str:
        return location["worker"]

    def csv(
        self,
        worker: str,
        tid: int,
        table: str,
        chunk: int,
        data: bytes,
        overlap: int = 0,
        fields: dict | None = None,
        filename: str = "chunk.txt",
    ) -> dict:
        """``POST /ingest/csv`` as multipart: the fields first, then one file."""
        form = {
            "transaction_id": str(tid),
            "table": table,
            "chunk": str(chunk),
            "overlap": str(overlap),
            "auth_key": self.key,
            "version": str(VERSION),
            **(fields or {}),
        }
        resp = self.http.post(
            self.url("/ingest/csv", worker),
            data=form,
            files={"file": (filename, io.BytesIO(data), "text/plain")},
        )
        assert resp.status_code == 200, (resp.status_code, resp.text)
        return resp.json()


def rows(start: int, count: int, chunk: int, tag: str = "x") -> bytes:
    """TSV rows for the test director table (id, ra, decl, val, chunkId, subChunkId)."""
    return b"".join(
        f"{i}\t{i * 0.001:.6f}\t1.5\t{tag}{i}\t{chunk}\t{i % 7}\n".encode()
        for i in range(start, start + count)
    )


class Source:
    """A tiny HTTP data server for by-reference contributions; ``/block`` waits until ``release``."""

    def __init__(self, payload: bytes):
        self.release = threading.Event()
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path == "/missing":
                    self.send_response(404)
                    self.end_headers()
                    return
                if self.path == "/block":
                    source.release.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()


def wait_final(api, worker, cid):
    deadline = time.monotonic() + 60
    while True:
        status = api.get(f"/ingest/file-async/{cid}", worker=worker)["contrib"]
        if status["status"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return status
        time.sleep(0.05)

"""A Worker Ingest Server: contributions by reference (``/ingest/file[-async]``), by value
(``/ingest/data``, ``/ingest/csv``), async status/cancel and explicit retry (contract §4).

A contribution goes through Qserv's stages: validate → record (``IN_PROGRESS``) → start (temp file)
→ read (stream the source, prefix each row with the transaction id) → load (create chunk tables, add
partition ``p<T>``, ``LOAD DATA``, warnings) → ``FINISHED``, or the failed status of the stage that
broke, with ``retry_allowed`` as Qserv sets it. Uploads are streamed to the temp file block by block.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from urllib.parse import unquote, urlparse

import aiohttp
import pymysql
from aiohttp import web

from qdask.emulator.dialect import Dialect, RowPrefixer, RowTooLong
from qdask.emulator.faults import FaultInjector
from qdask.emulator.protocol import (
    API_VERSION,
    ApiError,
    Call,
    InvalidParam,
    Keys,
    check_auth,
    check_version,
    endpoint,
)
from qdask.emulator.state import State, now_ms
from qdask.emulator.storage import SqlPool, WorkerStorage, chunk_table

BLOCK = 1 << 20
DEFAULT_CHARSET = "latin1"
DEFAULT_MAX_WARNINGS = 64
DEFAULT_RETRIES, MAX_RETRIES = 1, 10
ASYNC_THREADS = 2


class StageFailed(Exception):
    """A contribution failed at a stage; carries the status, message and error fields to record."""

    def __init__(
        self, status: str, error: str, retry_allowed: bool, http_error: int = 0, system_error: int = 0
    ):
        super().__init__(error)
        self.status, self.error, self.retry_allowed = status, error, retry_allowed
        self.http_error, self.system_error = http_error, system_error


class Cancelled(Exception):
    pass


class WorkerNode:
    """One emulated worker: its HTTP service, storage namespace and async queue."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        state: State,
        pool: SqlPool,
        storage: WorkerStorage,
        keys: Keys,
        faults: FaultInjector,
        tmp_dir: str,
    ):
        self.name = name
        self.host = host
        self.port = port
        self.state = state
        self.pool = pool
        self.storage = storage
        self.keys = keys
        self.faults = faults
        self.tmp_dir = tmp_dir
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._cancel_requested: set[int] = set()
        self._running: dict[int, str] = {}  # contribution id → stage ("read" | "load")
        self._http: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ lifecycle
    def routes(self) -> list[web.RouteDef]:
        r = web
        return [
            r.get("/meta/version", self.meta_version),
            r.post("/ingest/file", self.ingest_file),
            r.post("/ingest/file-async", self.ingest_file_async),
            r.put("/ingest/file/{id}", self.retry_file),
            r.put("/ingest/file-async/{id}", self.retry_file_async),
            r.get("/ingest/file-async/trans/{id}", self.async_trans_status),
            r.delete("/ingest/file-async/trans/{id}", self.async_trans_cancel),
            r.get("/ingest/file-async/{id}", self.async_status),
            r.delete("/ingest/file-async/{id}", self.async_cancel),
            r.post("/ingest/data", self.ingest_data),
            r.post("/ingest/csv", self.ingest_csv),
        ]

    def start_async(self) -> None:
        self._tasks = [asyncio.create_task(self._async_loop()) for _ in range(ASYNC_THREADS)]

    async def resume(self) -> None:
        """After a restart: re-queue async contributions that had not reached loading, fail the rest."""
        for c in sorted(self.state.contribs.values(), key=lambda c: c["id"]):
            if c["worker"] != self.name or c["status"] != "IN_PROGRESS":
                continue
            if c["async"] and c["_internal"].get("stage", "queued") in ("queued", "read"):
                c["_internal"]["stage"] = "queued"
                await self.state.put_contrib(c)
                self.queue.put_nowait(c["id"])
            else:
                await self._fail(
                    c,
                    StageFailed(
                        "LOAD_FAILED",
                        "the worker ingest service was restarted while the contribution was being processed",
                        False,
                    ),
                )

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._http is not None:
            await self._http.close()

    # ------------------------------------------------------------------ helpers
    def event(self, c: dict) -> dict:
        return {
            "worker": self.name,
            "database": c["database"],
            "table": c["table"],
            "chunk": c["chunk"],
            "overlap": c["overlap"],
            "transaction_id": c["transaction_id"],
            "url": c["url"],
        }

    def _context(self, trans_id: int, table_name: str) -> tuple[dict, dict, dict]:
        """Transaction, database and table of a request; failures here are not recorded (as in Qserv)."""
        trans = self.state.transactions.get(trans_id)
        if trans is None:
            raise InvalidParam(f"invalid transaction identifier: {trans_id}")
        db = self.state.databases.get(trans["database"])
        if db is None:
            raise InvalidParam(f"no such database '{trans['database']}'.")
        table = self.state.tables.get((db["database"], table_name))
        if table is None:
            raise InvalidParam(f"no such table '{table_name}' in database '{db['database']}'")
        return trans, db, table

    def _new_contrib(
        self, trans: dict, table: dict, chunk: int, overlap: bool, url: str, params: dict, is_async: bool
    ) -> dict:
        partitioned = bool(table["is_partitioned"])
        return {
            "id": 0,
            "transaction_id": trans["id"],
            "worker": self.name,
            "database": trans["database"],
            "table": table["name"],
            "chunk": chunk if partitioned else 0,
            "overlap": int(overlap and partitioned),
            "url": url,
            "charset_name": params.get("charset_name") or DEFAULT_CHARSET,
            "async": int(is_async),
            "dialect_input": params["dialect"].input_json() if params.get("dialect") else {},
            "http_method": params.get("http_method", "GET"),
            "http_data": params.get("http_data", ""),
            "http_headers": params.get("http_headers", []),
            "max_retries": params.get("max_retries", 0),
            "num_failed_retries": 0,
            "failed_retries": [],
            "num_bytes": 0,
            "num_rows": 0,
            "num_rows_loaded": 0,
            "create_time": now_ms(),
            "start_time": 0,
            "read_time": 0,
            "load_time": 0,
            "status": "IN_PROGRESS",
            "tmp_file": "",
            "http_error": 0,
            "system_error": 0,
            "error": "",
            "retry_allowed": 0,
            "max_num_warnings": params.get("max_num_warnings") or DEFAULT_MAX_WARNINGS,
            "num_warnings": 0,
            "warnings": [],
            "_internal": {"regular": not partitioned, "stage": "queued"},
        }

    async def _register(self, c: dict, trans: dict, precheck: Callable[[], None] | None = None) -> dict:
        """Record the contribution: ``CREATE_FAILED`` (and raise) if the transaction is not active or the
        request is invalid in context, else ``IN_PROGRESS``."""
        c["id"] = await self.state.next_id("contrib")
        try:
            if trans["state"] != "STARTED":
                raise ApiError(f"transactionId={trans['id']} is not active")
            if precheck is not None:
                precheck()
        except ApiError as ex:
            c["status"], c["error"], c["retry_allowed"] = "CREATE_FAILED", ex.message, 0
            await self.state.put_contrib(c)
            raise
        await self.state.put_contrib(c)
        return c

    async def _fail(self, c: dict, ex: StageFailed) -> None:
        c["status"], c["error"], c["retry_allowed"] = ex.status, ex.error, int(ex.retry_allowed)
        c["http_error"], c["system_error"] = ex.http_error, ex.system_error
        if ex.status in ("READ_FAILED", "START_FAILED", "CANCELLED"):
            c["_internal"]["stage"] = "done"
        await self.state.put_contrib(c)

    def _start_checks(self, c: dict) -> None:
        """Context re-validated when processing starts (Qserv ``openFile``): failures → ``START_FAILED``."""
        trans = self.state.transactions.get(c["transaction_id"])
        db = self.state.databases.get(c["database"])
        table = self.state.tables.get((c["database"], c["table"]))
        if trans is None or trans["state"] != "STARTED":
            raise StageFailed("START_FAILED", f"transaction {c['transaction_id']} is not active", False)
        if db is None or table is None:
            raise StageFailed("START_FAILED", f"no such table '{c['table']}'", False)
        if db["is_published"]:
            raise StageFailed("START_FAILED", f"database '{db['database']}' is already PUBLISHED", False)
        if table["is_published"]:
            raise StageFailed("START_FAILED", f"table '{table['name']}' is already PUBLISHED", False)
        if table["is_partitioned"]:
            if self.name not in self.state.replicas.get(db["database"], {}).get(c["chunk"], []):
                raise StageFailed(
                    "START_FAILED",
                    f"chunk {c['chunk']} of the UNPUBLISHED database"
                    f" '{db['database']}' is not allocated to worker '{self.name}'",
                    False,
                )

    def _open_tmp(self, c: dict):
        fd, path = tempfile.mkstemp(
            prefix=f"{c['database']}-{c['table']}-{c['chunk']}-{c['transaction_id']}-",
            suffix=".csv",
            dir=self.tmp_dir,
        )
        os.chmod(path, 0o644)
        c["tmp_file"] = path
        return os.fdopen(fd, "wb", buffering=BLOCK)

    async def _read(self, c: dict, blocks: AsyncIterator[bytes], dialect: Dialect) -> None:
        """Stream the source into the temp file, prefixing rows; read errors → ``READ_FAILED`` (retry 1)."""
        c["_internal"]["stage"] = "read"
        self._running[c["id"]] = "read"
        c["start_time"] = now_ms()
        try:
            out = self._open_tmp(c)
        except OSError as ex:
            raise StageFailed(
                "START_FAILED",
                f"failed to create a temporary file, error: '{ex.strerror}'",
                True,
                system_error=ex.errno or 0,
            ) from None
        prefixer = RowPrefixer(dialect.trans_prefix(c["transaction_id"]))
        try:
            with out:
                if self.faults.fire(("read_failed",), self.event(c)):
                    raise StageFailed(
                        "READ_FAILED",
                        "failed to read the input: injected fault",
                        True,
                        system_error=errno.EIO,
                    )
                async for block in blocks:
                    if c["id"] in self._cancel_requested:
                        raise Cancelled()
                    out.write(prefixer.feed(block))
                prefixer.flush()
        except RowTooLong as ex:
            raise StageFailed("READ_FAILED", str(ex), True) from None
        finally:
            c["num_bytes"], c["num_rows"] = prefixer.num_bytes, prefixer.num_rows
        c["read_time"] = now_ms()

    async def _load(self, c: dict, dialect: Dialect) -> None:
        """Make the irreversible changes: chunk tables, partition ``p<T>``, LOAD DATA, warnings."""
        c["_internal"]["stage"] = "load"
        self._running[c["id"]] = "load"
        c["retry_allowed"] = 0
        await self.state.put_contrib(c)
        tid, dbname = c["transaction_id"], c["database"]
        trans = self.state.transactions.get(tid)
        if trans is None or trans["state"] != "STARTED":
            state = trans["state"] if trans else "UNKNOWN"
            raise StageFailed(
                "LOAD_FAILED",
                f"transaction {tid} changed state to {state} while the input file"
                " was being prepared for the ingest.",
                False,
            )
        table = self.state.tables[(dbname, c["table"])]
        max_warnings = c["max_num_warnings"]
        if table["is_partitioned"]:
            partitioned = [
                (t["name"], bool(t["is_published"]))
                for t in self.state.db_tables(dbname)
                if t["is_partitioned"]
            ]
            target = chunk_table(table["name"], c["chunk"], bool(c["overlap"]))
        else:
            target = table["name"]

        def work(conn):
            if table["is_partitioned"]:
                self.storage.ensure_chunk_tables(conn, dbname, partitioned, c["chunk"], tid)
            else:
                self.storage.add_regular_partition(conn, dbname, target, tid)
            return self.storage.load(
                conn, dbname, target, c["tmp_file"], c["charset_name"], dialect.sql_options(), max_warnings
            )

        try:
            result = await self.pool.run(work)
        except pymysql.err.MySQLError as ex:
            raise StageFailed("LOAD_FAILED", f"MySQL load failed, ex: {ex}", False) from None
        c["num_rows_loaded"], c["num_warnings"], c["warnings"] = (
            result.num_rows_loaded,
            result.num_warnings,
            result.warnings,
        )
        c["load_time"] = now_ms()
        trans = self.state.transactions.get(tid)
        if trans is None or trans["state"] in ("IS_ABORTING", "ABORTED", "ABORT_FAILED"):
            await self.pool.run(lambda conn: self.storage.drop_partition(conn, dbname, target, tid))
            raise StageFailed(
                "LOAD_FAILED", f"transaction {tid} got aborted while the file was being ingested", False
            )
        if self.faults.fire(("load_failed",), self.event(c)):
            raise StageFailed("LOAD_FAILED", "MySQL load failed, ex: injected fault", False)

    def _cleanup(self, c: dict) -> None:
        self._running.pop(c["id"], None)
        self._cancel_requested.discard(c["id"])
        if c["tmp_file"]:
            with contextlib.suppress(OSError):
                os.unlink(c["tmp_file"])

    async def _process(
        self, c: dict, blocks_factory: Callable[[], AsyncIterator[bytes]], dialect: Dialect, max_retries: int
    ) -> None:
        """Start, read (with automatic re-reads up to ``max_retries``), load; records the final status."""
        try:
            try:
                self._start_checks(c)
            except StageFailed as ex:
                await self._fail(c, ex)
                raise
            while True:
                try:
                    await self._read(c, blocks_factory(), dialect)
                    break
                except StageFailed as ex:
                    if ex.status != "READ_FAILED" or c["num_failed_retries"] >= max_retries:
                        await self._fail(c, ex)
                        raise
                    self._archive_attempt(c, ex)
                    self._cleanup_tmp(c)
            c["retry_allowed"] = 0
            try:
                await self._load(c, dialect)
            except StageFailed as ex:
                await self._fail(c, ex)
                raise
            c["status"], c["_internal"]["stage"] = "FINISHED", "done"
            await self.state.put_contrib(c)
        except Cancelled:
            await self._fail(c, StageFailed("CANCELLED", "the request was cancelled", True))
            raise
        finally:
            self._cleanup(c)

    def _cleanup_tmp(self, c: dict) -> None:
        if c["tmp_file"]:
            with contextlib.suppress(OSError):
                os.unlink(c["tmp_file"])
            c["tmp_file"] = ""

    @staticmethod
    def _archive_attempt(c: dict, ex: StageFailed) -> None:
        c["failed_retries"].append(
            {
                "num_bytes": c["num_bytes"],
                "num_rows": c["num_rows"],
                "start_time": c["start_time"],
                "read_time": c["read_time"],
                "tmp_file": c["tmp_file"],
                "http_error": ex.http_error,
                "system_error": ex.system_error,
                "error": ex.error,
            }
        )
        c["num_failed_retries"] += 1
        c["num_bytes"] = c["num_rows"] = 0
        c["start_time"] = c["read_time"] = 0

    @staticmethod
    def _error_ext(ex: StageFailed) -> dict:
        if ex.status == "READ_FAILED":
            return {"http_error": ex.http_error, "system_error": ex.system_error, "retry_allowed": 1}
        return {}

    # ------------------------------------------------------------------ sources
    def _source(self, c: dict) -> Callable[[], AsyncIterator[bytes]]:
        url = c["url"]
        scheme = urlparse(url).scheme
        if scheme == "file":
            return lambda: self._read_file(unquote(urlparse(url).path))
        return lambda: self._read_http(c)

    @staticmethod
    async def _read_file(path: str) -> AsyncIterator[bytes]:
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed below)
        except OSError as ex:
            raise StageFailed(
                "READ_FAILED",
                f"failed to open the file '{path}', error: '{ex.strerror}', errno: {ex.errno}",
                True,
                system_error=ex.errno or 0,
            ) from None
        with f:
            while True:
                block = await asyncio.to_thread(f.read, BLOCK)
                if not block:
                    return
                yield block

    async def _read_http(self, c: dict) -> AsyncIterator[bytes]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = {}
        for h in c["http_headers"]:
            name, _, value = h.partition(":")
            headers[name.strip()] = value.strip()
        try:
            async with self._http.request(
                c["http_method"], c["url"], data=c["http_data"] or None, headers=headers
            ) as resp:
                if resp.status != 200:
                    raise StageFailed(
                        "READ_FAILED",
                        f"HTTP request failed with code {resp.status}",
                        True,
                        http_error=resp.status,
                    )
                async for block in resp.content.iter_chunked(BLOCK):
                    yield block
        except aiohttp.ClientError as ex:
            raise StageFailed(
                "READ_FAILED",
                f"failed to read the input from '{c['url']}': {ex}",
                True,
                system_error=errno.ECONNREFUSED,
            ) from None

    # ------------------------------------------------------------------ meta
    @endpoint(None)
    async def meta_version(self, call: Call) -> dict:
        return {
            "kind": "replication-worker-ingest",
            "id": self.name,
            "instance_id": "qdask-emulator",
            "version": API_VERSION,
        }

    # ------------------------------------------------------------------ by reference
    def _file_params(self, call: Call) -> dict:
        trans_id = call.required_uint("transaction_id")
        table = call.required("table")
        chunk = call.required_uint("chunk")
        overlap = call.required_int("overlap") != 0
        url = call.required("url")
        headers = call.optional("http_headers", [], (list,))
        max_retries = min(call.optional_uint("max_retries", DEFAULT_RETRIES), MAX_RETRIES)
        return {
            "transaction_id": trans_id,
            "table": table,
            "chunk": chunk,
            "overlap": overlap,
            "url": url,
            "charset_name": call.optional("charset_name", DEFAULT_CHARSET) or DEFAULT_CHARSET,
            "http_method": call.optional("http_method", "GET") or "GET",
            "http_data": call.optional("http_data", ""),
            "http_headers": headers,
            "max_num_warnings": min(call.optional_uint("max_num_warnings", 0), 65535),
            "max_retries": max_retries,
            "dialect_params": {
                k: call.body.get(k, "")
                for k in (
                    "fields_terminated_by",
                    "fields_enclosed_by",
                    "fields_escaped_by",
                    "lines_terminated_by",
                )
            },
        }

    async def _submit_file(self, call: Call, is_async: bool) -> dict:
        p = self._file_params(call)
        trans, _db, table = self._context(p["transaction_id"], p["table"])
        c = self._new_contrib(trans, table, p["chunk"], p["overlap"], p["url"], p, is_async)
        holder: dict = {}

        def precheck():
            if urlparse(p["url"]).scheme not in ("file", "http", "https"):
                raise InvalidParam(f"unsupported url '{p['url']}'")
            holder["dialect"] = Dialect.from_params(p["dialect_params"])
            c["dialect_input"] = holder["dialect"].input_json()

        await self._register(c, trans, precheck)
        if is_async:
            self.queue.put_nowait(c["id"])
            return {"contrib": self._json(c)}
        try:
            await self._process(c, self._source(c), holder["dialect"], p["max_retries"])
        except StageFailed as ex:
            raise ApiError(ex.error, self._error_ext(ex)) from None
        return self._answer(call, c)

    @endpoint(16, auth=True)
    async def ingest_file(self, call: Call) -> dict:
        return await self._submit_file(call, is_async=False)

    @endpoint(16, auth=True)
    async def ingest_file_async(self, call: Call) -> dict:
        return await self._submit_file(call, is_async=True)

    async def _async_loop(self) -> None:
        while True:
            cid = await self.queue.get()
            c = self.state.contribs.get(cid)
            if c is None or c["status"] != "IN_PROGRESS":
                continue
            if cid in self._cancel_requested:
                self._cancel_requested.discard(cid)
                await self._fail(c, StageFailed("CANCELLED", "the request was cancelled", True))
                continue
            try:
                dialect = Dialect.from_params(c["dialect_input"])
                await self._process(
                    c, self._source(c), dialect, 0 if c["_internal"].get("retry") else c["max_retries"]
                )
            except (StageFailed, Cancelled, ApiError):
                pass
            except Exception as ex:  # keep the queue alive whatever happens
                await self._fail(c, StageFailed("LOAD_FAILED", f"unexpected error: {ex}", False))

    def _own_contrib(self, cid: int) -> dict:
        c = self.state.contribs.get(cid)
        if c is None:
            raise ApiError(f"request {cid} was not found")
        return c

    def _answer(self, call: Call, c: dict) -> dict | web.Response:
        """The sync answer ``{"contrib": ...}``, unless a ``drop_response`` fault loses it."""
        if self.faults.fire(("drop_response",), self.event(c)):
            call.request.transport.abort()
            return web.Response(status=500)
        return {"contrib": self._json(c)}

    def _json(self, c: dict) -> dict:
        out = dict(c)
        out.pop("_internal", None)
        return out

    @endpoint(13)
    async def async_status(self, call: Call) -> dict:
        cid = _path_uint(call.match("id"))
        c = self._own_contrib(cid)
        if c["worker"] != self.name:
            raise ApiError(f"request {cid} was not found")
        return {"contrib": self._json(c)}

    @endpoint(13)
    async def async_trans_status(self, call: Call) -> dict:
        tid = _path_uint(call.match("id"))
        return {
            "contribs": [
                self._json(c)
                for c in sorted(self.state.contribs.values(), key=lambda c: c["id"])
                if c["transaction_id"] == tid and c["worker"] == self.name and c["async"]
            ]
        }

    async def _cancel(self, c: dict) -> None:
        if c["status"] != "IN_PROGRESS":
            return
        stage = self._running.get(c["id"])
        if stage == "load":
            return  # loading is not interruptible
        self._cancel_requested.add(c["id"])
        if stage is None:
            await self._fail(c, StageFailed("CANCELLED", "the request was cancelled", True))

    @endpoint(13, auth=True)
    async def async_cancel(self, call: Call) -> dict:
        cid = _path_uint(call.match("id"))
        c = self._own_contrib(cid)
        if c["worker"] != self.name or not c["async"]:
            raise ApiError(f"request {cid} was not found")
        await self._cancel(c)
        return {"contrib": self._json(c)}

    @endpoint(13, auth=True)
    async def async_trans_cancel(self, call: Call) -> dict:
        tid = _path_uint(call.match("id"))
        out = []
        for c in sorted(self.state.contribs.values(), key=lambda c: c["id"]):
            if c["transaction_id"] == tid and c["worker"] == self.name and c["async"]:
                await self._cancel(c)
                out.append(self._json(c))
        return {"contribs": out}

    async def _retry(self, call: Call, is_async: bool) -> dict:
        cid = _path_uint(call.match("id"))
        c = self._own_contrib(cid)
        if c["worker"] != self.name:
            raise ApiError(f"the contribution {cid} was originally processed by worker '{c['worker']}'")
        if c["status"] != "READ_FAILED":
            raise ApiError(
                f"the contribution {cid} is not in state READ_FAILED, the actual state is {c['status']}."
            )
        self._archive_attempt(
            c, StageFailed(c["status"], c["error"], True, c["http_error"], c["system_error"])
        )
        c.update(
            status="IN_PROGRESS",
            error="",
            http_error=0,
            system_error=0,
            retry_allowed=0,
            tmp_file="",
            num_rows_loaded=0,
            num_warnings=0,
            warnings=[],
        )
        c["async"] = int(is_async)
        c["_internal"].update(stage="queued", retry=True)
        await self.state.put_contrib(c)
        if is_async:
            self.queue.put_nowait(cid)
            return {"contrib": self._json(c)}
        try:
            await self._process(c, self._source(c), Dialect.from_params(c["dialect_input"]), 0)
        except StageFailed as ex:
            raise ApiError(ex.error, self._error_ext(ex)) from None
        return self._answer(call, c)

    @endpoint(16, auth=True)
    async def retry_file(self, call: Call) -> dict:
        return await self._retry(call, is_async=False)

    @endpoint(16, auth=True)
    async def retry_file_async(self, call: Call) -> dict:
        return await self._retry(call, is_async=True)

    # ------------------------------------------------------------------ by value: JSON rows
    @endpoint(35, auth=True)
    async def ingest_data(self, call: Call) -> dict:
        trans_id = call.required_uint("transaction_id")
        table_name = call.required("table")
        chunk = call.required_uint("chunk")
        overlap = call.required_int("overlap") != 0
        charset = call.optional("charset_name", DEFAULT_CHARSET) or DEFAULT_CHARSET
        encoding = call.optional("binary_encoding", "hex")
        if encoding not in ("hex", "b64", "array"):
            raise InvalidParam(f"unsupported binary encoding '{encoding}'")
        max_warnings = min(call.optional_uint("max_num_warnings", 0), 65535)
        if "rows" not in call.body:
            raise InvalidParam("a collection of rows is missing in the request")
        rows = call.body["rows"]
        if not isinstance(rows, list):
            raise InvalidParam("a collection of rows in the request is not the JSON array")
        if not rows:
            raise InvalidParam("a collection of rows in the request is empty")
        trans, _db, table = self._context(trans_id, table_name)
        dialect = Dialect(fields_enclosed_by='"')
        client = call.request.remote or "127.0.0.1"
        params = {"charset_name": charset, "dialect": dialect, "max_num_warnings": max_warnings}
        c = self._new_contrib(trans, table, chunk, overlap, f"data-json://{client}/", params, False)
        await self._register(c, trans)
        columns = table["columns"][1:]
        binary = [any(k in col["type"].upper() for k in ("BIT", "BINARY", "BLOB")) for col in columns]

        async def blocks():
            lines = []
            for r, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != len(columns):
                    raise StageFailed(
                        "START_FAILED", "the row size in the request doesn't match the table schema", False
                    )
                fields = [_json_field(v, r, i, binary[i], encoding) for i, v in enumerate(row)]
                lines.append(b"\t".join(b'"' + f + b'"' for f in fields) + b"\n")
                if len(lines) >= 1000:
                    yield b"".join(lines)
                    lines = []
            if lines:
                yield b"".join(lines)

        try:
            await self._process(c, blocks, dialect, 0)
        except StageFailed as ex:
            raise ApiError(ex.error, self._error_ext(ex)) from None
        return self._answer(call, c)

    # ------------------------------------------------------------------ by value: CSV upload
    @endpoint(38, auth=False, json_body=False)
    async def ingest_csv(self, call: Call) -> dict | web.StreamResponse:
        """``multipart/form-data``: fields (auth, version, params) then exactly one file, streamed to disk."""
        request = call.request
        if not request.content_type.startswith("multipart/form-data"):
            raise ApiError("the request is not a multipart form data")
        reader = await request.multipart()
        fields: dict[str, str] = {}
        c: dict | None = None
        while True:
            part = await reader.next()
            if part is None:
                break
            if part.filename is None:
                fields[part.name or ""] = (await part.read(decode=False)).decode("utf-8", "replace")
                continue
            if c is not None:
                raise ApiError("the service only allows one file per request")
            call.body, call.form = fields, True
            check_auth(call, self.keys)
            check_version(call, 38)
            c, dialect = await self._csv_begin(call, fields, part.filename, request)
            dropped = await self._csv_upload(c, part, dialect, request)
            if dropped:
                return web.Response(status=500)
        if c is None:
            call.body, call.form = fields, True
            check_auth(call, self.keys)
            check_version(call, 38)
            raise ApiError("no file was sent in the request")
        return self._answer(call, c)

    async def _csv_begin(self, call: Call, fields: dict, filename: str, request) -> tuple[dict, Dialect]:
        trans_id = call.required_uint("transaction_id")
        table_name = call.required("table")
        chunk = call.required_uint("chunk")
        overlap = call.required_int("overlap") != 0
        trans, _db, table = self._context(trans_id, table_name)
        params = {
            "charset_name": fields.get("charset_name") or DEFAULT_CHARSET,
            "max_num_warnings": min(call.optional_uint("max_num_warnings", 0), 65535),
        }
        client = request.remote or "127.0.0.1"
        c = self._new_contrib(trans, table, chunk, overlap, f"data-csv://{client}/{filename}", params, False)
        holder = {}

        def precheck():
            holder["dialect"] = Dialect.from_params(fields)
            c["dialect_input"] = holder["dialect"].input_json()

        await self._register(c, trans, precheck)
        return c, holder["dialect"]

    async def _csv_upload(self, c: dict, part, dialect: Dialect, request) -> bool:
        """Stream the file part through the row prefixer, then load. True if the connection was dropped."""
        drop = self.faults.fire(("drop_upload",), self.event(c))

        async def blocks():
            first = True
            while True:
                block = await part.read_chunk(BLOCK)
                if not block:
                    return
                yield block
                if drop and first:
                    raise StageFailed(
                        "READ_FAILED",
                        "the connection was closed while the file was being uploaded",
                        True,
                        system_error=errno.ECONNRESET,
                    )
                first = False

        try:
            await self._process(c, lambda: blocks(), dialect, 0)
        except StageFailed as ex:
            if drop:
                request.transport.abort()
                return True
            raise ApiError(ex.error, self._error_ext(ex)) from None
        return False


def _path_uint(value: str) -> int:
    if not value.isdigit():
        raise InvalidParam(f"the value '{value}' is not an unsigned integer.")
    return int(value)


def _json_field(value, row: int, col: int, is_binary: bool, encoding: str) -> bytes:
    """One ``/ingest/data`` element as the worker writes it (floats with 6 decimals, strings verbatim)."""
    if is_binary:
        try:
            if encoding == "array" and isinstance(value, list):
                raw = bytes(value)
            elif encoding == "hex" and isinstance(value, str):
                raw = bytes.fromhex(value)
            elif encoding == "b64" and isinstance(value, str):
                raw = base64.b64decode(value, validate=True)
            else:
                raise ValueError
        except (ValueError, TypeError):
            raise StageFailed(
                "START_FAILED",
                f"failed to decode a binary value at row {row} and column {col} using encoding '{encoding}'",
                False,
            ) from None
        return (
            raw.replace(b"\\", b"\\\\")
            .replace(b'"', b'\\"')
            .replace(b"\t", b"\\t")
            .replace(b"\n", b"\\n")
            .replace(b"\0", b"\\0")
        )
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return f"{value:f}".encode()
    if isinstance(value, str):
        return value.encode("utf-8")
    kind = "null" if value is None else type(value).__name__
    raise StageFailed(
        "START_FAILED",
        f"unsupported type name '{kind}' found at row {row} and column {col} of the JSON array",
        False,
    )

"""Contributions by reference: Qserv's ``IngestHttpSvcMod`` with ``IngestRequest`` and ``IngestRequestMgr``
(``/ingest/file``, ``/ingest/file-async``, retries, status and cancellation).

A request is checked and recorded when it arrives (``IngestRequest.cc:239-308``: ``CREATE_FAILED`` with
``retry_allowed=0``), then processed now (sync) or by the worker's async threads: start (the state checked
again → ``START_FAILED``, ``retry_allowed=0``, ``:355-403``; then ``openFile`` → ``START_FAILED``,
``retry_allowed=1``, ``:405-432``), read with automatic re-reads up to ``max_retries``, load.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

from aiohttp import web

from qdask.emulator.contract import (
    ASYNC_LOADER_THREADS,
    INGEST_CHARSET,
    INGEST_MAX_RETRIES,
    INGEST_NUM_RETRIES,
    LOADER_MAX_WARNINGS,
    ContribStatus,
    TransactionState,
)
from qdask.emulator.dialect import Dialect
from qdask.emulator.protocol import ApiError, Call, InvalidParam, Keys, OperationFailed, endpoint
from qdask.emulator.records import Contribution, Database, FailedRetry, Table, Transaction
from qdask.emulator.worker.file_svc import Cancelled, IngestFileSvc, WorkerModule, dialect_input
from qdask.emulator.worker.sources import HttpReader, source, url_scheme

CREATE = "INGEST-REQUEST  IngestRequest "
START = "INGEST-REQUEST  _processStart "
RETRY = "INGEST-REQUEST  createRetry "
MANAGER = "INGEST-REQUEST-MGR  "


def validate_state(trans: Transaction, db: Database, table: Table, c: Contribution) -> None:
    """``IngestRequest::_validateState`` (``IngestRequest.cc:226-237``)."""
    if db.is_published:
        raise OperationFailed(f"database '{db.name}' is already published.")
    if table.is_published:
        raise OperationFailed(f"table '{c.table}' of database '{db.name}' is already published.")
    if trans.state is not TransactionState.STARTED:
        raise OperationFailed(f"transactionId={c.transaction_id} is not active")


class FileRequests(WorkerModule):
    """The by-reference services of one worker and its queue of async requests."""

    CONTEXT: ClassVar[str] = "INGEST-HTTP-SVC "

    def __init__(self, svc: IngestFileSvc, keys: Keys):
        super().__init__(svc, keys)
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.http = HttpReader()
        self._tasks: list[asyncio.Task] = []
        self._cancel_requested: set[int] = set()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/ingest/file", self.ingest_file),
            web.post("/ingest/file-async", self.ingest_file_async),
            web.put("/ingest/file/{id}", self.retry_file),
            web.put("/ingest/file-async/{id}", self.retry_file_async),
            web.get("/ingest/file-async/trans/{id}", self.trans_status),
            web.delete("/ingest/file-async/trans/{id}", self.trans_cancel),
            web.get("/ingest/file-async/{id}", self.status),
            web.delete("/ingest/file-async/{id}", self.cancel),
        ]

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._async_loop()) for _ in range(ASYNC_LOADER_THREADS)]

    async def resume(self) -> None:
        """After a restart: re-queue async requests that had not begun loading, fail the others."""
        state = self.svc.state
        for c in sorted(state.contribs.values(), key=lambda c: c.id):
            if c.worker != self.svc.worker or c.status is not ContribStatus.IN_PROGRESS:
                continue
            if c.is_async and c.stage in ("queued", "read"):
                c.stage = "queued"
                await state.save(c)
                self.queue.put_nowait(c.id)
            else:
                await self.svc.failed(
                    c,
                    ContribStatus.LOAD_FAILED,
                    "the worker ingest service was restarted while the contribution was being processed",
                    False,
                )

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.http.close()

    # ---------------------------------------------------------------- a new request
    async def _create(self, call: Call, is_async: bool) -> Contribution:
        """``IngestHttpSvcMod::_createRequest`` and the ``IngestRequest`` constructor."""
        trans_id = call.json_uint("transaction_id")
        table_name = call.json_str("table")
        chunk = call.json_uint("chunk")
        overlap = call.json_int("overlap") != 0
        url = call.json_str("url")
        charset = call.json_str("charset_name", INGEST_CHARSET)
        dialect = dialect_input(call)
        method = call.json_str("http_method", "GET")
        data = call.json_str("http_data", "")
        headers = call.json_strs("http_headers", [])
        max_warnings = call.json_uint("max_num_warnings", 0) or LOADER_MAX_WARNINGS
        max_retries = min(call.json_uint("max_retries", INGEST_NUM_RETRIES), INGEST_MAX_RETRIES)
        trans = self.svc.state.transaction(trans_id)
        db = self.svc.state.database(trans.database)
        table = self.svc.state.tables.get((db.name, table_name))
        if table is None:
            raise InvalidParam(f"{CREATE}no such table '{table_name}' in database '{db.name}'.")
        c = self.svc.new(
            trans,
            table,
            chunk,
            overlap,
            url,
            charset,
            dialect,
            max_warnings,
            is_async=is_async,
            http_method=method,
            http_data=data,
            http_headers=headers,
            max_retries=max_retries,
        )
        try:
            validate_state(trans, db, table, c)
            if url_scheme(url)[0] not in ("file", "http", "https"):
                raise InvalidParam(f"{CREATE}unsupported url '{url}'")
            Dialect.from_params(dialect)
        except ApiError as ex:
            await self.svc.created(c, CREATE + ex.what)  # :300-306, retry_allowed stays 0
            raise
        await self.svc.created(c)
        return c

    # ---------------------------------------------------------------- processing
    async def process(self, c: Contribution) -> None:
        """``IngestRequest::process``: start, read (re-read up to ``max_retries``), load."""
        svc = self.svc
        try:
            await self._start(c)
            dialect = Dialect.from_params(c.dialect_input)
            while True:
                try:
                    await svc.read(c, source(c, self.http), dialect, lambda: c.id in self._cancel_requested)
                    break
                except ApiError as ex:
                    ext = ex.ext
                    await svc.failed(
                        c,
                        ContribStatus.READ_FAILED,
                        ex.what,
                        True,
                        ext.get("http_error", 0),
                        ext.get("system_error", 0),
                    )
                    if c.num_failed_retries >= c.max_retries:
                        raise
                    self._archive_attempt(c)
                    svc.close_file(c)
                    c.status = ContribStatus.IN_PROGRESS
                    svc.open_file(c)
            if c.id in self._cancel_requested:
                raise Cancelled()
            try:
                await svc.load(c, dialect)
            except ApiError as ex:
                await svc.failed(c, ContribStatus.LOAD_FAILED, ex.what, False)
                raise
            await svc.finished(c)
        except Cancelled:
            await svc.failed(c, ContribStatus.CANCELLED, "cancelled before loading data into MySQL", True)
            raise
        finally:
            self._cancel_requested.discard(c.id)
            svc.close_file(c)

    async def _start(self, c: Contribution) -> None:
        """``_processStart``: the state again (→ retry 0), then ``openFile`` (→ retry 1, ``:405-432``)."""
        svc = self.svc
        trans = svc.state.transaction(c.transaction_id)
        db = svc.state.database(trans.database)
        table = svc.state.tables.get((db.name, c.table))
        if table is None:
            raise InvalidParam(f"{START}no such table '{c.table}' exists in database '{c.database}'.")
        try:
            validate_state(trans, db, table, c)
        except ApiError as ex:
            await svc.failed(c, ContribStatus.START_FAILED, START + ex.what, False)
            raise
        try:
            svc.open_file(c)
        except ApiError as ex:
            ext = ex.ext
            await svc.failed(
                c,
                ContribStatus.START_FAILED,
                ex.what,
                True,
                ext.get("http_error", 0),
                ext.get("system_error", 0),
            )
            raise
        await svc.state.save(c)

    @staticmethod
    def _archive_attempt(c: Contribution) -> None:
        """``resetForRetry``: the failed read goes to ``failed_retries``; the counters start again."""
        c.failed_retries.append(
            FailedRetry(
                c.num_bytes,
                c.num_rows,
                c.start_time,
                c.read_time,
                c.tmp_file,
                c.http_error,
                c.system_error,
                c.error,
            )
        )
        c.num_failed_retries = len(c.failed_retries)
        c.num_bytes = c.num_rows = c.start_time = c.read_time = 0
        c.http_error = c.system_error = 0
        c.error, c.retry_allowed = "", False

    async def _async_loop(self) -> None:
        while True:
            cid = await self.queue.get()
            c = self.svc.state.contribs.get(cid)
            if c is None or c.status is not ContribStatus.IN_PROGRESS:
                self._cancel_requested.discard(cid)
                continue
            if cid in self._cancel_requested:
                self._cancel_requested.discard(cid)
                await self.svc.failed(
                    c, ContribStatus.CANCELLED, "cancelled before beginning processing the request.", True
                )
                continue
            try:
                await self.process(c)
            except (ApiError, Cancelled):
                pass
            except Exception as ex:  # keep the queue alive whatever happens
                await self.svc.failed(c, ContribStatus.LOAD_FAILED, f"unexpected error: {ex}", False)

    # ---------------------------------------------------------------- services
    @endpoint(16, auth=True)
    async def ingest_file(self, call: Call) -> dict | web.Response:
        c = await self._create(call, is_async=False)
        await self.process(c)
        return self.svc.answer(call, c)

    @endpoint(16, auth=True)
    async def ingest_file_async(self, call: Call) -> dict:
        c = await self._create(call, is_async=True)
        self.queue.put_nowait(c.id)
        return {"contrib": c.to_json()}

    async def _retry(self, call: Call, is_async: bool) -> Contribution:
        """``IngestRequest::createRetry`` (``IngestRequest.cc:182-224``): only a READ_FAILED request of
        this worker may be read again; the failed attempt is archived."""
        cid = call.path_id()
        c = self.svc.state.contribs.get(cid)
        if c is None:
            raise OperationFailed(f"{RETRY}failed to locate the contribution id={cid} in the database.")
        if c.status is not ContribStatus.READ_FAILED:
            raise InvalidParam(
                f"contribution id={cid} is not in state READ_FAILED, the actual state is {c.status}."
            )
        if c.worker != self.svc.worker:
            raise InvalidParam(
                f"contribution id={cid} was originally processed by worker '{c.worker}', while this retry"
                f" operation was request at worker '{self.svc.worker}'."
            )
        self._archive_attempt(c)
        c.status, c.is_async, c.stage = ContribStatus.IN_PROGRESS, is_async, "queued"
        c.tmp_file, c.num_rows_loaded, c.num_warnings, c.warnings = "", 0, 0, []
        await self.svc.state.save(c)
        return c

    @endpoint(16, auth=True)
    async def retry_file(self, call: Call) -> dict | web.Response:
        c = await self._retry(call, is_async=False)
        await self.process(c)
        return self.svc.answer(call, c)

    @endpoint(16, auth=True)
    async def retry_file_async(self, call: Call) -> dict:
        c = await self._retry(call, is_async=True)
        self.queue.put_nowait(c.id)
        return {"contrib": c.to_json()}

    def _find(self, cid: int) -> Contribution:
        """``IngestRequestMgr::find``: any recorded contribution (``IngestRequestMgr.cc:223-248``)."""
        c = self.svc.state.contribs.get(cid)
        if c is None:
            raise OperationFailed(f"{MANAGER}find request {cid} was not found")
        return c

    def _async_of_transaction(self, tid: int) -> list[Contribution]:
        return [c for c in self.svc.state.trans_contribs(tid) if c.worker == self.svc.worker and c.is_async]

    @endpoint(13)
    async def status(self, call: Call) -> dict:
        return {"contrib": self._find(call.path_id()).to_json()}

    @endpoint(13)
    async def trans_status(self, call: Call) -> dict:
        return {"contribs": [c.to_json() for c in self._async_of_transaction(call.path_id())]}

    async def _cancel(self, c: Contribution) -> None:
        """Queued: cancelled at once; reading: at the next block; loading: too late."""
        if c.status is not ContribStatus.IN_PROGRESS or c.stage == "load":
            return
        self._cancel_requested.add(c.id)
        if c.stage == "queued":
            await self.svc.failed(
                c, ContribStatus.CANCELLED, "cancelled before beginning processing the request.", True
            )

    @endpoint(13, auth=True)
    async def cancel(self, call: Call) -> dict:
        c = self._find(call.path_id())
        await self._cancel(c)
        return {"contrib": c.to_json()}

    @endpoint(13, auth=True)
    async def trans_cancel(self, call: Call) -> dict:
        out = []
        for c in self._async_of_transaction(call.path_id()):
            await self._cancel(c)
            out.append(c.to_json())
        return {"contribs": out}

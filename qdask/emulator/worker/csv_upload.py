"""Contributions uploaded as files: Qserv's ``http::FileUploadModule`` with ``IngestFileHttpSvcMod``
(``POST /ingest/csv``, multipart form: fields first, then exactly one file, streamed to disk).

The order of checks is Qserv's: a body that is not multipart is refused as an authorization failure
(``FileUploadModule.cc:47-49``); keys and version are checked only when the file part starts (``:60-66``,
``IngestFileHttpSvcMod.cc:67-70``), so a request without a file answers "no file" whatever its key; the
contribution may be retried until loading begins (``retry_allowed=1`` recorded on CREATE_FAILED and
START_FAILED, ``:99-101``).
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from typing import ClassVar

from aiohttp import BodyPartReader, web

from qdask.emulator.contract import INGEST_CHARSET, LOADER_MAX_WARNINGS, ContribStatus, TransactionState
from qdask.emulator.dialect import Dialect
from qdask.emulator.protocol import (
    ApiError,
    AuthFailed,
    Call,
    InvalidParam,
    check_auth,
    check_version,
    endpoint,
)
from qdask.emulator.records import Contribution
from qdask.emulator.worker.file_svc import BLOCK, WorkerModule, dialect_input, retry_allowed_error
from qdask.emulator.worker.sources import url_scheme


class CsvUpload(WorkerModule):
    CONTEXT: ClassVar[str] = "INGEST-FILE-HTTP-SVC "

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/ingest/csv", self.ingest_csv)]

    @endpoint(None, json_body=False)
    async def ingest_csv(self, call: Call) -> dict | web.StreamResponse:
        """``FileUploadModule::execute`` (``FileUploadModule.cc:44-90``)."""
        request = call.request
        if not request.content_type.startswith("multipart/form-data"):
            raise AuthFailed(f"{self.CONTEXT}the request is not a multipart form data")
        reader = await request.multipart()
        c: Contribution | None = None
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            if not part.filename:
                call.body[part.name or ""] = (await part.read(decode=False)).decode("utf-8", "replace")
                continue
            check_auth(call, self.keys, self.CONTEXT)
            check_version(call, 38)
            if c is not None:
                raise ApiError("the service only allows one file per request")
            c, dialect = await self._start_of_file(call, part.filename)
            if await self._upload(c, part, dialect, request):
                return web.Response(status=500)  # the connection was dropped by a fault
        if c is None:  # onEndOfBody (IngestFileHttpSvcMod.cc:227-236)
            raise ApiError("no file was sent in the request")
        return self.svc.answer(call, c)

    async def _start_of_file(self, call: Call, filename: str) -> tuple[Contribution, Dialect]:
        """``IngestFileHttpSvcMod::onStartOfFile`` (``IngestFileHttpSvcMod.cc:67-181``)."""
        svc = self.svc
        trans_id = call.param_uint("transaction_id")
        table_name = call.json_str("table")
        chunk = call.param_uint("chunk")
        overlap = call.param_uint("overlap") != 0
        url = f"data-csv://{call.request.remote or '127.0.0.1'}/{filename}"
        charset = call.json_str("charset_name", INGEST_CHARSET)
        dialect = dialect_input(call)
        max_warnings = call.param_uint("max_num_warnings", LOADER_MAX_WARNINGS)
        trans, table = svc.context(trans_id, table_name)
        # retry allowed until loading begins (:99-101)
        c = svc.new(trans, table, chunk, overlap, url, charset, dialect, max_warnings, retry_allowed=True)
        if trans.state is not TransactionState.STARTED:
            error = f"{self.CONTEXT}onStartOfFile transactionId={trans_id} is not active"
            await svc.created(c, error)
            raise ApiError(error)
        try:
            if url_scheme(url)[0] != "data-csv":
                raise InvalidParam(f"{self.CONTEXT}onStartOfFile unsupported url '{url}'")
            parsed = Dialect.from_params(dialect)
        except ApiError as ex:
            await svc.created(c, ex.what)
            raise
        await svc.created(c)
        try:
            svc.open_file(c)
        except ApiError as ex:  # :163-180: the retry flag stays set unless the error says otherwise
            ext = ex.ext
            await svc.failed(
                c,
                ContribStatus.START_FAILED,
                ex.what,
                bool(ext.get("retry_allowed", 1)),
                ext.get("http_error", 0),
                ext.get("system_error", 0),
            )
            raise
        await svc.state.save(c)
        return c, parsed

    async def _upload(
        self, c: Contribution, part: BodyPartReader, dialect: Dialect, request: web.Request
    ) -> bool:
        """Stream the file part to the temporary file, then load (``onFileData``, ``onEndOfFile``). True if
        a ``drop_upload`` fault closed the connection."""
        svc = self.svc
        drop = svc.faults.fire(("drop_upload",), svc.event(c))

        async def blocks() -> AsyncIterator[bytes]:
            while block := await part.read_chunk(BLOCK):
                yield block
                if drop:
                    raise retry_allowed_error(
                        "the connection was closed while the file was being uploaded",
                        system_error=errno.ECONNRESET,
                    )

        try:
            await svc.read(c, blocks(), dialect, lambda: False)
        except ApiError as ex:
            ext = ex.ext
            await svc.failed(c, ContribStatus.READ_FAILED, ex.what, True, 0, ext.get("system_error", 0))
            svc.close_file(c)
            if drop and request.transport is not None:
                request.transport.abort()
                return True
            raise
        await svc.load_or_fail(c, dialect, "MySQL load failed, ex: ")
        return False

"""The worker's binary loader: Qserv's ``IngestSvcConn`` on the worker's ``loader-port`` — the service
``qserv-replica-file INGEST FILE`` (``IngestClient``) streams a local file to.

One connection carries one contribution (``IngestSvcConn.cc:124-357``): a handshake (key, transaction,
table, chunk, ``file://`` URL, dialect), answered READY_TO_READ_DATA once the contribution is recorded
and started; then data blocks, each answered READY_TO_READ_DATA, until the one marked ``last``, after
which the rows are loaded and the answer is FINISHED. Any failure is answered FAILED with the error and
whether the contribution may be retried (``retry_allowed`` stays true until loading begins).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator

from qdask.emulator.contract import INGEST_CHARSET, LOADER_MAX_WARNINGS, ContribStatus, TransactionState
from qdask.emulator.dialect import Dialect
from qdask.emulator.protocol import ApiError, InvalidParam, Keys
from qdask.emulator.records import Contribution
from qdask.emulator.worker.file_svc import IngestFileSvc, retry_allowed_error
from qdask.emulator.worker.sources import url_scheme
from qdask.emulator.worker.wire import Data, Handshake, IngestStatus, Response, frame, read_frame

CONTEXT = "INGEST-SVC-CONN  "


class Refused(Exception):
    """The session ends with a FAILED answer carrying this message."""


class BinaryLoader:
    """Serves the binary ingest protocol for one worker."""

    def __init__(self, svc: IngestFileSvc, keys: Keys):
        self.svc = svc
        self.keys = keys

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection, one contribution."""
        session = _Session(self, reader, writer)
        try:
            await session.run()
        except Refused as ex:
            with contextlib.suppress(ConnectionError):
                await session.reply(IngestStatus.FAILED, str(ex))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass  # the client went away or spoke nonsense: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class _Session:
    def __init__(self, loader: BinaryLoader, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.svc = loader.svc
        self.keys = loader.keys
        self.reader = reader
        self.writer = writer
        self.c: Contribution | None = None
        self.retry_allowed = True

    async def reply(self, status: IngestStatus, error: str = "") -> None:
        c = self.c
        answer = Response(status, error=error, retry_allowed=self.retry_allowed)
        if c is not None:
            answer.id, answer.num_warnings = c.id, c.num_warnings
            answer.num_rows, answer.num_rows_loaded = c.num_rows, c.num_rows_loaded
        self.writer.write(frame(answer.encode()))
        await self.writer.drain()

    async def run(self) -> None:
        """``_handshakeReceived`` then ``_dataReceived`` until the last block."""
        svc = self.svc
        hs = Handshake.parse(await read_frame(self.reader))
        if hs.auth_key != self.keys.auth_key:
            raise Refused("not authorized")
        try:
            trans = svc.state.transaction(hs.transaction_id)
            db = svc.state.database(trans.database)
        except ApiError as ex:
            raise Refused(ex.what) from None
        table = svc.state.tables.get((db.name, hs.table))
        if table is None:
            raise Refused(f"no such table '{hs.table}' in database '{db.name}'.")
        charset = hs.charset_name or INGEST_CHARSET
        warnings = hs.max_num_warnings or LOADER_MAX_WARNINGS
        c = svc.new(trans, table, hs.chunk, hs.is_overlap, hs.url, charset, hs.dialect_input, warnings)
        c.retry_allowed = True  # stays so before loading data into MySQL (:159)
        self.c = c
        if trans.state is not TransactionState.STARTED:
            error = f"{CONTEXT}_handshakeReceived transactionId={hs.transaction_id} is not active"
            await svc.created(c, error)
            raise Refused(error)
        try:
            if url_scheme(hs.url)[0] != "file":
                raise InvalidParam(f"{CONTEXT}_handshakeReceived unsupported url '{hs.url}'")
            dialect = Dialect.from_params(hs.dialect_input)
        except ApiError as ex:
            await svc.created(c, ex.what)
            raise Refused(ex.what) from None
        await svc.created(c)
        try:
            svc.open_file(c)
        except ApiError as ex:
            retry = bool(ex.ext.get("retry_allowed", 1))
            await svc.failed(c, ContribStatus.START_FAILED, ex.what, retry, 0, ex.ext.get("system_error", 0))
            raise Refused(ex.what) from None
        await svc.state.save(c)
        await self.reply(IngestStatus.READY_TO_READ_DATA)
        await self._receive(c, dialect)

    async def _receive(self, c: Contribution, dialect: Dialect) -> None:
        svc = self.svc
        try:
            await svc.read(c, self._blocks(), dialect, lambda: False)
        except ApiError as ex:
            await svc.failed(c, ContribStatus.READ_FAILED, ex.what, True, 0, ex.ext.get("system_error", 0))
            svc.close_file(c)
            raise Refused(ex.what) from None
        self.retry_allowed = False  # irreversible changes to the table are about to be made (:307-309)
        try:
            await svc.load_or_fail(c, dialect, f"{CONTEXT}_dataReceived data load failed: ")
        except ApiError as ex:
            raise Refused(ex.what) from None
        await self.reply(IngestStatus.FINISHED)

    async def _blocks(self) -> AsyncIterator[bytes]:
        """The data of each ``ProtocolIngestData``, answering READY_TO_READ_DATA after all but the last."""
        while True:
            try:
                data = Data.parse(await read_frame(self.reader))
            except (asyncio.IncompleteReadError, ConnectionError) as ex:
                raise retry_allowed_error(
                    f"{CONTEXT}_dataReceived failed to receive the data packet from the client, error: {ex}",
                    system_error=errno.ECONNRESET,
                ) from None
            except ValueError:
                raise retry_allowed_error(
                    f"{CONTEXT}_dataReceived failed to parse the data packet received from the client"
                ) from None
            yield data.data
            if data.last:
                return
            await self.reply(IngestStatus.READY_TO_READ_DATA)

"""What every worker ingest service does to a contribution: Qserv's ``IngestFileSvc`` and the contribution
records of ``DatabaseServicesMySQL``.

A contribution is recorded (``IN_PROGRESS``, or ``CREATE_FAILED`` with ``retry_allowed`` kept only then,
``DatabaseServicesMySQL.cc:1686-1690``), started (``openFile``: the context re-checked, the chunk's
allocation to this worker, a temporary file), read (rows prefixed with the transaction id), and loaded
(``loadDataIntoTable``: chunk tables, partition ``p<T>``, the worker's own ``LOAD DATA``, warnings). Each
failure is an :class:`~qdask.emulator.protocol.ApiError` of the family Qserv throws; the service that
called decides what the contribution records and what the answer says.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO, ClassVar

import pymysql
from aiohttp import web

from qdask.emulator.contract import ContribStatus, TransactionState
from qdask.emulator.dialect import Dialect, RowPrefixer, RowTooLong
from qdask.emulator.faults import FaultInjector
from qdask.emulator.protocol import ApiError, Call, InvalidParam, Keys, OperationFailed
from qdask.emulator.records import Contribution, LoadWarning, Table, Transaction
from qdask.emulator.state import State, now_ms
from qdask.emulator.storage import SqlPool, WorkerStorage, chunk_table

BLOCK = 1 << 20
OPEN = "INGEST-FILE-SVC openFile "
LOAD = "INGEST-FILE-SVC loadDataIntoTable "
ABORTING = frozenset({TransactionState.IS_ABORTING, TransactionState.ABORTED, TransactionState.ABORT_FAILED})


class Cancelled(Exception):
    """A cancellation request was seen at a checkpoint."""


def dialect_input(call: Call) -> dict[str, str]:
    """``parseDialectInput`` (``IngestUtils.cc:33-52``): the four dialect fields, empty for the default."""
    defaults = Dialect().input_json()
    return {k: call.json_str(k, default) or default for k, default in defaults.items()}


def retry_allowed_error(error: str, http_error: int = 0, system_error: int = 0) -> ApiError:
    """``http::raiseRetryAllowedError`` (``src/http/Exceptions.cc:33-39``)."""
    return ApiError(error, {"http_error": http_error, "system_error": system_error, "retry_allowed": 1})


class WorkerModule:
    """Base of a worker's service modules: the contribution mechanics, the keys, the routes it serves."""

    CONTEXT: ClassVar[str]  # the module's context(), which starts Qserv's authorization errors

    def __init__(self, svc: IngestFileSvc, keys: Keys):
        self.svc = svc
        self._keys = keys

    @property
    def keys(self) -> Keys:
        return self._keys


class IngestFileSvc:
    """One worker's contribution mechanics over the shared state and its own storage."""

    def __init__(
        self,
        worker: str,
        state: State,
        pool: SqlPool,
        storage: WorkerStorage,
        faults: FaultInjector,
        tmp_dir: str,
    ):
        self.worker = worker
        self.state = state
        self.pool = pool
        self.storage = storage
        self.faults = faults
        self.tmp_dir = tmp_dir

    def context(self, trans_id: int, table: str) -> tuple[Transaction, Table]:
        """The transaction and table of a request; failures here are not recorded (``IngestFileHttpSvcMod.cc
        :116-125``)."""
        trans = self.state.transaction(trans_id)
        return trans, self.state.table(self.state.database(trans.database), table)

    def event(self, c: Contribution) -> dict[str, Any]:
        """What fault rules match a contribution on."""
        return {
            "worker": self.worker,
            "database": c.database,
            "table": c.table,
            "chunk": c.chunk,
            "overlap": int(c.overlap),
            "transaction_id": c.transaction_id,
            "url": c.url,
        }

    # ---------------------------------------------------------------- records
    def new(
        self,
        trans: Transaction,
        table: Table,
        chunk: int,
        overlap: bool,
        url: str,
        charset: str,
        dialect: dict[str, str],
        max_warnings: int,
        **fields: Any,
    ) -> Contribution:
        """A contribution descriptor before it is recorded (id 0)."""
        return Contribution(
            id=0,
            transaction_id=trans.id,
            worker=self.worker,
            database=trans.database,
            table=table.name,
            chunk=chunk,
            overlap=overlap,
            url=url,
            charset_name=charset,
            is_async=fields.pop("is_async", False),
            dialect_input=dialect,
            max_num_warnings=max_warnings,
            **fields,
        )

    async def created(self, c: Contribution, failure: str | None = None) -> None:
        """``createdTransactionContrib``: a new id; CREATE_FAILED with ``failure``, else IN_PROGRESS."""
        c.id = await self.state.next_id("contrib")
        c.create_time = now_ms()
        if failure is None:
            c.status, c.error, c.retry_allowed = ContribStatus.IN_PROGRESS, "", False
        else:
            c.status, c.error, c.stage = ContribStatus.CREATE_FAILED, failure, "done"
        await self.state.save(c)

    async def failed(
        self,
        c: Contribution,
        status: ContribStatus,
        error: str,
        retry: bool,
        http_error: int = 0,
        system_error: int = 0,
    ) -> None:
        c.status, c.error, c.retry_allowed = status, error, retry
        c.http_error, c.system_error = http_error, system_error
        if status is not ContribStatus.LOAD_FAILED:
            c.stage = "done"
        await self.state.save(c)

    async def finished(self, c: Contribution) -> None:
        c.status, c.stage = ContribStatus.FINISHED, "done"
        await self.state.save(c)

    # ---------------------------------------------------------------- stages
    def open_file(self, c: Contribution) -> None:
        """``IngestFileSvc::openFile`` (``IngestFileSvc.cc:72-151``): the context again, the chunk's place,
        the temporary file."""
        trans = self.state.transactions.get(c.transaction_id)
        if trans is None:
            raise InvalidParam(f"{OPEN}invalid transaction identifier: {c.transaction_id}")
        if trans.state is not TransactionState.STARTED:
            raise OperationFailed(f"{OPEN}transaction {c.transaction_id} is not active")
        db = self.state.database(trans.database)
        if db.is_published:
            raise OperationFailed(f"{OPEN}database '{db.name}' is already PUBLISHED")
        table = self.state.table(db, c.table)
        if table.is_partitioned and self.worker not in self.state.replicas.get(db.name, {}).get(c.chunk, []):
            raise InvalidParam(  # :126-132
                f"{OPEN}chunk {c.chunk} of the UNPUBLISHED database '{db.name}' is not allocated to worker"
                f" '{self.worker}'"
            )
        prefix = f"{db.name}-{table.name}-{c.chunk}-{c.transaction_id}-"
        try:
            fd, path = tempfile.mkstemp(prefix=prefix, suffix=".csv", dir=self.tmp_dir)
        except OSError as ex:
            raise retry_allowed_error(
                f"failed to create a temporary file '{os.path.join(self.tmp_dir, prefix)}', error:"
                f" '{ex.strerror}', errno: {ex.errno}",
                system_error=ex.errno or 0,
            ) from None
        os.close(fd)
        os.chmod(path, 0o644)
        c.tmp_file, c.start_time = path, now_ms()

    async def read(
        self, c: Contribution, blocks: AsyncIterator[bytes], dialect: Dialect, cancelled: Callable[[], bool]
    ) -> None:
        """Stream the input into the temporary file, every row prefixed with the transaction id field."""
        c.stage = "read"
        prefixer = RowPrefixer(dialect.trans_prefix(c.transaction_id))
        out: BinaryIO
        try:
            with open(c.tmp_file, "wb", buffering=BLOCK) as out:
                if self.faults.fire(("read_failed",), self.event(c)):
                    raise retry_allowed_error(
                        "failed to read the input: injected fault", system_error=errno.EIO
                    )
                async for block in blocks:
                    if cancelled():
                        raise Cancelled()
                    out.write(prefixer.feed(block))
                prefixer.flush()
        except RowTooLong as ex:
            raise retry_allowed_error(str(ex)) from None
        finally:
            c.num_bytes, c.num_rows = prefixer.num_bytes, prefixer.num_rows
        c.read_time = now_ms()

    async def load(self, c: Contribution, dialect: Dialect) -> None:
        """``IngestFileSvc::loadDataIntoTable`` (``IngestFileSvc.cc:163-349``): irreversible from here on."""
        c.stage, c.retry_allowed = "load", False
        await self.state.save(c)
        trans = self.state.transactions.get(c.transaction_id)
        if trans is None or trans.state is not TransactionState.STARTED:
            state = trans.state if trans else "UNKNOWN"
            raise OperationFailed(
                f"{LOAD}transaction {c.transaction_id} changed state to {state} while the input file was"
                " being prepared for the ingest."
            )
        db, table = c.database, self.state.tables[(c.database, c.table)]
        if table.is_partitioned:
            partitioned = [(t.name, t.is_published) for t in self.state.db_tables(db) if t.is_partitioned]
            target = chunk_table(table.name, c.chunk, c.overlap)
        else:
            target = table.name

        def work(conn: Any) -> Any:
            if table.is_partitioned:
                self.storage.ensure_chunk_tables(conn, db, partitioned, c.chunk, c.transaction_id)
            else:
                self.storage.add_regular_partition(conn, db, target, c.transaction_id)
            return self.storage.load(
                conn, db, target, c.tmp_file, c.charset_name, dialect.sql_options(), c.max_num_warnings
            )

        try:
            result = await self.pool.run(work)
        except pymysql.err.MySQLError as ex:
            raise OperationFailed(str(ex)) from None
        c.num_rows_loaded, c.num_warnings = result.num_rows_loaded, result.num_warnings
        c.warnings = [LoadWarning(**w) for w in result.warnings]
        c.load_time = now_ms()
        # Qserv checks for ABORTED only (:322); an abort still under way counts too here, since the
        # stand-in's abort job may already have passed this chunk table
        trans = self.state.transactions.get(c.transaction_id)
        if trans is None or trans.state in ABORTING:
            await self.pool.run(lambda conn: self.storage.drop_partition(conn, db, target, c.transaction_id))
            raise OperationFailed(
                f"{LOAD}transaction {c.transaction_id} got aborted while the file was being ingested into"
                " the table."
            )
        if self.faults.fire(("load_failed",), self.event(c)):
            raise OperationFailed("injected fault")

    async def load_or_fail(self, c: Contribution, dialect: Dialect, wrap: str) -> None:
        """Load, then FINISHED; a failure is recorded LOAD_FAILED as ``wrap`` + the cause and raised as an
        ``http::Error`` with that text (``IngestFileHttpSvcMod.cc:217-224``, ``IngestDataHttpSvcMod.cc
        :305-311``, ``IngestSvcConn.cc:324-329``)."""
        try:
            await self.load(c, dialect)
        except ApiError as ex:
            error = wrap + ex.what
            await self.failed(c, ContribStatus.LOAD_FAILED, error, False)
            raise ApiError(error) from None
        finally:
            self.close_file(c)
        await self.finished(c)

    def answer(self, call: Call, c: Contribution) -> dict | web.Response:
        """A service's answer ``{"contrib": ...}``, unless a ``drop_response`` fault loses it."""
        if self.faults.fire(("drop_response",), self.event(c)):
            if call.request.transport is not None:
                call.request.transport.abort()
            return web.Response(status=500)
        return {"contrib": c.to_json()}

    def close_file(self, c: Contribution) -> None:
        if c.tmp_file:
            with contextlib.suppress(OSError):
                os.unlink(c.tmp_file)

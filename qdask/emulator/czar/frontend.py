"""The stand-in's czar front end: a MySQL-protocol server that answers as Qserv's proxy and czar do.

Clients connect where they would connect to Qserv (port 4040, user ``qsmaster``, no password, both
configurable) with any MySQL client. Each statement takes the road it takes in Qserv
(:mod:`qdask.emulator.czar.rules`): the proxy runs ``SHOW``/``DESCRIBE``/``SET``/``SELECT`` without ``FROM``
on the czar's own MariaDB, refuses writes, and hands the rest to the czar, whose parser and analysis
(:mod:`qdask.emulator.czar.analysis`) accept or refuse it with Qserv's texts; an accepted SELECT runs on
the stand-in's czar database (:mod:`qdask.emulator.czar.databases`), which holds every chunk of every
table. Errors reach the client as Qserv's do (MySQL error 4110/4003/4120, SQLSTATE ``Proxy``); rows are
streamed from MariaDB to the client as MariaDB sent them (text protocol values, column types and binary
flag kept), so a value reads back exactly as from a direct connection, with memory bounded by one fetch
batch.

Built on ``mysql-mimic`` (protocol, authentication) and ``sqlglot`` (parsing)::

    frontend = CzarFrontend(backend_dsn, catalog=..., port=4040)
    await frontend.start()      # frontend.dsn == "mysql://qsmaster@127.0.0.1:4040"
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import pymysql
import pymysql.cursors
from mysql_mimic import MysqlServer, ResultColumn, ResultSet
from mysql_mimic.auth import IdentityProvider, NativePasswordAuthPlugin, User
from mysql_mimic.charset import CharacterSet
from mysql_mimic.errors import SQLSTATES, ErrorCode, MysqlError
from mysql_mimic.results import AllowedResult
from mysql_mimic.session import BaseSession
from mysql_mimic.types import ColumnType
from mysql_mimic.variables import GlobalVariables, SessionVariables

from qdask.emulator.czar import functions as sqlfunctions
from qdask.emulator.czar.analysis import AnalysisRefusal, Catalog, TableInfo, plan, rewrite_local
from qdask.emulator.czar.errors import SQLSTATE, QservError, czar_refused, invalid_query, runtime_failed
from qdask.emulator.czar.proxy import Kind, Route, czar_kind, proxy_refusal, proxy_text, route
from qdask.emulator.czar.rules import ParseRefusal, parse_select
from qdask.emulator.storage import Dsn, qid

log = logging.getLogger("qdask.emulator.czar")
# mysql-mimic logs every error it sends as an error of its own; a refused query is the client's business
logging.getLogger("mysql_mimic.connection").setLevel(logging.CRITICAL)

DEFAULT_PORT = 4040
DEFAULT_USER = "qsmaster"
FETCH_BATCH = 1000

for _code in (
    4003,
    4005,
    4110,
    4120,
):  # the proxy answers its errors with SQLSTATE 'Proxy' (mysqlProxy.lua:55)
    SQLSTATES[cast(ErrorCode, _code)] = SQLSTATE.encode()


@dataclass(frozen=True)
class Account:
    """The one account the front end accepts (Qserv's proxy lets ``qsmaster`` in without a password)."""

    user: str = DEFAULT_USER
    password: str = ""


class _Accounts(IdentityProvider):
    def __init__(self, account: Account):
        self.account = account

    def get_plugins(self):
        return [NativePasswordAuthPlugin()]

    async def get_user(self, username: str) -> User | None:
        if username != self.account.user:
            return None
        auth = (
            NativePasswordAuthPlugin.create_auth_string(self.account.password)
            if self.account.password
            else None
        )
        return User(name=username, auth_string=auth, auth_plugin=NativePasswordAuthPlugin.name)


def _raw(col: ResultColumn, value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode(col.codec)


_NUMERIC = {ColumnType.TINY, ColumnType.SHORT, ColumnType.LONG, ColumnType.LONGLONG, ColumnType.INT24,
            ColumnType.YEAR}  # fmt: skip


def _binary(col: ResultColumn, value: Any) -> bytes:
    """Prepared statements get the binary protocol: parse MariaDB's text into the value it encodes."""
    from mysql_mimic.results import _BINARY_ENCODERS  # the library's own encoders for each type

    text = (
        value.decode(col.codec)
        if isinstance(value, bytes) and col.character_set != CharacterSet.binary
        else value
    )
    if col.type in _NUMERIC:
        parsed: Any = int(text)
    elif col.type in (ColumnType.FLOAT, ColumnType.DOUBLE):
        parsed = float(text)
    else:
        parsed = text
    encoder = _BINARY_ENCODERS.get(col.type) or _BINARY_ENCODERS[ColumnType.STRING]
    return encoder(col, parsed)


def _columns(cursor) -> list[ResultColumn]:
    """Result columns as MariaDB described them: name, type and whether the value is binary."""
    fields = cursor.connection._result.fields if cursor.connection._result is not None else []
    out = []
    for description, f in zip(cursor.description or (), fields, strict=False):
        try:
            kind = ColumnType(description[1])
        except ValueError:
            kind = ColumnType.STRING
        charset = CharacterSet.binary if f.charsetnr == 63 else CharacterSet.utf8mb4
        out.append(ResultColumn(description[0], kind, charset, text_encoder=_raw, binary_encoder=_binary))
    return out


class _Backend:
    """A session's connection to the stand-in's MariaDB, used from the front end's threads one call at a
    time; values come back undecoded (bytes) so that they pass through unchanged."""

    def __init__(self, dsn: Dsn):
        self.dsn = dsn
        self.conn: pymysql.connections.Connection | None = None
        self.cursor: pymysql.cursors.SSCursor | None = None

    def connection(self) -> pymysql.connections.Connection:
        if self.conn is None or not self.conn.open:
            self.conn = pymysql.connect(
                host=self.dsn.host,
                port=self.dsn.port,
                user=self.dsn.user,
                password=self.dsn.password,
                autocommit=True,
                charset="utf8mb4",
                conv={},
                use_unicode=False,
                cursorclass=pymysql.cursors.SSCursor,
            )
        return self.conn

    def execute(self, sql: str, database: str | None) -> tuple[list[ResultColumn], int]:
        """Run ``sql`` (in ``database``); return its columns (none for a statement without rows)."""
        self.finish()
        conn = self.connection()
        if database:
            conn.select_db(database)
        cursor = conn.cursor()
        cursor.execute(sql)
        if not cursor.description:
            cursor.close()
            return [], cursor.rowcount
        self.cursor = cursor
        return _columns(cursor), 0

    def fetch(self) -> list[tuple]:
        assert self.cursor is not None
        batch = self.cursor.fetchmany(FETCH_BATCH)
        if not batch:
            self.finish()
        return list(batch)

    def finish(self) -> None:
        if self.cursor is not None:
            cursor, self.cursor = self.cursor, None
            with contextlib.suppress(pymysql.MySQLError):
                cursor.close()

    def query_all(self, sql: str, args=None) -> list[tuple]:
        self.finish()
        with self.connection().cursor(pymysql.cursors.Cursor) as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def close(self) -> None:
        self.finish()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


def _mariadb_error(exc: pymysql.MySQLError) -> tuple[int, str]:
    """MariaDB's error code and text; its SQLSTATE (fixed per code) is kept for relaying the error."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 1105
    message = exc.args[1] if len(exc.args) > 1 else str(exc)
    state = getattr(exc, "sqlstate", None)
    if state:
        SQLSTATES.setdefault(cast(ErrorCode, code), state.encode())
    return code, message.decode() if isinstance(message, bytes) else str(message)


class CzarSession(BaseSession):
    """One client connection: its default database, its MariaDB connection, and Qserv's routing."""

    def __init__(self, frontend: CzarFrontend):
        self.frontend = frontend
        self.variables = SessionVariables(GlobalVariables())
        self.variables.set("version", frontend.server_version, force=True)
        self.username: str | None = None
        self.database: str | None = None
        self.backend = _Backend(frontend.backend)
        self.connection: Any = None
        self.closed = asyncio.Event()

    async def init(self, connection) -> None:
        self.connection = connection
        self.frontend.sessions.add(self)

    async def close(self) -> None:
        try:
            await self.frontend.run(self.backend.close)
        finally:
            self.frontend.sessions.discard(self)
            self.closed.set()

    async def use(self, database: str) -> None:
        """COM_INIT_DB: the proxy passes it to the czar's MariaDB, which must know the database."""
        czar_db = self.frontend.czar_prefix + database
        try:
            await self.frontend.run(self.backend.query_all, f"USE {qid(czar_db)}")
        except pymysql.MySQLError as exc:
            code, message = _mariadb_error(exc)
            raise MysqlError(message.replace(czar_db, database), cast(ErrorCode, code)) from None
        self.database = database

    async def handle_query(self, sql: str, attrs: dict[str, str]) -> AllowedResult:
        try:
            return await self._answer(sql)
        except QservError as exc:
            self.frontend.note_refusal(sql, exc)
            raise MysqlError(exc.message, cast(ErrorCode, exc.code)) from None

    async def _answer(self, sql: str) -> AllowedResult:
        text = proxy_text(sql)
        way = route(text)
        if way is Route.LOCAL:  # the packet goes to the czar's MariaDB as sent (mysqlProxy.lua:430-436)
            return await self._local(rewrite_local(sql, self.frontend.scisql_db))
        if way in (Route.DISALLOWED, Route.NOT_SUPPORTED):
            raise proxy_refusal(way)
        if way is Route.KILL:  # mysqlProxy.lua:327-345 (nothing runs long enough here to be killed)
            return [(f"Trying to kill query: {text.upper()} ",)], ["command"]
        kind = czar_kind(text)
        if kind is Kind.SELECT:
            return await self._select(text)
        if kind is Kind.SET:
            return self._set(text)
        if kind is Kind.CALL:  # CallStatementAdapter: only CALL QSERV_RESULT_DELETE (ParseAdapters.h:1173)
            raise czar_refused(f'ParseException:Error parsing query, near "{text.rstrip(";")}"', "call")
        if kind is Kind.INVALID:
            raise invalid_query(text)
        raise czar_refused(
            f"the Qserv stand-in does not emulate {kind.value} statements: {text}", "emulation"
        )

    def _set(self, text: str) -> AllowedResult:
        """``SET GLOBAL QSERV_ROW_COUNTER_OPTIMIZATION = 0|1`` (UserQueryFactory.cc:401-412)."""
        words = text.replace("=", " = ").split()
        if len(words) != 5 or words[1].upper() != "GLOBAL" or words[3] != "=":
            raise czar_refused(
                f'ParseException:Error parsing query, near "{" ".join(words[1:])}", '
                "Variable assignment must include GLOBAL",
                "set",
            )
        if words[2].upper() == "QSERV_ROW_COUNTER_OPTIMIZATION":
            self.frontend.row_counter_optimization = words[4] != "0"
        return None

    async def _select(self, text: str) -> AllowedResult:
        try:
            parsed = parse_select(text)
        except ParseRefusal as refusal:
            raise refusal.as_error() from None
        catalog = self.frontend.catalog()
        use_counters = self.frontend.row_counter_optimization

        def analyse():
            return plan(
                parsed,
                self.database,
                catalog,
                lambda director, condition: self._chunks(catalog, director, condition),
                lambda rows: use_counters and self._meta_table_exists(catalog, rows),
            )

        try:
            query = await self.frontend.run(analyse)
        except AnalysisRefusal as refusal:
            raise refusal.as_error() from None
        except pymysql.MySQLError as exc:
            raise runtime_failed("[{}] {}".format(*_mariadb_error(exc))) from None
        self.frontend.note_accepted(text, query.sql)
        if query.count_star is not None:
            rows_table, label = query.count_star
            found = await self.frontend.run(
                self.backend.query_all, f"SELECT SUM(`num_rows`) FROM {qid(catalog.meta_db, rows_table)}"
            )
            total = int(found[0][0] or 0) if found else 0
            column = ResultColumn(label, ColumnType.LONGLONG, text_encoder=_raw, binary_encoder=_binary)
            return ResultSet([(str(total).encode(),)], [column])
        try:
            return await self._run(query.sql, self._czar_db())
        except pymysql.MySQLError as exc:  # a worker's error, relayed through the message table
            raise runtime_failed("[{}] {}".format(*_mariadb_error(exc))) from None

    def _czar_db(self) -> str | None:
        return None if self.database is None else self.frontend.czar_prefix + self.database

    def _chunks(self, catalog: Catalog, director: TableInfo, condition: str) -> set[int]:
        """The director index lookup (SecIdxRestrictor.cc getSecIdxLookupQuery)."""
        index = qid(catalog.meta_db, f"{director.db}__{director.name}")
        rows = self.backend.query_all(f"SELECT `chunkId` FROM {index} WHERE {qid(director.key)} {condition}")
        return {int(r[0]) for r in rows}

    def _meta_table_exists(self, catalog: Catalog, name: str) -> bool:
        rows = self.backend.query_all(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
            (catalog.meta_db, name),
        )
        return bool(rows) and int(rows[0][0]) > 0  # values come back undecoded (bytes)

    async def _local(self, sql: str) -> AllowedResult:
        try:
            return await self._run(sql, self._czar_db())
        except pymysql.MySQLError as exc:  # relayed unchanged
            code, message = _mariadb_error(exc)
            raise MysqlError(message, cast(ErrorCode, code)) from None

    async def _run(self, sql: str, database: str | None) -> AllowedResult:
        columns, _ = await self.frontend.run(self.backend.execute, sql, database)
        if not columns:
            return None
        return ResultSet(self._rows(), columns)

    async def _rows(self) -> AsyncIterator[tuple]:
        try:
            while batch := await self.frontend.run(self.backend.fetch):
                for row in batch:
                    yield row
        finally:
            await self.frontend.run(self.backend.finish)


class CzarFrontend:
    """The MySQL-protocol server in front of the stand-in's czar databases (see the module docstring).

    ``catalog`` returns the published tables now (called on the event loop); ``scisql_db`` is where the
    scisql stored functions are installed at :meth:`start`.
    """

    def __init__(
        self,
        backend: Dsn,
        *,
        catalog: Callable[[], Catalog],
        scisql_db: str,
        czar_prefix: str = "",
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        account: Account | None = None,
        threads: int = 8,
    ):
        self.backend = backend
        self.catalog = catalog
        self.scisql_db = scisql_db
        self.czar_prefix = czar_prefix
        self.host = host
        self.port = port
        self.account = account or Account()
        self.server_version = "10.6.0-MariaDB"
        self.row_counter_optimization = True  # UserQueryFactory.cc:225
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qserv-czar")
        self._server: MysqlServer | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._log_lock = threading.Lock()
        self.sessions: set[CzarSession] = set()
        self.refused: list[tuple[str, QservError]] = []  # what was refused, newest last (bounded)
        self.accepted: list[tuple[str, str]] = []  # (statement, what ran on MariaDB), bounded

    @property
    def dsn(self) -> str:
        password = f":{self.account.password}" if self.account.password else ""
        return f"mysql://{self.account.user}{password}@{self.host}:{self.port}"

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> CzarFrontend:
        """Install the scisql functions, then listen (port 0: any free port, then read ``port``)."""
        self.server_version = await self.run(self._prepare_backend)
        self._server = MysqlServer(
            session_factory=lambda: CzarSession(self), identity_provider=_Accounts(self.account)
        )
        await self._server.start_server(host=self.host, port=self.port, reuse_address=True)
        self._listener = self._server._server
        assert self._listener is not None
        self.port = self._listener.sockets[0].getsockname()[1]
        log.info("czar front end on %s", self.dsn)
        return self

    def _prepare_backend(self) -> str:
        conn = self.backend.connect()
        try:
            sqlfunctions.install(conn, self.scisql_db)
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                return str(cur.fetchone()[0])
        finally:
            conn.close()

    async def stop(self) -> None:
        """Stop listening, end every open session (its client is told so), then release the threads."""
        if self._server is not None:
            self._server.close()
            sessions = list(self.sessions)
            for session in sessions:
                if session.connection is not None:
                    session.connection.kill()
            for session in sessions:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(session.closed.wait(), timeout=10)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    def note_refusal(self, sql: str, error: QservError) -> None:
        with self._log_lock:
            self.refused = [*self.refused[-999:], (sql, error)]

    def note_accepted(self, sql: str, ran: str) -> None:
        with self._log_lock:
            self.accepted = [*self.accepted[-999:], (sql, ran)]

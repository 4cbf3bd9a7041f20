"""MariaDB mechanics of a Qserv worker: partitioned MyISAM tables, chunk tables, LOAD DATA.

Each emulated worker keeps its catalogs in databases of its own (``<prefix><db>``) on a shared MariaDB
server, so the czar can union chunk tables across workers. Tables follow Qserv's layout exactly:
``qserv_trans_id INT NOT NULL`` first, ``ENGINE=MyISAM``, ``PARTITION BY LIST (qserv_trans_id)`` with
``p0`` at creation, ``p<T>`` added per contribution, dropped on abort and removed at publish.
All methods here block; callers run them through :class:`SqlPool`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import pymysql

from qdask.emulator.contract import DUMMY_CHUNK, PARTITION_COLUMN
from qdask.emulator.records import Column, Table

__all__ = ["DUMMY_CHUNK", "Dsn", "LoadResult", "SqlPool", "WorkerStorage", "chunk_table", "qid"]


def qid(*parts: str) -> str:
    """A quoted SQL identifier ``a`.`b``."""
    return ".".join("`" + p.replace("`", "``") + "`" for p in parts)


@dataclass(frozen=True)
class Dsn:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    @classmethod
    def parse(cls, dsn: str) -> Dsn:
        url = urlparse(dsn)
        if url.scheme not in ("mysql", "mariadb"):
            raise ValueError(f"expected mysql://user[:password]@host[:port], got {dsn!r}")
        return cls(
            url.hostname or "127.0.0.1",
            url.port or 3306,
            unquote(url.username or "root"),
            unquote(url.password or ""),
        )

    def url(self, database: str = "") -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"mysql://{auth}@{self.host}:{self.port}" + (f"/{database}" if database else "")

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            local_infile=True,
            autocommit=True,
            charset="utf8mb4",
        )

    @property
    def is_local(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class SqlPool:
    """Blocking pymysql work off the event loop: one connection per executor thread."""

    def __init__(self, dsn: Dsn, threads: int = 16):
        self.dsn = dsn
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qserv-sql")
        self._local = threading.local()

    def conn(self) -> pymysql.connections.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or not conn.open:
            conn = self.dsn.connect()
            self._local.conn = conn
        return conn

    def call(self, fn, *args):
        """Run ``fn(conn, *args)`` in this thread with its connection, reconnecting once if it dropped."""
        try:
            return fn(self.conn(), *args)
        except (pymysql.err.InterfaceError, pymysql.err.OperationalError) as ex:
            if ex.args and ex.args[0] not in (0, 2006, 2013):
                raise
            self._local.conn = None
            return fn(self.conn(), *args)

    async def run(self, fn, *args):
        """Run ``fn(conn, *args)`` in the pool and await its result."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.call, fn, *args)

    def execute(self, sql: str, args=None) -> list[tuple]:
        def go(conn):
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())

        return self.call(go)

    async def aexecute(self, sql: str, args=None) -> list[tuple]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.execute, sql, args)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def table_ddl(db: str, table: str, columns: list[Column], charset: str, collation: str) -> str:
    """The CREATE TABLE a worker issues for a registered table (``WorkerSqlRequest.cc:268-287``): charset and
    collation only when set (``DatabaseMySQLGenerator.cc:94-115``), partitioned by transaction with ``p0``."""
    cols = ",".join(f"{qid(c.name)} {c.type}" for c in columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {qid(db, table)} ({cols}) ENGINE=MyISAM"
        + (f" DEFAULT CHARSET={charset}" if charset else "")
        + (f" COLLATE={collation}" if collation else "")
        + f" PARTITION BY LIST ({qid(PARTITION_COLUMN)}) (PARTITION `p0` VALUES IN (0))"
    )


def chunk_table(table: str, chunk: int, overlap: bool) -> str:
    """Qserv's final names: ``<T>_<chunk>`` and ``<T>FullOverlap_<chunk>``."""
    return f"{table}{'FullOverlap' if overlap else ''}_{chunk}"


def sql_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def load_data_statement(path: str, db: str, table: str, charset: str, dialect_sql: str, local: bool) -> str:
    """The worker's statement: ``LOAD DATA [LOCAL] INFILE … CHARACTER SET … <dialect options>``."""
    return (
        f"LOAD DATA {'LOCAL ' if local else ''}INFILE {sql_quote(path)} INTO TABLE {qid(db, table)}"
        f" CHARACTER SET {sql_quote(charset)} {dialect_sql}"
    )


def server_reads(conn, directory: str) -> bool:
    """Whether the server itself reads files of ``directory`` (as a Qserv worker's MariaDB reads its
    ingest service's temporary files): a probe file must come back whole through ``LOAD_FILE``, which
    checks the file's place, ``secure_file_priv`` (NULL is "no restriction" in MariaDB, "disabled" in
    MySQL), the FILE privilege and the server's access to it. If not, the stand-in loads with LOCAL."""
    probe = b"qdask-probe\n"
    fd, path = tempfile.mkstemp(prefix="probe-", dir=directory)
    try:
        os.write(fd, probe)
        os.close(fd)
        os.chmod(path, 0o644)
        with conn.cursor() as cur:
            cur.execute("SELECT LOAD_FILE(%s)", (path,))
            return cur.fetchone()[0] == probe
    except pymysql.err.MySQLError:
        return False
    finally:
        os.unlink(path)


_DDL_RETRY_ERRORS = (1205, 1213)  # lock wait timeout, deadlock


def _exec(cur, sql: str, args=None):
    for attempt in range(5):
        try:
            return cur.execute(sql, args)
        except pymysql.err.OperationalError as ex:
            if ex.args[0] not in _DDL_RETRY_ERRORS or attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


@dataclass
class LoadResult:
    num_rows_loaded: int
    num_warnings: int
    warnings: list[dict]


class WorkerStorage:
    """One worker's databases on the server: ``<prefix><db>`` holds what Qserv keeps in ``<db>``."""

    def __init__(self, prefix: str, load_local: bool):
        self.prefix = prefix
        self.load_local = load_local

    def dbname(self, db: str) -> str:
        return self.prefix + db

    def create_database(self, conn, db: str) -> None:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {qid(self.dbname(db))}")

    def drop_database(self, conn, db: str) -> None:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {qid(self.dbname(db))}")

    def create_table(self, conn, table: Table, name: str) -> None:
        """One table of a registered table's definition: its prototype (or the regular table itself), or a
        dummy chunk table of a partitioned one."""
        with conn.cursor() as cur:
            cur.execute(
                table_ddl(
                    self.dbname(table.database), name, table.columns, table.charset_name, table.collation_name
                )
            )

    def tables(self, conn, db: str) -> list[str]:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (self.dbname(db),)
            )
            return [r[0] for r in cur.fetchall()]

    def drop_table(self, conn, db: str, table: str, is_partitioned: bool) -> None:
        wdb = self.dbname(db)
        names = [table]
        if is_partitioned:
            names += [t for t in self.tables(conn, db) if _is_chunk_table_of(t, table)]
        with conn.cursor() as cur:
            for name in names:
                cur.execute(f"DROP TABLE IF EXISTS {qid(wdb, name)}")

    def ensure_chunk_tables(
        self, conn, db: str, partitioned: list[tuple[str, bool]], chunk: int, trans_id: int | None
    ) -> None:
        """Create ``T_<chunk>``/``TFullOverlap_<chunk>`` (and dummies) for every partitioned table, and
        add partition ``p<trans_id>`` to those of unpublished tables, as a worker does before a load."""
        wdb = self.dbname(db)
        with conn.cursor() as cur:
            cur.execute("UNLOCK TABLES")
            for name, published in partitioned:
                for c in (chunk, DUMMY_CHUNK):
                    for overlap in (False, True):
                        _exec(
                            cur,
                            f"CREATE TABLE IF NOT EXISTS {qid(wdb, chunk_table(name, c, overlap))}"
                            f" LIKE {qid(wdb, name)}",
                        )
                if trans_id is not None and not published:
                    for overlap in (False, True):
                        self.add_partition(cur, wdb, chunk_table(name, chunk, overlap), trans_id)

    @staticmethod
    def add_partition(cur, wdb: str, table: str, trans_id: int) -> None:
        _exec(
            cur,
            f"ALTER TABLE {qid(wdb, table)} ADD PARTITION IF NOT EXISTS"
            f" (PARTITION `p{trans_id}` VALUES IN ({trans_id}))",
        )

    def add_regular_partition(self, conn, db: str, table: str, trans_id: int) -> None:
        with conn.cursor() as cur:
            cur.execute("UNLOCK TABLES")
            self.add_partition(cur, self.dbname(db), table, trans_id)

    def load(
        self, conn, db: str, table: str, path: str, charset: str, dialect_sql: str, max_warnings: int
    ) -> LoadResult:
        """``SET SESSION max_error_count``, the LOAD DATA, affected rows, then ``SHOW WARNINGS``."""
        with conn.cursor() as cur:
            cur.execute(f"SET SESSION max_error_count={int(max_warnings)}")
            cur.execute(
                load_data_statement(path, self.dbname(db), table, charset, dialect_sql, self.load_local)
            )
            loaded = cur.rowcount
            num_warnings = conn._result.warning_count if conn._result is not None else 0
            warnings = []
            if num_warnings:
                cur.execute(f"SHOW WARNINGS LIMIT {int(max_warnings)}")
                warnings = [{"level": lvl, "code": int(code), "message": msg} for lvl, code, msg in cur]
        return LoadResult(loaded, num_warnings, warnings)

    def drop_partition(self, conn, db: str, table: str, trans_id: int) -> None:
        wdb = self.dbname(db)
        with conn.cursor() as cur:
            cur.execute("UNLOCK TABLES")
            try:
                _exec(cur, f"ALTER TABLE {qid(wdb, table)} DROP PARTITION IF EXISTS `p{trans_id}`")
            except pymysql.err.MySQLError as ex:
                if ex.args[0] in (1146, 1505):  # no such table / not partitioned: nothing to drop
                    return
                raise

    def remove_partitioning(self, conn, db: str, tables: list[str]) -> None:
        """Publish: every table of the given base names (prototype, chunk, overlap, dummy) unpartitioned."""
        wdb = self.dbname(db)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA=%s"
                " AND PARTITION_NAME IS NOT NULL GROUP BY TABLE_NAME",
                (wdb,),
            )
            partitioned = [r[0] for r in cur.fetchall()]
            for name in partitioned:
                if any(name == t or _is_chunk_table_of(name, t) for t in tables):
                    _exec(cur, f"ALTER TABLE {qid(wdb, name)} REMOVE PARTITIONING")

    def chunk_tables(self, conn, db: str, table: str, overlap: bool = False) -> list[int]:
        """Chunk numbers for which ``T_<chunk>`` (or the overlap table) exists on this worker."""
        out = []
        stem = f"{table}FullOverlap_" if overlap else f"{table}_"
        for name in self.tables(conn, db):
            rest = name[len(stem) :] if name.startswith(stem) else ""
            if rest.isdigit():
                out.append(int(rest))
        return sorted(out)


def _is_chunk_table_of(name: str, table: str) -> bool:
    for stem in (f"{table}_", f"{table}FullOverlap_"):
        if name.startswith(stem) and name[len(stem) :].isdigit():
            return True
    return False

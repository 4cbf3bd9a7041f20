"""SQL access to a Qserv czar (or any MySQL-protocol server) for the verify stage and `qdask query`.

`Czar("mysql://user[:pass]@host:port[/db]")` opens one pymysql connection per query and streams the
result with an unbuffered `SSCursor`, so a query over a billion-row table does not fill memory. Names that
end up in SQL text go through `quote_identifier`, which accepts only plain names (letters, digits,
underscore, at most 64 characters) and wraps them in backticks: a database, table or column name coming
from a config cannot inject SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql
import pymysql.cursors
from pydantic import SecretStr

_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,64}")


def quote_identifier(name: str) -> str:
    """`name` in backticks, after checking it is a plain MySQL name (`[A-Za-z0-9_]{1,64}`, not all digits)."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or name.isdigit():
        raise ValueError(
            f"not a valid database/table/column name: {name!r} (letters, digits, underscore, ≤ 64)"
        )
    return f"`{name}`"


def quote_qualified(*parts: str) -> str:
    """`db`.`table` (or `db`.`table`.`column`) from validated parts."""
    return ".".join(quote_identifier(p) for p in parts)


@dataclass(frozen=True)
class DSN:
    """A parsed `mysql://user[:pass]@host:port[/db]`; the password never shows in `repr`/`str`."""

    host: str
    port: int
    user: str
    password: SecretStr = field(default_factory=lambda: SecretStr(""))
    database: str | None = None

    def __str__(self) -> str:
        db = f"/{self.database}" if self.database else ""
        return f"mysql://{self.user}@{self.host}:{self.port}{db}"


def parse_dsn(dsn: str) -> DSN:
    """Parse `mysql://user[:pass]@host:port[/db]` (user and password may be %-encoded)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ValueError("a czar DSN must look like mysql://user[:pass]@host:port[/db]")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the czar DSN has an invalid port") from None
    if not parts.hostname or not parts.username or port is None:
        raise ValueError("a czar DSN needs user, host and port: mysql://user[:pass]@host:port[/db]")
    database = unquote(parts.path.lstrip("/")) or None
    if database is not None:
        quote_identifier(database)
    return DSN(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=SecretStr(unquote(parts.password or "")),
        database=database,
    )


def describe_error(exc: pymysql.MySQLError) -> str:
    """An error as the mysql client prints it: ``ERROR 4110 (Proxy): Query processing error: …`` (Qserv's
    czar answers with its own codes and SQLSTATE ``Proxy``)."""
    if len(exc.args) >= 2 and isinstance(exc.args[0], int):
        state = getattr(exc, "sqlstate", None)
        return f"ERROR {exc.args[0]}{f' ({state})' if state else ''}: {exc.args[1]}"
    return str(exc)


class Rows:
    """A streamed result: `columns` (names), then row tuples; closes its connection at the end."""

    def __init__(self, conn: pymysql.connections.Connection, cursor: pymysql.cursors.SSCursor):
        self._conn, self._cursor = conn, cursor
        self.columns: list[str] = [d[0] for d in cursor.description or ()]

    def __iter__(self) -> Iterator[tuple]:
        try:
            while batch := self._cursor.fetchmany(1000):
                yield from batch
        finally:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                self._cursor.close()
            finally:
                conn.close()

    def __enter__(self) -> Rows:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Czar:
    """SQL through the czar: `query` streams rows, `count` counts a table. Safe to share between threads."""

    def __init__(
        self,
        dsn: str | DSN,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float | None = None,
        charset: str = "utf8mb4",
    ):
        self.dsn = dsn if isinstance(dsn, DSN) else parse_dsn(dsn)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.charset = charset

    def __repr__(self) -> str:
        return f"Czar({str(self.dsn)!r})"

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        """A new connection (unbuffered cursors); `database` overrides the DSN's."""
        return pymysql.connect(
            host=self.dsn.host,
            port=self.dsn.port,
            user=self.dsn.user,
            password=self.dsn.password.get_secret_value(),
            database=database or self.dsn.database,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            cursorclass=pymysql.cursors.SSCursor,
            autocommit=True,
            charset=self.charset,
        )

    def query(
        self, sql: str, params: Sequence[Any] | dict | None = None, *, database: str | None = None
    ) -> Rows:
        """Run `sql` (pymysql `%s` parameters); return the streamed `Rows` (a context manager)."""
        conn = self.connect(database)
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
        except BaseException:
            conn.close()
            raise
        return Rows(conn, cursor)

    def count(self, db: str, table: str) -> int:
        """`SELECT COUNT(*)` of `db`.`table` (names validated and quoted)."""
        with self.query(f"SELECT COUNT(*) FROM {quote_qualified(db, table)}") as rows:
            return int(next(iter(rows))[0])

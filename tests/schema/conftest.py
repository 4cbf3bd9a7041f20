"""MariaDB as the referee of the schema tests: what a column definition means is what MariaDB makes of it."""

from __future__ import annotations

import pytest

from qdask.schema import TableSchema

_COLUMNS = (
    "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION"
)


class SchemaDatabase:
    """A fresh MariaDB database for one test module: tables created as a Qserv worker creates them, or
    from DDL as written, and their columns as MariaDB's information_schema reports them."""

    def __init__(self, conn, name: str) -> None:
        self.conn, self.name = conn, name
        self.execute(f"DROP DATABASE IF EXISTS `{name}`")
        self.execute(f"CREATE DATABASE `{name}`")
        self.execute("SET SESSION sql_mode = ''")  # case01 has a '0000-00-00 00:00:00' default
        conn.select_db(name)

    def execute(self, sql: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql)

    def columns(self, table: str) -> list[tuple[str, str, str, str | None]]:
        """(name, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT) of each column of `table`, in order."""
        with self.conn.cursor() as cur:
            cur.execute(_COLUMNS, (self.name, table))
            return list(cur.fetchall())

    def create_like_qserv(self, table: str, schema: TableSchema) -> list[tuple[str, str, str, str | None]]:
        """CREATE TABLE as a Qserv worker does (qserv_trans_id first, then the /ingest/table columns); the
        columns MariaDB made of the schema's, without qserv_trans_id."""
        cols = ", ".join(f"`{c['name'].replace('`', '``')}` {c['type']}" for c in schema.ingest_columns())
        self.execute(f"CREATE TABLE `{table}` (`qserv_trans_id` INT NOT NULL, {cols}) ENGINE=MyISAM")
        return self.columns(table)[1:]


@pytest.fixture(scope="module")
def schema_db(mariadb, request: pytest.FixtureRequest):
    """A fresh database, named after the test module, on the session's private MariaDB."""
    conn = mariadb.connect()
    yield SchemaDatabase(conn, request.module.__name__.rpartition(".")[2])
    conn.close()

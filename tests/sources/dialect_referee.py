"""MariaDB as the referee of text dialects: it writes files (``SELECT … INTO OUTFILE``) and reads them
(``LOAD DATA``) with the same options qdask is given; `qdask_rows` is what qdask reads of the same file."""

from __future__ import annotations

import bz2
import gzip
import itertools
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from qdask.schema import TableSchema, from_ddl
from qdask.sources.files import read_file
from qdask.text_dialect import TextDialect

_COUNTER = itertools.count()


@dataclass
class Loaded:
    """What MariaDB's ``LOAD DATA`` made of a file: the rows in file order, and its warnings."""

    rows: list[tuple]
    warnings: tuple


class Referee:
    """MariaDB's own reading and writing of text files, in a database of its own."""

    def __init__(self, mariadb, database: str, tmp: Path):
        self.mariadb, self.database, self.tmp = mariadb, database, tmp
        self.conn = mariadb.connect()
        with self.conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {database}")
            cur.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
        self.conn.select_db(database)

    def execute(self, *statements: str) -> None:
        with self.conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)

    def load(self, path: Path, columns_ddl: str, dialect: TextDialect, *, table: str = "t") -> Loaded:
        """``LOAD DATA`` of `path` (inflated first when compressed) into a new table of `columns_ddl`."""
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        elif path.suffix == ".bz2":
            raw = bz2.decompress(raw)
        plain = self.tmp / f"load-{next(_COUNTER)}.txt"
        plain.write_bytes(raw)
        schema = self.schema(columns_ddl, table)
        names = ", ".join(f"`{n}`" for n in schema.names)
        # FLOAT is read back as the double it holds (the text protocol would round it to 6 digits)
        select = ", ".join(
            f"CAST(`{c.name}` AS DOUBLE)" if c.sql_type.upper().startswith("FLOAT") else f"`{c.name}`"
            for c in schema.columns
        )
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = DEFAULT, time_zone = '+00:00'")
            cur.execute(f"DROP TABLE IF EXISTS `{table}`")
            cur.execute(f"CREATE TABLE `{table}` (_k INT AUTO_INCREMENT PRIMARY KEY, {columns_ddl})")
            options = dialect.load_data_options()
            cur.execute(f"LOAD DATA LOCAL INFILE '{plain}' INTO TABLE `{table}` {options} ({names})")
            cur.execute("SHOW WARNINGS")
            warnings = cur.fetchall()
            cur.execute(f"SELECT {select} FROM `{table}` ORDER BY _k")
            rows = [tuple(r) for r in cur.fetchall()]
        return Loaded(rows, warnings)

    def dump(self, query: str, path: Path, dialect: TextDialect) -> Path:
        """``SELECT … INTO OUTFILE`` of `query` with the dialect's options (no IGNORE, no header)."""
        options = dialect.load_data_options().split(" IGNORE ")[0]
        path.unlink(missing_ok=True)
        self.execute(f"{query} INTO OUTFILE '{path}' {options}")
        return path

    @staticmethod
    def schema(columns_ddl: str, table: str = "t") -> TableSchema:
        return from_ddl(f"CREATE TABLE `{table}` ({columns_ddl})", table)


def qdask_rows(path: Path, columns_ddl: str, dialect: TextDialect, **kwargs) -> list[tuple]:
    """The rows qdask reads from `path` (typed by `columns_ddl`), FLOAT values as the doubles they hold."""
    schema = Referee.schema(columns_ddl)
    batches = list(read_file(path, schema, dialect=dialect, **kwargs))
    table = pa.Table.from_batches(batches, schema=batches[0].schema) if batches else None
    if table is None:
        return []
    columns = [
        table.column(i).cast(pa.float64()) if pa.types.is_float32(table.schema.types[i]) else table.column(i)
        for i in range(table.num_columns)
    ]
    return [tuple(r.values()) for r in pa.table(columns, names=table.schema.names).to_pylist()]


def same_rows(ours: list[tuple], theirs: list[tuple], schema: TableSchema) -> bool:
    """Value for value, where MariaDB pads BINARY(n) with NUL bytes and stores -0.0 as 0."""
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs, strict=True):
        for column, x, y in zip(schema.columns, a, b, strict=True):
            if column.sql_type.upper().startswith("BINARY(") and x is not None:
                x = x.ljust(column.max_length or 0, b"\0")
            if x != y:
                return False
    return True

"""Table schemas read from their sources: felis, a Qserv table JSON, MySQL DDL, or an Arrow schema.

Every source ends as a `TableSchema` whose types are spelled canonically (``bigint(20)`` → ``BIGINT``,
``INTEGER`` → ``INT``, ``BOOL`` → ``BOOLEAN``), so that schemas from different sources compare equal
when they mean the same table. MySQL text (DDL, the JSON's column types) goes through `qdask.schema.ddl`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from qdask.schema.arrow_types import felis_datatype, mysql_type_for_arrow
from qdask.schema.columns import Column, TableSchema
from qdask.schema.ddl import ColumnDefinition, create_tables, normalize_type, parse_column, parse_type
from qdask.schema.errors import SchemaError

__all__ = ["felis_table", "from_arrow", "from_ddl", "from_qserv_json", "parse_column_definition"]


# --------------------------------------------------------------------------------------------------
# Felis
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _load_felis(path: str) -> Any:
    from felis.datamodel import Schema

    # felis schemas are large (dp02_dc2: ~1 s to validate); cache the parsed model per file.
    return Schema.from_uri(path, context={"id_generation": True})


def felis_table(schema: str | os.PathLike[str], table: str, *, partitioned: bool = False) -> TableSchema:
    """The columns of `table` in a felis schema, typed exactly as felis maps them to MySQL.

    `schema` is a schema name of the lsst-sdm-schemas package (``"dp02_dc2"``) or the path of a felis
    YAML file. Types come from felis' own MySQL mapping (its per-dialect types and ``mysql:datatype``
    overrides, compiled by SQLAlchemy's MySQL dialect), then normalised. Felis does not say whether a
    table is partitioned in Qserv, so `partitioned` is the caller's (default False).
    """
    from felis.metadata import get_datatype_with_variants
    from sqlalchemy.dialects import mysql

    # the config's felis resolver; imported here, so that reading schemas does not load the config models
    from qdask.config.felis import missing_felis_schema, resolve_felis_schema

    path = resolve_felis_schema(schema)
    if not path.is_file():
        raise SchemaError(missing_felis_schema(schema, path))
    model = _load_felis(str(path))
    tables = {t.name: t for t in model.tables}
    if table not in tables:
        raise SchemaError(f"felis schema {path.name}: no table {table!r}; tables are {sorted(tables)}")
    dialect = mysql.dialect()
    columns = []
    for fc in tables[table].columns:
        compiled = get_datatype_with_variants(fc).compile(dialect=dialect)
        columns.append(
            Column(
                name=fc.name,
                sql_type=normalize_type(compiled),
                nullable=bool(fc.nullable),
                datatype=fc.datatype.value,
                length=fc.length,
                description=fc.description,
            )
        )
    return TableSchema(table, tuple(columns), partitioned=partitioned, source=f"felis {path.name}:{table}")


# --------------------------------------------------------------------------------------------------
# MySQL text: Qserv table JSON, DDL
# --------------------------------------------------------------------------------------------------


def _column(definition: ColumnDefinition) -> Column:
    return Column(
        name=definition.name,
        sql_type=definition.type.canonical,
        nullable=definition.nullable,
        default=definition.default,
        extra=" ".join(definition.extra),
        datatype=felis_datatype(definition.type),
        length=definition.type.length,
        description=definition.comment,
    )


def parse_column_definition(name: str, definition: str) -> Column:
    """A `Column` from a MySQL column definition such as ``"int(11) NOT NULL DEFAULT '0'"``.

    Understands the type with its arguments and UNSIGNED/ZEROFILL, NULL / NOT NULL, DEFAULT, COMMENT,
    CHARACTER SET / COLLATE, ON UPDATE, INVISIBLE and generated columns; anything else is an error that
    quotes it. ``DEFAULT NULL`` on a nullable column is the default and is dropped; inline keys and
    AUTO_INCREMENT are dropped because Qserv tables carry no keys (MySQL refuses AUTO_INCREMENT
    without one).
    """
    return _column(parse_column(name, definition))


def _split_chunk_columns(columns: list[Column], source: str, partitioned: bool) -> list[Column]:
    """Drop `chunkId`/`subChunkId` from a full Qserv column list (re-added for partitioned tables)."""
    data = []
    for c in columns:
        if c.name in ("chunkId", "subChunkId"):
            if not partitioned:
                raise SchemaError(f"{source}: regular (non-partitioned) table has a {c.name!r} column")
            if parse_type(c.sql_type).integer_bits is None:
                raise SchemaError(f"{source}: {c.name!r} must be an integer column, not {c.sql_type}")
            continue
        data.append(c)
    return data


def from_qserv_json(spec: str | os.PathLike[str] | Mapping[str, Any]) -> TableSchema:
    """A `TableSchema` from a Qserv `/ingest/table` body (a dict or the path of its JSON file).

    The director/latitude/longitude keys and other table attributes are kept in `extras`.
    """
    body: Mapping[str, Any]
    if isinstance(spec, Mapping):
        source, body = "table JSON", spec
    else:
        source = os.fspath(spec)
        try:
            body = json.loads(Path(spec).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SchemaError(f"cannot read Qserv table JSON {source}: {exc}") from None
    for key in ("table", "schema"):
        if key not in body:
            raise SchemaError(f"{source}: Qserv table JSON has no {key!r}")
    partitioned = bool(int(body.get("is_partitioned", 0)))
    columns = []
    for i, entry in enumerate(body["schema"]):
        if not isinstance(entry, Mapping) or "name" not in entry or "type" not in entry:
            raise SchemaError(f"{source}: schema entry {i} is not a {{'name', 'type'}} object: {entry!r}")
        try:
            columns.append(parse_column_definition(entry["name"], entry["type"]))
        except SchemaError as exc:
            raise SchemaError(f"{source}: {exc}") from None
    columns = _split_chunk_columns(columns, source, partitioned)
    keep = ("director_table", "director_key", "latitude_key", "longitude_key", "database", "charset_name")
    extras = {k: body[k] for k in keep if k in body}
    return TableSchema(body["table"], tuple(columns), partitioned=partitioned, source=source, extras=extras)


def from_ddl(
    ddl: str | os.PathLike[str], table: str | None = None, *, partitioned: bool = False
) -> TableSchema:
    """A `TableSchema` from MySQL ``CREATE TABLE`` text or a file (a path, an existing file, *.schema/.sql).

    Reads column names and definitions; keys, indexes, constraints and table options are ignored.
    With several CREATE TABLE statements, `table` picks one. Anything not understood is an error
    naming the column and quoting the text.
    """
    source = "DDL"
    if isinstance(ddl, os.PathLike) or (
        "\n" not in ddl and (ddl.endswith((".schema", ".sql", ".ddl")) or os.path.isfile(ddl))
    ):
        source = os.fspath(ddl)
        try:
            text = Path(ddl).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SchemaError(f"cannot read DDL file {source}: {exc}") from None
    else:
        text = ddl
    try:
        statements = create_tables(text)
    except SchemaError as exc:
        raise SchemaError(f"{source}: {exc}") from None
    if not statements:
        raise SchemaError(f"{source}: no CREATE TABLE statement found")
    names = [s.name for s in statements]
    if table is None and len(statements) > 1:
        raise SchemaError(f"{source}: several tables {names}; say which one")
    chosen = statements[0] if table is None else next((s for s in statements if s.name == table), None)
    if chosen is None:
        raise SchemaError(f"{source}: no CREATE TABLE {table}; found {names}")
    try:
        columns = [_column(d) for d in chosen.columns()]
    except SchemaError as exc:
        raise SchemaError(f"{source}: table {chosen.name}: {exc}") from None
    columns = _split_chunk_columns(columns, source, True) if partitioned else columns
    return TableSchema(chosen.name, tuple(columns), partitioned=partitioned, source=source)


# --------------------------------------------------------------------------------------------------
# Arrow
# --------------------------------------------------------------------------------------------------


def from_arrow(
    schema: pa.Schema,
    name: str,
    *,
    partitioned: bool = False,
    max_lengths: Mapping[str, int] | None = None,
    source: str = "",
) -> TableSchema:
    """A `TableSchema` inferred from an Arrow schema; `max_lengths` makes named string columns VARCHAR(n)."""
    columns, problems = [], []
    for f in schema:
        try:
            sql = mysql_type_for_arrow(f.type, max_length=(max_lengths or {}).get(f.name))
        except SchemaError as exc:
            problems.append(f"{f.name!r}: {exc}")
            continue
        columns.append(Column(f.name, sql, nullable=f.nullable, datatype=felis_datatype(parse_type(sql))))
    if problems:
        raise SchemaError(f"{source or name}: cannot infer MySQL types: " + "; ".join(problems))
    return TableSchema(
        name, tuple(columns), partitioned=partitioned, source=source or f"Arrow schema of {name}"
    )

"""Column types for Qserv: table schemas from felis, a Qserv table JSON, MySQL DDL or an Arrow schema.

Every source of a schema ends as a `TableSchema`: the ordered data columns of a table, each with the
MySQL type Qserv will create it with and the Arrow type its values are expected to have. The
`/ingest/table` body's `schema` list comes from `TableSchema.ingest_columns()`, which appends
`chunkId`/`subChunkId` for partitioned tables (the partitioner adds those values, inputs do not carry
them). Type spellings are normalised (``bigint(20)`` → ``BIGINT``, ``INTEGER`` → ``INT``, ``BOOL`` →
``BOOLEAN``) so that schemas from different sources compare equal when they mean the same table.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = [
    "CHUNK_COLUMNS",
    "Column",
    "SchemaError",
    "SchemaMismatch",
    "TableSchema",
    "arrow_type_for",
    "felis_table",
    "normalize_type",
]


class SchemaError(ValueError):
    """A schema that cannot be read or resolved (unknown table, unparsable DDL or type)."""


class SchemaMismatch(ValueError):
    """An input whose columns do not match the table schema; names the input and every offending column."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"{source}: columns do not match the table schema ({count} problems):\n{lines}")


# --------------------------------------------------------------------------------------------------
# MySQL type spelling
# --------------------------------------------------------------------------------------------------

#: Synonyms MySQL/MariaDB accept for the same type, mapped to the spelling used here.
_SYNONYMS = {
    "INTEGER": "INT",
    "BOOL": "BOOLEAN",
    "REAL": "DOUBLE",
    "DOUBLE PRECISION": "DOUBLE",
    "DEC": "DECIMAL",
    "NUMERIC": "DECIMAL",
    "FIXED": "DECIMAL",
    "CHARACTER": "CHAR",
    "CHARACTER VARYING": "VARCHAR",
    "CHAR VARYING": "VARCHAR",
    "NATIONAL CHAR": "CHAR",
    "NCHAR": "CHAR",
    "NATIONAL VARCHAR": "VARCHAR",
    "NVARCHAR": "VARCHAR",
    "INT1": "TINYINT",
    "INT2": "SMALLINT",
    "INT3": "MEDIUMINT",
    "INT4": "INT",
    "INT8": "BIGINT",
    "MIDDLEINT": "MEDIUMINT",
}

_INTEGERS = {"TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "INT": 32, "BIGINT": 64}
_STRINGS = {"CHAR", "VARCHAR", "TINYTEXT", "TEXT", "MEDIUMTEXT", "LONGTEXT", "ENUM", "SET", "JSON"}
_BINARIES = {"BINARY", "VARBINARY", "TINYBLOB", "BLOB", "MEDIUMBLOB", "LONGBLOB"}
_TEMPORAL = {"DATE", "DATETIME", "TIMESTAMP", "TIME", "YEAR"}
_KNOWN = set(_INTEGERS) | _STRINGS | _BINARIES | _TEMPORAL | {"FLOAT", "DOUBLE", "DECIMAL", "BOOLEAN", "BIT"}

# base name (one or two words), optional (args), optional UNSIGNED/SIGNED/ZEROFILL, then the rest.
_TYPE_RE = re.compile(
    r"""^\s*(?P<base>double\s+precision|character\s+varying|char\s+varying|national\s+char(?:acter)?
        |national\s+varchar|[a-z][a-z0-9_]*)
        \s*(?:\((?P<args>[^()]*)\))?
        (?P<mods>(?:\s+(?:unsigned|signed|zerofill))*)
        (?P<rest>.*)$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _ParsedType:
    base: str  # canonical name, e.g. "BIGINT"
    args: tuple[str, ...]  # e.g. ("80",) or ("10", "3") or ENUM values (quoted)
    unsigned: bool
    rest: str  # whatever followed the type (NOT NULL, DEFAULT ..., CHARACTER SET ...), stripped

    @property
    def canonical(self) -> str:
        base = self.base
        args = self.args
        if base in _INTEGERS:
            args = ()  # display widths carry no meaning (and are deprecated)
        elif base == "FLOAT" and len(args) == 1:
            # FLOAT(p): p <= 24 is a 4-byte FLOAT, 25..53 an 8-byte DOUBLE (MySQL manual, "FLOAT(p)").
            base, args = ("FLOAT" if int(args[0]) <= 24 else "DOUBLE"), ()
        elif base in ("FLOAT", "DOUBLE") and len(args) == 2:
            pass  # FLOAT(M,D): keep, it rounds values
        elif base == "DECIMAL":
            args = (args + ("10", "0"))[:2] if len(args) < 2 else args
            if len(args) == 1:
                args = (args[0], "0")
        elif base in ("CHAR", "BINARY") and not args:
            args = ("1",)
        elif base in ("DATETIME", "TIMESTAMP", "TIME") and args == ("0",):
            args = ()
        text = base + (f"({','.join(args)})" if args else "")
        if self.unsigned:
            text += " UNSIGNED"
        return text


def _split_args(text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",")) if text.strip() else ()


def _parse_type(text: str) -> _ParsedType:
    """Split a MySQL column type (with or without trailing attributes) into its parts."""
    m = _TYPE_RE.match(text)
    if not m:
        raise SchemaError(f"cannot parse MySQL type {text!r}")
    base = re.sub(r"\s+", " ", m["base"]).upper()
    base = _SYNONYMS.get(base, base)
    if base not in _KNOWN:
        raise SchemaError(f"unknown MySQL type {m['base']!r} in {text!r}")
    args = _split_args(m["args"] or "")
    if base not in ("ENUM", "SET") and any(not a.isdigit() for a in args):
        raise SchemaError(f"bad arguments {m['args']!r} for MySQL type {base} in {text!r}")
    if base in ("TINYINT",) and args == ("1",) and not m["mods"].strip():
        pass  # TINYINT(1) is how MySQL spells BOOLEAN, but it is still a TINYINT: keep it so
    unsigned = "UNSIGNED" in m["mods"].upper() or "ZEROFILL" in m["mods"].upper()
    return _ParsedType(base, args, unsigned, m["rest"].strip())


def normalize_type(text: str) -> str:
    """The canonical spelling of a bare MySQL type, e.g. ``'bigint(20) unsigned'`` → ``'BIGINT UNSIGNED'``."""
    parsed = _parse_type(text)
    if parsed.rest:
        raise SchemaError(f"unexpected text {parsed.rest!r} after the type in {text!r}")
    return parsed.canonical


def _type_length(parsed: _ParsedType) -> int | None:
    if parsed.base in ("CHAR", "VARCHAR", "BINARY", "VARBINARY") and parsed.args:
        return int(parsed.args[0])
    return None


def arrow_type_for(sql_type: str) -> pa.DataType:
    """The Arrow type that values of a column of this MySQL type are read as."""
    p = _parse_type(sql_type)
    b = p.base
    if b in _INTEGERS:
        bits = {8: 8, 16: 16, 24: 32, 32: 32, 64: 64}[_INTEGERS[b]]
        return getattr(pa, f"{'u' if p.unsigned else ''}int{bits}")()
    if b == "BOOLEAN":
        return pa.bool_()
    if b == "FLOAT":
        return pa.float32()
    if b == "DOUBLE":
        return pa.float64()
    if b == "DECIMAL":
        precision, scale = (int(a) for a in _parse_type(p.canonical).args)
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    if b in _STRINGS:
        return pa.string()
    if b in _BINARIES or b == "BIT":
        return pa.binary()
    if b == "DATE":
        return pa.date32()
    if b in ("DATETIME", "TIMESTAMP"):
        return pa.timestamp("us")
    if b == "TIME":
        return pa.time64("us")
    if b == "YEAR":
        return pa.int16()
    raise SchemaError(f"no Arrow type for MySQL type {sql_type!r}")


_FELIS_FOR_BASE = {
    "TINYINT": "byte",
    "SMALLINT": "short",
    "MEDIUMINT": "int",
    "INT": "int",
    "BIGINT": "long",
    "BOOLEAN": "boolean",
    "FLOAT": "float",
    "DOUBLE": "double",
    "CHAR": "char",
    "VARCHAR": "string",
    "BINARY": "binary",
    "VARBINARY": "binary",
    "DATETIME": "timestamp",
    "TIMESTAMP": "timestamp",
}


def _felis_datatype(parsed: _ParsedType) -> str | None:
    if parsed.base in _STRINGS and parsed.base not in ("CHAR", "VARCHAR"):
        return "text"
    if parsed.base in _BINARIES and parsed.base not in ("BINARY", "VARBINARY"):
        return "binary"
    return _FELIS_FOR_BASE.get(parsed.base)


# --------------------------------------------------------------------------------------------------
# Columns and tables
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One table column as Qserv creates it.

    `sql_type` is the canonical bare MySQL type (``DOUBLE``, ``VARCHAR(80)``, ``BIGINT UNSIGNED``);
    `mysql_type` adds ``NOT NULL`` / ``DEFAULT`` / extra attributes and is what `/ingest/table` gets.
    `datatype` is the felis datatype (given by felis, or derived from the MySQL type where one fits).
    """

    name: str
    sql_type: str
    nullable: bool = True
    default: str | None = None  # SQL text of the default, e.g. "'0'" or "CURRENT_TIMESTAMP"
    extra: str = ""  # other attributes kept verbatim, e.g. "AUTO_INCREMENT"
    datatype: str | None = None
    length: int | None = None
    description: str | None = None

    @property
    def mysql_type(self) -> str:
        """The full column type for `/ingest/table`, e.g. ``'BIGINT NOT NULL'``."""
        text = self.sql_type
        if not self.nullable:
            text += " NOT NULL"
        if self.default is not None:
            text += f" DEFAULT {self.default}"
        if self.extra:
            text += f" {self.extra}"
        return text

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type values of this column are read as."""
        return arrow_type_for(self.sql_type)

    @property
    def max_length(self) -> int | None:
        """Most characters (CHAR/VARCHAR) or bytes (BINARY/VARBINARY) a value may have, if bounded."""
        return _type_length(_parse_type(self.sql_type))

    def same_as(self, other: Column) -> bool:
        """True when both columns define the same thing in MySQL (name, type, nullability, default, extra)."""
        return (self.name, self.sql_type, self.nullable, self.default, self.extra.upper()) == (
            other.name,
            other.sql_type,
            other.nullable,
            other.default,
            other.extra.upper(),
        )


#: The columns the partitioner adds to every partitioned table, as in Qserv's own itest JSONs.
CHUNK_COLUMNS = (
    Column("chunkId", "INT", nullable=False, datatype="int"),
    Column("subChunkId", "INT", nullable=False, datatype="int"),
)

_RESERVED = {"qserv_trans_id"}


@dataclass(frozen=True)
class TableSchema:
    """The ordered data columns of a table (without `chunkId`/`subChunkId`) and whether it is partitioned."""

    name: str
    columns: tuple[Column, ...]
    partitioned: bool = False
    source: str = ""  # where the schema came from, for messages
    extras: Mapping[str, Any] = field(default_factory=dict)  # e.g. director_key from a Qserv JSON

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        seen: set[str] = set()
        for c in self.columns:
            low = c.name.lower()  # MySQL column names are case-insensitive
            if low in seen:
                raise SchemaError(f"{self.source or self.name}: duplicate column {c.name!r}")
            if low in _RESERVED:
                raise SchemaError(f"{self.source or self.name}: column {c.name!r} is reserved by Qserv")
            if low in ("chunkid", "subchunkid"):
                raise SchemaError(
                    f"{self.source or self.name}: {c.name!r} is added by the partitioner, not a data column"
                )
            seen.add(low)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name}: no column {name!r}")

    def all_columns(self) -> list[Column]:
        """Data columns, then `chunkId` and `subChunkId` for a partitioned table."""
        return list(self.columns) + (list(CHUNK_COLUMNS) if self.partitioned else [])

    def ingest_columns(self) -> list[dict[str, str]]:
        """The `schema` list of the `/ingest/table` body: ``[{"name": ..., "type": ...}, ...]``."""
        return [{"name": c.name, "type": c.mysql_type} for c in self.all_columns()]

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the data columns as read from an input."""
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns])

    def select(
        self,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        rename: Mapping[str, str] | None = None,
    ) -> TableSchema:
        """This schema reduced and renamed by a column selection (see `select_columns`)."""
        raise NotImplementedError("column selection: next commit")


# --------------------------------------------------------------------------------------------------
# Felis
# --------------------------------------------------------------------------------------------------


def _felis_path(schema: str | Path) -> Path:
    path = Path(schema)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    name = str(schema)
    resource = importlib.resources.files("lsst.sdm.schemas") / f"{name}.yaml"
    if resource.is_file():
        return Path(str(resource))
    known = sorted(
        p.name.removesuffix(".yaml")
        for p in importlib.resources.files("lsst.sdm.schemas").iterdir()
        if p.name.endswith(".yaml")
    )
    raise SchemaError(f"felis schema {name!r} is neither a YAML file nor one of lsst-sdm-schemas: {known}")


@functools.lru_cache(maxsize=8)
def _load_felis(path: str) -> Any:
    from felis.datamodel import Schema

    # felis schemas are large (dp02_dc2: ~1 s to validate); cache the parsed model per file.
    return Schema.from_uri(path, context={"id_generation": True})


def felis_table(schema: str | Path, table: str, *, partitioned: bool = False) -> TableSchema:
    """The columns of `table` in a felis schema, typed exactly as felis maps them to MySQL.

    `schema` is a schema name of the lsst-sdm-schemas package (``"dp02_dc2"``) or the path of a felis
    YAML file. Types come from felis' own MySQL mapping (its per-dialect types and ``mysql:datatype``
    overrides, compiled by SQLAlchemy's MySQL dialect), then normalised. Felis does not say whether a
    table is partitioned in Qserv, so `partitioned` is the caller's (default False).
    """
    from felis.metadata import get_datatype_with_variants
    from sqlalchemy.dialects import mysql

    path = _felis_path(schema)
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

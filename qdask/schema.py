"""Column types for Qserv: table schemas from felis, a Qserv table JSON, MySQL DDL or an Arrow schema.

Every source of a schema ends as a `TableSchema`: the ordered data columns of a table, each with the
MySQL type Qserv will create it with and the Arrow type its values are expected to have. The
`/ingest/table` body's `schema` list comes from `TableSchema.ingest_columns()`, which appends
`chunkId`/`subChunkId` for partitioned tables (the partitioner adds those values, inputs do not carry
them). Type spellings are normalised (``bigint(20)`` → ``BIGINT``, ``INTEGER`` → ``INT``, ``BOOL`` →
``BOOLEAN``) so that schemas from different sources compare equal when they mean the same table.
"""

from __future__ import annotations

import collections
import functools
import importlib.resources
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from qdask.errors import QdaskError

__all__ = [
    "CHUNK_COLUMNS",
    "Column",
    "SchemaError",
    "SchemaMismatch",
    "TableSchema",
    "arrow_type_for",
    "check_arrow_schema",
    "check_batch_values",
    "felis_table",
    "from_arrow",
    "from_ddl",
    "from_qserv_json",
    "is_compatible",
    "mysql_type_for_arrow",
    "normalize_type",
    "parse_column_definition",
    "select_columns",
]


class SchemaError(QdaskError, ValueError):
    """A schema that cannot be read or resolved (unknown table, unparsable DDL or type)."""


class SchemaMismatch(QdaskError, ValueError):
    """An input whose columns do not match the table schema; names the input and every offending column."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        plural = "s" if count != 1 else ""
        head = f"{source}: columns do not match the table schema ({count} problem{plural})"
        super().__init__(f"{head}:\n{lines}")


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
        (?:\s*\((?P<args>[^()]*)\))?
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
            args = {0: ("10", "0"), 1: (args[:1] + ("0",))}.get(len(args), args)  # MySQL defaults
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


@functools.lru_cache(maxsize=4096)
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
    extra: str = ""  # other attributes kept verbatim, e.g. "CHARACTER SET latin1"
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

    @functools.cached_property
    def _by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    def column(self, name: str) -> Column:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name}: no column {name!r}") from None

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
        pairs = select_columns(self.names, include, exclude, rename, source=self.source or self.name)
        by_name = {c.name: c for c in self.columns}
        return replace(self, columns=tuple(replace(by_name[src], name=dst) for src, dst in pairs))


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


# --------------------------------------------------------------------------------------------------
# Column definitions as MySQL text (Qserv table JSON, DDL)
# --------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.|'')*')|(?P<open>\()|(?P<word>[^\s'()]+))", re.DOTALL)


def _tokens(text: str) -> list[str]:
    """Split attribute text into words, quoted strings and balanced ``(...)`` groups."""
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise SchemaError(f"cannot read {text[pos:]!r}")
        if m["open"]:
            start = m.start("open")
            depth, i, quote = 0, start, None
            while i < len(text):
                ch = text[i]
                if quote:
                    if ch == "\\":
                        i += 1
                    elif ch == quote:
                        quote = None
                elif ch in "'\"":
                    quote = ch
                elif ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            if depth:
                raise SchemaError(f"unbalanced parenthesis in {text!r}")
            out.append(text[start : i + 1])
            pos = i + 1
        else:
            out.append(m["str"] or m["word"])
            pos = m.end()
    return out


def parse_column_definition(name: str, definition: str) -> Column:
    """A `Column` from a MySQL column definition such as ``"int(11) NOT NULL DEFAULT '0'"``.

    Understands the type with its arguments and UNSIGNED/ZEROFILL, NULL / NOT NULL, DEFAULT,
    COMMENT, CHARACTER SET / COLLATE, ON UPDATE and generated columns; anything else is an error that
    quotes it. ``DEFAULT NULL`` on a nullable column is the default and is dropped; inline keys and
    AUTO_INCREMENT are dropped because Qserv tables carry no keys (MySQL refuses AUTO_INCREMENT
    without one).
    """
    try:
        parsed = _parse_type(definition)
        tokens = _tokens(parsed.rest)
    except SchemaError as exc:
        raise SchemaError(f"column {name!r}: {exc}") from None
    nullable, default, description = True, None, None
    extra: list[str] = []
    i = 0
    up = [t.upper() for t in tokens]

    def fail(msg: str) -> SchemaError:
        return SchemaError(f"column {name!r}: {msg} in {definition.strip()!r}")

    while i < len(tokens):
        word = up[i]
        if word == "NOT" and i + 1 < len(tokens) and up[i + 1] == "NULL":
            nullable, i = False, i + 2
        elif word == "NULL":
            nullable, i = True, i + 1
        elif word == "DEFAULT":
            if i + 1 >= len(tokens):
                raise fail("DEFAULT without a value")
            default = tokens[i + 1]
            i += 2
            if i < len(tokens) and tokens[i].startswith("("):  # CURRENT_TIMESTAMP(6), or a function call
                default += tokens[i]
                i += 1
        elif word in ("AUTO_INCREMENT", "PRIMARY", "UNIQUE", "KEY"):
            i += 1  # dropped: Qserv creates tables without keys, and AUTO_INCREMENT needs one (error 1075)
        elif word in ("INVISIBLE", "VIRTUAL", "STORED", "PERSISTENT"):
            extra.append(word)
            i += 1
        elif word == "COMMENT" and i + 1 < len(tokens):
            description = tokens[i + 1][1:-1].replace("''", "'")
            i += 2
        elif word in ("COLLATE", "CHARSET") and i + 1 < len(tokens):
            extra.extend([word, tokens[i + 1]])
            i += 2
        elif word == "CHARACTER" and i + 2 < len(tokens) and up[i + 1] == "SET":
            extra.extend(["CHARACTER SET", tokens[i + 2]])
            i += 3
        elif word == "ON" and i + 2 < len(tokens) and up[i + 1] == "UPDATE":
            extra.extend(["ON UPDATE", tokens[i + 2]])
            i += 3
        elif word == "GENERATED" and up[i + 1 : i + 3] == ["ALWAYS", "AS"] and i + 3 < len(tokens):
            extra.extend(["GENERATED ALWAYS AS", tokens[i + 3]])
            i += 4
        elif word == "AS" and i + 1 < len(tokens) and tokens[i + 1].startswith("("):
            extra.extend(["AS", tokens[i + 1]])
            i += 2
        else:
            raise fail(f"cannot understand {tokens[i]!r}")
    if default is not None and default.upper() == "NULL":
        if not nullable:
            raise fail("NOT NULL with DEFAULT NULL")
        default = None
    return Column(
        name=name,
        sql_type=parsed.canonical,
        nullable=nullable,
        default=default,
        extra=" ".join(extra),
        datatype=_felis_datatype(parsed),
        length=_type_length(parsed),
        description=description,
    )


def _split_chunk_columns(columns: list[Column], source: str, partitioned: bool) -> list[Column]:
    """Drop `chunkId`/`subChunkId` from a full Qserv column list (re-added for partitioned tables)."""
    data = []
    for c in columns:
        if c.name in ("chunkId", "subChunkId"):
            if not partitioned:
                raise SchemaError(f"{source}: regular (non-partitioned) table has a {c.name!r} column")
            if _parse_type(c.sql_type).base not in _INTEGERS:
                raise SchemaError(f"{source}: {c.name!r} must be an integer column, not {c.sql_type}")
            continue
        data.append(c)
    return data


def from_qserv_json(spec: str | Path | Mapping[str, Any]) -> TableSchema:
    """A `TableSchema` from a Qserv `/ingest/table` body (a dict or the path of its JSON file).

    The director/latitude/longitude keys and other table attributes are kept in `extras`.
    """
    source = str(spec) if not isinstance(spec, Mapping) else "table JSON"
    if not isinstance(spec, Mapping):
        try:
            spec = json.loads(Path(spec).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SchemaError(f"cannot read Qserv table JSON {source}: {exc}") from None
    for key in ("table", "schema"):
        if key not in spec:
            raise SchemaError(f"{source}: Qserv table JSON has no {key!r}")
    table = spec["table"]
    partitioned = bool(int(spec.get("is_partitioned", 0)))
    columns = []
    for i, entry in enumerate(spec["schema"]):
        if not isinstance(entry, Mapping) or "name" not in entry or "type" not in entry:
            raise SchemaError(f"{source}: schema entry {i} is not a {{'name', 'type'}} object: {entry!r}")
        try:
            columns.append(parse_column_definition(entry["name"], entry["type"]))
        except SchemaError as exc:
            raise SchemaError(f"{source}: {exc}") from None
    columns = _split_chunk_columns(columns, source, partitioned)
    keep = ("director_table", "director_key", "latitude_key", "longitude_key", "database", "charset_name")
    extras = {k: spec[k] for k in keep if k in spec}
    return TableSchema(table, tuple(columns), partitioned=partitioned, source=source, extras=extras)


_COMMENT_RE = re.compile(r"/\*.*?\*/|--[^\n]*|#[^\n]*", re.DOTALL)
_CREATE_RE = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>(?:`[^`]+`|\w+)(?:\s*\.\s*(?:`[^`]+`|\w+))?)\s*\(",
    re.IGNORECASE,
)
_INDEX_WORDS = (
    "PRIMARY",
    "KEY",
    "INDEX",
    "UNIQUE",
    "CONSTRAINT",
    "FOREIGN",
    "FULLTEXT",
    "SPATIAL",
    "CHECK",
    "PERIOD",
)


def _strip_comments(text: str) -> str:
    """Remove SQL comments outside quoted strings (mysqldump writes ``/*!40101 ... */`` lines)."""
    out, i, quote = [], 0, None
    while i < len(text):
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == "\\" and quote != "`" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
            i += 1
            continue
        if ch in "'\"`":
            quote = ch
            out.append(ch)
            i += 1
            continue
        m = _COMMENT_RE.match(text, i)
        if m and (m.group().startswith(("/*", "#")) or m.group().startswith("-- ") or m.group() == "--"):
            out.append(" ")
            i = m.end()
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _split_top_level(body: str) -> list[str]:
    """Split a CREATE TABLE body at commas outside quotes and parentheses."""
    parts, depth, quote, start, i = [], 0, None, 0, 0
    while i < len(body):
        ch = body[i]
        if quote:
            if ch == "\\" and quote != "`":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
        i += 1
    parts.append(body[start:])
    return [p.strip() for p in parts if p.strip()]


def _unquote_ident(text: str) -> str:
    text = text.strip()
    return text[1:-1].replace("``", "`") if text.startswith("`") else text


def from_ddl(ddl: str | Path, table: str | None = None, *, partitioned: bool = False) -> TableSchema:
    """A `TableSchema` from MySQL ``CREATE TABLE`` text or a file (a `Path`, an existing file, *.schema/.sql).

    Reads column names and definitions; keys, indexes, constraints and table options are ignored.
    With several CREATE TABLE statements, `table` picks one. Anything not understood is an error
    naming the column and quoting the text.
    """
    source = "DDL"
    is_path = isinstance(ddl, Path) or (
        "\n" not in ddl and (ddl.endswith((".schema", ".sql", ".ddl")) or os.path.isfile(ddl))
    )
    if is_path:
        source = str(ddl)
        try:
            ddl = Path(ddl).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SchemaError(f"cannot read DDL file {source}: {exc}") from None
    text = _strip_comments(str(ddl))
    statements = []
    for m in _CREATE_RE.finditer(text):
        name = _unquote_ident(re.split(r"\s*\.\s*", m["name"])[-1])
        depth, i, quote = 1, m.end(), None
        while i < len(text) and depth:
            ch = text[i]
            if quote:
                if ch == "\\" and quote != "`":
                    i += 1
                elif ch == quote:
                    quote = None
            elif ch in "'\"`":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            i += 1
        if depth:
            raise SchemaError(f"{source}: CREATE TABLE {name} has no closing parenthesis")
        statements.append((name, text[m.end() : i - 1]))
    if not statements:
        raise SchemaError(f"{source}: no CREATE TABLE statement found")
    if table is None:
        if len(statements) > 1:
            raise SchemaError(f"{source}: several tables {[n for n, _ in statements]}; say which one")
        name, body = statements[0]
    else:
        found = [s for s in statements if s[0] == table]
        if not found:
            raise SchemaError(f"{source}: no CREATE TABLE {table}; found {[n for n, _ in statements]}")
        name, body = found[0]
    columns = []
    for item in _split_top_level(body):
        first = item.split(None, 1)[0].upper()
        if first in _INDEX_WORDS:
            continue
        m = re.match(r"(`(?:[^`]|``)+`|\w+)\s+(.*)$", item, re.DOTALL)
        if not m:
            raise SchemaError(f"{source}: table {name}: cannot read column definition {item!r}")
        try:
            columns.append(parse_column_definition(_unquote_ident(m[1]), m[2]))
        except SchemaError as exc:
            raise SchemaError(f"{source}: table {name}: {exc}") from None
    columns = _split_chunk_columns(columns, source, True) if partitioned else columns
    return TableSchema(name, tuple(columns), partitioned=partitioned, source=source)


# --------------------------------------------------------------------------------------------------
# Arrow
# --------------------------------------------------------------------------------------------------


def mysql_type_for_arrow(t: pa.DataType, *, max_length: int | None = None) -> str:
    """The MySQL type a column of Arrow type `t` is created with; `max_length` makes strings VARCHAR(n)."""
    if pa.types.is_dictionary(t):
        return mysql_type_for_arrow(t.value_type, max_length=max_length)
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        base = {8: "TINYINT", 16: "SMALLINT", 32: "INT", 64: "BIGINT"}[t.bit_width]
        return base + (" UNSIGNED" if pa.types.is_unsigned_integer(t) else "")
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "FLOAT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        if t.precision > 65:
            raise SchemaError(f"Arrow {t} has more digits than MySQL DECIMAL allows (65)")
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return f"VARCHAR({max_length})" if max_length else "TEXT"
    if pa.types.is_fixed_size_binary(t):
        return f"BINARY({t.byte_width})"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return f"VARBINARY({max_length})" if max_length else "BLOB"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        # MySQL keeps at most microseconds; tz-aware values are stored as their UTC wall time.
        return {"s": "DATETIME", "ms": "DATETIME(3)"}.get(t.unit, "DATETIME(6)")
    if pa.types.is_time(t):
        return {"s": "TIME", "ms": "TIME(3)"}.get(t.unit, "TIME(6)")
    raise SchemaError(f"no MySQL type for Arrow type {t}")


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
        columns.append(Column(f.name, sql, nullable=f.nullable, datatype=_felis_datatype(_parse_type(sql))))
    if problems:
        raise SchemaError(f"{source or name}: cannot infer MySQL types: " + "; ".join(problems))
    return TableSchema(
        name, tuple(columns), partitioned=partitioned, source=source or f"Arrow schema of {name}"
    )


def _int_info(t: pa.DataType) -> tuple[bool, int] | None:
    if pa.types.is_integer(t):
        return pa.types.is_signed_integer(t), t.bit_width
    return None


def is_compatible(found: pa.DataType, column: Column) -> bool:
    """Whether values of Arrow type `found` load into `column` without loss beyond the column's own rounding.

    Integers fit integers of at least their range (int32 → BIGINT yes, int64 → INT no, uint8 → SMALLINT
    yes, signed → UNSIGNED no); ints and floats of any width fit FLOAT/DOUBLE (a FLOAT column rounds by
    design); floats never fit integer or DECIMAL columns; strings fit text columns, strings and binaries
    fit binary columns; dates and timestamps fit DATETIME/TIMESTAMP. An all-null column fits a nullable one.
    """
    if pa.types.is_dictionary(found):
        found = found.value_type
    if pa.types.is_null(found):
        return column.nullable
    p = _parse_type(column.sql_type)
    b = p.base
    fi = _int_info(found)
    if b in _INTEGERS or b == "YEAR":
        bits = 16 if b == "YEAR" else _INTEGERS[b]
        if pa.types.is_boolean(found):
            return True
        if fi is None:
            return False
        signed, width = fi
        if p.unsigned:
            return not signed and width <= bits
        return width <= bits if signed else width < bits
    if b == "BOOLEAN":
        return pa.types.is_boolean(found) or (fi is not None and fi[1] == 8)
    if b in ("FLOAT", "DOUBLE"):
        return pa.types.is_floating(found) or fi is not None or pa.types.is_boolean(found)
    if b == "DECIMAL":
        precision, scale = (int(a) for a in _parse_type(p.canonical).args)
        if pa.types.is_decimal(found):
            return found.scale <= scale and found.precision - found.scale <= precision - scale
        if fi is not None:
            digits = {8: 3, 16: 5, 32: 10, 64: 20}[fi[1]]
            return digits <= precision - scale
        return False
    is_str = pa.types.is_string(found) or pa.types.is_large_string(found) or pa.types.is_string_view(found)
    is_bin = pa.types.is_binary(found) or pa.types.is_large_binary(found) or pa.types.is_binary_view(found)
    if b in _STRINGS:
        return is_str
    if b in _BINARIES or b == "BIT":
        return is_str or is_bin or pa.types.is_fixed_size_binary(found)
    if b == "DATE":
        return pa.types.is_date(found)
    if b in ("DATETIME", "TIMESTAMP"):
        return pa.types.is_timestamp(found) or pa.types.is_date(found)
    if b == "TIME":
        return pa.types.is_time(found)
    return False


def check_arrow_schema(
    found: pa.Schema,
    schema: TableSchema,
    source: str,
    *,
    allow_extra: bool = False,
    input_names: Mapping[str, str] | None = None,
) -> None:
    """Raise one `SchemaMismatch` naming `source` and every missing, extra or incompatible column.

    `found` is the input's Arrow schema with columns already renamed to the table's names;
    `input_names` maps a table column name back to the input's name, for the message.
    """
    input_names = input_names or {}

    def label(name: str) -> str:
        orig = input_names.get(name, name)
        return f"{name!r}" + (f" (input column {orig!r})" if orig != name else "")

    problems = []
    found_names = set(found.names)
    for c in schema.columns:
        if c.name not in found_names:
            problems.append(f"missing column {label(c.name)}: expected {c.sql_type} (Arrow {c.arrow_type})")
            continue
        t = found.field(c.name).type
        if not is_compatible(t, c):
            problems.append(
                f"column {label(c.name)}: expected {c.sql_type} (Arrow {c.arrow_type}), found {t}"
            )
    if not allow_extra:
        expected = set(schema.names)
        for f in found:
            if f.name not in expected:
                problems.append(f"extra column {label(f.name)} of type {f.type} is not in the table schema")
    dupes = sorted(n for n, k in collections.Counter(found.names).items() if k > 1)
    problems.extend(f"column {n!r} appears more than once in the input" for n in dupes)
    if problems:
        raise SchemaMismatch(source, problems)


def check_batch_values(
    batch: pa.RecordBatch | pa.Table, schema: TableSchema, source: str, row_offset: int = 0
):
    """Raise `SchemaMismatch` for NULLs (and NaN) in NOT NULL columns and strings longer than CHAR/VARCHAR(n).

    Cheap vectorised checks on data already in memory; `row_offset` numbers rows within the whole input.
    """
    import pyarrow.compute as pc

    problems = []
    present = set(batch.schema.names)
    for c in schema.columns:
        limit = c.max_length
        if c.name not in present or (c.nullable and limit is None):
            continue
        arr = batch.column(c.name)
        if not c.nullable:
            bad = pc.is_null(arr, nan_is_null=True)
            if pc.any(bad).as_py():
                first = pc.index(bad, True).as_py()
                problems.append(f"column {c.name!r} is NOT NULL but row {row_offset + first} is NULL or NaN")
        t = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
        if limit is not None and (
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
        ):
            if pa.types.is_dictionary(arr.type):
                arr = pc.cast(arr, t)
            is_text = _parse_type(c.sql_type).base in _STRINGS
            lengths = pc.utf8_length(arr) if is_text and not pa.types.is_binary(t) else pc.binary_length(arr)
            longest = pc.max(lengths).as_py()
            if longest is not None and longest > limit:
                first = pc.index(pc.greater(lengths, limit), True).as_py()
                problems.append(
                    f"column {c.name!r} ({c.sql_type}): row {row_offset + first} has {longest} "
                    f"{'characters' if is_text else 'bytes'}, more than {limit}"
                )
    if problems:
        raise SchemaMismatch(source, problems)


# --------------------------------------------------------------------------------------------------
# Column selection
# --------------------------------------------------------------------------------------------------


def select_columns(
    available: Sequence[str],
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    rename: Mapping[str, str] | None = None,
    *,
    source: str = "",
) -> list[tuple[str, str]]:
    """Which columns to keep and what to call them: ordered ``(input name, table name)`` pairs.

    `include` keeps only the named columns, `exclude` drops the named ones (after `include`), and
    `rename` maps kept input names to table names. The order is that of `available`. Names that do not
    exist, renames of dropped columns, clashing new names and an empty result are errors listing them all.
    """
    where = f"{source}: " if source else ""
    avail = list(available)
    present = set(avail)
    problems = []
    for label, names in (
        ("include", include or ()),
        ("exclude", exclude or ()),
        ("rename", list(rename or {})),
    ):
        unknown = [n for n in names if n not in present]
        if unknown:
            problems.append(f"{label} names unknown columns {unknown}")
    if problems:
        raise SchemaError(
            f"{where}column selection: "
            + "; ".join(problems)
            + f" (columns are {avail[:20]}"
            + (f" ... {len(avail)} in all)" if len(avail) > 20 else ")")
        )
    kept = [n for n in avail if include is None or n in set(include)]
    kept = [n for n in kept if n not in set(exclude or ())]
    rename = dict(rename or {})
    dropped = [n for n in rename if n not in set(kept)]
    if dropped:
        raise SchemaError(f"{where}column selection: rename names columns that are not selected: {dropped}")
    if not kept:
        raise SchemaError(f"{where}column selection keeps no columns")
    pairs = [(n, rename.get(n, n)) for n in kept]
    targets = [t for _, t in pairs]
    clashes = sorted({t for t in targets if targets.count(t) > 1})
    if clashes:
        raise SchemaError(f"{where}column selection: several columns would be named {clashes}")
    return pairs

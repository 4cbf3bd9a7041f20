"""MySQL DDL, read by one parser built on sqlglot: column types, column definitions, CREATE TABLE statements.

sqlglot (its MySQL dialect) does the lexing — quoted strings and identifiers, escapes, ``--``/``#``/``/* */``
comments including mysqldump's ``/*!40101 … */`` — and the grammar of a column definition. This module
adds what sqlglot leaves to its caller:

* the MySQL type synonyms sqlglot spells differently from MySQL's manual: ``INT8`` is BIGINT (sqlglot:
  TINYINT), ``REAL`` is DOUBLE (sqlglot: FLOAT), ``INT3``/``MIDDLEINT`` are MEDIUMINT and ``NATIONAL
  CHAR``/``NATIONAL VARCHAR`` are CHAR/VARCHAR (sqlglot: not types);
* the outline of a ``CREATE TABLE``: its name, and its body cut at top-level commas into column
  definitions and keys/indexes/constraints, which are skipped (Qserv creates tables without them), as are
  the table options after the body (``ENGINE=…``, ``AUTO_INCREMENT=…``, ``PARTITION BY …``);
* the canonical spelling of a type (`SqlType.canonical`: ``bigint(20)`` → ``BIGINT``), so that schemas
  from different sources compare equal when they mean the same table.

Two constructs sqlglot refuses are refused here too, with a message naming the column: ``FLOAT UNSIGNED``
(deprecated by MySQL 8.0.17; use FLOAT) and MariaDB's ``PERSISTENT`` for a generated column (write
``STORED``). Qserv's own schema files use neither.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from qdask.schema.errors import SchemaError

__all__ = [
    "BINARY_TYPES",
    "INTEGER_BITS",
    "TEXT_TYPES",
    "ColumnDefinition",
    "CreateTable",
    "SqlType",
    "create_tables",
    "normalize_type",
    "parse_column",
    "parse_type",
]

INTEGER_BITS = {"TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "INT": 32, "BIGINT": 64}
TEXT_TYPES = frozenset(
    {"CHAR", "VARCHAR", "TINYTEXT", "TEXT", "MEDIUMTEXT", "LONGTEXT", "ENUM", "SET", "JSON"}
)
BINARY_TYPES = frozenset({"BINARY", "VARBINARY", "TINYBLOB", "BLOB", "MEDIUMBLOB", "LONGBLOB"})


class _QservMySQL(MySQL):
    """sqlglot's MySQL dialect with MySQL's own meaning of a few type synonyms."""

    class Tokenizer(MySQL.Tokenizer):
        KEYWORDS = {
            **MySQL.Tokenizer.KEYWORDS,
            "INT8": TokenType.BIGINT,
            "REAL": TokenType.DOUBLE,  # unless sql_mode REAL_AS_FLOAT, which Qserv does not set
            "INT3": TokenType.MEDIUMINT,
            "MIDDLEINT": TokenType.MEDIUMINT,
            "NATIONAL CHAR": TokenType.NCHAR,
            "NATIONAL CHARACTER": TokenType.NCHAR,
            "NATIONAL VARCHAR": TokenType.NVARCHAR,
        }


_DIALECT = _QservMySQL()
_T = exp.DType

_PLAIN = ("FLOAT", "DOUBLE", "DECIMAL", "BOOLEAN", "BIT", "DATE", "DATETIME", "TIMESTAMP", "TIME", "YEAR")
#: sqlglot's type → (MySQL base type, unsigned).
_BASES: dict[exp.DType, tuple[str, bool]] = {
    **{getattr(_T, name): (name, False) for name in (*INTEGER_BITS, *_PLAIN, *TEXT_TYPES, *BINARY_TYPES)},
    **{getattr(_T, "U" + name): (name, True) for name in (*INTEGER_BITS, "DOUBLE", "DECIMAL")},
    _T.NCHAR: ("CHAR", False),
    _T.NVARCHAR: ("VARCHAR", False),
    _T.TIMESTAMPTZ: ("TIMESTAMP", False),  # sqlglot's name for MySQL's TIMESTAMP (stored as UTC)
}


@dataclass(frozen=True)
class SqlType:
    """A MySQL column type: canonical base name (``BIGINT``), arguments as written, and UNSIGNED."""

    base: str
    args: tuple[str, ...] = ()  # e.g. ("80",), ("10", "3"), or ENUM/SET values as SQL strings
    unsigned: bool = False

    @property
    def canonical(self) -> str:
        """The spelling used in qdask: ``BIGINT``, ``VARCHAR(80)``, ``DECIMAL(10,0)``, ``INT UNSIGNED``."""
        base, args = self.base, self.args
        if base in INTEGER_BITS:
            args = ()  # display widths carry no meaning (and are deprecated)
        elif base == "FLOAT" and len(args) == 1:
            # FLOAT(p): p <= 24 is a 4-byte FLOAT, 25..53 an 8-byte DOUBLE (MySQL manual, "FLOAT(p)").
            base, args = ("FLOAT" if int(args[0]) <= 24 else "DOUBLE"), ()
        elif base == "DECIMAL":
            args = self.decimal_digits
        elif base in ("CHAR", "BINARY") and not args:
            args = ("1",)
        elif base in ("DATETIME", "TIMESTAMP", "TIME") and args == ("0",):
            args = ()
        text = base + (f"({','.join(args)})" if args else "")
        return text + " UNSIGNED" if self.unsigned else text

    @property
    def decimal_digits(self) -> tuple[str, str]:
        """(precision, scale) of a DECIMAL with MySQL's defaults filled in (10, 0)."""
        precision = self.args[0] if self.args else "10"
        scale = self.args[1] if len(self.args) > 1 else "0"
        return precision, scale

    @property
    def integer_bits(self) -> int | None:
        """Bits of an integer type (MEDIUMINT: 24), None for other types."""
        return INTEGER_BITS.get(self.base)

    @property
    def is_text(self) -> bool:
        return self.base in TEXT_TYPES

    @property
    def is_binary(self) -> bool:
        return self.base in BINARY_TYPES

    @property
    def length(self) -> int | None:
        """Most characters (CHAR/VARCHAR) or bytes (BINARY/VARBINARY) a value may have, if bounded."""
        if self.base in ("CHAR", "VARCHAR", "BINARY", "VARBINARY") and self.args:
            return int(self.args[0])
        return None


@dataclass(frozen=True)
class ColumnDefinition:
    """A column definition as written: type, nullability, default (SQL text), kept attributes, comment."""

    name: str
    type: SqlType
    nullable: bool = True
    default: str | None = None  # e.g. "'0'" or "CURRENT_TIMESTAMP"; None also for DEFAULT NULL
    extra: tuple[str, ...] = ()  # e.g. ("CHARACTER SET latin1", "COLLATE latin1_bin")
    comment: str | None = None


@dataclass(frozen=True)
class CreateTable:
    """A ``CREATE TABLE`` found in DDL text; `columns()` parses its column definitions."""

    name: str
    sql: str
    items: tuple[tuple[Token, ...], ...]  # the body's top-level items, as tokens

    def columns(self) -> list[ColumnDefinition]:
        """The column definitions, in order; keys, indexes and constraints are skipped."""
        out = []
        for item in self.items:
            first = item[0]
            if first.token_type is not TokenType.IDENTIFIER and first.text.split()[0].upper() in _NOT_COLUMNS:
                continue
            out.append(_column(item, self.sql))
        return out


# Words that start a key, index or constraint in a CREATE TABLE body (unquoted; `key` is a column).
_NOT_COLUMNS = frozenset(
    {"PRIMARY", "KEY", "INDEX", "UNIQUE", "CONSTRAINT", "FOREIGN", "FULLTEXT", "SPATIAL", "CHECK", "PERIOD"}
)


def _tokenize(sql: str) -> list[Token]:
    try:
        return _DIALECT.tokenize(sql)
    except TokenError as exc:
        raise SchemaError(f"cannot read the SQL: {exc}") from None


def _sql(node: exp.Expr) -> str:
    """`node` as MySQL text without comments; ``CURRENT_TIMESTAMP`` keeps its spelling (not sqlglot's
    ``CURRENT_TIMESTAMP()``)."""
    if isinstance(node, exp.CurrentTimestamp) and node.this is None:
        return "CURRENT_TIMESTAMP"
    return node.sql(dialect=_DIALECT, comments=False)


def _type_args(tokens: Sequence[Token], sql: str) -> str:
    """The text between the parentheses after the type, as written (for messages)."""
    close = next((t for t in tokens[3:] if t.token_type is TokenType.R_PAREN), tokens[-1])
    return sql[tokens[3].start : close.start].strip() if len(tokens) > 3 else ""


def _sql_type(kind: exp.DataType, tokens: Sequence[Token], sql: str, zerofill: bool) -> SqlType:
    base = _BASES.get(kind.this)
    if base is None:
        raise SchemaError(f"unknown MySQL type {tokens[1].text!r}")
    name, unsigned = base
    if name in ("ENUM", "SET"):
        args = tuple(_sql(a) for a in kind.expressions)
    else:
        values = [p.this for p in kind.expressions]
        if not all(isinstance(v, exp.Literal) and v.is_int for v in values):
            raise SchemaError(f"bad arguments {_type_args(tokens, sql)!r} for MySQL type {name}")
        args = tuple(v.name for v in values)
    return SqlType(name, args, unsigned or zerofill)


def _parse_error(exc: ParseError, tokens: Sequence[Token]) -> str:
    """What a failed column definition got wrong: its type, or the first word not understood."""
    err = exc.errors[0] if exc.errors else {}
    word = err.get("highlight") or "?"
    if len(tokens) > 1 and (err.get("line"), err.get("col")) == (tokens[1].line, tokens[1].col):
        return f"unknown MySQL type {word!r}"
    description = str(err.get("description") or "")
    if description.startswith("Cannot convert"):  # e.g. FLOAT UNSIGNED
        return f"{description.rstrip('.')}: UNSIGNED on this type is deprecated by MySQL 8.0.17; drop it"
    return f"cannot understand {word!r}"


def _column_node(tokens: Sequence[Token], sql: str) -> exp.ColumnDef:
    """sqlglot's parse of a column definition (its tokens, name first, in `sql`), which must have a type."""
    try:
        node = _DIALECT.parser().parse_into(exp.ColumnDef, list(tokens), sql)[0]
    except ParseError as exc:
        raise SchemaError(_parse_error(exc, tokens)) from None
    if not isinstance(node, exp.ColumnDef) or not isinstance(node.args.get("kind"), exp.DataType):
        raise SchemaError("no type")
    return node


def _written(tokens: Sequence[Token], sql: str) -> str:
    return sql[tokens[0].start : tokens[-1].end + 1].strip()


# Column attributes kept verbatim: they change how MySQL stores or computes the column.
_KEPT = (
    exp.CharacterSetColumnConstraint,
    exp.CollateColumnConstraint,
    exp.ComputedColumnConstraint,
    exp.InvisibleColumnConstraint,
)
# Column attributes dropped: Qserv creates tables without keys, and AUTO_INCREMENT needs one (error 1075).
_DROPPED = (exp.AutoIncrementColumnConstraint, exp.PrimaryKeyColumnConstraint, exp.UniqueColumnConstraint)


def _column(tokens: Sequence[Token], sql: str) -> ColumnDefinition:
    """A column definition from its tokens (name first) in `sql`."""
    try:
        return _column_definition(tokens, sql)
    except SchemaError as exc:
        raise SchemaError(f"column {tokens[0].text!r}: {exc} in {_written(tokens, sql)!r}") from None


def _column_definition(tokens: Sequence[Token], sql: str) -> ColumnDefinition:
    node = _column_node(tokens, sql)
    nullable, default, comment, zerofill = True, None, None, False
    extra: list[str] = []
    for constraint in node.constraints:
        kind = constraint.kind
        if isinstance(kind, exp.NotNullColumnConstraint):
            nullable = bool(kind.args.get("allow_null"))
        elif isinstance(kind, exp.DefaultColumnConstraint):
            default = _sql(kind.this)
        elif isinstance(kind, exp.CommentColumnConstraint):
            comment = kind.this.name
        elif isinstance(kind, exp.ZeroFillColumnConstraint):
            zerofill = True  # ZEROFILL implies UNSIGNED
        elif isinstance(kind, exp.OnUpdateColumnConstraint):
            extra.append(f"ON UPDATE {_sql(kind.this)}")
        elif isinstance(kind, _KEPT):
            extra.append(_sql(kind))
        elif not isinstance(kind, _DROPPED):
            raise SchemaError(f"cannot understand {_sql(kind)!r}")
    if default is not None and default.upper() == "NULL":
        if not nullable:
            raise SchemaError("NOT NULL with DEFAULT NULL")
        default = None  # a nullable column's default anyway
    sql_type = _sql_type(node.args["kind"], tokens, sql, zerofill)
    return ColumnDefinition(tokens[0].text, sql_type, nullable, default, tuple(extra), comment)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def parse_column(name: str, definition: str) -> ColumnDefinition:
    """A column from its MySQL definition, e.g. ``parse_column("a", "int(11) NOT NULL DEFAULT '0'")``."""
    sql = f"{_quoted(name)} {definition}"
    tokens = _tokenize(sql)
    if len(tokens) < 2:
        raise SchemaError(f"column {name!r}: no type in {definition!r}")
    return _column(tokens, sql)


@functools.lru_cache(maxsize=4096)
def parse_type(text: str) -> SqlType:
    """A bare MySQL type (``'bigint(20) unsigned'``); anything after the type is an error quoting it."""
    sql = f"_ {text}"
    tokens = _tokenize(sql)
    try:
        if len(tokens) < 2:
            raise SchemaError("no type")
        node = _column_node(tokens, sql)
        rest = [c for c in node.constraints if not isinstance(c.kind, exp.ZeroFillColumnConstraint)]
        if rest:
            raise SchemaError(f"unexpected text {' '.join(_sql(c) for c in rest)!r} after the type")
        return _sql_type(node.args["kind"], tokens, sql, zerofill=len(rest) != len(node.constraints))
    except SchemaError as exc:
        raise SchemaError(f"{exc} in {text!r}") from None


def normalize_type(text: str) -> str:
    """The canonical spelling of a bare MySQL type, e.g. ``'bigint(20) unsigned'`` → ``'BIGINT UNSIGNED'``."""
    return parse_type(text).canonical


def _statements(tokens: list[Token]) -> Iterator[list[Token]]:
    statement: list[Token] = []
    for token in tokens:
        if token.token_type is TokenType.SEMICOLON:
            if statement:
                yield statement
            statement = []
        else:
            statement.append(token)
    if statement:
        yield statement


def _body_items(tokens: Sequence[Token], open_at: int) -> tuple[tuple[tuple[Token, ...], ...], bool]:
    """The top-level comma-separated items between the parenthesis at `open_at` and its match; and
    whether the match was found."""
    items: list[tuple[Token, ...]] = []
    depth, start = 0, open_at + 1
    for i in range(open_at, len(tokens)):
        kind = tokens[i].token_type
        if kind is TokenType.L_PAREN:
            depth += 1
        elif kind is TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                items.append(tuple(tokens[start:i]))
                return tuple(item for item in items if item), True
        elif kind is TokenType.COMMA and depth == 1:
            items.append(tuple(tokens[start:i]))
            start = i + 1
    return (), False


def create_tables(sql: str) -> list[CreateTable]:
    """Every ``CREATE TABLE name (…)`` in `sql`, in order; other statements are ignored.

    Raises `SchemaError` for text sqlglot cannot tokenize or a body without its closing parenthesis.
    """
    found = []
    for statement in _statements(_tokenize(sql)):
        if statement[0].token_type is not TokenType.CREATE:
            continue
        open_at = next((i for i, t in enumerate(statement) if t.token_type is TokenType.L_PAREN), None)
        if open_at is None or not any(t.token_type is TokenType.TABLE for t in statement[:open_at]):
            continue  # CREATE TABLE … LIKE, CREATE INDEX, CREATE DATABASE, …
        try:
            header = _DIALECT.parser().parse(statement[:open_at], sql)[0]
        except ParseError:
            continue  # not a CREATE statement sqlglot knows: not a table
        if not (
            isinstance(header, exp.Create) and header.kind == "TABLE" and isinstance(header.this, exp.Table)
        ):
            continue
        name = header.this.name
        if statement[open_at - 1].text != name:
            continue  # CREATE TABLE t AS (SELECT …): no column definitions
        items, closed = _body_items(statement, open_at)
        if not closed:
            raise SchemaError(f"CREATE TABLE {name} has no closing parenthesis")
        found.append(CreateTable(name, sql, items))
    return found

"""A table's columns as Qserv creates them (`Column`, `TableSchema`, the partitioner's `CHUNK_COLUMNS`), and
the selection of input columns by name (`select_columns`).

The `/ingest/table` body's `schema` list comes from `TableSchema.ingest_columns()`, which appends
`chunkId`/`subChunkId` for partitioned tables (the partitioner adds those values, inputs do not carry
them).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from qdask.schema.arrow_types import arrow_type_for
from qdask.schema.ddl import parse_type
from qdask.schema.errors import SchemaError

__all__ = ["CHUNK_COLUMNS", "Column", "TableSchema", "select_columns"]


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
        """The full column type for `/ingest/table`, e.g. ``'BIGINT NOT NULL'``.

        `extra` follows the type directly: ``CHARACTER SET`` belongs to a string type (MariaDB refuses it
        after ``DEFAULT``), and a generated column's ``AS (…)`` precedes ``NOT NULL``.
        """
        text = self.sql_type
        if self.extra:
            text += f" {self.extra}"
        if not self.nullable:
            text += " NOT NULL"
        if self.default is not None:
            text += f" DEFAULT {self.default}"
        return text

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type values of this column are read as."""
        return arrow_type_for(self.sql_type)

    @property
    def max_length(self) -> int | None:
        """Most characters (CHAR/VARCHAR) or bytes (BINARY/VARBINARY) a value may have, if bounded."""
        return parse_type(self.sql_type).length

    @property
    def is_text(self) -> bool:
        """Whether values are character strings (CHAR, VARCHAR, TEXT, ENUM, …), measured in characters."""
        return parse_type(self.sql_type).is_text

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

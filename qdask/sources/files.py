"""File source: Parquet, and CSV/TSV in any dialect ``LOAD DATA`` reads (optionally gzip/bz2), as Arrow.

At plan time `discover_files` turns glob patterns into `InputUnit`s: one per file, and a Parquet file
larger than a byte budget is split into row-group ranges. At run time `read_unit` streams a unit as
Arrow record batches of bounded size, typed by an explicit `TableSchema` (names and types of the
input's columns; headerless text takes its column names from it), optionally selecting and renaming
columns. Memory is bounded by design: Parquet is read batch by batch within row groups
(`qdask.sources.parquet`), text in blocks of whole records (`qdask.sources.text`); a whole file is never
held.

A text file's dialect (`qdask.text_dialect.TextDialect`) travels with its units; by default a ``tsv`` file is
read as ``LOAD DATA`` reads by default (MySQL's dump format: tab, ``\\N``, backslash escapes) and a ``csv``
file as RFC 4180.

Every failure is a `SourceError` naming the file, and the record (and column) where one is known;
no row is ever dropped silently.
"""

from __future__ import annotations

import glob as globmod
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from qdask.formats import COMPRESSIONS, FORMATS, format_from_name, strip_compression
from qdask.schema import SchemaError, TableSchema, check_batch_values
from qdask.sources.parquet import parquet_units, read_parquet
from qdask.sources.text import TEXT_BLOCK_BYTES, read_text
from qdask.sources.units import InputUnit, SourceError
from qdask.text_dialect import TextDialect

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_UNIT_BYTES",
    "TEXT_BLOCK_BYTES",
    "DialectSpec",
    "FileFormat",
    "detect_format",
    "discover_files",
    "file_unit",
    "local_path",
    "read_file",
    "read_unit",
]

#: Target in-memory size of a Parquet record batch; text batches come from blocks of TEXT_BLOCK_BYTES or less.
DEFAULT_BATCH_BYTES = 32 * 1024**2
#: A Parquet file larger than this is split into row-group ranges of at most this many bytes.
DEFAULT_UNIT_BYTES = 512 * 1024**2

#: A text dialect as the readers take it: a dialect, a preset name, or options (see `TextDialect.resolve`).
DialectSpec = TextDialect | str | Mapping[str, Any] | None


@dataclass(frozen=True)
class FileFormat:
    """How a file is read: `kind` (parquet/csv/tsv), `compression` (None, gzip or bz2), text `dialect`."""

    kind: str
    compression: str | None = None
    dialect: TextDialect | None = None

    def unit_options(self) -> dict[str, Any]:
        """The reading options an `InputUnit` carries (plain JSON values)."""
        out: dict[str, Any] = {"compression": self.compression}
        if self.dialect is not None:
            out["dialect"] = self.dialect.to_dict()
        return out

    @classmethod
    def of_unit(cls, unit: InputUnit) -> FileFormat:
        opts = unit.options
        dialect = None
        if unit.format != "parquet":
            given = opts.get("dialect")
            dialect = TextDialect.from_dict(given) if given else TextDialect.resolve(None, unit.format)
        return cls(unit.format, opts.get("compression"), dialect)


def detect_format(
    path: str | Path, format: str | None = None, compression: str | None = None, dialect: DialectSpec = None
) -> FileFormat:
    """The format of `path` from its name (``.tsv.gz`` → tsv, gzip), unless `format`/`compression` say.

    `compression` may be ``"gzip"``, ``"bz2"``, ``"none"`` or None (from a ``.gz``/``.gzip``/``.bz2``
    suffix). A text format's `dialect` defaults to the format's preset (see `TextDialect.resolve`).
    """
    if compression in (None, "", "auto"):
        compression = strip_compression(str(path))[1]
    elif compression == "none":
        compression = None
    elif compression not in COMPRESSIONS:
        raise SourceError(
            f"{path}: unsupported compression {compression!r} ({', '.join(COMPRESSIONS)} or none)"
        )
    if format is None:
        format = format_from_name(str(path))
        if format is None:
            raise SourceError(f"{path}: cannot tell the format from the name; give one of {list(FORMATS)}")
    if format not in FORMATS:
        raise SourceError(f"{path}: unsupported format {format!r}; expected one of {list(FORMATS)}")
    if format == "parquet":
        if compression:
            raise SourceError(
                f"{path}: Parquet files compress internally; a {compression} Parquet file is not readable"
            )
        if dialect is not None:
            raise SourceError(f"{path}: a text dialect does not apply to a Parquet file")
        return FileFormat(format)
    try:
        return FileFormat(format, compression, TextDialect.resolve(dialect, format))
    except ValueError as exc:
        raise SourceError(f"{path}: {exc}") from None


def local_path(uri: str) -> str:
    """The local path of a ``file://`` URI (or of a plain path)."""
    return uri[len("file://") :] if uri.startswith("file://") else uri


# --------------------------------------------------------------------------------------------------
# Discovery (plan time)
# --------------------------------------------------------------------------------------------------


def file_unit(
    path: str | Path, table: str, *, fmt: FileFormat, max_unit_bytes: int = DEFAULT_UNIT_BYTES
) -> list[InputUnit]:
    """The units of one file: the whole file, or for a large Parquet file its row-group ranges."""
    path = os.path.abspath(str(path))
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    if fmt.kind == "parquet":
        return parquet_units(path, table, size, max_unit_bytes, fmt.unit_options())
    return [
        InputUnit(f"file:{path}", table, path, format=fmt.kind, est_bytes=size, options=fmt.unit_options())
    ]


def discover_files(
    patterns: str | Sequence[str],
    table: str,
    *,
    format: str | None = None,
    compression: str | None = None,
    dialect: DialectSpec = None,
    max_unit_bytes: int = DEFAULT_UNIT_BYTES,
) -> list[InputUnit]:
    """The input units of the files matching `patterns` (globs, ``**`` allowed), in sorted path order.

    A pattern that matches nothing is an error (a typo must not load zero rows quietly).
    """
    if isinstance(patterns, str | Path):
        patterns = [str(patterns)]
    paths: list[str] = []
    for pattern in patterns:
        found = sorted(
            p for p in globmod.glob(os.path.expanduser(str(pattern)), recursive=True) if os.path.isfile(p)
        )
        if not found:
            raise SourceError(f"no file matches {pattern!r}")
        paths.extend(found)
    units: list[InputUnit] = []
    for path in dict.fromkeys(os.path.abspath(p) for p in paths):
        fmt = detect_format(path, format, compression, dialect)
        units.extend(file_unit(path, table, fmt=fmt, max_unit_bytes=max_unit_bytes))
    return units


# --------------------------------------------------------------------------------------------------
# Reading (run time)
# --------------------------------------------------------------------------------------------------


def read_unit(
    unit: InputUnit,
    schema: TableSchema,
    *,
    select: Sequence[tuple[str, str]] | None = None,
    allow_extra: bool = False,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    check_values: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Stream a unit as record batches typed by `schema`, each of about `batch_bytes` or less.

    `schema` names and types the input's columns (in file order for headerless text). `select` is the
    ``(input name, output name)`` list from `qdask.schema.select_columns`; without it every schema column
    is read under its own name. Parquet columns not in the schema are an error unless selected away or
    `allow_extra`. With `check_values`, NOT NULL and CHAR/VARCHAR(n) limits are checked per batch.
    """
    if unit.format not in FORMATS:
        raise SourceError(f"{unit.label}: the file source cannot read format {unit.format!r}")
    fmt = FileFormat.of_unit(unit)
    pairs = list(select) if select is not None else [(n, n) for n in schema.names]
    try:
        in_cols = [schema.column(src) for src, _ in pairs]
    except KeyError as exc:
        raise SchemaError(f"{unit.label}: selection names a column not in the schema: {exc}") from None
    out_schema = TableSchema(
        schema.name,
        tuple(replace(c, name=dst) for c, (_, dst) in zip(in_cols, pairs, strict=True)),
        partitioned=schema.partitioned,
        source=schema.source,
    )
    path = local_path(unit.uri)
    if fmt.dialect is None:
        batches = read_parquet(unit, path, schema, pairs, allow_extra or select is not None, batch_bytes)
    else:
        batches = _read_text_file(unit.label, path, fmt, schema, pairs, batch_bytes)
    rows = 0
    for batch in batches:
        if check_values:
            check_batch_values(batch, out_schema, unit.label, row_offset=rows)
        rows += batch.num_rows
        yield batch


def read_file(
    path: str | Path,
    schema: TableSchema,
    *,
    format: str | None = None,
    compression: str | None = None,
    dialect: DialectSpec = None,
    **kwargs: Any,
) -> Iterator[pa.RecordBatch]:
    """Stream every unit of one file (see `read_unit`); a convenience for tests and small tools.

    `dialect` is a `TextDialect`, a preset name or options such as ``{"charset": "latin1"}`` (on top of
    the format's preset)."""
    fmt = detect_format(path, format, compression, dialect)
    for unit in file_unit(path, schema.name, fmt=fmt, max_unit_bytes=2**62):
        yield from read_unit(unit, schema, **kwargs)


def _open_text(label: str, path: str, compression: str | None) -> BinaryIO:
    """A binary stream of the file's bytes; gzip and bz2 are inflated by Arrow (C++, no GIL held)."""
    if not os.path.isfile(path):
        raise SourceError(f"{label}: no such file" if not os.path.exists(path) else f"{label}: not a file")
    try:
        return pa.input_stream(path, compression=compression)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{label}: cannot open: {getattr(exc, 'strerror', None) or exc}") from None


def _read_text_file(
    label: str,
    path: str,
    fmt: FileFormat,
    schema: TableSchema,
    pairs: list[tuple[str, str]],
    batch_bytes: int,
) -> Iterator[pa.RecordBatch]:
    assert fmt.dialect is not None
    with _open_text(label, path, fmt.compression) as stream:
        yield from read_text(
            label, stream, fmt.dialect, schema, pairs, block_bytes=min(batch_bytes, TEXT_BLOCK_BYTES)
        )

"""File source: Parquet, CSV and MySQL-style TSV files (optionally gzipped), found by glob, read as Arrow.

At plan time `discover_files` turns glob patterns into `InputUnit`s: one per file, and a Parquet file
larger than a byte budget is split into row-group ranges. At run time `read_unit` streams a unit as
Arrow record batches of bounded size, typed by an explicit `TableSchema` (names and types of the
input's columns; headerless TSV takes its column names from it), optionally selecting and renaming
columns. Memory is bounded by design: Parquet is read batch by batch within row groups, text is
read in blocks of whole records; a whole file is never held.

TSV is read as MySQL writes it (``SELECT ... INTO OUTFILE`` / ``mysqldump -T``, Qserv's partitioner):
tab-separated, newline-terminated, ``\\N`` is NULL, and the backslash escapes ``\\0 \\b \\n \\r \\t \\Z``
plus backslash-anything-else (so an escaped tab or newline is data, not a separator) are decoded as
``LOAD DATA`` decodes them. CSV is standard CSV (RFC 4180 quoting); an empty unquoted field or ``\\N``
is NULL.

Every failure is a `SourceError` naming the file, and the record (and column) where one is known;
no row is ever dropped silently.
"""

from __future__ import annotations

import glob as globmod
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from qdask.formats import FORMATS, format_from_name, strip_gzip
from qdask.schema import SchemaError, SchemaMismatch, TableSchema, check_arrow_schema, check_batch_values
from qdask.sources.units import InputUnit, SourceError, row_group_suffix

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_UNIT_BYTES",
    "TEXT_BLOCK_BYTES",
    "FileFormat",
    "detect_format",
    "discover_files",
    "file_unit",
    "read_file",
    "read_unit",
]

#: Target in-memory size of a Parquet record batch; text batches come from blocks of TEXT_BLOCK_BYTES or less.
DEFAULT_BATCH_BYTES = 32 * 1024**2
#: A Parquet file larger than this is split into row-group ranges of at most this many bytes.
DEFAULT_UNIT_BYTES = 512 * 1024**2

#: Text is parsed in blocks of at most this many bytes: Arrow's parser is faster on cache-sized blocks
#: (a 95 MB dump: 1-2 MB blocks ~1.5x faster than 32 MB ones), and memory stays small.
TEXT_BLOCK_BYTES = 2 * 1024**2


@dataclass(frozen=True)
class FileFormat:
    """How a file is read: `kind` (parquet/csv/tsv), `compression` (None or gzip), CSV header, delimiter."""

    kind: str
    compression: str | None = None
    header: bool = False
    delimiter: str | None = None
    encoding: str = "utf-8"  # of text columns in CSV/TSV; "latin1" for MySQL latin1 dumps


def detect_format(path: str | Path, format: str | None = None, compression: str | None = None) -> FileFormat:
    """The format of `path` from its extension (``.tsv.gz`` → tsv, gzip), unless `format`/`compression` say.

    `compression` may be ``"gzip"``, ``"none"`` or None (infer from a ``.gz``/``.gzip`` suffix).
    """
    if compression in (None, ""):
        compression = "gzip" if strip_gzip(str(path))[1] else None
    elif compression == "none":
        compression = None
    elif compression != "gzip":
        raise SourceError(f"{path}: unsupported compression {compression!r} (gzip or none)")
    if format is None:
        format = format_from_name(str(path))
        if format is None:
            raise SourceError(f"{path}: cannot tell the format from the name; give one of {list(FORMATS)}")
    if format not in FORMATS:
        raise SourceError(f"{path}: unsupported format {format!r}; expected one of {list(FORMATS)}")
    if format == "parquet" and compression:
        raise SourceError(
            f"{path}: Parquet files compress internally; a gzipped Parquet file is not readable"
        )
    return FileFormat(format, compression)


def _local_path(uri: str) -> str:
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
    options = {
        "compression": fmt.compression,
        "header": fmt.header,
        "delimiter": fmt.delimiter,
        "encoding": fmt.encoding,
    }
    base_id = f"file:{path}"
    if fmt.kind != "parquet":
        return [InputUnit(base_id, table, path, format=fmt.kind, est_bytes=size, options=options)]
    meta = _open_parquet(path).metadata
    if size <= max_unit_bytes or meta.num_row_groups <= 1:
        return [
            InputUnit(
                base_id,
                table,
                path,
                format="parquet",
                est_rows=meta.num_rows,
                est_bytes=size,
                options=options,
            )
        ]
    # Greedy: consecutive row groups while their compressed bytes stay within the budget.
    units, start, acc_bytes, acc_rows = [], 0, 0, 0
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        rg_bytes = sum(rg.column(j).total_compressed_size for j in range(rg.num_columns))
        if i > start and acc_bytes + rg_bytes > max_unit_bytes:
            units.append((start, i, acc_rows, acc_bytes))
            start, acc_bytes, acc_rows = i, 0, 0
        acc_bytes += rg_bytes
        acc_rows += rg.num_rows
    units.append((start, meta.num_row_groups, acc_rows, acc_bytes))
    return [
        InputUnit(
            base_id + row_group_suffix(a, b),
            table,
            path,
            format="parquet",
            row_groups=(a, b),
            est_rows=rows,
            est_bytes=nbytes,
            options=options,
        )
        for a, b, rows, nbytes in units
    ]


def discover_files(
    patterns: str | Sequence[str],
    table: str,
    *,
    format: str | None = None,
    compression: str | None = None,
    header: bool = False,
    delimiter: str | None = None,
    encoding: str = "utf-8",
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
        fmt = detect_format(path, format, compression)
        fmt = FileFormat(fmt.kind, fmt.compression, header, delimiter, encoding)
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
    opts = unit.options
    fmt = FileFormat(
        unit.format,
        opts.get("compression"),
        bool(opts.get("header")),
        opts.get("delimiter"),
        opts.get("encoding") or "utf-8",
    )
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
    path = _local_path(unit.uri)
    if fmt.kind == "parquet":
        batches = _read_parquet(unit, path, schema, pairs, allow_extra or select is not None, batch_bytes)
    elif fmt.kind == "tsv":
        batches = _read_tsv(unit.label, path, fmt, schema, pairs, batch_bytes)
    else:
        batches = _read_csv(unit.label, path, fmt, schema, pairs, batch_bytes)
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
    header: bool = False,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    **kwargs,
) -> Iterator[pa.RecordBatch]:
    """Stream every unit of one file (see `read_unit`); a convenience for tests and small tools."""
    fmt = detect_format(path, format, compression)
    fmt = FileFormat(fmt.kind, fmt.compression, header, delimiter, encoding)
    for unit in file_unit(path, schema.name, fmt=fmt, max_unit_bytes=2**62):
        yield from read_unit(unit, schema, **kwargs)


# --------------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------------


def _open_parquet(path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{path}: not a readable Parquet file (truncated or corrupt?): {exc}") from None


def _read_parquet(
    unit: InputUnit,
    path: str,
    schema: TableSchema,
    pairs: list[tuple[str, str]],
    allow_extra: bool,
    batch_bytes: int,
) -> Iterator[pa.RecordBatch]:
    pf = _open_parquet(path)
    file_schema = pf.schema_arrow
    wanted = TableSchema(schema.name, tuple(schema.column(src) for src, _ in pairs), source=schema.source)
    check_arrow_schema(file_schema, wanted, unit.label, allow_extra=allow_extra)
    in_names = [src for src, _ in pairs]
    meta = pf.metadata
    groups = list(range(*unit.row_groups)) if unit.row_groups else list(range(meta.num_row_groups))
    if groups and groups[-1] >= meta.num_row_groups:
        raise SourceError(
            f"{unit.label}: row groups {unit.row_groups} but the file has {meta.num_row_groups}"
        )
    # Rows per batch from the uncompressed size of the selected columns (at least 8 bytes a value).
    idx = {meta.schema.column(j).path.split(".")[0]: j for j in range(meta.num_columns)}
    rows = sum(meta.row_group(g).num_rows for g in groups) or 1
    nbytes = sum(
        meta.row_group(g).column(idx[n]).total_uncompressed_size for g in groups for n in in_names if n in idx
    )
    row_bytes = max(8 * len(in_names), nbytes // rows)
    batch_rows = max(1, min(1_000_000, batch_bytes // row_bytes))
    targets = pa.schema([pa.field(dst, schema.column(src).arrow_type) for src, dst in pairs])
    done = 0
    try:
        for batch in pf.iter_batches(
            batch_size=batch_rows, row_groups=groups, columns=in_names, use_threads=False
        ):
            arrays = []
            for i, field in enumerate(targets):
                arr = batch.column(i)
                if pa.types.is_dictionary(arr.type):
                    arr = arr.dictionary_decode()
                if arr.type != field.type:
                    arr = _widen(unit.label, pairs[i][0], arr, field.type, done)
                arrays.append(arr)
            done += batch.num_rows
            yield pa.RecordBatch.from_arrays(arrays, schema=targets)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(
            f"{unit.label}: reading failed after {done} rows (truncated or corrupt?): {exc}"
        ) from None


def _widen(label: str, column: str, arr: pa.Array, target: pa.DataType, first_row: int) -> pa.Array:
    """Cast Parquet values to the column's Arrow type; an overflow or a value made infinite is an error.

    Timestamps are truncated to the column's precision (as MySQL stores them); everything else must
    convert exactly, except that doubles round to FLOAT precision (the column's own rounding).
    """
    try:
        out = arr.cast(target, safe=not pa.types.is_timestamp(target))
    except pa.ArrowInvalid as exc:
        raise SourceError(
            f"{label}: column {column!r}: cannot convert values in rows {first_row}.."
            f"{first_row + len(arr) - 1} to {target}: {exc}"
        ) from None
    if pa.types.is_float32(target) and pa.types.is_floating(arr.type):
        grew = pc.and_(pc.is_inf(out), pc.invert(pc.is_inf(arr)))
        if pc.any(grew).as_py():
            row = first_row + pc.index(grew, True).as_py()
            raise SourceError(f"{label}: column {column!r}: row {row} is out of FLOAT range")
    return out


# --------------------------------------------------------------------------------------------------
# Text: shared
# --------------------------------------------------------------------------------------------------


def _open_text(label: str, path: str, compression: str | None) -> BinaryIO:
    """A binary stream of the file's bytes; gzip is inflated by Arrow (C++, no GIL held)."""
    if not os.path.isfile(path):
        raise SourceError(f"{label}: no such file" if not os.path.exists(path) else f"{label}: not a file")
    try:
        return pa.input_stream(path, compression=compression)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{label}: cannot open: {getattr(exc, 'strerror', None) or exc}") from None


def _read_raw(label: str, stream: BinaryIO, size: int) -> bytes:
    try:
        return stream.read(size)
    except (EOFError, OSError, pa.ArrowException) as exc:
        if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
            raise SourceError(f"{label}: the compressed file is truncated ({exc})") from None
        raise SourceError(f"{label}: cannot read (corrupt compressed data?): {exc}") from None


def _conversion_types(schema: TableSchema, pairs: list[tuple[str, str]]) -> dict[str, pa.DataType]:
    """Arrow types to parse text into: text columns as binary first (decoded later with the encoding)."""
    out = {}
    for src, _ in pairs:
        t = schema.column(src).arrow_type
        out[src] = pa.binary() if pa.types.is_string(t) else t
    return out


def _decode_text(label: str, arr: pa.Array, column: str, encoding: str, first_row: int) -> pa.Array:
    """Binary → string: validated UTF-8, or decoded from `encoding` (e.g. latin1 dumps)."""
    if encoding.lower().replace("-", "") in ("utf8",):
        try:
            return arr.cast(pa.string())
        except pa.ArrowInvalid:
            for i, v in enumerate(arr.to_pylist()):
                if v is not None:
                    try:
                        v.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise SourceError(
                            f"{label}: row {first_row + i}, column {column!r}: not valid UTF-8 "
                            f"({exc.reason} at byte {exc.start}); give the file's encoding"
                        ) from None
            raise
    values = [None if v is None else v.decode(encoding) for v in arr.to_pylist()]
    return pa.array(values, pa.string())


# --------------------------------------------------------------------------------------------------
# MySQL TSV
# --------------------------------------------------------------------------------------------------

_ESCAPES = {b"0": b"\x00", b"b": b"\x08", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}
_TOKEN = re.compile(rb"\\(.)|\t|\n", re.DOTALL)


def _record_end(buf: bytes, end: int) -> int:
    """Index just after the last unescaped newline in ``buf[:end]``, or 0 if there is none."""
    pos = buf.rfind(b"\n", 0, end)
    while pos >= 0:
        k = pos
        while k > 0 and buf[k - 1] == 0x5C:  # backslash
            k -= 1
        if (pos - k) % 2 == 0:
            return pos + 1
        pos = buf.rfind(b"\n", 0, pos)
    return 0


def _tsv_blocks(label: str, stream: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    """Blocks of whole records (each ends with an unescaped newline, except maybe the file's last)."""
    carry = b""
    while True:
        chunk = _read_raw(label, stream, block_bytes)
        if not chunk:
            if carry:
                if _record_end(carry + b"\n", len(carry) + 1) != len(carry) + 1:
                    raise SourceError(f"{label}: the file ends inside an escape sequence (a lone backslash)")
                yield carry + b"\n"
            return
        buf = carry + chunk
        cut = _record_end(buf, len(buf))
        if cut == 0:  # one record longer than the block: keep reading
            carry = buf
            continue
        yield buf[:cut]
        carry = buf[cut:]


def _split_escaped(label: str, block: bytes, ncols: int, first_row: int) -> list[list[bytes | None]]:
    """Fields of every record of a block, decoded as LOAD DATA does (``\\N`` whole field → None)."""
    records: list[list[bytes | None]] = []
    fields: list[bytes | None] = []
    parts: list[bytes] = []
    start = 0
    escaped_null = False  # the current field so far is exactly \N
    for m in _TOKEN.finditer(block):
        if m.group(1) is not None:
            parts.append(block[start : m.start()])
            ch = m.group(1)
            escaped_null = ch == b"N" and not parts[-1] and len(parts) == 1
            parts.append(_ESCAPES.get(ch, ch))
            start = m.end()
            continue
        parts.append(block[start : m.start()])
        start = m.end()
        if escaped_null and len(parts) == 3 and parts[0] == b"" and parts[1] == b"N" and parts[2] == b"":
            fields.append(None)
        else:
            fields.append(b"".join(parts))
        parts, escaped_null = [], False
        if m.group() == b"\n":
            if len(fields) != ncols:
                row = first_row + len(records)
                text = b"\t".join(b"\\N" if f is None else f for f in fields)[:200]
                raise SourceError(f"{label}: row {row} has {len(fields)} fields, expected {ncols}: {text!r}")
            records.append(fields)
            fields = []
    return records


def _convert_column(
    label: str, values: pa.Array, target: pa.DataType, column: str, first_row: int, encoding: str
) -> pa.Array:
    """Binary text values → `target`, naming the row and value that does not parse."""
    if pa.types.is_binary(target):
        return values
    if pa.types.is_string(target):
        return _decode_text(label, values, column, encoding, first_row)
    text = values.cast(pa.string())
    try:
        return text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for i, v in enumerate(text.to_pylist()):
            try:
                pa.array([v], pa.string()).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise SourceError(
                    f"{label}: row {first_row + i}, column {column!r}: {v!r} is not a valid {target}"
                ) from None
        raise


def _parse_block_slow(
    label: str, block: bytes, schema: TableSchema, pairs: list[tuple[str, str]], first_row: int, encoding: str
) -> pa.RecordBatch:
    names = schema.names
    records = _split_escaped(label, block, len(names), first_row)
    index = {n: i for i, n in enumerate(names)}
    arrays, fields = [], []
    for src, dst in pairs:
        j = index[src]
        raw = pa.array([r[j] for r in records], pa.binary())
        target = schema.column(src).arrow_type
        arrays.append(_convert_column(label, raw, target, src, first_row, encoding))
        fields.append(pa.field(dst, target))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _parse_block_fast(
    block: bytes, schema: TableSchema, pairs: list[tuple[str, str]], encoding: str
) -> pa.RecordBatch | None:
    """Arrow's CSV parser on a block whose only backslashes are ``\\N``; None if the slow path must decide."""
    types = _conversion_types(schema, pairs)
    try:
        table = pacsv.read_csv(
            pa.py_buffer(block),
            read_options=pacsv.ReadOptions(
                column_names=schema.names, use_threads=False, block_size=len(block) + 1
            ),
            parse_options=pacsv.ParseOptions(
                delimiter="\t",
                quote_char=False,
                escape_char=False,
                newlines_in_values=False,
                ignore_empty_lines=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                include_columns=[s for s, _ in pairs],
                null_values=["\\N"],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                check_utf8=False,
            ),
        )
    except pa.ArrowInvalid:
        return None  # a bad row or value: the slow path names it precisely
    arrays, fields = [], []
    for src, dst in pairs:
        arr = table.column(src).combine_chunks()
        target = schema.column(src).arrow_type
        if pa.types.is_binary(arr.type) and pc.any(pc.match_substring(arr, "\\")).as_py():
            return None  # "\N" inside a value: decode it the LOAD DATA way
        if pa.types.is_string(target):
            try:
                arr = _decode_text("", arr, src, encoding, 0)
            except (SourceError, pa.ArrowInvalid):
                return None
        arrays.append(arr)
        fields.append(pa.field(dst, target))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _parse_block_mixed(
    block: bytes, schema: TableSchema, pairs: list[tuple[str, str]], encoding: str
) -> pa.RecordBatch | None:
    """Records with escapes decoded in Python, the others by Arrow, merged back in order.

    Escapes are usually rare (a binary column here and there), so this keeps most of a block on
    Arrow's parser. None when a newline is escaped or anything fails: the slow path then decides.
    """
    if b"\\\n" in block:
        return None
    records = block.split(b"\n")[:-1]  # the block ends with a newline
    dirty = [i for i, r in enumerate(records) if b"\\" in r and r.count(b"\\") != r.count(b"\\N")]
    if not dirty or len(dirty) > len(records) // 2:
        return None
    dirty_set = set(dirty)
    clean = [i for i in range(len(records)) if i not in dirty_set]
    parts = []
    if clean:
        part = _parse_block_fast(b"\n".join(records[i] for i in clean) + b"\n", schema, pairs, encoding)
        if part is None:
            return None
        parts.append(part)
    try:
        dirty_block = b"\n".join(records[i] for i in dirty) + b"\n"
        parts.append(_parse_block_slow("", dirty_block, schema, pairs, 1, encoding))
    except SourceError:
        return None
    merged = pa.Table.from_batches(parts).combine_chunks()
    order = pa.array(sorted(range(len(records)), key=(clean + dirty).__getitem__))
    return merged.take(order).combine_chunks().to_batches()[0]


def _read_tsv(
    label: str,
    path: str,
    fmt: FileFormat,
    schema: TableSchema,
    pairs: list[tuple[str, str]],
    batch_bytes: int,
) -> Iterator[pa.RecordBatch]:
    if fmt.delimiter not in (None, "\t"):
        raise SourceError(f"{label}: MySQL-style TSV is tab-separated; use format csv for {fmt.delimiter!r}")
    stream = _open_text(label, path, fmt.compression)
    first_row = 1  # 1-based record number of the block's first record, for messages
    with stream:
        for block in _tsv_blocks(label, stream, min(batch_bytes, TEXT_BLOCK_BYTES)):
            if fmt.header and first_row == 1:
                head_end = _record_end(block, block.find(b"\n") + 1)
                header = block[:head_end].rstrip(b"\n").split(b"\t")
                _check_header(label, [h.decode(errors="replace") for h in header], schema)
                block = block[head_end:]
                first_row = 2
                if not block:
                    continue
            batch = None
            if block.count(b"\\") == block.count(b"\\N"):  # nothing but \N: Arrow alone can read it
                batch = _parse_block_fast(block, schema, pairs, fmt.encoding)
            if batch is None:
                batch = _parse_block_mixed(block, schema, pairs, fmt.encoding)
            if batch is None:  # decides every record itself, and names the first bad one
                batch = _parse_block_slow(label, block, schema, pairs, first_row, fmt.encoding)
            first_row += batch.num_rows
            yield batch


def _check_header(label: str, header: list[str], schema: TableSchema) -> None:
    if header != schema.names:
        missing = [n for n in schema.names if n not in header]
        extra = [n for n in header if n not in schema.names]
        problems = [f"missing column {n!r}" for n in missing] + [f"extra column {n!r}" for n in extra]
        if not problems:
            problems = [f"columns are in another order than the schema: {header}"]
        raise SchemaMismatch(f"{label} (header line)", problems)


# --------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------


def _read_csv(
    label: str,
    path: str,
    fmt: FileFormat,
    schema: TableSchema,
    pairs: list[tuple[str, str]],
    batch_bytes: int,
) -> Iterator[pa.RecordBatch]:
    if not os.path.exists(path):
        raise SourceError(f"{label}: no such file")
    types = _conversion_types(schema, pairs)
    if fmt.header:
        _check_header(label, _csv_header(label, path, fmt), schema)
    try:
        stream = pa.input_stream(path, compression=fmt.compression)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{label}: cannot open: {exc}") from None
    read_options = pacsv.ReadOptions(
        column_names=None if fmt.header else schema.names,
        use_threads=False,
        block_size=max(1 << 16, min(batch_bytes, TEXT_BLOCK_BYTES)),
    )
    parse_options = pacsv.ParseOptions(delimiter=fmt.delimiter or ",", ignore_empty_lines=False)
    convert_options = pacsv.ConvertOptions(
        column_types=types,
        include_columns=[s for s, _ in pairs],
        null_values=["", "\\N"],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        check_utf8=False,
    )
    row = 1 + int(fmt.header)
    with stream:
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
        except (OSError, EOFError, pa.ArrowException) as exc:
            raise SourceError(f"{label}: {_csv_message(exc)}") from None
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (OSError, EOFError, pa.ArrowException) as exc:
                raise SourceError(f"{label}: near row {row}: {_csv_message(exc)}") from None
            arrays, fields = [], []
            for src, dst in pairs:
                target = schema.column(src).arrow_type
                arr = batch.column(src)
                if pa.types.is_string(target):
                    arr = _decode_text(label, arr, src, fmt.encoding, row)
                arrays.append(arr)
                fields.append(pa.field(dst, target))
            row += batch.num_rows
            yield pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _csv_header(label: str, path: str, fmt: FileFormat) -> list[str]:
    """The column names on the first line of a CSV file (read alone, before any conversion)."""
    import csv
    import io

    head = b""
    try:
        with pa.input_stream(path, compression=fmt.compression) as stream:
            while b"\n" not in head:
                chunk = stream.read(1 << 16)
                if not chunk:
                    break
                head += chunk
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{label}: cannot read the header line: {_csv_message(exc)}") from None
    line = head.split(b"\n", 1)[0].rstrip(b"\r").decode(fmt.encoding, errors="replace")
    return next(csv.reader(io.StringIO(line), delimiter=fmt.delimiter or ","), [])


def _csv_message(exc: BaseException) -> str:
    text = str(exc)
    if "gzip" in text.lower() or "truncated" in text.lower():
        return f"the compressed file is truncated or corrupt: {text}"
    return text

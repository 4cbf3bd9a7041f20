"""Arrow record batches → the exact bytes a Qserv worker's ``LOAD DATA`` reads (a contribution file).

A Qserv worker loads a contribution with ``LOAD DATA INFILE … CHARACTER SET <charset> FIELDS TERMINATED
BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'`` (its default dialect, see ``QSERV_DIALECT``), after
prefixing every line with the transaction id. So MariaDB, not qdask, decides what each byte means, and
this module writes bytes whose meaning under those rules is exactly the source value:

* NULL → ``\\N``. Float NaN and ±inf → ``\\N`` too (MariaDB ``DOUBLE``/``FLOAT`` cannot hold them); they
  are counted per column (``TsvFileInfo.nan_to_null``) so the caller can report the change.
* float64 → the shortest decimal that round-trips (as many significant digits as Python's ``repr``), in
  polars' notation: positional for 1e-5 <= |x| < 1e16, integral values with ``.0`` (``1.0``,
  ``10000000000.0``), exponents otherwise (``1e-6``, ``1e+16``). MariaDB parses it (correctly rounded,
  as any decimal literal) to the same double, whatever the notation: tests/test_tsv.py loads every edge
  (subnormals, 2^53±1, each notation threshold ±1 ulp) through ``LOAD DATA`` and compares the bits. The
  text is part of each file's checksum, which a run records and compares on resume: it is pinned for the
  polars versions allowed (tests/test_tsv.py::test_double_text_is_pinned). float32 is
  first widened to float64 and written as that double's shortest text: MariaDB parses every number as a
  double and then narrows it to ``FLOAT``, so the widened text is exact in both steps (the float32 shortest
  repr, e.g. ``3.4028235e+38`` for FLT_MAX, parses to a double above FLT_MAX and draws warning 1264).
  MariaDB stores ``-0.0`` as ``0`` whatever the input (also for ``INSERT``): that is the server's rule.
* booleans → ``0``/``1``; integers and decimals plain; timestamps ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (a
  time-zone-aware timestamp as its UTC wall-clock time; a nanosecond value that does not fit in
  microseconds is an error, MariaDB would round it); dates ``YYYY-MM-DD``; times ``HH:MM:SS[.ffffff]``.
* strings and binary values: backslash, tab, newline, carriage return and NUL are written as ``\\\\``,
  ``\\t``, ``\\n``, ``\\r``, ``\\0``, which ``LOAD DATA`` turns back into those bytes. So no raw tab or
  newline ever appears inside a field (a line is a row, split on ``\\n`` alone, as the worker's reader
  does) and the literal two-character string ``\\N`` is written ``\\\\N``, which is not NULL.
  (MariaDB's reader, with ESCAPED BY '\\\\', turns ``\\0 \\b \\n \\r \\t \\Z`` into NUL, BS, LF, CR, TAB,
  0x1A, reads a field that is exactly ``\\N`` as NULL, and any other ``\\x`` as ``x``. Only the escape
  character and the two terminators must be escaped; CR and NUL are escaped as well, as ``SELECT … INTO
  OUTFILE`` does for NUL, so a file survives line-ending conversion and C-string handling. Other bytes,
  BS and 0x1A included, are written raw and read back raw.)
* text is encoded in the declared charset: ``utf8mb4`` (as is), ``utf8mb3``/``utf8`` (a character outside
  the BMP is an error) or ``latin1``. MariaDB's ``latin1`` is Windows-1252 plus the five bytes that
  cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D, mapped to the C1 controls of the same value), so
  ``€`` is encodable but U+0080 is not. A value that cannot be encoded is an error naming the column and
  row (``TsvEncodeError``), never a silent ``?``. Binary values are written byte for byte (escaped).

Encoding is vectorised with ``pyarrow.compute`` (cast, replace_substring) and written by polars' CSV
writer (tab-separated, ``\\N`` for NULL, never quoting; it formats doubles about twice as fast as
pyarrow's cast, see ``_polars_frame``), or, when a field holds a double quote or bytes that are not UTF-8,
by element-wise joins of field texts (doubles by polars' cast to text, the writer's formatter); the bytes
are the same either way (tests/test_tsv.py compares them), and no Python code runs per value. Memory is
bounded by one input batch plus the text of one slice of it and what encoding it holds (measured: about
2 × ``SLICE_BYTES`` with the joins, about 3 × in peak RSS with the CSV writer, which writes a slice in
``CSV_PIECES`` calls), whatever the batch size or column count.
"""

from __future__ import annotations

import codecs
import ctypes
import ctypes.util
import functools
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from qdask.checksums import formatted, new_digest
from qdask.dialect import TSV
from qdask.direct_io import DirectWriter
from qdask.errors import QdaskError
from qdask.text_dialect import MARIADB_LATIN1

__all__ = [
    "CHARSETS",
    "MAX_LINE_BYTES",
    "QSERV_DIALECT",
    "TsvEncodeError",
    "TsvFileInfo",
    "encode_batch",
    "encode_lines",
    "load_data_sql",
    "write_tsv",
]

#: A Qserv worker refuses rows longer than this (16 MiB); refused here first, naming the row.
MAX_LINE_BYTES = 16 * 1024 * 1024

#: The charsets this encoder writes (``charset_name`` sent to Qserv with the contribution).
CHARSETS = ("latin1", "utf8mb4", "utf8mb3", "utf8")

#: Text produced per slice of an input batch; bounds memory for wide tables and huge batches.
SLICE_BYTES = 32 * 1024 * 1024
#: Parts a slice is written in by the CSV writer, which holds a few times what it writes at once (the
#: text fields, its output); its cost per call (~9 ms at 991 columns, measured with Arrow's writer) is why
#: not more.
CSV_PIECES = 2

_NULL = b"\\N"
_NULL_SCALAR = pa.scalar(_NULL)
# (byte, escape) pairs; the backslash must come first so later escapes are not escaped again.
_ESCAPES = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\r", b"\\r"), (b"\x00", b"\\0"))


#: Qserv's default dialect, the one this encoder writes.
QSERV_DIALECT = TSV


def load_data_sql(path: str | os.PathLike, table: str, charset: str, *, local: bool = True) -> str:
    """The ``LOAD DATA`` statement a Qserv worker runs for a file (``table`` already quoted by the caller).

    ``local=True`` gives ``LOAD DATA LOCAL INFILE`` with identical options, for a client-side file.
    """
    if charset not in CHARSETS:
        raise ValueError(f"unsupported charset {charset!r}; expected one of {', '.join(CHARSETS)}")
    quoted = str(path).replace("\\", "\\\\").replace("'", "\\'")
    return (
        f"LOAD DATA {'LOCAL ' if local else ''}INFILE '{quoted}' INTO TABLE {table} "
        f"CHARACTER SET {charset} {QSERV_DIALECT.sql_options()}"
    )


class TsvEncodeError(QdaskError, ValueError):
    """A value cannot be written so that MariaDB reads it back unchanged; names the column and row."""

    def __init__(self, message: str, *, column: str | None = None, row: int | None = None):
        super().__init__(message)
        self.column = column
        self.row = row


@dataclass(frozen=True)
class TsvFileInfo:
    """What ``write_tsv`` wrote: rows, bytes, checksum (``"xxh3_128:<hex>"``, `qdask.checksums`), NaN/inf→NULL
    counts per column."""

    path: Path
    rows: int
    bytes: int
    checksum: str
    charset: str
    nan_to_null: dict[str, int] = field(default_factory=dict)


_LATIN1_MAP = codecs.charmap_build(MARIADB_LATIN1)


def _offsets(arr: pa.Array) -> np.ndarray:
    """The ``len + 1`` value offsets of a (non-large) string/binary array, honouring its slice offset."""
    return np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]


def _data_view(arr: pa.Array) -> memoryview:
    """The bytes of all values of a string/binary array, back to back, without a copy."""
    offs = _offsets(arr)
    data = arr.buffers()[2]
    if data is None:
        return memoryview(b"")
    return memoryview(data)[int(offs[0]) : int(offs[-1])]


def _preview(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:60] + "…")


def _encode_latin1(arr: pa.StringArray, name: str, row0: int) -> pa.Array:
    """UTF-8 strings → MariaDB latin1 bytes, all values in one codec call; unencodable → TsvEncodeError."""
    if pc.all(pc.string_is_ascii(arr)).as_py() is not False:
        return arr.view(pa.binary())
    filled = pc.fill_null(arr, "")
    text = bytes(_data_view(filled)).decode("utf-8")
    try:
        encoded, _ = codecs.charmap_encode(text, "strict", _LATIN1_MAP)
    except UnicodeEncodeError as exc:
        ends = np.cumsum(pc.utf8_length(filled).to_numpy(zero_copy_only=False))
        row = int(np.searchsorted(ends, exc.start, side="right"))
        value, char = filled[row].as_py(), text[exc.start]
        raise TsvEncodeError(
            f"column {name!r}, row {row0 + row}: character {char!r} (U+{ord(char):04X}) "
            f"of value {_preview(value)} cannot be encoded in latin1 (MariaDB's Windows-1252); declare the "
            "table and the contribution utf8mb4, or clean the value",
            column=name,
            row=row0 + row,
        ) from None
    lengths = pc.utf8_length(filled).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(arr) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    out = pa.Array.from_buffers(pa.binary(), len(arr), [None, pa.py_buffer(offsets), pa.py_buffer(encoded)])
    return pc.if_else(arr.is_valid(), out, pa.scalar(None, pa.binary()))


def _check_bmp(arr: pa.StringArray, name: str, row0: int, charset: str) -> None:
    """utf8mb3 holds only the Basic Multilingual Plane; a 4-byte character would become a warning or ``?``."""
    bad = pc.match_substring_regex(arr, "[\\x{10000}-\\x{10FFFF}]")
    if pc.any(bad).as_py():
        row = int(pc.index(bad, True).as_py())
        raise TsvEncodeError(
            f"column {name!r}, row {row0 + row}: value {_preview(arr[row].as_py())} has a character outside "
            f"the Basic Multilingual Plane, which {charset} cannot hold; declare utf8mb4",
            column=name,
            row=row0 + row,
        )


def _escape(arr: pa.Array) -> pa.Array:
    """Apply the LOAD DATA escapes; only passes whose byte occurs, so a clean column costs one scan each."""
    for raw, escaped in _ESCAPES:
        if pc.any(pc.match_substring(arr, raw.decode())).as_py():
            arr = pc.replace_substring(arr, raw.decode(), escaped.decode())
    return arr


def _check_sub_microsecond(arr: pa.Array, name: str, row0: int) -> None:
    ticks = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy()
    bad = np.flatnonzero(ticks % 1000)
    if len(bad):
        row = int(bad[0])
        raise TsvEncodeError(
            f"column {name!r}, row {row0 + row}: value {arr[row]} has nanoseconds, but MariaDB keeps at most "
            "microseconds and would round it",
            column=name,
            row=row0 + row,
        )


def _column_value(arr: pa.Array, name: str, row0: int, charset: str, nan_counts: dict[str, int]) -> pa.Array:
    """One column → what its fields are written from: integers and doubles as numbers (NaN/±inf made null
    and counted), booleans as int8, anything else as its field texts (escaped, encoded); NULL still null."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.binary())
    if pa.types.is_boolean(t):
        return arr.cast(pa.int8())
    if pa.types.is_integer(t):
        return arr
    if pa.types.is_decimal(t):
        return arr.cast(pa.string()).view(pa.binary())
    if pa.types.is_floating(t):
        arr = arr.cast(pa.float64())  # exact for float16/float32; see the module docstring
        finite = pc.is_finite(arr)  # null where arr is null
        count = len(arr) - arr.null_count - (pc.sum(finite).as_py() or 0)
        if count:
            bad = pc.invert(finite)
            nan_counts[name] = nan_counts.get(name, 0) + count
            arr = pc.if_else(bad, pa.scalar(None, pa.float64()), arr)
        return arr
    if pa.types.is_timestamp(t) or pa.types.is_time(t):
        if t.unit == "ns":
            _check_sub_microsecond(arr, name, row0)
            target = pa.timestamp("us") if pa.types.is_timestamp(t) else pa.time64("us")
            arr = arr.cast(target, safe=False)
        elif pa.types.is_timestamp(t) and t.tz is not None:
            arr = arr.cast(pa.timestamp(t.unit))  # UTC wall-clock time
        return arr.cast(pa.string()).view(pa.binary())
    if pa.types.is_date(t):
        return arr.cast(pa.string()).view(pa.binary())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        # Encode first (errors then show the value as given); the escapes are ASCII bytes, the same in
        # UTF-8 and latin1, so escaping the encoded bytes is equivalent.
        arr = arr.cast(pa.string())
        if charset == "latin1":
            return _escape(_encode_latin1(arr, name, row0))
        if charset in ("utf8mb3", "utf8"):
            _check_bmp(arr, name, row0, charset)
        return _escape(arr.view(pa.binary()))
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    ):
        return _escape(arr.cast(pa.binary()))
    raise TsvEncodeError(f"column {name!r}: type {t} has no LOAD DATA text form", column=name)


def _field_text(value: pa.Array) -> pa.Array:
    """A `_column_value` as field texts, numbers formatted as the CSV writer (`_lines_csv`) formats them:
    integers by the cast (the same digits), float64 by polars (see the module docstring)."""
    if pa.types.is_binary(value.type):
        return value
    if pa.types.is_float64(value.type):
        return _double_text(value)
    return value.cast(pa.string()).view(pa.binary())


def _column_text(arr: pa.Array, name: str, row0: int, charset: str, nan_counts: dict[str, int]) -> pa.Array:
    """One column → binary array of field texts (escaped, encoded), NULL still as null."""
    return _field_text(_column_value(arr, name, row0, charset, nan_counts))


def _select(batch: pa.RecordBatch, columns: Sequence[str] | None) -> pa.RecordBatch:
    if columns is None:
        return batch
    present = set(batch.schema.names)  # (schema.names builds a new list on every call)
    missing = [c for c in columns if c not in present]
    if missing:
        raise KeyError(f"columns {missing} are not in the batch (it has {batch.schema.names})")
    return batch.select(list(columns))


# The longest text a number column's field can have (-1.2345678901234567e-308 or -0.000012345678901234567
# for a double; 20 digits of a uint64).
_NUMBER_TEXT = 24
_INT_TEXT = {8: 5, 16: 7, 32: 12, 64: 21}  # the longest integer of a width, with its tab


def _field_bytes(t: pa.DataType) -> int:
    """The longest text (with its tab) of a fixed-width field, or 24 for the rest (plus their data)."""
    if pa.types.is_boolean(t):
        return 2
    if pa.types.is_integer(t):
        return _INT_TEXT[t.bit_width]
    if pa.types.is_floating(t):
        return _NUMBER_TEXT + 1
    return 24


def _slice_rows(batch: pa.RecordBatch) -> int:
    """Rows per slice so that one slice's text stays under about SLICE_BYTES (a DP0.2 Object row, half
    flags, is estimated at 14 kB, not 991 x 24 bytes)."""
    if batch.num_rows == 0:
        return 1
    fixed = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    var = sum(col.nbytes for col in batch.columns if not any(is_fixed(col.type) for is_fixed in fixed))
    per_row = sum(_field_bytes(col.type) for col in batch.columns) + 2 * var // batch.num_rows + 1
    return max(1, SLICE_BYTES // per_row)


def _csv_writable(values: Sequence[pa.Array]) -> bool:
    """Whether the CSV writer (`_lines_csv`) writes these fields as `_lines_joined` would: no field holds a
    double quote (a structural character to a CSV writer), all text is UTF-8 (not so for latin1 or binary
    bytes), and no row can pass MAX_LINE_BYTES (the joins name such a row)."""
    longest = len(values)  # the tabs and the newline
    for value in values:
        if pa.types.is_binary(value.type):
            if pc.any(pc.match_substring(value, '"')).as_py():
                return False
            try:
                value.view(pa.string()).validate(full=True)
            except pa.ArrowInvalid:
                return False
            longest += pc.max(pc.binary_length(value)).as_py() or 0
        else:
            longest += _NUMBER_TEXT
    return longest <= MAX_LINE_BYTES


def _double_text(value: pa.Array) -> pa.Array:
    """A float64 array's field texts as polars' CSV writer writes them (its cast to text is the writer's
    formatter), so that the joins write the bytes `_lines_csv` writes; NULL still null."""
    text = pl.Series(pl.from_arrow(value)).cast(pl.String).to_arrow()
    return text.cast(pa.string()).view(pa.binary())


def _polars_frame(values: Sequence[pa.Array]) -> pl.DataFrame:
    """A slice's fields as a polars frame for its CSV writer: numbers as numbers (integers written as the
    cast writes them, float64 as polars' shortest round-trip text, see `_field_text`), text (UTF-8,
    checked by `_csv_writable`) as strings. No pass over the values: the frame shares their buffers."""
    names = [str(i) for i in range(len(values))]
    fields = [v.view(pa.string()) if pa.types.is_binary(v.type) else v for v in values]
    return pl.DataFrame(pl.from_arrow(pa.Table.from_arrays(fields, names=names)))


def _lines_csv(values: Sequence[pa.Array], pieces: int) -> Iterator[tuple[memoryview, int]]:
    """The lines of a slice by polars' CSV writer (the bytes `_lines_joined` writes, numbers formatted
    faster, see `_polars_frame`), in `pieces` parts, each with its number of lines."""
    rows = len(values[0])
    step = max(1, -(-rows // pieces))
    for start in range(0, rows, step):
        sink = _Written()
        frame = _polars_frame([value.slice(start, step) for value in values])
        frame.write_csv(
            cast(IO[bytes], sink),
            separator="\t",
            include_header=False,
            null_value=_NULL.decode(),
            quote_style="never",
            line_terminator="\n",
        )
        yield sink.text(), frame.height


class _Written:
    """The file object polars' CSV writer writes to: it keeps the bytes objects it is given (polars writes
    a part's text in one call), where a BytesIO would copy them into a buffer of its own."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data if type(data) is bytes else bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def text(self) -> memoryview:
        return memoryview(self.parts[0] if len(self.parts) == 1 else b"".join(self.parts))


def _lines_joined(values: Sequence[pa.Array], row0: int) -> pa.Array:
    """The lines of a slice by element-wise joins of its field texts (any bytes); checks line lengths."""
    fields = []
    for value in values:
        text = _field_text(value)
        fields.append(pc.fill_null(text, _NULL_SCALAR) if text.null_count else text)
    # The line terminator rides on the last field, so one join builds whole lines.
    fields[-1] = pc.binary_join_element_wise(fields[-1], pa.scalar(b""), pa.scalar(b"\n"))
    lines = pc.binary_join_element_wise(*fields, pa.scalar(b"\t")) if len(fields) > 1 else fields[0]
    lengths = pc.binary_length(lines)
    longest = pc.max(lengths).as_py()
    if longest is not None and longest > MAX_LINE_BYTES:
        row = int(pc.index(lengths, longest).as_py())
        raise TsvEncodeError(
            f"row {row0 + row} is {longest} bytes long; a Qserv worker refuses rows over {MAX_LINE_BYTES}",
            row=row0 + row,
        )
    return lines


def _encode_slice(
    batch: pa.RecordBatch, row0: int, charset: str, nan_counts: dict[str, int]
) -> Iterator[tuple[memoryview, int]]:
    """A slice's lines: by the CSV writer when it can (a third less CPU than the joins on numbers, measured
    in benchmarks/results/hats.md), else by the joins."""
    values = [
        _column_value(col, name, row0, charset, nan_counts)
        for name, col in zip(batch.schema.names, batch.columns, strict=True)
    ]
    if _csv_writable(values):
        yield from _lines_csv(values, CSV_PIECES)
    else:
        yield _data_view(_lines_joined(values, row0)), batch.num_rows


def encode_batch(
    batch: pa.RecordBatch,
    *,
    columns: Sequence[str] | None = None,
    charset: str = "latin1",
    first_row: int = 0,
    nan_to_null: dict[str, int] | None = None,
) -> Iterator[memoryview]:
    """Encode one batch, yielding the file bytes slice by slice (each view valid until the next one).

    NaN/inf→NULL counts are added to ``nan_to_null`` when given. ``first_row`` is the batch's row
    number in the whole stream, used only in error messages. Only one slice's text exists at a time.
    """
    for view, _ in encode_lines(
        batch, columns=columns, charset=charset, first_row=first_row, nan_to_null=nan_to_null
    ):
        yield view


def encode_lines(
    batch: pa.RecordBatch,
    *,
    columns: Sequence[str] | None = None,
    charset: str = "latin1",
    first_row: int = 0,
    nan_to_null: dict[str, int] | None = None,
) -> Iterator[tuple[memoryview, int]]:
    """`encode_batch`, each piece with the number of rows (lines) it holds, in order: a caller cutting
    the text into files at row boundaries need not look for line ends in a piece of one file's rows."""
    if charset not in CHARSETS:
        raise ValueError(f"unsupported charset {charset!r}; expected one of {', '.join(CHARSETS)}")
    batch = _select(batch, columns)
    if batch.num_columns == 0:
        raise ValueError("a contribution needs at least one column")
    counts = nan_to_null if nan_to_null is not None else {}
    step = _slice_rows(batch)
    for start in range(0, batch.num_rows, step):
        yield from _encode_slice(batch.slice(start, step), first_row + start, charset, counts)


def write_tsv(
    batches: Iterable[pa.RecordBatch] | pa.Table,
    path: str | os.PathLike,
    *,
    columns: Sequence[str] | None = None,
    charset: str = "latin1",
    durable: bool = True,
    direct_io: bool = False,
) -> TsvFileInfo:
    """Stream batches into the contribution file ``path``, atomically, and return what was written.

    ``columns`` selects and orders the fields (the Qserv table's columns, without ``qserv_trans_id``);
    by default every batch's own column order. The file appears at ``path`` only when complete: it is
    written to a temporary name in the same directory, fsynced, renamed, and the directory fsynced. If
    encoding fails or the source raises, the temporary file is removed and ``path`` is left untouched
    (a process killed mid-write leaves only a ``.<name>.tmp-*`` file, never a partial ``path``).
    With ``durable=False`` the two fsyncs are left to the caller, who writes many files and then makes
    them all durable at once (`sync_filesystem`) before recording any of them. With ``direct_io`` the
    file's text goes past the page cache once it outgrows a buffer (`qdask.direct_io`).
    """
    if charset not in CHARSETS:
        raise ValueError(f"unsupported charset {charset!r}; expected one of {', '.join(CHARSETS)}")
    if isinstance(batches, pa.Table):
        batches = batches.to_batches()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    digest = new_digest()
    rows = size = 0
    nan_to_null: dict[str, int] = {}
    names: list[str] | None = list(columns) if columns is not None else None
    writer = DirectWriter(direct_io)
    try:
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            writer.begin(out)
            for batch in batches:
                if names is None:
                    names = batch.schema.names
                for chunk in encode_batch(
                    batch, columns=names, charset=charset, first_row=rows, nan_to_null=nan_to_null
                ):
                    writer.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                rows += batch.num_rows
            writer.end()
            if durable:
                os.fsync(out)
        except BaseException:
            writer.abort()  # no write in flight on the descriptor once it is closed
            raise
        finally:
            os.close(out)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        writer.close()
    if durable:
        _fsync_dir(path.parent)
    return TsvFileInfo(path, rows, size, formatted(digest), charset, nan_to_null)


def sync_filesystem(paths: Sequence[str | os.PathLike]) -> None:
    """Make the files at ``paths`` (written with ``durable=False``) and their renames durable: one
    ``syncfs`` of their file system (Linux), instead of two fsyncs per file; elsewhere, those fsyncs."""
    if not paths:
        return
    syncfs = getattr(_libc(), "syncfs", None)
    if syncfs is not None:
        fd = os.open(Path(paths[0]).parent, os.O_RDONLY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for directory in {Path(p).parent for p in paths}:
        _fsync_dir(directory)


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Text files in any dialect ``LOAD DATA`` reads, streamed as Arrow record batches typed by a schema.

The file is read in blocks of whole records (a record longer than a block grows the block; one longer than
`MAX_RECORD_BYTES` is an error), so memory stays bounded whatever the file's size. Each block goes the
fastest way that is exact for it:

1. pyarrow's CSV parser, when the dialect and the block's bytes are ones it reads exactly as MariaDB does
   (one-byte field terminator; ``\\n``, ``\\r\\n`` or ``\\r`` lines and no other CR/LF; no escape sequence
   other than ``\\N``; regular quoting, see `qdask.sources.text_scan`), with ``\\N`` (and an unenclosed
   ``NULL`` when fields can be enclosed) as its NULL spellings. A value that still holds the escape
   character (``\\N`` inside a value), or one that does not convert, sends the block to step 2;
2. `qdask.sources.text_scan`: numpy over the block, any dialect, regular quoting;
3. `qdask.sources.text_serial`: MariaDB's own reading order, for the records step 2 cannot decide.

Every path hands its fields to `qdask.sources.text_values`, which converts them as MariaDB stores them. A
record with another number of fields than the schema has columns, a value MariaDB would change with a
warning, or bytes invalid in the charset stop the read with a `SourceError` naming the file, the record and
the column: where MariaDB would load a damaged row with a warning, qdask refuses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from qdask.schema import SchemaMismatch, TableSchema
from qdask.sources.text_scan import Fields, Scan
from qdask.sources.text_serial import NeedMore, TextFormatError, skip_line, split_serial
from qdask.sources.text_values import (
    arrow_parse_type,
    bool_problem,
    convert_column,
    decode_text,
    float_column,
    float_problem,
)
from qdask.sources.units import SourceError
from qdask.text_dialect import TextDialect

__all__ = ["MAX_RECORD_BYTES", "TEXT_BLOCK_BYTES", "check_header", "read_text"]

#: Text is parsed in blocks of at most this many bytes: Arrow's parser is faster on cache-sized blocks
#: (a 95 MB dump: 1-2 MB blocks ~1.5x faster than 32 MB ones), and memory stays small.
TEXT_BLOCK_BYTES = 2 * 1024**2
#: A record (line) longer than this is an error: most likely the line terminator is not the file's, or an
#: enclosure is never closed. It also bounds the memory one read holds (about twice this at the most).
MAX_RECORD_BYTES = 64 * 1024**2
#: Bytes of records the serial reader takes at a time before the vectorised scan resumes.
SERIAL_BYTES = 64 * 1024


def read_text(
    label: str,
    stream: BinaryIO,
    dialect: TextDialect,
    schema: TableSchema,
    pairs: Sequence[tuple[str, str]],
    *,
    block_bytes: int = TEXT_BLOCK_BYTES,
) -> Iterator[pa.RecordBatch]:
    """Stream `stream`'s records as batches of the `pairs` ``(input name, output name)`` columns of `schema`
    (the file's columns, in file order). `label` names the file in errors."""
    yield from _TextReader(label, stream, dialect, schema, list(pairs), block_bytes).batches()


class _TextReader:
    """One pass over a text stream: blocks of whole records in, typed batches out (see the module's doc)."""

    def __init__(self, label, stream, dialect: TextDialect, schema: TableSchema, pairs, block_bytes: int):
        self.label, self.stream, self.dialect, self.schema, self.pairs = label, stream, dialect, schema, pairs
        self.block_bytes = max(1, block_bytes)
        self.row = 1  # the file's record (line) number of the next record, for messages
        self.index = {name: i for i, name in enumerate(schema.names)}
        self.targets = {src: schema.column(src).arrow_type for src, _ in pairs}  # each input column's type
        self.out_schema = pa.schema([pa.field(dst, self.targets[src]) for src, dst in pairs])
        d = dialect
        self.arrow_ok = (
            len(d.fields_terminated_by) == 1
            and d.fields_terminated_by not in "\r\n"
            and d.lines_terminated_by in ("\n", "\r\n", "\r")
            and not d.lines_starting_by
            and not (d.escape and d.escape == d.enclosure)
        )
        # An empty line fails pyarrow's conversion of any column but a text one (it sees empty values).
        self.integers = any(pa.types.is_integer(t) or pa.types.is_boolean(t) for t in self.out_schema.types)
        self.empty_lines_pass = len(schema.names) > 1 and all(
            pa.types.is_string(t) or pa.types.is_binary(t) for t in self.out_schema.types
        )

    # -- blocks ----------------------------------------------------------------------------------------

    def batches(self) -> Iterator[pa.RecordBatch]:
        buf, final, size = b"", False, self.block_bytes
        skip, header = self.dialect.ignore_lines, self.dialect.header
        while True:
            if not final:
                chunk = self._read(size)
                final = not chunk
                buf += chunk
            pos = 0
            while skip and (nxt := skip_line(buf, pos, self.dialect, final=final)) is not None:
                pos, skip, self.row = nxt, skip - 1, self.row + 1
            if not skip and header:
                pos, header = self._header(buf, pos, final)
            pieces: list[pa.Table | Fields] = []
            if not skip and not header:
                pieces, pos = self._split(buf, pos, final)
            yield from self._convert(pieces, buf)
            buf = buf[pos:]
            if final:
                return
            size = self.block_bytes if pos else min(2 * size, MAX_RECORD_BYTES)
            if len(buf) >= MAX_RECORD_BYTES:
                raise SourceError(
                    f"{self.label}: row {self.row} is longer than {MAX_RECORD_BYTES >> 20} MiB: is the line "
                    f"terminator {self.dialect.lines_terminated_by!r} the file's, and every enclosure closed?"
                )

    def _read(self, size: int) -> bytes:
        try:
            return self.stream.read(size)
        except (EOFError, OSError, pa.ArrowException) as exc:
            if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
                raise SourceError(f"{self.label}: the compressed file is truncated ({exc})") from None
            raise SourceError(f"{self.label}: cannot read (corrupt compressed data?): {exc}") from None

    def _header(self, buf: bytes, pos: int, final: bool) -> tuple[int, bool]:
        """Check the header record at `pos` against the schema; (offset after it, whether still to read)."""
        try:
            fields, end = split_serial(buf, pos, self.dialect, final=final, budget=1)
        except NeedMore:
            return pos, not final
        except TextFormatError as exc:
            raise SourceError(f"{self.label} (header line): {exc}") from None
        if fields.records:
            raw = pa.Array.from_buffers(
                pa.binary(),
                len(fields.null),
                [None, pa.py_buffer(fields.offsets.astype(np.int32)), pa.py_buffer(fields.data)],
            )
            names = decode_text(f"{self.label} (header line)", raw, "", self.dialect, self.row).to_pylist()
            check_header(self.label, names, self.schema)
            self.row += 1
        return end, False

    def _split(self, buf: bytes, pos: int, final: bool) -> tuple[list[pa.Table | Fields], int]:
        """The complete records from `pos` on, each run split the fastest exact way; and where they end."""
        arr = np.frombuffer(buf, np.uint8)
        pieces: list[pa.Table | Fields] = []
        while pos < len(buf):
            end = self._plain_end(buf, arr, pos, final)
            plain, scan = end is not None, None
            if end is None:
                scan = Scan(arr, pos, self.dialect, final=final)
                end = scan.end
            if end > pos:
                # no escape sequence but \N (checked by _plain_end, or by the scan)
                escapes_ok = plain or (scan is not None and scan.only_null_escapes())
                exact = escapes_ok and self._arrow_exact(buf, pos, end)
                table = self._arrow(memoryview(buf)[pos:end]) if exact else None
                if table is None:
                    scan = scan or Scan(arr, pos, self.dialect, final=final)
                    pieces.append(scan.fields())
                else:
                    pieces.append(table)
                pos = end
            if scan is None or not scan.irregular:
                break
            try:
                fields, pos = split_serial(buf, pos, self.dialect, final=final, budget=SERIAL_BYTES)
            except NeedMore as more:
                pos = max(pos, more.keep_from)
                break
            except TextFormatError as exc:
                raise SourceError(f"{self.label}: row {self.row + _records(pieces)}: {exc}") from None
            pieces.append(fields)
        return pieces, pos

    def _plain_end(self, buf: bytes, arr: np.ndarray, pos: int, final: bool) -> int | None:
        """Where the complete records end, found without a scan when no byte can be enclosed or escaped (the
        only escape sequences are ``\\N``); None when a scan must decide."""
        d = self.dialect
        if not self.arrow_ok or d.enclosure:
            return None
        if d.escape:  # every escape character must start a \N
            at = np.flatnonzero(arr[pos:] == ord(d.escape)) + pos
            if len(at) and (at[-1] + 1 >= len(buf) or np.any(arr[at + 1] != ord("N"))):
                return None
        if final:
            return len(buf)
        line = d.lines_terminated_by.encode()
        cut = buf.rfind(line, pos)
        return pos if cut < 0 else cut + len(line)

    def _arrow_exact(self, buf: bytes, start: int, end: int) -> bool:
        """Whether pyarrow reads ``buf[start:end]`` exactly as MariaDB, given records the scan found regular
        and no escape sequence but ``\\N``."""
        if not self.arrow_ok:
            return False
        line = self.dialect.lines_terminated_by
        empty_line = line.encode() * 2  # pyarrow: a row of empty values; MariaDB: one field
        if self.empty_lines_pass and (
            buf.startswith(empty_line[: len(line)], start) or buf.find(empty_line, start, end) >= 0
        ):
            return False
        if buf.endswith(self.dialect.fields_terminated_by.encode(), start, end):
            return False  # the file ends after a field terminator: MariaDB reads no field after it
        if line == "\r\n":
            crlf = buf.count(b"\r\n", start, end)
            if not buf.count(b"\r", start, end) == crlf == buf.count(b"\n", start, end):
                return False
        elif buf.find(b"\r" if line == "\n" else b"\n", start, end) >= 0:
            return False
        if self.integers and any(buf.find(x, start, end) >= 0 for x in (b"x", b"X")):
            return not any(buf.find(x, start, end) >= 0 for x in (b"0x", b"0X"))  # pyarrow reads 0x10 as 16
        return True

    def _arrow(self, block: memoryview) -> pa.Table | None:
        """The block parsed by pyarrow, text columns decoded; None when a value needs the exact path."""
        d, schema = self.dialect, self.schema
        types = {src: arrow_parse_type(target) for src, target in self.targets.items()}
        nulls = ([d.escape + "N"] if d.escape else []) + (["NULL"] if d.enclosure else []) + list(d.null)
        try:
            table = pacsv.read_csv(
                pa.py_buffer(block),
                # pyarrow's own 1 MiB blocks parse faster than one block of the whole buffer
                read_options=pacsv.ReadOptions(column_names=schema.names, use_threads=False),
                parse_options=pacsv.ParseOptions(
                    delimiter=d.fields_terminated_by,
                    quote_char=d.enclosure or False,
                    double_quote=True,
                    escape_char=False,
                    newlines_in_values=bool(d.enclosure),
                    ignore_empty_lines=False,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=types,
                    include_columns=[src for src, _ in self.pairs],
                    null_values=nulls,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    check_utf8=False,
                ),
            )
        except pa.ArrowInvalid:
            return None  # a bad record or value: the exact path names it
        columns = []
        for src, _ in self.pairs:
            arr, target = table.column(src).combine_chunks(), self.targets[src]
            if pa.types.is_floating(arr.type):
                if float_problem(arr, target) is not None:
                    return None  # the exact path names the value
                columns.append(float_column(arr, target))
            elif pa.types.is_boolean(target):
                if bool_problem(arr) is not None:
                    return None
                columns.append(arr.cast(pa.bool_()))
            elif not pa.types.is_binary(arr.type):
                columns.append(arr)  # an integer, parsed as the exact path parses it
            elif d.escape and pc.any(pc.match_substring(arr, d.escape)).as_py():
                return None  # "\N" inside a value: the exact path decodes it
            else:
                try:
                    columns.append(convert_column("", arr, target, src, 0, d))
                except SourceError:
                    return None  # the exact path names the value
        return pa.Table.from_arrays(columns, schema=self.out_schema)

    # -- conversion ------------------------------------------------------------------------------------

    def _convert(self, pieces: list[pa.Table | Fields], buf: bytes) -> Iterator[pa.RecordBatch]:
        run: list[Fields] = []
        for piece in [*pieces, None]:
            if isinstance(piece, Fields):
                run.append(piece)
                continue
            if run:
                yield self._fields_batch(Fields.concat(run), buf)
                run = []
            if piece is not None and piece.num_rows:
                self.row += piece.num_rows
                yield from piece.to_batches(max_chunksize=piece.num_rows)

    def _fields_batch(self, fields: Fields, buf: bytes) -> pa.RecordBatch:
        ncols = len(self.schema.names)
        # One empty field too many after a final field terminator is ignored, as MariaDB does silently.
        bad = np.flatnonzero((fields.counts != ncols) & ~((fields.counts == ncols + 1) & fields.open_end))
        if len(bad):
            k = int(bad[0])
            record = buf[fields.starts[k] : fields.ends[k]]
            line = self.dialect.lines_terminated_by
            hint = ""
            if any(ch in record.removesuffix(line.encode()) for ch in (b"\n", b"\r")):
                hint = f" (the row spans line breaks: is lines_terminated_by {line!r} the file's?)"
            raise SourceError(
                f"{self.label}: row {self.row + k} has {fields.counts[k]} fields, expected {ncols}{hint}: "
                f"{record[:200]!r}"
            )
        total = len(fields.null)
        validity = pa.py_buffer(np.packbits(~fields.null, bitorder="little")) if fields.null.any() else None
        values = pa.Array.from_buffers(
            pa.binary(),
            total,
            [validity, pa.py_buffer(fields.offsets.astype(np.int32)), pa.py_buffer(fields.data)],
        )
        first = np.cumsum(fields.counts) - fields.counts  # each record's first field
        columns = []
        for src, _ in self.pairs:
            raw = values.take(pa.array(first + self.index[src]))
            target = self.targets[src]
            columns.append(convert_column(self.label, raw, target, src, self.row, self.dialect))
        self.row += fields.records
        return pa.RecordBatch.from_arrays(columns, schema=self.out_schema)


def _records(pieces: Sequence[pa.Table | Fields]) -> int:
    return sum(p.records if isinstance(p, Fields) else p.num_rows for p in pieces)


def check_header(label: str, header: list[str], schema: TableSchema) -> None:
    """The header line must name the schema's columns, in order."""
    if header != schema.names:
        missing = [n for n in schema.names if n not in header]
        extra = [n for n in header if n not in schema.names]
        problems = [f"missing column {n!r}" for n in missing] + [f"extra column {n!r}" for n in extra]
        if not problems:
            problems = [f"columns are in another order than the schema: {header}"]
        raise SchemaMismatch(f"{label} (header line)", problems)

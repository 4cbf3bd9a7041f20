"""Splitting text into ``LOAD DATA`` records one field at a time, following MariaDB's READ_INFO step by step.

This is the reference reader: it decides every byte as `sql_load.cc` does (read_field, next_line,
find_start_of_fields), for what `qdask.sources.text_scan` leaves undecided (irregular quoting, overlapping
terminators, ``LINES STARTING BY``, an escape character equal to the enclosure character) and for
``IGNORE n LINES``. It jumps from one special byte to the next with a compiled regular expression, so its
cost is per special byte, not per byte. Where MariaDB would load a damaged row with a warning (the file
ends inside an enclosed field), it raises `TextFormatError` instead.
"""

from __future__ import annotations

import re

import numpy as np

from qdask.sources.text_scan import UNESCAPE, Fields
from qdask.text_dialect import TextDialect

__all__ = ["NeedMore", "TextFormatError", "skip_line", "split_serial"]


class TextFormatError(ValueError):
    """Bytes the dialect cannot read; `offset` is where, in the buffer being split."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


class NeedMore(Exception):
    """The record cannot be decided before more of the file is read; bytes before `keep_from` are done."""

    def __init__(self, keep_from: int):
        super().__init__(keep_from)
        self.keep_from = keep_from


def _byte_class(*chars: int | None) -> re.Pattern[bytes]:
    members = b"".join(re.escape(bytes([c])) for c in dict.fromkeys(c for c in chars if c is not None))
    return re.compile(b"[" + members + b"]" if members else b"(?!)")  # (?!) never matches


def skip_line(buf: bytes, pos: int, dialect: TextDialect, *, final: bool) -> int | None:
    """The offset after the line that starts at `pos`, as ``IGNORE n LINES`` skips it (MariaDB's next_line:
    escapes honoured, enclosures not); None when the rest of the buffer does not hold its end yet."""
    line = dialect.lines_terminated_by.encode()
    esc = ord(dialect.escape) if dialect.escape else None
    special = _byte_class(esc, line[0])
    while True:
        m = special.search(buf, pos)
        if m is None:
            return len(buf) if final else None
        at = m.start()
        if buf[at] == esc:
            if at + 1 >= len(buf):
                return len(buf) if final else None
            pos = at + 2
        elif buf.startswith(line, at):
            return at + len(line)
        elif not final and line.startswith(buf[at:]):
            return None
        else:
            pos = at + 1


class _Reader:
    """READ_INFO over one buffer: `record(pos)` reads the record starting at `pos`."""

    def __init__(self, buf: bytes, dialect: TextDialect, final: bool):
        self.buf, self.final = buf, final
        self.term = dialect.fields_terminated_by.encode()
        self.line = dialect.lines_terminated_by.encode()
        self.prefix = dialect.lines_starting_by.encode()
        self.esc = ord(dialect.escape) if dialect.escape else None
        self.enc = ord(dialect.enclosure) if dialect.enclosure else None
        self.spellings = {s.encode() for s in dialect.null}
        self.plain = _byte_class(self.esc, self.term[0], self.line[0])
        self.inside = _byte_class(self.esc, self.enc)

    def _is(self, at: int, terminator: bytes, record_start: int) -> bool:
        """Whether `terminator` starts at `at`; NeedMore when the buffer ends inside a possible match."""
        if self.buf.startswith(terminator, at):
            return True
        if not self.final and len(self.buf) - at < len(terminator) and terminator.startswith(self.buf[at:]):
            raise NeedMore(record_start)
        return False

    def record(self, pos: int) -> tuple[list[bytes], list[bool], int, int, bool] | None:
        """Fields, NULL flags, start, end of the record at `pos`, and whether its line ends right after a
        field terminator (see `Fields.open_end`); None at the end of the file."""
        buf, record_start = self.buf, pos
        if self.prefix:  # find_start_of_fields: skip to the prefix, wherever it is
            found = buf.find(self.prefix, pos)
            if found < 0:
                if self.final:
                    return None
                raise NeedMore(max(pos, len(buf) - len(self.prefix) + 1))
            pos = found + len(self.prefix)
        if pos >= len(buf):
            if self.final:
                return None
            raise NeedMore(record_start)
        fields: list[bytes] = []
        nulls: list[bool] = []
        while True:
            field_start = pos
            field = self._field(pos, record_start)
            if field is None:  # the file ended right after a field terminator: no further field
                return fields, nulls, record_start, len(buf), False
            data, null, pos, line_end = field
            fields.append(data)
            nulls.append(null)
            if line_end:
                open_end = (
                    len(fields) > 1
                    and pos - field_start == len(self.line)
                    and buf.startswith(self.line, field_start)
                )
                return fields, nulls, record_start, pos, open_end

    def _field(self, pos: int, record_start: int) -> tuple[bytes, bool, int, bool] | None:
        """read_field: the decoded field at `pos`, whether it is NULL, where the next one starts, whether the
        record ends after it; None when the file ends at `pos`."""
        buf, n = self.buf, len(self.buf)
        if pos >= n:
            if self.final:
                return None
            raise NeedMore(record_start)
        enclosed = self.enc is not None and buf[pos] == self.enc
        at = pos + 1 if enclosed else pos
        out = bytearray()
        found_null = escaped = False
        special = self.inside if enclosed else self.plain
        while True:
            m = special.search(buf, at)
            if m is None:
                if not self.final:
                    raise NeedMore(record_start)
                out += buf[at:]
                return self._at_eof(out, found_null, escaped, enclosed, pos)
            i = m.start()
            out += buf[at:i]
            c = buf[i]
            if c == self.esc:
                if i + 1 >= n:
                    if not self.final:
                        raise NeedMore(record_start)
                    out.append(c)  # a lone escape character at the end of the file is data
                    return self._at_eof(out, found_null, escaped, enclosed, pos)
                nxt = buf[i + 1]
                if self.esc != self.enc or nxt == self.esc:
                    out.append(UNESCAPE[nxt])
                    found_null |= nxt == 0x4E and self.esc != self.enc  # \N
                    escaped = True
                    at = i + 2
                    continue
                # escape == enclosure and not doubled: this is an enclosure character
            if enclosed and c == self.enc:
                after = i + 1
                if after >= n:
                    if not self.final:
                        raise NeedMore(record_start)
                    return self._finish(out, found_null, escaped, True, n, True)
                if buf[after] == self.enc:  # doubled: one enclosure character
                    out.append(c)
                    at = after + 1
                    continue
                if self._is(after, self.line, record_start):
                    return self._finish(out, found_null, escaped, True, after + len(self.line), True)
                if self._is(after, self.term, record_start):
                    return self._finish(out, found_null, escaped, True, after + len(self.term), False)
            elif not enclosed and c == self.line[0] and self._is(i, self.line, record_start):
                return self._finish(out, found_null, escaped, False, i + len(self.line), True)
            elif not enclosed and c == self.term[0] and self._is(i, self.term, record_start):
                return self._finish(out, found_null, escaped, False, i + len(self.term), False)
            out.append(c)
            at = i + 1

    def _finish(
        self, out: bytearray, found_null: bool, escaped: bool, enclosed: bool, pos: int, line_end: bool
    ) -> tuple[bytes, bool, int, bool]:
        """The field's bytes, whether it is NULL (MariaDB's rule, then the dialect's own spellings), where the
        next field starts and whether the record ends here."""
        data = bytes(out)
        null = (len(data) == 1 and found_null) or (
            not enclosed
            and ((self.enc is not None and data == b"NULL") or (not escaped and data in self.spellings))
        )
        return data, null, pos, line_end

    def _at_eof(
        self, out: bytearray, found_null: bool, escaped: bool, enclosed: bool, start: int
    ) -> tuple[bytes, bool, int, bool]:
        if enclosed:  # MariaDB would load the rest of the file, opening quote included, as this field
            raise TextFormatError(
                "the file ends inside an enclosed field (an enclosure character is not closed)", start
            )
        return self._finish(out, found_null, escaped, False, len(self.buf), True)


def split_serial(
    buf: bytes, start: int, dialect: TextDialect, *, final: bool, budget: int
) -> tuple[Fields, int]:
    """The records of ``buf[start:]`` (at least `budget` bytes of them when there are) and the offset after
    them. Raises `NeedMore` when not even one record is complete (its `keep_from` may skip bytes that can
    hold no record, e.g. lines without the ``LINES STARTING BY`` prefix)."""
    reader = _Reader(buf, dialect, final)
    values: list[bytes] = []
    nulls: list[bool] = []
    counts: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    open_ends: list[bool] = []
    pos = start
    while pos - start < budget:
        try:
            record = reader.record(pos)
        except NeedMore:
            if not counts:
                raise
            break
        if record is None:
            pos = len(buf)
            break
        fields, flags, begin, pos, open_end = record
        open_ends.append(open_end)
        values += fields
        nulls += flags
        counts.append(len(fields))
        starts.append(begin)
        ends.append(pos)
    lengths = np.fromiter((len(v) for v in values), np.int64, len(values))
    return (
        Fields(
            np.frombuffer(b"".join(values), np.uint8),
            np.concatenate([[0], np.cumsum(lengths)]),
            np.array(nulls, bool),
            np.array(counts, np.int64),
            np.array(starts, np.int64),
            np.array(ends, np.int64),
            np.array(open_ends, bool),
        ),
        pos,
    )

"""Splitting text into ``LOAD DATA`` records and fields with numpy, over a whole block at once.

`Scan` finds, for a buffer that starts at a record, where its complete records end and whether the
vectorised rules below decide them exactly as MariaDB's sequential reader (`sql_load.cc`, READ_INFO) does;
`Scan.fields()` then cuts those records into decoded fields. No Python code runs per byte or per field:

* escapes: in a run of escape characters every other one, from the first, escapes the byte after it (the
  byte before a run is never an escape character, so the run is read from its start as MariaDB reads it);
* terminators: the raw matches of the field and line terminators whose first byte is not escaped, the line
  terminator winning where both start; inside an enclosed field neither counts, which for well-formed
  quoting is "after an odd number of unescaped enclosure characters";
* quoting is *regular* when every opening enclosure character (an even one in the count) starts a field or
  directly follows a closing one (a doubled ``""``), and every closing one directly precedes a terminator,
  another enclosure character, or the end of the file. Then the count's parity is MariaDB's state exactly.

Whatever the rules cannot decide (an enclosure character inside an unenclosed field or a stray one inside an
enclosed field, overlapping multi-character terminators, ``LINES STARTING BY``, an escape character equal
to the enclosure character, the end of the file inside an enclosed field) marks the record where it happens
as *irregular*: the scan stops before it and `qdask.sources.text_serial` reads it byte by byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from qdask.text_dialect import ESCAPE_SEQUENCES, TextDialect

__all__ = ["UNESCAPE", "Fields", "Scan"]

_NONE = np.empty(0, np.int64)

#: Byte → what it stands for after the escape character (``n`` → LF, ``0`` → NUL, …; any other → itself).
UNESCAPE = np.arange(256, dtype=np.uint8)
for _key, _value in ESCAPE_SEQUENCES.items():
    UNESCAPE[ord(_key)] = ord(_value)


@dataclass
class Fields:
    """Records cut into fields, in file order: decoded field bytes back to back, NULL flags, field counts.

    `starts`/`ends` are each record's raw byte range in the buffer it was read from (for error messages);
    `open_end` says a record's line ends right after a field terminator (an empty, unenclosed last field,
    which MariaDB ignores without a warning when it is one field too many).
    """

    data: np.ndarray  # uint8
    offsets: np.ndarray  # int64, one more than there are fields
    null: np.ndarray  # bool per field
    counts: np.ndarray  # int64 fields per record
    starts: np.ndarray  # int64 raw offset of each record
    ends: np.ndarray  # int64 raw end of each record
    open_end: np.ndarray  # bool per record

    @property
    def records(self) -> int:
        return len(self.counts)

    @staticmethod
    def empty() -> Fields:
        return Fields(
            np.empty(0, np.uint8),
            np.zeros(1, np.int64),
            np.empty(0, bool),
            _NONE,
            _NONE,
            _NONE,
            np.empty(0, bool),
        )

    @staticmethod
    def concat(parts: Sequence[Fields]) -> Fields:
        parts = [p for p in parts if p.records]
        if len(parts) <= 1:
            return parts[0] if parts else Fields.empty()
        shift = np.cumsum([0] + [len(p.data) for p in parts[:-1]])
        return Fields(
            np.concatenate([p.data for p in parts]),
            np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, shift, strict=True)]),
            np.concatenate([p.null for p in parts]),
            np.concatenate([p.counts for p in parts]),
            np.concatenate([p.starts for p in parts]),
            np.concatenate([p.ends for p in parts]),
            np.concatenate([p.open_end for p in parts]),
        )


def _isin(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which of `values` are in `sorted_set` (ascending), by binary search."""
    if not len(sorted_set) or not len(values):
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values


def _merged(*sorted_arrays: np.ndarray) -> np.ndarray:
    """Sorted arrays merged into one sorted array (a stable sort merges their runs)."""
    return np.sort(np.concatenate(sorted_arrays), kind="stable")


def _matches(seg: np.ndarray, pattern: bytes) -> np.ndarray:
    """Every position where `pattern` starts in `seg` (overlapping matches included)."""
    if len(seg) < len(pattern):
        return _NONE
    pos = np.flatnonzero(seg[: len(seg) - len(pattern) + 1] == pattern[0])
    for k in range(1, len(pattern)):
        pos = pos[seg[pos + k] == pattern[k]]
    return pos


def _escapes(seg: np.ndarray, escape: int, final: bool) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the escape characters that escape, and of the bytes they escape."""
    pos = np.flatnonzero(seg == escape)
    if not len(pos):
        return _NONE, _NONE
    run_begins = np.ones(len(pos), bool)
    run_begins[1:] = pos[1:] != pos[:-1] + 1
    run_start = np.maximum.accumulate(np.where(run_begins, pos, 0))
    escapers = pos[(pos - run_start) % 2 == 0]
    if final and escapers[-1] == len(seg) - 1:  # a lone escape character ends the file: it is data
        escapers = escapers[:-1]
    return escapers, escapers + 1


class Scan:
    """The complete records of ``buf[start:]`` that the vectorised rules decide (see the module's doc).

    `end` is the buffer offset after the last such record; `irregular` says the record starting at `end` is
    one the rules cannot decide (read it with the serial reader), rather than incomplete.
    """

    def __init__(self, buf: bytes | np.ndarray, start: int, dialect: TextDialect, *, final: bool):
        self.dialect = dialect
        self.start = start
        arr = buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, np.uint8)
        self.seg = seg = arr[start:]
        self.final = final
        self.term = dialect.fields_terminated_by.encode()
        self.line = dialect.lines_terminated_by.encode()
        esc, enc = dialect.escape, dialect.enclosure
        self.esc = ord(esc) if esc else None
        self.enc = ord(enc) if enc else None
        self.escapers = self.escaped = self.quotes = _NONE
        self.fpos = self.lpos = _NONE
        if dialect.lines_starting_by or (esc is not None and esc == enc):
            self.end, self.irregular = start, True
            return
        n = len(seg)
        if self.esc is not None:
            self.escapers, self.escaped = _escapes(seg, self.esc, final)
        fpos, lpos = _matches(seg, self.term), _matches(seg, self.line)
        is_escaped = None
        if len(self.escaped):
            is_escaped = np.zeros(n + 1, bool)
            is_escaped[self.escaped] = True
            fpos, lpos = fpos[~is_escaped[fpos]], lpos[~is_escaped[lpos]]
        problem = n + 1  # the first position the rules cannot decide
        if self.enc is not None:
            quotes = np.flatnonzero(seg == self.enc)
            if is_escaped is not None:
                quotes = quotes[~is_escaped[quotes]]
            if len(quotes):
                fpos = fpos[np.searchsorted(quotes, fpos) % 2 == 0]
                lpos = lpos[np.searchsorted(quotes, lpos) % 2 == 0]
            self.quotes = quotes
        if len(self.term) > 1 or len(self.line) > 1:
            fpos = fpos[~_isin(fpos, lpos)]  # the line terminator is matched first
            starts = np.concatenate([fpos, lpos])
            order = np.argsort(starts, kind="stable")
            ends = np.concatenate([fpos + len(self.term), lpos + len(self.line)])[order]
            overlap = np.flatnonzero(starts[order][1:] < ends[:-1])
            if len(overlap):
                problem = int(starts[order][overlap[0] + 1])
        if len(self.quotes):
            problem = min(problem, self._first_bad_quote(fpos, lpos))
        self.fpos, self.lpos = fpos, lpos
        line_ends = lpos + len(self.line)
        if problem <= n:  # stop at the start of the record holding the problem
            before = int(np.searchsorted(line_ends, problem, "right"))
            self.end = start + (int(line_ends[before - 1]) if before else 0)
            self.irregular = True
        else:
            tail = int(line_ends[-1]) if len(line_ends) else 0
            self.end = start + (n if final else tail)
            self.irregular = False

    def _first_bad_quote(self, fpos: np.ndarray, lpos: np.ndarray) -> int:
        """The position of the first enclosure character that breaks regular quoting (len + 1 if none)."""
        n, quotes = len(self.seg), self.quotes
        opening, closing = quotes[0::2], quotes[1::2]
        field_starts = _merged(fpos + len(self.term), lpos + len(self.line))
        opens_ok = (opening == 0) | _isin(opening, field_starts) | _isin(opening - 1, closing)
        after = closing + 1
        closes_ok = _isin(after, _merged(fpos, lpos)) | _isin(after, opening) | (after == n)
        bad = np.concatenate([opening[~opens_ok], closing[~closes_ok]])
        if self.final and len(quotes) % 2:  # the file ends inside an enclosed field
            bad = np.append(bad, quotes[-1])
        return int(bad.min()) if len(bad) else n + 1

    def only_null_escapes(self) -> bool:
        """Whether every escape sequence in the scanned records is ``\\N`` (so the bytes read literally
        differ from the data only there)."""
        escapers = self.escapers[self.escapers < self.end - self.start]
        return not len(escapers) or bool(np.all(self.seg[escapers + 1] == ord("N")))

    @cached_property
    def _terminators(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start, length and is-line of every terminator in the scanned records, in order."""
        size = self.end - self.start
        fpos = self.fpos[self.fpos < size]
        lpos = self.lpos[self.lpos + len(self.line) <= size]
        starts = [fpos, lpos]
        lengths = [np.full(len(fpos), len(self.term)), np.full(len(lpos), len(self.line))]
        f_is_line = np.zeros(len(fpos), bool)
        if size and (not len(lpos) or lpos[-1] + len(self.line) < size):  # the file's last line has no end
            if len(fpos) and fpos[-1] + len(self.term) == size:
                f_is_line[-1] = True  # it ends after a field terminator: no field follows (as in MariaDB)
            else:
                starts.append(np.array([size]))
                lengths.append(np.zeros(1, np.int64))
        start = np.concatenate(starts)
        is_line = np.concatenate([f_is_line, np.ones(len(start) - len(fpos), bool)])
        order = np.argsort(start, kind="stable")
        return start[order], np.concatenate(lengths)[order], is_line[order]

    def fields(self) -> Fields:
        """The scanned records cut into decoded fields (escapes, enclosures, doubled quotes), NULLs marked."""
        size = self.end - self.start
        if size == 0:
            return Fields.empty()
        seg = self.seg[:size]
        t_start, t_len, is_line = self._terminators
        f_end = t_start
        f_start = np.concatenate([[0], t_start[:-1] + t_len[:-1]])
        nonempty = f_end > f_start
        enclosed = np.zeros(len(f_start), bool)
        if self.enc is not None:
            enclosed[nonempty] = seg[f_start[nonempty]] == self.enc
        # Bytes that are not data: terminators, and (sparse) enclosing and doubled-first quotes and escapers.
        if t_len.max(initial=0) <= 1:
            term_bytes = t_start[t_len == 1]
        else:
            term_bytes = np.repeat(t_start, t_len) + (
                np.arange(int(t_len.sum())) - np.repeat(np.cumsum(t_len) - t_len, t_len)
            )
        quotes = self.quotes[self.quotes < size]
        sparse = _merged(quotes[1::2], f_start[enclosed], self.escapers[self.escapers < size])
        keep = np.ones(size, bool)
        keep[term_bytes] = False
        keep[sparse] = False
        data = seg.copy()
        escaped = self.escaped[self.escaped < size]
        data[escaped] = UNESCAPE[data[escaped]]
        data = data[keep]
        bounds = np.concatenate([f_start, [size]])
        terminators_before = np.concatenate([[0], np.cumsum(t_len)])
        offsets = bounds - terminators_before - np.searchsorted(sparse, bounds)
        null = self._nulls(seg, data, offsets, f_start, f_end, enclosed)
        line_at = np.flatnonzero(is_line)
        counts = np.diff(np.concatenate([[-1], line_at]))
        record_ends = t_start[line_at] + t_len[line_at]
        record_starts = np.concatenate([[0], record_ends[:-1]])
        open_end = (f_start[line_at] == f_end[line_at]) & (counts > 1)
        return Fields(
            data, offsets, null, counts, record_starts + self.start, record_ends + self.start, open_end
        )

    def _nulls(
        self,
        seg: np.ndarray,
        data: np.ndarray,
        offsets: np.ndarray,
        f_start: np.ndarray,
        f_end: np.ndarray,
        enclosed: np.ndarray,
    ) -> np.ndarray:
        """NULL per field: exactly ``\\N`` (enclosed or not), an unenclosed ``NULL`` when fields can be
        enclosed (compared after unescaping, as MariaDB does), or one of the dialect's `null` spellings."""
        lengths = np.diff(offsets)
        null = np.zeros(len(f_start), bool)
        if self.esc is not None:
            first = f_start + enclosed
            cand = np.flatnonzero(f_end - first - enclosed == 2)
            cand = cand[(seg[first[cand]] == self.esc) & (seg[first[cand] + 1] == ord("N"))]
            null[cand] = True
        spellings = [(b"NULL", False)] if self.enc is not None else []
        spellings += [(s.encode(), True) for s in self.dialect.null]
        for spelling, plain_only in spellings:
            cand = np.flatnonzero((lengths == len(spelling)) & ~enclosed)
            if plain_only and len(self.escapers) and len(cand):
                inside = np.searchsorted(self.escapers, f_end[cand]) - np.searchsorted(
                    self.escapers, f_start[cand]
                )
                cand = cand[inside == 0]
            for k, byte in enumerate(spelling):
                cand = cand[data[offsets[cand] + k] == byte]
            null[cand] = True
        return null

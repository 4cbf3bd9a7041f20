"""The worker's CSV dialect and its row preprocessor (Qserv ``csv::Dialect`` / ``csv::Parser`` rules).

Dialect values arrive in escaped notation (``\\t``, ``\\0`` …) and must be one of a fixed set. The
preprocessor streams input bytes, splits rows at unescaped line terminators (an escape character
toggles escape mode, two cancel out; enclosures do not matter here) and prefixes every row with the
transaction id field, exactly as a worker writes its temporary file. Fast path: bulk ``bytes.replace``
when no newline in the block is preceded by a backslash.
"""

from __future__ import annotations

from dataclasses import dataclass

from qdask.emulator.protocol import InvalidParam

MAX_ROW_LENGTH = 16 * 1024 * 1024

_IN = {"\\0": "\0", "\\t": "\t", ",": ",", "'": "'", '"': '"', "\\\\": "\\", "\\n": "\n"}
_OUT = {"\0": "", "\t": "\\t", ",": ",", "'": "\\'", '"': '"', "\\": "\\\\", "\n": "\\n"}
ALLOWED = {
    "fields_terminated_by": ("fieldsTerminatedBy", ("\\t", ",")),
    "fields_enclosed_by": ("fieldsEnclosedBy", ("\\0", "'", '"')),
    "fields_escaped_by": ("fieldsEscapedBy", ("\\\\",)),
    "lines_terminated_by": ("linesTerminatedBy", ("\\n",)),
}
DEFAULTS = {
    "fields_terminated_by": "\\t",
    "fields_enclosed_by": "\\0",
    "fields_escaped_by": "\\\\",
    "lines_terminated_by": "\\n",
}


@dataclass(frozen=True)
class Dialect:
    """Validated dialect: the escaped input (for the contribution object) and the actual characters."""

    fields_terminated_by: str = "\\t"
    fields_enclosed_by: str = "\\0"
    fields_escaped_by: str = "\\\\"
    lines_terminated_by: str = "\\n"

    @classmethod
    def from_params(cls, params: dict) -> Dialect:
        """Read the four fields (missing or empty → default) and validate them as the worker does."""
        values = {}
        for key, (camel, allowed) in ALLOWED.items():
            value = params.get(key) or DEFAULTS[key]
            if not isinstance(value, str) or value not in allowed:
                raise InvalidParam(
                    f"Csv::Parser: the value '{value}' of the parameter '{camel}' is not"
                    " allowed for the given parameter."
                )
            values[key] = value
        return cls(**values)

    def input_json(self) -> dict:
        return {
            "fields_terminated_by": self.fields_terminated_by,
            "fields_enclosed_by": self.fields_enclosed_by,
            "fields_escaped_by": self.fields_escaped_by,
            "lines_terminated_by": self.lines_terminated_by,
        }

    def char(self, key: str) -> str:
        return _IN[getattr(self, key)]

    def sql_options(self) -> str:
        """The FIELDS/LINES clause of the worker's LOAD DATA statement."""
        term, enc = self.char("fields_terminated_by"), self.char("fields_enclosed_by")
        esc, lines = self.char("fields_escaped_by"), self.char("lines_terminated_by")
        opt = f"FIELDS TERMINATED BY '{_OUT[term]}'"
        if enc != "\0":
            opt += f" ENCLOSED BY '{_OUT[enc]}'"
        return opt + f" ESCAPED BY '{_OUT[esc]}' LINES TERMINATED BY '{_OUT[lines]}'"

    def trans_prefix(self, trans_id: int) -> bytes:
        """The field a worker prepends to each row: ``T<sep>`` or ``"T"<sep>`` with an enclosure."""
        enc = self.char("fields_enclosed_by")
        field = str(trans_id) if enc == "\0" else f"{enc}{trans_id}{enc}"
        return (field + self.char("fields_terminated_by")).encode()


class RowTooLong(ValueError):
    pass


class RowPrefixer:
    """Streams input blocks into output blocks with the transaction id field before every row."""

    def __init__(self, prefix: bytes):
        self.prefix = prefix
        self.num_rows = 0
        self.num_bytes = 0
        self._at_row_start = True
        self._in_escape = False
        self._row_len = 0

    def feed(self, data: bytes) -> bytes:
        """Preprocess one block; returns the bytes to write to the temporary file."""
        if not data:
            return b""
        self.num_bytes += len(data)
        if b"\\\n" not in data and not (self._in_escape and data[:1] == b"\n"):
            return self._feed_fast(data)
        ends = self._row_ends(data)
        out = []
        start = 0
        for end in ends:
            if self._at_row_start:
                out.append(self.prefix)
            self._check_len(end + 1 - start)
            out.append(data[start : end + 1])
            self.num_rows += 1
            self._row_len = 0
            self._at_row_start = True
            start = end + 1
        if start < len(data):
            if self._at_row_start:
                out.append(self.prefix)
            self._check_len(len(data) - start)
            out.append(data[start:])
            self._at_row_start = False
        return b"".join(out)

    def _feed_fast(self, data: bytes) -> bytes:
        """Every newline of the block ends a row: one C-level replace does the whole block."""
        nl = data.count(b"\n")
        body = data.replace(b"\n", b"\n" + self.prefix) if nl else data
        ends_with_nl = data[-1:] == b"\n"
        if ends_with_nl:
            body = body[: len(body) - len(self.prefix)]
        if self._at_row_start:
            body = self.prefix + body
        last = data.rfind(b"\n")
        if last == -1:
            self._check_len(len(data))
        else:
            self._row_len = 0
            self._check_len(len(data) - last - 1)
        self.num_rows += nl
        self._at_row_start = ends_with_nl
        self._update_escape(data)
        return body

    def _update_escape(self, data: bytes) -> None:
        k = len(data) - 1
        while k >= 0 and data[k] == 0x5C:
            k -= 1
        run = len(data) - 1 - k
        self._in_escape = (run % 2 == 1) if k >= 0 else ((run + self._in_escape) % 2 == 1)

    def flush(self) -> None:
        """End of input: an unterminated last row still counts as a row."""
        if not self._at_row_start:
            self.num_rows += 1
            self._at_row_start = True
            self._row_len = 0

    def _check_len(self, n: int) -> None:
        self._row_len += n
        if self._row_len > MAX_ROW_LENGTH:
            raise RowTooLong(
                f"Csv::Parser: input line {self.num_rows} exceeds the limit of {MAX_ROW_LENGTH} bytes."
            )

    def _row_ends(self, data: bytes) -> list[int]:
        """Offsets of unescaped newlines in ``data``; keeps escape state across blocks."""
        ends = []
        pos = data.find(b"\n")
        while pos != -1:
            # count the backslashes right before this newline (possibly continuing from earlier blocks)
            k = pos - 1
            while k >= 0 and data[k] == 0x5C:
                k -= 1
            run = pos - 1 - k
            escaped = (run % 2 == 1) if k >= 0 else ((run + self._in_escape) % 2 == 1)
            if not escaped:
                ends.append(pos)
            pos = data.find(b"\n", pos + 1)
        self._update_escape(data)
        return ends

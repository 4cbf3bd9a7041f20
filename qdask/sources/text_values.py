"""Text field values → typed Arrow arrays, as MariaDB's ``LOAD DATA`` stores them; text from its charset.

Both ways of splitting a block (`qdask.sources.text`) hand their fields here as binary values, so one set of
rules converts them. qdask takes exactly the values MariaDB stores without a warning, with MariaDB's value,
and refuses the rest, naming the row, column and value (where MariaDB would store a changed value and warn):

* numbers may have ASCII whitespace around them (MariaDB skips it before the number, and stores the number
  with a warning that says only that the spaces after it were dropped);
* integers: an optional sign and digits; a decimal or exponent form (``5.0``, ``.5``, ``1e3``, ``+5``) is
  rounded half away from zero, as MariaDB does silently. Hexadecimal (``0x10``), anything else after the
  number, and values out of the column's range are refused;
* DOUBLE and FLOAT: a decimal number (sign, digits, point, exponent). ``nan``,
  ``inf`` and overflows are refused (MariaDB stores 0 or the largest value and warns; the dialect's `null`
  spellings, e.g. ``null: ['nan']``, make such fields NULL instead). FLOAT is parsed as a double, then
  rounded to float, as MariaDB does; one beyond FLOAT's range is refused;
* BOOLEAN (MariaDB's TINYINT(1)): an integer as above that is 0 or 1 (``true`` is not one: MariaDB stores 0
  and warns; 2 is one MariaDB holds and a boolean does not);
* other types (DECIMAL, dates and times): Arrow's strict cast;
* the empty field is never a number (MariaDB stores 0 and warns).

Text columns are decoded from the dialect's charset: MariaDB's latin1 (Windows-1252 with its five undefined
bytes kept as C1 controls) byte for byte, UTF-8 validated (utf8mb3 also refuses characters beyond the BMP,
which it cannot hold), ascii refusing bytes above 0x7F. Binary columns keep their bytes.
"""

from __future__ import annotations

import codecs

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qdask.sources.units import SourceError
from qdask.text_dialect import MARIADB_LATIN1, TextDialect

__all__ = [
    "arrow_parse_type",
    "bool_problem",
    "convert_column",
    "decode_text",
    "float_column",
    "float_problem",
]

#: Per byte, the length of the UTF-8 encoding of the character MariaDB's latin1 gives it.
_LATIN1_UTF8_LENGTH = np.array([len(ch.encode()) for ch in MARIADB_LATIN1], np.int64)
#: Wide enough for any integer MariaDB holds, with fraction digits to round.
_DECIMAL = pa.decimal256(76, 37)
_FLOAT_MAX = float(np.finfo(np.float32).max)


def arrow_parse_type(target: pa.DataType) -> pa.DataType:
    """What pyarrow's CSV parser may convert a column to directly, with the same result as `convert_column`
    once `float_problem`/`bool_problem` are clear and no ``0x`` is in the block: integers, doubles (FLOAT as a
    double), BOOLEAN as a small integer; anything else stays binary for `convert_column`."""
    if pa.types.is_floating(target):
        return pa.float64()
    if pa.types.is_boolean(target):
        return pa.int8()
    return target if pa.types.is_integer(target) else pa.binary()


def convert_column(
    label: str, values: pa.Array, target: pa.DataType, column: str, first_row: int, dialect: TextDialect
) -> pa.Array:
    """Binary field values → `target` (see the module's doc); `first_row` numbers the first value."""
    if pa.types.is_binary(target):
        return values
    if pa.types.is_string(target):
        return decode_text(label, values, column, dialect, first_row)
    text = values.view(pa.string())  # validated by the conversion: a number is ASCII

    def refuse(bad: pa.Array, why: str = "") -> SourceError:
        row = int(pc.index(bad, True).as_py())
        value = values[row].as_py().decode("utf-8", errors="replace")
        return SourceError(
            f"{label}: row {first_row + row}, column {column!r}: {value!r} is not a valid {target}{why}"
        )

    if pa.types.is_integer(target) or pa.types.is_boolean(target):
        hexadecimal = pc.or_(pc.match_substring(values, "x"), pc.match_substring(values, "X"))
        if pc.any(hexadecimal).as_py():  # Arrow reads 0x10 as 16; MariaDB stores 0 and warns
            raise refuse(hexadecimal)
        if pa.types.is_boolean(target):
            small = _integers(text, pa.int8(), refuse)
            problem = bool_problem(small)
            if problem is not None:
                raise refuse(problem)
            return small.cast(pa.bool_())
        return _integers(text, target, refuse)
    if pa.types.is_floating(target):
        return _floats(text, target, refuse)
    out = _cast(text, target)
    if out is None:
        raise refuse(_failures(text, target))
    return out


def _cast(text: pa.Array, target: pa.DataType) -> pa.Array | None:
    try:
        return text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _failures(text: pa.Array, target: pa.DataType) -> pa.Array:
    """Which values do not cast to `target` (one at a time: only on the way to an error)."""
    raw = text.view(pa.binary()).to_pylist() if not pa.types.is_decimal(text.type) else text.to_pylist()
    return pa.array(
        [
            v is not None
            and _cast(pa.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v]), target) is None
            for v in raw
        ]
    )


def _trimmed(text: pa.Array) -> pa.Array:
    """ASCII whitespace around the number removed (MariaDB skips it before, and stores the number with a
    warning that only says spaces were dropped after)."""
    return pc.ascii_trim_whitespace(text)


def _integers(text: pa.Array, target: pa.DataType, refuse) -> pa.Array:
    out = _cast(text, target)
    if out is not None:
        return out
    trimmed = _trimmed(text)
    out = _cast(trimmed, target)
    if out is not None:
        return out
    decimal = _cast(trimmed, _DECIMAL)  # 5.0, .5, 1e3, +5: rounded half away from zero
    if decimal is None:
        raise refuse(_failures(trimmed, _DECIMAL))
    rounded = pc.round(decimal, ndigits=0, round_mode="half_towards_infinity")
    out = _cast(rounded, target)
    if out is None:
        raise refuse(_failures(rounded, target), " (out of the column's range)")
    return out


def _floats(text: pa.Array, target: pa.DataType, refuse) -> pa.Array:
    out = _cast(text, pa.float64())
    if out is None:
        trimmed = _trimmed(text)
        out = _cast(trimmed, pa.float64())
        if out is None:
            raise refuse(_failures(trimmed, pa.float64()))
    problem = float_problem(out, target)
    if problem is not None:
        raise refuse(*problem)
    return float_column(out, target)


def float_problem(doubles: pa.Array, target: pa.DataType) -> tuple[pa.Array, str] | None:
    """Which parsed values MariaDB would not store as they are (NaN, infinities, beyond FLOAT), and why;
    None when there is none."""
    infinite = pc.invert(pc.is_finite(doubles))
    if pc.any(infinite).as_py():
        why = " (MariaDB stores no NaN or infinity; dialect null: ['nan'] reads a spelling as NULL)"
        return pc.fill_null(infinite, False), why
    if pa.types.is_float32(target):
        too_big = pc.greater(pc.abs(doubles), _FLOAT_MAX)
        if pc.any(too_big).as_py():
            return pc.fill_null(too_big, False), " (beyond FLOAT's range)"
    return None


def bool_problem(small: pa.Array) -> pa.Array | None:
    """Which integers of a BOOLEAN column (MariaDB's TINYINT(1)) a boolean cannot hold: other than 0 and 1."""
    other = pc.invert(pc.is_in(small, pa.array([0, 1], pa.int8())))
    return pc.fill_null(other, False) if pc.any(other).as_py() else None


def float_column(doubles: pa.Array, target: pa.DataType) -> pa.Array:
    """Parsed doubles as the column holds them: FLOAT rounds the double, as MariaDB does."""
    return doubles if target == pa.float64() else doubles.cast(target, safe=False)


def _value_bytes(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The value offsets (zero-based) and the bytes of a binary array."""
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + len(arr) + 1].astype(
        np.int64
    )
    data = arr.buffers()[2]
    raw = (
        np.frombuffer(data, np.uint8)[offsets[0] : offsets[-1]] if data is not None else np.empty(0, np.uint8)
    )
    return offsets - offsets[0], raw


def decode_text(label: str, arr: pa.Array, column: str, dialect: TextDialect, first_row: int) -> pa.Array:
    """Binary field values → strings, decoded from the dialect's charset; bytes it cannot hold are errors."""
    charset = dialect.charset
    offsets, raw = _value_bytes(arr)
    if charset == "latin1":
        text = codecs.charmap_decode(raw.tobytes(), "strict", MARIADB_LATIN1)[0].encode()
        lengths = np.concatenate([[0], np.cumsum(_LATIN1_UTF8_LENGTH[raw])])
        new_offsets = lengths[offsets].astype(np.int32)
        validity = None
        if arr.null_count:
            validity = pa.py_buffer(
                np.packbits(arr.is_valid().to_numpy(zero_copy_only=False), bitorder="little")
            )
        return pa.Array.from_buffers(
            pa.string(), len(arr), [validity, pa.py_buffer(new_offsets), pa.py_buffer(text)]
        )
    limit = {"ascii": 0x80, "utf8mb3": 0xF0, "utf8": 0xF0}.get(charset)
    if limit is not None and len(raw) and raw.max() >= limit:
        row = int(np.searchsorted(offsets, int(np.flatnonzero(raw >= limit)[0]), "right")) - 1
        what = "non-ASCII bytes" if charset == "ascii" else "a character outside the Basic Multilingual Plane"
        raise SourceError(
            f"{label}: row {first_row + row}, column {column!r}: {what}, which {charset} cannot hold"
        )
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
                        f"({exc.reason} at byte {exc.start}); give the file's charset"
                    ) from None
        raise

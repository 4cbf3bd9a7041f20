"""Whether Arrow data fits a table: column types (`check_arrow_schema`, `is_compatible`) and values
(`check_batch_values`), each failure a `SchemaMismatch` naming the input and every offending column."""

from __future__ import annotations

import collections
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from qdask.schema.arrow_types import is_binary_type, is_text_type
from qdask.schema.columns import Column, TableSchema
from qdask.schema.ddl import parse_type
from qdask.schema.errors import SchemaMismatch

__all__ = ["check_arrow_schema", "check_batch_values", "is_compatible"]

# Decimal digits of the largest value of a signed/unsigned integer of so many bits.
_INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 20}


def is_compatible(found: pa.DataType, column: Column) -> bool:
    """Whether values of Arrow type `found` load into `column` without loss beyond the column's own rounding.

    Integers fit integers of at least their range (int32 → BIGINT yes, int64 → INT no, uint8 → SMALLINT
    yes, signed → UNSIGNED no); ints and floats of any width fit FLOAT/DOUBLE (a FLOAT column rounds by
    design); floats never fit integer or DECIMAL columns; strings fit text columns, strings and binaries
    fit binary columns; dates and timestamps fit DATETIME/TIMESTAMP. An all-null column fits a nullable one.
    """
    if pa.types.is_dictionary(found):
        found = found.value_type
    if pa.types.is_null(found):
        return column.nullable
    p = parse_type(column.sql_type)
    b = p.base
    found_int = pa.types.is_integer(found)
    if p.integer_bits is not None or b == "YEAR":
        bits = 16 if b == "YEAR" else p.integer_bits or 0
        if pa.types.is_boolean(found):
            return True
        if not found_int:
            return False
        signed, width = pa.types.is_signed_integer(found), found.bit_width
        if p.unsigned:
            return not signed and width <= bits
        return width <= bits if signed else width < bits
    if b == "BOOLEAN":
        return pa.types.is_boolean(found) or (found_int and found.bit_width == 8)
    if b in ("FLOAT", "DOUBLE"):
        return pa.types.is_floating(found) or found_int or pa.types.is_boolean(found)
    if b == "DECIMAL":
        precision, scale = (int(a) for a in p.decimal_digits)
        if pa.types.is_decimal(found):
            return found.scale <= scale and found.precision - found.scale <= precision - scale
        return found_int and _INT_DIGITS[found.bit_width] <= precision - scale
    if p.is_text:
        return is_text_type(found)
    if p.is_binary or b == "BIT":
        return is_text_type(found) or is_binary_type(found) or pa.types.is_fixed_size_binary(found)
    if b == "DATE":
        return pa.types.is_date(found)
    if b in ("DATETIME", "TIMESTAMP"):
        return pa.types.is_timestamp(found) or pa.types.is_date(found)
    if b == "TIME":
        return pa.types.is_time(found)
    return False


def check_arrow_schema(
    found: pa.Schema,
    schema: TableSchema,
    source: str,
    *,
    allow_extra: bool = False,
    input_names: Mapping[str, str] | None = None,
) -> None:
    """Raise one `SchemaMismatch` naming `source` and every missing, extra or incompatible column.

    `found` is the input's Arrow schema with columns already renamed to the table's names;
    `input_names` maps a table column name back to the input's name, for the message.
    """
    input_names = input_names or {}

    def label(name: str) -> str:
        orig = input_names.get(name, name)
        return f"{name!r}" + (f" (input column {orig!r})" if orig != name else "")

    problems = []
    found_names = set(found.names)
    for c in schema.columns:
        if c.name not in found_names:
            problems.append(f"missing column {label(c.name)}: expected {c.sql_type} (Arrow {c.arrow_type})")
            continue
        t = found.field(c.name).type
        if not is_compatible(t, c):
            problems.append(
                f"column {label(c.name)}: expected {c.sql_type} (Arrow {c.arrow_type}), found {t}"
            )
    if not allow_extra:
        expected = set(schema.names)
        for f in found:
            if f.name not in expected:
                problems.append(f"extra column {label(f.name)} of type {f.type} is not in the table schema")
    dupes = sorted(n for n, k in collections.Counter(found.names).items() if k > 1)
    problems.extend(f"column {n!r} appears more than once in the input" for n in dupes)
    if problems:
        raise SchemaMismatch(source, problems)


def check_batch_values(
    batch: pa.RecordBatch | pa.Table, schema: TableSchema, source: str, row_offset: int = 0
) -> None:
    """Raise `SchemaMismatch` for NULLs (and NaN) in NOT NULL columns and strings longer than CHAR/VARCHAR(n).

    Cheap vectorised checks on data already in memory; `row_offset` numbers rows within the whole input.
    """
    problems = []
    present = set(batch.schema.names)
    for c in schema.columns:
        limit = c.max_length
        if c.name not in present or (c.nullable and limit is None):
            continue
        arr = batch.column(c.name)
        if not c.nullable:
            bad = pc.is_null(arr, nan_is_null=True)
            if pc.any(bad).as_py():
                first = pc.index(bad, True).as_py()
                problems.append(f"column {c.name!r} is NOT NULL but row {row_offset + first} is NULL or NaN")
        t = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
        if limit is not None and (
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
        ):
            if pa.types.is_dictionary(arr.type):
                arr = pc.cast(arr, t)
            is_text = c.is_text
            lengths = pc.utf8_length(arr) if is_text and not pa.types.is_binary(t) else pc.binary_length(arr)
            longest = pc.max(lengths).as_py()
            if longest is not None and longest > limit:
                first = pc.index(pc.greater(lengths, limit), True).as_py()
                problems.append(
                    f"column {c.name!r} ({c.sql_type}): row {row_offset + first} has {longest} "
                    f"{'characters' if is_text else 'bytes'}, more than {limit}"
                )
    if problems:
        raise SchemaMismatch(source, problems)

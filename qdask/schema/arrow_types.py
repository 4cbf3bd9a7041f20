"""MySQL types ↔ Arrow types, and the felis datatype a MySQL type corresponds to."""

from __future__ import annotations

import pyarrow as pa

from qdask.schema.ddl import SqlType, parse_type
from qdask.schema.errors import SchemaError

__all__ = ["arrow_type_for", "felis_datatype", "is_binary_type", "is_text_type", "mysql_type_for_arrow"]


def arrow_type_for(sql_type: str) -> pa.DataType:
    """The Arrow type that values of a column of this MySQL type are read as."""
    p = parse_type(sql_type)
    b = p.base
    if p.integer_bits is not None:
        bits = 32 if p.integer_bits == 24 else p.integer_bits
        factory = getattr(pa, f"{'u' if p.unsigned else ''}int{bits}")
        return factory()
    if b == "BOOLEAN":
        return pa.bool_()
    if b == "FLOAT":
        return pa.float32()
    if b == "DOUBLE":
        return pa.float64()
    if b == "DECIMAL":
        precision, scale = (int(a) for a in p.decimal_digits)
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    if p.is_text:
        return pa.string()
    if p.is_binary or b == "BIT":
        return pa.binary()
    if b == "DATE":
        return pa.date32()
    if b in ("DATETIME", "TIMESTAMP"):
        return pa.timestamp("us")
    if b == "TIME":
        return pa.time64("us")
    if b == "YEAR":
        return pa.int16()
    raise SchemaError(f"no Arrow type for MySQL type {sql_type!r}")


def is_text_type(t: pa.DataType) -> bool:
    """Arrow strings of any layout (string, large_string, string_view)."""
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def is_binary_type(t: pa.DataType) -> bool:
    """Arrow variable-size binaries of any layout (binary, large_binary, binary_view)."""
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t))


def mysql_type_for_arrow(t: pa.DataType, *, max_length: int | None = None) -> str:
    """The MySQL type a column of Arrow type `t` is created with; `max_length` makes strings VARCHAR(n)."""
    if pa.types.is_dictionary(t):
        return mysql_type_for_arrow(t.value_type, max_length=max_length)
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        base = {8: "TINYINT", 16: "SMALLINT", 32: "INT", 64: "BIGINT"}[t.bit_width]
        return base + (" UNSIGNED" if pa.types.is_unsigned_integer(t) else "")
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "FLOAT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        if t.precision > 65:
            raise SchemaError(f"Arrow {t} has more digits than MySQL DECIMAL allows (65)")
        return f"DECIMAL({t.precision},{t.scale})"
    if is_text_type(t):
        return f"VARCHAR({max_length})" if max_length else "TEXT"
    if pa.types.is_fixed_size_binary(t):
        return f"BINARY({t.byte_width})"
    if is_binary_type(t):
        return f"VARBINARY({max_length})" if max_length else "BLOB"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        # MySQL keeps at most microseconds; tz-aware values are stored as their UTC wall time.
        return {"s": "DATETIME", "ms": "DATETIME(3)"}.get(t.unit, "DATETIME(6)")
    if pa.types.is_time(t):
        return {"s": "TIME", "ms": "TIME(3)"}.get(t.unit, "TIME(6)")
    raise SchemaError(f"no MySQL type for Arrow type {t}")


_FELIS_FOR_BASE = {
    "TINYINT": "byte",
    "SMALLINT": "short",
    "MEDIUMINT": "int",
    "INT": "int",
    "BIGINT": "long",
    "BOOLEAN": "boolean",
    "FLOAT": "float",
    "DOUBLE": "double",
    "CHAR": "char",
    "VARCHAR": "string",
    "BINARY": "binary",
    "VARBINARY": "binary",
    "DATETIME": "timestamp",
    "TIMESTAMP": "timestamp",
}


def felis_datatype(sql_type: SqlType) -> str | None:
    """The felis datatype of a MySQL type, where one fits (TEXT → text, BLOB → binary, DATE → none)."""
    if sql_type.is_text and sql_type.base not in ("CHAR", "VARCHAR"):
        return "text"
    if sql_type.is_binary and sql_type.base not in ("BINARY", "VARBINARY"):
        return "binary"
    return _FELIS_FOR_BASE.get(sql_type.base)

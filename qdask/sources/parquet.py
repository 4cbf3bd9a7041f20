"""Parquet files as input: units of row-group ranges at plan time, record batches of bounded size at run time.

A Parquet file larger than a byte budget is split into consecutive row-group ranges (`parquet_units`), so
one task never reads more than about that much; reading (`read_parquet`) streams batches within the unit's
row groups, sized from the columns' uncompressed bytes, and widens values to the schema's types where that
is exact (an overflow is an error, never a silent change).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qdask.schema import TableSchema, check_arrow_schema
from qdask.sources.units import InputUnit, SourceError, row_group_suffix

__all__ = ["open_parquet", "parquet_units", "read_parquet"]


def open_parquet(path: str) -> pq.ParquetFile:
    """The Parquet file at `path`; a missing, truncated or corrupt file is a `SourceError` naming it."""
    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{path}: not a readable Parquet file (truncated or corrupt?): {exc}") from None


def parquet_units(
    path: str, table: str, size: int, max_unit_bytes: int, options: dict[str, Any]
) -> list[InputUnit]:
    """The units of a Parquet file: the whole file, or ranges of consecutive row groups of at most
    `max_unit_bytes` compressed bytes each."""
    base_id = f"file:{path}"
    meta = open_parquet(path).metadata
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


def read_parquet(
    unit: InputUnit,
    path: str,
    schema: TableSchema,
    pairs: list[tuple[str, str]],
    allow_extra: bool,
    batch_bytes: int,
) -> Iterator[pa.RecordBatch]:
    """The unit's row groups as batches of the `pairs` columns, each of about `batch_bytes` or less."""
    pf = open_parquet(path)
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

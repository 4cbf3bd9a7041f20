"""Which rows hold one of a sorted set of integer keys, exactly as int64.

The key check's exclusions (`qdask.stages.keys`) are int64 ids up to 2^63-1, and a key column may hold
NULLs. Going through NumPy (`to_numpy` of a column with NULLs is float64) would turn a NULL into NaN (or
INT64_MIN once cast back) and merge ids more than 2^53 apart by less than a float's step (2^62+100 and
2^62+101 are one double). Every comparison here stays in Arrow int64; a NULL key matches nothing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["in_keys", "without_keys"]


def in_keys(column: pa.Array | pa.ChunkedArray, keys: np.ndarray | pa.Array) -> pa.Array | pa.ChunkedArray:
    """True where the value is one of `keys` (int64); False for any other value and for NULL."""
    value_set = keys.cast(pa.int64()) if isinstance(keys, pa.Array) else pa.array(np.asarray(keys, np.int64))
    return pc.fill_null(pc.is_in(column.cast(pa.int64()), value_set=value_set), False)


def without_keys(data: pa.Table | pa.RecordBatch, column: str, keys: np.ndarray) -> pa.Table | pa.RecordBatch:
    """`data` without the rows whose `column` value is one of `keys` (rows with a NULL key are kept)."""
    return data.filter(pc.invert(in_keys(data.column(column), keys)))

"""Shards past the page cache (`staging.direct_io`): written with O_DIRECT after their first MiB, read back
with O_DIRECT and a segment read ahead, the same rows either way.

Whether a shard's pages are cached is read from the kernel (mincore(2), `page_cache`); each check has its
control, the same shard written and read through the page cache."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from page_cache import cached_bytes

from qdask.direct_io import BUFFER_BYTES
from qdask.stages.shards import DEST, ShardReader, ShardWriter

ROWS = 300_000  # ~19 MB of doubles: ~19 segments


def _write(root, direct: bool):
    rng = np.random.default_rng(3)
    table = pa.table({f"c{i}": rng.normal(size=ROWS) for i in range(8)})
    chunks = rng.integers(100, 140, ROWS)
    writer = ShardWriter(root, "Object", "unit", table.schema, direct_io=direct)
    writer.add(table, chunks, overlap=False)
    [shard] = writer.close("unit")
    return shard, table, chunks


def _expected(table: pa.Table, chunks: np.ndarray, first: int, last: int) -> pa.Table:
    order = np.argsort(chunks, kind="stable")
    keep = order[(chunks[order] >= first) & (chunks[order] <= last)]
    return table.take(pa.array(keep))


def test_a_shard_goes_past_the_page_cache_and_reads_back_whole(tmp_path):
    found = {}
    for direct in (True, False):
        shard, table, chunks = _write(tmp_path / str(direct), direct)
        written = cached_bytes(shard.path)
        with ShardReader(shard, direct) as reader:
            rows = pa.Table.from_batches(list(reader.batches(0, 1 << 40)))
        assert rows.drop_columns([DEST]).equals(_expected(table, chunks, 0, 1 << 40))
        found[direct] = (written, cached_bytes(shard.path), shard.bytes)
    written, after_read, size = found[True]
    assert size > 8 * BUFFER_BYTES
    assert written <= 2 * BUFFER_BYTES and after_read <= 2 * BUFFER_BYTES + 64 * 1024, found
    assert found[False][0] >= found[False][2] and found[False][1] >= found[False][2]  # the control


def test_a_reader_left_mid_shard_reads_again_from_anywhere(tmp_path):
    """A pass abandoned with a segment still being read ahead, then another pass over another range, on
    the same reader: the rows of each range, in order; closing waits for the read in flight."""
    shard, table, chunks = _write(tmp_path, True)
    with ShardReader(shard, True) as reader:
        first = next(iter(reader.batches(2 * 100, 2 * 139 + 1)))  # one batch, then the pass is left
        assert first.num_rows > 0
        again = pa.Table.from_batches(list(reader.batches(2 * 120, 2 * 125)))
        assert again.drop_columns([DEST]).equals(_expected(table, chunks, 120, 125))
        left = reader.batches(2 * 100, 2 * 139 + 1)
        next(left)
    assert reader._ahead is None  # closed with a read in flight: waited for, then dropped
    left.close()

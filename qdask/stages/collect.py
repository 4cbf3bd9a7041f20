"""Collect (reduce) stage: one chunk's shards → the exact contribution file Qserv will load.

One task per (table, chunk, overlap). It re-checks every shard against the checksum recorded when the
shard was written (a shard truncated or altered on disk is refused, so its unit is partitioned again),
then streams the shards' record batches, in unit order, through the TSV encoder. The file is written
atomically with its checksum and row count; the task returns only that metadata.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from qdask.ledger import REGULAR_CHUNK, ChunkFile, ChunkKey, Shard, shards_digest
from qdask.tsv import file_checksum, write_tsv

BATCH_BYTES = 32 << 20


class CorruptShardError(RuntimeError):
    """A shard on disk no longer matches its recorded checksum (or is gone); its unit must be redone."""

    def __init__(self, shard: Shard, found: str):
        self.shard = shard
        super().__init__(
            f"shard {shard.path} of unit {shard.unit_id} is {found}; its unit will be partitioned again"
        )


def contribution_path(root: Path, key: ChunkKey) -> Path:
    """Where the contribution file of a (table, chunk, overlap) lives: `chunk_N.txt` as Qserv names them."""
    if key.chunk_id == REGULAR_CHUNK:
        return Path(root) / key.table / f"{key.table}.txt"
    return Path(root) / key.table / f"chunk_{key.chunk_id}{'_overlap' if key.overlap else ''}.txt"


def verify_shard(shard: Shard) -> None:
    """Raise `CorruptShardError` unless the shard file exists with its recorded checksum."""
    path = Path(shard.path)
    if not path.is_file():
        raise CorruptShardError(shard, "missing")
    if path.stat().st_size != shard.bytes or file_checksum(path) != shard.checksum:
        raise CorruptShardError(shard, "altered (size or checksum differs from the ledger)")


def _shard_batches(shards: Sequence[Shard], columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    for shard in shards:
        parquet = pq.ParquetFile(shard.path)
        meta = parquet.metadata
        data_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        width = max(data_bytes // max(meta.num_rows, 1), 8 * len(columns))  # uncompressed bytes per row
        rows = max(256, min(1 << 20, BATCH_BYTES // width))
        yield from parquet.iter_batches(batch_size=rows, columns=list(columns), use_threads=False)


@dataclass(frozen=True)
class CollectTask:
    """One collect task's input: the destination, its shards (as recorded), columns and charset."""

    key: ChunkKey
    shards: tuple[Shard, ...]
    columns: tuple[str, ...]
    charset: str
    exclude_column: str | None = None  # rows whose value is in `exclude_path` (sorted .npy) are left out
    exclude_path: str | None = None
    quarantine_path: str | None = None  # ... and written here (Parquet)


def _without_excluded(batches, task: CollectTask, excluded: list[int]):
    """The batches minus the rows the key check excluded, which go to the quarantine file instead."""
    import numpy as np
    import pyarrow.compute as pc

    keys = pa.array(np.load(task.exclude_path), pa.int64())
    writer = None
    try:
        for batch in batches:
            bad = pc.is_in(batch.column(task.exclude_column).cast(pa.int64()), value_set=keys)
            if pc.any(bad).as_py():
                if writer is None:
                    Path(task.quarantine_path).parent.mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(task.quarantine_path + ".tmp", batch.schema)
                writer.write_batch(batch.filter(bad))
                excluded[0] += pc.sum(bad.cast(pa.int64())).as_py()
                batch = batch.filter(pc.invert(bad))
            yield batch
    finally:
        if writer is not None:
            writer.close()
            Path(task.quarantine_path + ".tmp").replace(task.quarantine_path)


class Collected(NamedTuple):
    """A collected contribution file, and how many NaN/±inf values per column it holds as NULL."""

    file: ChunkFile
    nan_to_null: dict[str, int]


def collect_chunk(task: CollectTask, root: Path) -> Collected:
    """Merge a destination's shards into its contribution file; the pure worker function of the stage."""
    shards = sorted(task.shards, key=lambda s: s.unit_id)
    for shard in shards:
        verify_shard(shard)
    path = contribution_path(root, task.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    batches = _shard_batches(shards, task.columns)
    excluded = [0]
    if task.exclude_path is not None:
        batches = _without_excluded(batches, task, excluded)
    info = write_tsv(batches, path, columns=task.columns, charset=task.charset)
    expected = sum(s.rows for s in shards) - excluded[0]
    if info.rows != expected:
        raise RuntimeError(f"{path}: wrote {info.rows} rows but its shards hold {expected}")
    file = ChunkFile(
        table=task.key.table,
        chunk_id=task.key.chunk_id,
        overlap=task.key.overlap,
        path=str(path),
        rows=info.rows,
        bytes=info.bytes,
        checksum=info.checksum,
        sources=shards_digest(shards),
    )
    return Collected(file, dict(info.nan_to_null))

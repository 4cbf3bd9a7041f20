"""Collect (reduce) stage: one chunk's shards → the exact contribution file Qserv will load.

One task per (table, chunk, overlap). It re-checks every shard against the checksum recorded when the
shard was written (a shard truncated or altered on disk is refused, so its unit is partitioned again),
then streams the shards' record batches, in unit order, through the TSV encoder, leaving out the rows
whose key the key check excluded (they go to a quarantine file). The file is written atomically with its
checksum and row count; the task returns only that metadata.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qdask import faultpoints
from qdask.ledger import REGULAR_CHUNK, ChunkFile, ChunkKey, Shard, shards_digest
from qdask.stages.key_match import in_keys
from qdask.stages.staging_errors import staging_writes
from qdask.tsv import file_checksum, write_tsv

log = logging.getLogger(__name__)

BATCH_BYTES = 32 << 20


class CorruptShardError(RuntimeError):
    """A shard on disk no longer matches its recorded checksum (or is gone); its unit must be redone."""

    def __init__(self, shard: Shard, found: str):
        self.shard, self.found = shard, found
        super().__init__(
            f"shard {shard.path} of unit {shard.unit_id} is {found}; its unit will be partitioned again"
        )

    def __reduce__(self):  # raised on a Dask worker, re-raised in the driver: keep the shard
        return (type(self), (self.shard, self.found))


def key_text(key: ChunkKey) -> str:
    """A destination as one word, for task names, fault points and messages: `Object-1234-overlap`."""
    return f"{key.table}-{key.chunk_id}{'-overlap' if key.overlap else ''}"


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
class Exclusion:
    """Rows to leave out of a contribution file: those whose `column` value is in the sorted keys at
    `keys_path` (.npy); they are written to `quarantine_path` (Parquet) instead."""

    column: str
    keys_path: str
    quarantine_path: str


@dataclass(frozen=True)
class CollectTask:
    """One collect task's input: the destination, its shards (as recorded), columns and charset."""

    key: ChunkKey
    shards: tuple[Shard, ...]
    columns: tuple[str, ...]
    charset: str
    exclusion: Exclusion | None = None


def excluded_rows_path(quarantine_root: Path, key: ChunkKey) -> Path:
    """Where the rows the key check left out of a destination are written."""
    overlap = "_overlap" if key.overlap else ""
    return Path(quarantine_root) / key.table / f"chunk_{key.chunk_id}{overlap}.excluded.parquet"


def collect_task_for(
    key: ChunkKey,
    shards: Iterable[Shard],
    columns: Sequence[str],
    charset: str,
    *,
    exclusion_keys: Path | None = None,
    exclusion_column: str | None = None,
    quarantine_root: Path | None = None,
) -> CollectTask:
    """The collect task of a destination; with an existing `exclusion_keys` file (the key check's, see
    `qdask.stages.keys`), rows whose `exclusion_column` value it holds go to the quarantine instead."""
    exclusion = None
    if exclusion_keys is not None and Path(exclusion_keys).is_file():
        if exclusion_column is None or quarantine_root is None:
            raise ValueError(f"{key_text(key)}: an exclusion needs its column and a quarantine directory")
        exclusion = Exclusion(
            exclusion_column, str(exclusion_keys), str(excluded_rows_path(quarantine_root, key))
        )
    return CollectTask(key, tuple(shards), tuple(columns), charset, exclusion)


def _without_excluded(
    batches: Iterable[pa.RecordBatch], exclusion: Exclusion, excluded: list[int]
) -> Iterator[pa.RecordBatch]:
    """The batches minus the rows the key check excluded, which go to the quarantine file instead.
    A NULL key is never excluded (NULL is no key)."""
    keys = np.load(exclusion.keys_path)
    target = Path(exclusion.quarantine_path)
    tmp = target.with_name(target.name + ".tmp")
    writer = None
    try:
        for batch in batches:
            bad = in_keys(batch.column(exclusion.column), keys)
            if pc.any(bad).as_py():
                if writer is None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(tmp, batch.schema)
                writer.write_batch(batch.filter(bad))
                excluded[0] += pc.sum(bad.cast(pa.int64())).as_py()
                batch = batch.filter(pc.invert(bad))
            yield batch
    finally:
        if writer is not None:
            writer.close()
            tmp.replace(target)


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
    if task.exclusion is not None:
        batches = _without_excluded(batches, task.exclusion, excluded)
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


def collect_task(task: CollectTask, contrib_root: str) -> Collected:
    """The collect stage for one (table, chunk, overlap) (runs on a Dask worker)."""
    t0 = time.perf_counter()
    with staging_writes(Path(contrib_root).parent):
        faultpoints.reached("collect.task", key_text(task.key))
        collected = collect_chunk(task, Path(contrib_root))
    log.debug(
        "%s: %d row(s) from %d shard(s) in %.2f s",
        key_text(task.key), collected.file.rows, len(task.shards), time.perf_counter() - t0,
    )
    return collected

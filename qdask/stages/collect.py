"""Collect (reduce) stage: destinations' rows in the units' shards → the exact contribution files Qserv loads.

One task per *group* of consecutive destinations (table, chunk, overlap) of one table, sized by
`plan_collect` to hold at most ``GROUP_BYTES`` of shard data or ``GROUP_KEYS`` destinations (a
destination larger than that is a group by itself and is streamed), so an all-sky catalog of ~300k
destinations is a few hundred tasks, not ~300k tasks of ~10 ms overhead each. The task opens each unit's
shard file in turn (one file open at a time), reads only the segments holding the group's destinations,
checking each against the checksum recorded when it was written (a shard gone, truncated or altered is
refused, so its unit is partitioned again), then writes each destination's file from its rows, in unit
order, through the TSV encoder, leaving out the rows whose key the key check excluded (they go to a
quarantine file). Each file is written atomically with its checksum and row count; the task returns only
that metadata.
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
from qdask.ledger import REGULAR_CHUNK, ChunkFile, ChunkKey, Shard, dest_of, shards_digest
from qdask.stages.key_match import in_keys
from qdask.stages.shards import DEST, CorruptShardError, ShardReader
from qdask.stages.staging_errors import staging_writes
from qdask.tsv import sync_filesystem, write_tsv

__all__ = ["CorruptShardError"]  # raised here, defined with the shards

log = logging.getLogger(__name__)

GROUP_BYTES = 64 << 20  # shard bytes one collect task holds at most (a larger destination is streamed)
GROUP_KEYS = 1024  # destinations one collect task writes at most


def key_text(key: ChunkKey) -> str:
    """A destination as one word, for task names, fault points and messages: `Object-1234-overlap`."""
    return f"{key.table}-{key.chunk_id}{'-overlap' if key.overlap else ''}"


def contribution_path(root: Path, key: ChunkKey) -> Path:
    """Where the contribution file of a (table, chunk, overlap) lives: `chunk_N.txt` as Qserv names them."""
    if key.chunk_id == REGULAR_CHUNK:
        return Path(root) / key.table / f"{key.table}.txt"
    return Path(root) / key.table / f"chunk_{key.chunk_id}{'_overlap' if key.overlap else ''}.txt"


@dataclass(frozen=True)
class Exclusion:
    """Rows to leave out of the contribution files: those whose `column` value is in the sorted keys at
    `keys_path` (.npy); they are written under `quarantine_root` (`excluded_rows_path`) instead."""

    column: str
    keys_path: str
    quarantine_root: str


@dataclass(frozen=True)
class CollectTask:
    """One collect task's input: its destinations (one table, in order), the shards holding their rows
    (as recorded), columns and charset."""

    keys: tuple[ChunkKey, ...]
    shards: tuple[Shard, ...]
    columns: tuple[str, ...]
    charset: str
    exclusion: Exclusion | None = None

    @property
    def name(self) -> str:
        """The task's destinations as one word: the first, and how many more."""
        more = f"+{len(self.keys) - 1}" if len(self.keys) > 1 else ""
        return key_text(self.keys[0]) + more if self.keys else "nothing"


def excluded_rows_path(quarantine_root: Path | str, key: ChunkKey) -> Path:
    """Where the rows the key check left out of a destination are written."""
    overlap = "_overlap" if key.overlap else ""
    return Path(quarantine_root) / key.table / f"chunk_{key.chunk_id}{overlap}.excluded.parquet"


def collect_task_for(
    keys: Sequence[ChunkKey],
    shards: Iterable[Shard],
    columns: Sequence[str],
    charset: str,
    *,
    exclusion_keys: Path | None = None,
    exclusion_column: str | None = None,
    quarantine_root: Path | None = None,
) -> CollectTask:
    """The collect task of some destinations of one table; with an existing `exclusion_keys` file (the key
    check's, see `qdask.stages.keys`), rows whose `exclusion_column` value it holds go to the quarantine
    instead."""
    keys = tuple(sorted(keys, key=lambda k: (k.chunk_id, k.overlap)))
    if len({k.table for k in keys}) > 1:
        raise ValueError("a collect task writes destinations of one table")
    exclusion = None
    if exclusion_keys is not None and Path(exclusion_keys).is_file():
        if exclusion_column is None or quarantine_root is None:
            raise ValueError(f"{keys[0].table}: an exclusion needs its column and a quarantine directory")
        exclusion = Exclusion(exclusion_column, str(exclusion_keys), str(quarantine_root))
    wanted = dest_of([k.chunk_id for k in keys], [k.overlap for k in keys])
    held = tuple(
        sorted((s for s in shards if np.isin(s.dests()["dest"], wanted).any()), key=lambda s: s.unit_id)
    )
    return CollectTask(keys, held, tuple(columns), charset, exclusion)


def plan_collect(
    keys: Sequence[ChunkKey],
    shards: Sequence[Shard],
    *,
    group_bytes: int = GROUP_BYTES,
    group_keys: int = GROUP_KEYS,
) -> list[tuple[list[ChunkKey], list[Shard]]]:
    """Group destinations into collect tasks: consecutive ones of a table, up to `group_bytes` of shard
    data (estimated from each shard's bytes per row) and `group_keys` destinations; with each group, the
    shards holding its rows. Linear in the shards' destinations (no shard x destination product)."""
    out: list[tuple[list[ChunkKey], list[Shard]]] = []
    for table in sorted({k.table for k in keys}):
        ordered = sorted((k for k in keys if k.table == table), key=lambda k: (k.chunk_id, k.overlap))
        wanted = dest_of([k.chunk_id for k in ordered], [k.overlap for k in ordered])
        size = np.zeros(len(ordered))
        placed = []
        for shard in (s for s in shards if s.table == table):
            dests = shard.dests()
            at = np.minimum(np.searchsorted(wanted, dests["dest"]), max(len(wanted) - 1, 0))
            hit = wanted[at] == dests["dest"] if len(wanted) else np.zeros(len(dests), bool)
            np.add.at(size, at[hit], dests["rows"][hit] * (shard.bytes / max(shard.rows, 1)))
            placed.append((shard, at[hit]))
        group = np.zeros(len(ordered), np.int64)
        current = count = 0
        total = 0.0
        for i, bytes_ in enumerate(size.tolist()):
            if count and (count >= group_keys or total + bytes_ > group_bytes):
                current, total, count = current + 1, 0.0, 0
            group[i], total, count = current, total + bytes_, count + 1
        groups: list[tuple[list[ChunkKey], list[Shard]]] = [
            ([], []) for _ in range(current + 1 if ordered else 0)
        ]
        for i, key in enumerate(ordered):
            groups[group[i]][0].append(key)
        for shard, positions in placed:
            for g in np.unique(group[positions]).tolist():
                groups[g][1].append(shard)
        out += groups
    return out


def _without_excluded(
    batches: Iterable[pa.RecordBatch], exclusion: Exclusion, keys: pa.Array, target: Path, excluded: list[int]
) -> Iterator[pa.RecordBatch]:
    """The batches minus the rows the key check excluded, which go to the quarantine file `target` instead.
    A NULL key is never excluded (NULL is no key)."""
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


def _held(reader: ShardReader, first: int, last: int, columns: list[str]) -> list[pa.RecordBatch]:
    """A shard's rows for destinations [first, last], copied out of their segments when only a small part
    of one is wanted (so a task holds its group's rows, not every segment they touch)."""
    out = []
    for piece in reader.batches(first, last, columns):
        small = piece.get_total_buffer_size() > 2 * piece.nbytes
        out.append(piece.take(pa.array(np.arange(piece.num_rows))) if small else piece)
    return out


def _streamed(shards: Sequence[Shard], dest: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """One destination's rows, shard by shard in unit order, segment by segment: nothing held."""
    for shard in shards:
        with ShardReader(shard) as reader:
            yield from reader.batches(dest, dest, columns)


def _split(held: Sequence[Sequence[pa.RecordBatch]], dest: int) -> Iterator[pa.RecordBatch]:
    """The rows of `dest` among held pieces (per shard, in unit order; each piece sorted by `_dest`)."""
    for pieces in held:
        for piece in pieces:
            dests = piece.column(DEST).to_numpy()
            lo, hi = np.searchsorted(dests, [dest, dest + 1])
            if hi > lo:
                yield piece.slice(int(lo), int(hi - lo))


def collect_chunks(task: CollectTask, root: Path) -> list[Collected]:
    """Write the contribution files of a task's destinations; the pure worker function of the stage."""
    if not task.keys:
        return []
    columns = list(task.columns)
    dests = dest_of([k.chunk_id for k in task.keys], [k.overlap for k in task.keys]).tolist()
    held: list[list[pa.RecordBatch]] = []
    if len(task.keys) > 1:  # a group of small destinations: read each shard once, keep the group's rows
        for shard in task.shards:
            with ShardReader(shard) as reader:
                held.append(_held(reader, dests[0], dests[-1], columns))
    exclusion_keys = (
        pa.array(np.load(task.exclusion.keys_path), pa.int64()) if task.exclusion is not None else None
    )
    out = []
    for key, dest in zip(task.keys, dests, strict=True):
        faultpoints.reached("collect.task", key_text(key))
        sources = [s for s in task.shards if s.rows_in(key)]
        batches = _streamed(sources, dest, columns) if len(task.keys) == 1 else _split(held, dest)
        excluded = [0]
        if task.exclusion is not None and exclusion_keys is not None:
            target = excluded_rows_path(task.exclusion.quarantine_root, key)
            batches = _without_excluded(batches, task.exclusion, exclusion_keys, target, excluded)
        path = contribution_path(root, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = write_tsv(batches, path, columns=columns, charset=task.charset, durable=False)
        expected = sum(s.rows_in(key) for s in sources) - excluded[0]
        if info.rows != expected:
            raise RuntimeError(f"{path}: wrote {info.rows} rows but its shards hold {expected}")
        file = ChunkFile(
            table=key.table,
            chunk_id=key.chunk_id,
            overlap=key.overlap,
            path=str(path),
            rows=info.rows,
            bytes=info.bytes,
            checksum=info.checksum,
            sources=shards_digest(sources),
        )
        out.append(Collected(file, dict(info.nan_to_null)))
    sync_filesystem([c.file.path for c in out])  # durable before the driver records any of them
    return out


def collect_task(task: CollectTask, contrib_root: str) -> list[Collected]:
    """The collect stage for a group of destinations (runs on a Dask worker)."""
    t0 = time.perf_counter()
    with staging_writes(Path(contrib_root).parent):
        collected = collect_chunks(task, Path(contrib_root))
    log.debug(
        "%s: %d file(s), %d row(s) from %d shard(s) in %.2f s",
        task.name,
        len(collected),
        sum(c.file.rows for c in collected),
        len(task.shards),
        time.perf_counter() - t0,
    )
    return collected

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
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from qdask.tsv import TextFile, TsvFileInfo, encode_batch, sync_filesystem, write_tsv

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
    keys = tuple(sorted(set(keys), key=lambda k: (k.chunk_id, k.overlap)))  # each destination once
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
        ordered = sorted({k for k in keys if k.table == table}, key=lambda k: (k.chunk_id, k.overlap))
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


def _collected(key: ChunkKey, info: TsvFileInfo, sources: Sequence[Shard], expected: int) -> Collected:
    """The record of one written file, once its rows are checked against what its shards hold."""
    if info.rows != expected:
        raise RuntimeError(f"{info.path}: wrote {info.rows} rows but its shards hold {expected}")
    file = ChunkFile(
        table=key.table,
        chunk_id=key.chunk_id,
        overlap=key.overlap,
        path=str(info.path),
        rows=info.rows,
        bytes=info.bytes,
        checksum=info.checksum,
        sources=shards_digest(sources),
    )
    return Collected(file, dict(info.nan_to_null))


def _collect_one(task: CollectTask, root: Path) -> Collected:
    """A destination of its own (a large one): its rows streamed segment by segment, nothing held."""
    [key] = task.keys
    faultpoints.reached("collect.task", key_text(key))
    dest = int(dest_of(key.chunk_id, key.overlap))
    sources = [s for s in task.shards if s.rows_in(key)]
    batches = _streamed(sources, dest, list(task.columns))
    excluded = [0]
    if task.exclusion is not None:
        keys = pa.array(np.load(task.exclusion.keys_path), pa.int64())
        target = excluded_rows_path(task.exclusion.quarantine_root, key)
        batches = _without_excluded(batches, task.exclusion, keys, target, excluded)
    path = contribution_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = write_tsv(batches, path, columns=task.columns, charset=task.charset, durable=False)
    return _collected(key, info, sources, sum(s.rows_in(key) for s in sources) - excluded[0])


def _group_rows(task: CollectTask, dests: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """The group's rows from every shard (each read once), ordered by destination, then unit, then input
    order (the order a destination's file lists them in), with their destinations."""
    pieces = []
    for shard in task.shards:
        with ShardReader(shard) as reader:
            held = _held(reader, int(dests[0]), int(dests[-1]), list(task.columns))
            pieces += [p.replace_schema_metadata(None) for p in held]
    if not pieces:
        return pa.table({c: [] for c in [*task.columns, DEST]}), np.empty(0, np.int64)
    table = pa.Table.from_batches(pieces)
    found = table.column(DEST).to_numpy()
    order = np.argsort(found, kind="stable")
    order = order[np.isin(found[order], dests)]  # rows of destinations collected earlier are left out
    return table.take(pa.array(order)), found[order]


def _exclude(task: CollectTask, table: pa.Table, found: np.ndarray) -> tuple[pa.Table, np.ndarray, dict]:
    """The group's rows minus those the key check excluded (written, per destination, to the quarantine);
    with how many each destination lost."""
    if task.exclusion is None or table.num_rows == 0:
        return table, found, {}
    keys = pa.array(np.load(task.exclusion.keys_path), pa.int64())
    column = table.column(task.exclusion.column).cast(pa.int64())
    bad = pc.fill_null(pc.is_in(column, value_set=keys), False).to_numpy(zero_copy_only=False)
    lost: dict[int, int] = {}
    for dest in np.unique(found[bad]).tolist():
        rows = bad & (found == dest)
        key = ChunkKey(task.keys[0].table, dest >> 1, bool(dest & 1))
        target = excluded_rows_path(task.exclusion.quarantine_root, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pa.array(rows)).drop_columns([DEST]), target)
        lost[dest] = int(rows.sum())
    return table.filter(pa.array(~bad)), found[~bad], lost


def _collect_group(task: CollectTask, root: Path) -> list[Collected]:
    """Small destinations together: their rows read once, encoded as one stream (home rows, then overlap
    rows), and the text cut into each destination's file at line ends (one line per row): the encoder's
    fixed cost is paid per group, not per chunk. One file open at a time."""
    dests = dest_of([k.chunk_id for k in task.keys], [k.overlap for k in task.keys])
    table, found, lost = _exclude(task, *_group_rows(task, dests))
    sources: dict[int, list[Shard]] = {d: [] for d in dests.tolist()}
    expected = {d: -lost.get(d, 0) for d in dests.tolist()}
    for shard in task.shards:  # in unit order; one pass per shard, not one look-up per file
        held = shard.dests()
        at = np.minimum(np.searchsorted(held["dest"], dests), len(held) - 1)
        hit = held["dest"][at] == dests
        for dest, rows in zip(dests[hit].tolist(), held["rows"][at[hit]].tolist(), strict=True):
            sources[dest].append(shard)
            expected[dest] += rows
    contribution_path(root, task.keys[0]).parent.mkdir(parents=True, exist_ok=True)
    out: dict[int, Collected] = {}
    for overlap in (0, 1):
        mine = [int(d) for d in dests.tolist() if d & 1 == overlap]
        if mine:
            rows = (found & 1) == overlap
            ends = np.searchsorted(found[rows], mine, side="right").tolist()
            part = table.filter(pa.array(rows)).combine_chunks()  # batches as large as allowed, not as read
            written = _write_part(task, root, part, mine, ends, lambda d: (sources[d], expected[d]))
            out.update(zip(mine, written, strict=True))
    return [out[int(d)] for d in dests.tolist()]


def _key(task: CollectTask, dest: int) -> ChunkKey:
    return ChunkKey(task.keys[0].table, dest >> 1, bool(dest & 1))


def _write_part(
    task: CollectTask,
    root: Path,
    part: pa.Table,
    dests: list[int],
    ends: list[int],
    held: Callable[[int], tuple[list[Shard], int]],
) -> list[Collected]:
    """Encode `part` (rows ordered by destination; `ends[k]` = rows up to the end of `dests[k]`) once and
    write each destination's lines to its file; NaN/inf→NULL counts go with the first file."""
    counts: dict[str, int] = {}
    out: list[Collected] = []
    k = row = written = 0  # the file being written, rows encoded so far, rows in that file
    current: TextFile | None = None
    try:
        for batch in part.to_batches(max_chunksize=1 << 16):
            for view in encode_batch(
                batch, columns=task.columns, charset=task.charset, first_row=row, nan_to_null=counts
            ):
                lines = np.flatnonzero(np.frombuffer(view, np.uint8) == 10)  # each row ends its line
                at = start = 0
                while at < len(lines):
                    while ends[k] <= row:  # files complete (or empty) before this row
                        out.append(_finish(task, root, dests[k], current, written, held))
                        current, written, k = None, 0, k + 1
                    take = min(ends[k] - row, len(lines) - at)
                    stop = int(lines[at + take - 1]) + 1
                    if current is None:
                        current = _open(task, root, _key(task, dests[k]))
                    current.write(view[start:stop])
                    start, at, row, written = stop, at + take, row + take, written + take
        while k < len(dests):  # the last file, and any empty ones after it
            out.append(_finish(task, root, dests[k], current, written, held))
            current, written, k = None, 0, k + 1
    except BaseException:
        if current is not None:
            current.discard()
        raise
    out[0] = out[0]._replace(nan_to_null=dict(counts))
    return out


def _finish(
    task: CollectTask,
    root: Path,
    dest: int,
    current: TextFile | None,
    rows: int,
    held: Callable[[int], tuple[list[Shard], int]],
) -> Collected:
    key = _key(task, dest)
    info = (current if current is not None else _open(task, root, key)).commit(rows)
    return _collected(key, info, *held(dest))


def _open(task: CollectTask, root: Path, key: ChunkKey) -> TextFile:
    faultpoints.reached("collect.task", key_text(key))
    return TextFile(contribution_path(root, key), charset=task.charset, durable=False)


def collect_chunks(task: CollectTask, root: Path) -> list[Collected]:
    """Write the contribution files of a task's destinations; the pure worker function of the stage."""
    if not task.keys:
        return []
    out = [_collect_one(task, root)] if len(task.keys) == 1 else _collect_group(task, root)
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

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
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qdask import faultpoints
from qdask.checksums import formatted, new_digest
from qdask.direct_io import DirectWriter
from qdask.ledger import REGULAR_CHUNK, ChunkFile, ChunkKey, Shard, dest_of, shards_digest
from qdask.stages.key_match import in_keys
from qdask.stages.shards import DEST, CorruptShardError, ShardReader, reordered, restricted
from qdask.stages.staging_errors import staging_writes
from qdask.tsv import TsvFileInfo, encode_lines, sync_filesystem, write_tsv

__all__ = ["CorruptShardError"]  # raised here, defined with the shards

log = logging.getLogger(__name__)

GROUP_BYTES = 64 << 20  # shard bytes one collect task holds at most (a larger destination is streamed)
GROUP_KEYS = 8192  # destinations one collect task writes at most: its files are synced at once (one syncfs)
MIN_GROUP_KEYS = 256  # destinations a task is given at least, when groups are made smaller to spread them


def key_text(key: ChunkKey) -> str:
    """A destination as one word, for task names, fault points and messages: `Object-1234-overlap`."""
    return f"{key.table}-{key.chunk_id}{'-overlap' if key.overlap else ''}"


def contribution_path(root: Path, key: ChunkKey) -> Path:
    """Where the contribution file of a (table, chunk, overlap) lives: `chunk_N.txt` as Qserv names them."""
    return Path(root) / key.table / contribution_name(key)


def contribution_name(key: ChunkKey) -> str:
    """The contribution file's name in its table's directory (`contribution_path`)."""
    if key.chunk_id == REGULAR_CHUNK:
        return f"{key.table}.txt"
    return f"chunk_{key.chunk_id}{'_overlap' if key.overlap else ''}.txt"


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
    (as recorded, but each with only its index entries for these destinations: `restricted`, so that a
    task's size follows its own destinations, not the shards' sky spread), columns and charset."""

    keys: tuple[ChunkKey, ...]
    shards: tuple[Shard, ...]
    columns: tuple[str, ...]
    charset: str
    exclusion: Exclusion | None = None
    direct_io: bool = True  # `staging.direct_io`: large files written past the page cache (`qdask.direct_io`)

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
    direct_io: bool = True,
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
    trimmed = (restricted(s, wanted) for s in shards)  # each shard as much as this task reads of it
    held = tuple(sorted((s for s in trimmed if s is not None), key=lambda s: s.unit_id))
    return CollectTask(keys, held, tuple(columns), charset, exclusion, direct_io)


def plan_collect(
    keys: Sequence[ChunkKey],
    shards: Sequence[Shard],
    *,
    group_bytes: int = GROUP_BYTES,
    group_keys: int = GROUP_KEYS,
    spread: int = 1,
) -> list[tuple[list[ChunkKey], list[Shard]]]:
    """Group destinations into collect tasks: consecutive ones of a table, up to `group_bytes` of shard
    data (estimated from each shard's bytes per row) and `group_keys` destinations; with each group, the
    shards holding its rows. Linear in the shards' destinations (no shard x destination product).
    `spread`: make at least this many groups (one per worker thread, say) when there are enough
    destinations for `MIN_GROUP_KEYS` each, so that a few large groups do not leave workers idle."""
    if spread > 1:
        even = -(-len(set(keys)) // spread)
        group_keys = max(1, min(group_keys, max(MIN_GROUP_KEYS, even)))
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


def _streamed(
    shards: Sequence[Shard], dest: int, columns: list[str], direct: bool
) -> Iterator[pa.RecordBatch]:
    """One destination's rows, shard by shard in unit order, segment by segment: nothing held."""
    for shard in shards:
        with ShardReader(shard, direct) as reader:
            yield from reader.batches(dest, dest, columns)


def _collected(key: ChunkKey, info: TsvFileInfo, sources: Sequence[Shard], expected: int) -> Collected:
    """The record of one written file, once its rows are checked against what its shards hold."""
    out = _record(key, str(info.path), info.rows, info.bytes, info.checksum, shards_digest(sources), expected)
    return out._replace(nan_to_null=dict(info.nan_to_null))


def _record(
    key: ChunkKey, path: str, rows: int, size: int, checksum: str, sources: str, expected: int
) -> Collected:
    """The record of one written file (`sources`: its shards' digest), once its rows are checked against
    what its shards hold."""
    if rows != expected:
        raise RuntimeError(f"{path}: wrote {rows} rows but its shards hold {expected}")
    file = ChunkFile(key.table, key.chunk_id, key.overlap, path, rows, size, checksum, sources)
    return Collected(file, {})


def _collect_one(task: CollectTask, root: Path) -> Collected:
    """A destination of its own (a large one): its rows streamed segment by segment, nothing held."""
    [key] = task.keys
    faultpoints.reached("collect.task", key_text(key))
    dest = int(dest_of(key.chunk_id, key.overlap))
    sources = [s for s in task.shards if s.rows_in(key)]
    batches = _streamed(sources, dest, list(task.columns), task.direct_io)
    excluded = [0]
    if task.exclusion is not None:
        keys = pa.array(np.load(task.exclusion.keys_path), pa.int64())
        target = excluded_rows_path(task.exclusion.quarantine_root, key)
        batches = _without_excluded(batches, task.exclusion, keys, target, excluded)
    path = contribution_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = write_tsv(
        batches, path, columns=task.columns, charset=task.charset, durable=False, direct_io=task.direct_io
    )
    return _collected(key, info, sources, sum(s.rows_in(key) for s in sources) - excluded[0])


def _home_first(dests: np.ndarray) -> np.ndarray:
    """A sort key for destinations: every home destination (by chunk) before every overlap one."""
    dests = np.asarray(dests, np.int64)
    return ((dests & 1) << 32) | (dests >> 1)


def _group_rows(task: CollectTask, dests: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """The group's rows from every shard (each read once), with their destinations: home rows first, then
    overlap rows, each ordered by destination, then unit, then input order (the order a destination's file
    lists them in). Gathered once, so each kind of row is a slice of the result, not a copy."""
    pieces = []
    for shard in task.shards:
        with ShardReader(shard, task.direct_io) as reader:
            held = _held(reader, int(dests[0]), int(dests[-1]), list(task.columns))
            pieces += [p.replace_schema_metadata(None) for p in held]
    if not pieces:
        return pa.table({c: [] for c in [*task.columns, DEST]}), np.empty(0, np.int64)
    table = pa.Table.from_batches(pieces)
    found = table.column(DEST).to_numpy()
    order = np.argsort(_home_first(found), kind="stable")
    order = order[np.isin(found[order], dests)]  # rows of destinations collected earlier are left out
    return reordered(table, order), found[order]


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
    at_dest = {d: i for i, d in enumerate(dests.tolist())}
    expected = np.array([-lost.get(d, 0) for d in dests.tolist()], np.int64)
    holders: list[list[int]] = [[] for _ in at_dest]  # the shards holding each destination, by index
    for s, shard in enumerate(task.shards):  # in unit order; one pass per shard, not one look-up per file
        held = shard.dests()
        at = np.minimum(np.searchsorted(held["dest"], dests), len(held) - 1)
        hit = held["dest"][at] == dests
        expected[hit] += held["rows"][at[hit]]
        for i in np.flatnonzero(hit).tolist():
            holders[i].append(s)
    digests: dict[tuple[int, ...], str] = {}  # most destinations of a group share their set of shards

    def digest(dest: int) -> tuple[str, int]:
        i = at_dest[dest]
        key = tuple(holders[i])
        if key not in digests:
            digests[key] = shards_digest(task.shards[s] for s in key)
        return digests[key], int(expected[i])

    out: dict[int, Collected] = {}
    home = int(np.count_nonzero((found & 1) == 0))  # home rows come first (`_group_rows`)
    for overlap, rows in ((0, slice(0, home)), (1, slice(home, len(found)))):
        mine = [int(d) for d in dests.tolist() if d & 1 == overlap]
        if mine:
            ends = np.searchsorted(found[rows], mine, side="right").tolist()
            part = table.slice(rows.start, rows.stop - rows.start)
            written = _write_part(task, root, part, mine, ends, digest)
            out.update(zip(mine, written, strict=True))
    return [out[int(d)] for d in dests.tolist()]


class _Files:
    """Writes a group's contribution files, one after another, in one directory with few system calls:
    each one created under a temporary name (`.<name>.tmp-<pid>-<token>`, as `write_tsv` names them),
    written piece by piece as the encoder yields its text (hashed as written; no copy kept), closed and
    renamed into place, all relative to one open directory (no path walk, no Python file object). A killed
    process leaves at most a temporary file, never a partial contribution; `close` removes the file being
    written, if any. Not synced: the caller makes the group durable at once (`sync_filesystem`) before any
    file is recorded."""

    FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)

    def __init__(self, directory: Path, direct_io: bool = True):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = str(directory)
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.fd = os.open(directory, os.O_RDONLY)
        self.name: str | None = None  # the file being written
        self.out = -1
        self.digest = new_digest()
        self.size = 0
        self.writer = DirectWriter(direct_io)  # past the page cache once a file outgrows its buffer

    def _tmp(self, name: str) -> str:
        return f".{name}.tmp-{self.token}"

    def add(self, name: str, piece: bytes | memoryview) -> None:
        """Append `piece` to file `name` (started by its first piece)."""
        if self.name is None:
            try:
                self.out = os.open(self._tmp(name), self.FLAGS, 0o644, dir_fd=self.fd)
            except OSError as exc:  # named in full, as a path-walking open would
                raise OSError(exc.errno, exc.strerror, f"{self.directory}/{self._tmp(name)}") from None
            self.name, self.digest, self.size = name, new_digest(), 0
            self.writer.begin(self.out)
        elif self.name != name:
            raise RuntimeError(f"{name} added while {self.name} is being written")
        self.digest.update(piece)
        self.size += len(piece)
        self.writer.write(piece)

    def finish(self, name: str) -> tuple[str, int, str]:
        """Close file `name` and rename it into place (an empty file if nothing was added); (path, bytes,
        checksum)."""
        if self.name is None:
            self.add(name, b"")
        self.writer.end()
        os.close(self.out)
        self.name = None
        os.rename(self._tmp(name), name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        return f"{self.directory}/{name}", self.size, formatted(self.digest)

    def close(self) -> None:
        self.writer.close()  # first: no write in flight on a descriptor closed below
        if self.name is not None:  # stopped mid-file: leave no temporary file behind
            os.close(self.out)
            os.unlink(self._tmp(self.name), dir_fd=self.fd)
            self.name = None
        os.close(self.fd)


SOLO_ROWS = 4096  # a destination with at least this many rows is encoded in slices of its own rows
STEP_ROWS = 1 << 16  # rows given to the encoder at once (it slices them further by their text's size)


def _slices(ends: list[int]) -> Iterator[tuple[int, int]]:
    """Row ranges of at most STEP_ROWS rows that never cross the start or end of a destination holding
    SOLO_ROWS rows or more (`ends[k]`: rows up to the end of destination k): such a destination's text is
    then cut into its file without looking for line ends; runs of small ones are encoded together."""
    cuts = {0, ends[-1] if ends else 0}
    begin = 0
    for end in ends:
        if end - begin >= SOLO_ROWS:
            cuts.update((begin, end))
        begin = end
    bounds = sorted(cuts)
    for first, stop in zip(bounds, bounds[1:], strict=False):
        for start in range(first, stop, STEP_ROWS):
            yield start, min(start + STEP_ROWS, stop)


def _write_part(
    task: CollectTask,
    root: Path,
    part: pa.Table,
    dests: list[int],
    ends: list[int],
    held: Callable[[int], tuple[str, int]],
) -> list[Collected]:
    """Encode `part` (rows ordered by destination; `ends[k]` = rows up to the end of `dests[k]`) once and
    write each destination's lines to its file (`held(dest)`: the digest of its shards and the rows they
    hold for it); NaN/inf→NULL counts go with the first file. Each piece of text goes to the file being
    written; a piece that completes files is cut at their last lines' ends, found by one vectorised look-up
    only when a file ends inside the piece (`_slices` makes that rare for large files). Nothing is kept
    between pieces: memory is one piece of text, whatever a destination's size."""
    counts: dict[str, int] = {}
    out: list[Collected] = []
    table = task.keys[0].table
    files = _Files(contribution_path(root, task.keys[0]).parent, task.direct_io)
    bounds = np.asarray(ends, np.int64)
    keys = [ChunkKey(table, d >> 1, bool(d & 1)) for d in dests]
    names = [contribution_name(key) for key in keys]
    k = row = 0  # the next file to complete, rows encoded so far

    armed = faultpoints.armed()

    def finish(j: int, piece: bytes | memoryview) -> None:
        if armed:
            faultpoints.reached("collect.task", key_text(keys[j]))
        if piece:
            files.add(names[j], piece)
        path, size, checksum = files.finish(names[j])
        rows = ends[j] - (ends[j - 1] if j else 0)
        out.append(_record(keys[j], path, rows, size, checksum, *held(dests[j])))

    try:
        for first, stop in _slices(ends):
            for batch in part.slice(first, stop - first).to_batches():
                for view, lines in encode_lines(
                    batch, columns=task.columns, charset=task.charset, first_row=row, nan_to_null=counts
                ):
                    last = row + lines  # rows encoded after this piece
                    done = int(np.searchsorted(bounds, last, side="right"))  # files this piece completes
                    if done > k and ends[k] < last:  # a file ends inside the piece: where its lines end
                        starts = np.flatnonzero(np.frombuffer(view, np.uint8) == 10) + 1
                        starts = np.concatenate(([0], starts)).tolist()
                    begin = 0
                    for j in range(k, done):
                        cut = len(view) if ends[j] == last else starts[ends[j] - row] if ends[j] > row else 0
                        finish(j, view[begin:cut])
                        begin = cut
                    k = done
                    if begin < len(view):  # the start of file k, completed by a later piece
                        files.add(names[k], view[begin:])
                    row = last
        for j in range(k, len(dests)):  # the last file (its rows all encoded), and any empty ones after it
            finish(j, b"")
    finally:
        files.close()
    out[0] = out[0]._replace(nan_to_null=dict(counts))
    return out


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

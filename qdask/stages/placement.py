"""Children placed by their director's id: the director's placement index, built and read with bounded
memory on Dask workers, never whole in one process.

Qserv places a child row whose own position is not its director's (a DiaSource of a DiaObject) with
``sph-partition --part.id=<key> --part.id-url=<director index>``: chunk and sub-chunk are copied from the
director row with that id (shared/qserv-partitioning.md §8). qdask builds that index from what the
director's partition tasks already write:

* **unit placement files** (partition task of the director): beside a unit's sorted key file
  (``keys/<director>/<unit>.<digest>.npy``, its home-row ids), the (chunk, sub-chunk) of each of those
  ids in the same order, ``keys/<director>.placement/<unit>.<digest>.npy``;
* **buckets** (`bucket_task`, one Dask task per bucket): the director's ids are cut into id ranges of at
  most `BUCKET_ROWS` rows (`plan_buckets_task` draws the boundaries from every unit's sorted ids); a
  bucket task takes its range from every unit (two binary searches per memory-mapped unit file), sorts it
  and writes ``placement/<director>/<index digest>/<b>.ids.npy`` and ``<b>.loc.npy``. The digest names
  the director's unit files, so a director partitioned again gets a new index;
* **lookups** (`PlacementIndex.locate`, in the child's partition task): a batch's keys are grouped by
  bucket and searched in that bucket's memory-mapped arrays, one bucket at a time.

Memory per task is one unit (partition), one bucket (build) or one batch plus the pages of the buckets it
touches (lookup), whatever the number of director rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from qdask.stages.keys import KeyFile, quantile_cuts, save_unit_keys

#: Rows per bucket at most (16 bytes each: an id, a chunk and a sub-chunk).
BUCKET_ROWS = 4_000_000
SAMPLE_EVERY = 4096  # a unit's sorted ids are sampled this often to draw the bucket boundaries
LOC = np.dtype([("chunk", "<i4"), ("sub", "<i4")])


def placement_path(key_file: Path | str) -> Path:
    """The unit placement file that goes with a unit's key file."""
    key_file = Path(key_file)
    return key_file.parent.with_name(key_file.parent.name + ".placement") / key_file.name


def save_unit_placement(ids: np.ndarray, chunk: np.ndarray, sub: np.ndarray, key_file: Path) -> None:
    """Save a director unit's home-row ids sorted to `key_file` (the key check's unit file) and their
    (chunk, sub-chunk) in the same order beside it; both atomically."""
    order = np.argsort(ids, kind="stable")
    loc = np.empty(len(ids), LOC)
    loc["chunk"], loc["sub"] = chunk[order], sub[order]
    target = placement_path(key_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp.npy")
    np.save(tmp, loc)
    tmp.replace(target)
    for old in target.parent.glob(f"{target.name.rsplit('.', 2)[0]}.*.npy"):
        if old != target and not old.name.endswith(".tmp.npy"):
            old.unlink(missing_ok=True)
    save_unit_keys(np.asarray(ids, np.int64)[order], key_file)


def index_digest(key_files: Sequence[str]) -> str:
    """Names an index by the director unit files it is built from (they name their shards' digest)."""
    return hashlib.sha256("\n".join(sorted(Path(f).name for f in key_files)).encode()).hexdigest()[:16]


def plan_buckets_task(key_files: Sequence[str], bucket_rows: int = BUCKET_ROWS) -> list[int]:
    """The ids where buckets start (after the first), drawn from a sample of every unit's sorted ids (about
    a hundred per bucket, at most every `SAMPLE_EVERY`-th id)."""
    arrays = [KeyFile(path) for path in key_files]  # none held open: a director may have thousands of units
    total = sum(len(ids) for ids in arrays)
    if total <= bucket_rows:
        return []
    buckets = -(-total // bucket_rows)
    return quantile_cuts(arrays, buckets, max(1, min(SAMPLE_EVERY, total // (buckets * 100))))


def bucket_task(
    bucket: int, starts: Sequence[int], key_files: Sequence[str], out_dir: str
) -> tuple[int, int]:
    """Build bucket `bucket` (ids from ``starts[bucket-1]`` to ``starts[bucket]``): its slice of every unit,
    sorted, one entry per id (a repeated id keeps its first placement; the key check reports repeats).
    Returns (bucket, rows)."""
    low = starts[bucket - 1] if bucket > 0 else None
    high = starts[bucket] if bucket < len(starts) else None
    id_parts, loc_parts = [], []
    for path in key_files:
        ids = np.load(path, mmap_mode="r")
        loc = np.load(placement_path(path), mmap_mode="r")
        if len(loc) != len(ids):
            raise ValueError(f"placement file {placement_path(path)} does not match {path}")
        begin = 0 if low is None else int(np.searchsorted(ids, low, side="left"))
        end = len(ids) if high is None else int(np.searchsorted(ids, high, side="left"))
        id_parts.append(np.array(ids[begin:end]))  # copies: a view would keep each file open (its map)
        loc_parts.append(np.array(loc[begin:end]))
    ids = np.concatenate(id_parts) if id_parts else np.empty(0, np.int64)
    loc = np.concatenate(loc_parts) if loc_parts else np.empty(0, LOC)
    order = np.argsort(ids, kind="stable")
    ids, loc = ids[order], loc[order]
    first = np.ones(len(ids), bool)
    first[1:] = ids[1:] != ids[:-1]
    ids, loc = ids[first], loc[first]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, values in ((f"{bucket}.loc.npy", loc), (f"{bucket}.ids.npy", ids)):  # ids last: the marker
        tmp = out / (name + ".tmp.npy")
        np.save(tmp, values)
        tmp.replace(out / name)
    return bucket, len(ids)


def index_directory(staging: Path, director: str, key_files: Sequence[str]) -> Path:
    """Where the index built from `key_files` (a director's unit key files) lives."""
    return Path(staging) / "placement" / director / index_digest(key_files)


@dataclass(frozen=True)
class PlacementIndex:
    """A director's built index as a child's partition task reads it: where, and the bucket boundaries."""

    directory: str
    starts: tuple[int, ...]

    def complete(self) -> bool:
        return all((Path(self.directory) / f"{b}.ids.npy").is_file() for b in range(len(self.starts) + 1))

    def save_starts(self) -> None:
        """Record the bucket boundaries in the index directory (what `open` reads back)."""
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        tmp = Path(self.directory) / "starts.tmp.npy"
        np.save(tmp, np.asarray(self.starts, np.int64))
        tmp.replace(Path(self.directory) / "starts.npy")

    @classmethod
    def open(cls, directory: Path) -> PlacementIndex | None:
        """The complete index in `directory`, or None."""
        starts = Path(directory) / "starts.npy"
        if not starts.is_file():
            return None
        index = cls(str(directory), tuple(int(x) for x in np.load(starts)))
        return index if index.complete() else None

    def locate_column(self, column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`locate` for a key column as read (integers, NULL where a row names no director)."""
        present = column.is_valid().to_numpy(zero_copy_only=False)
        return self.locate(column.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False), present)

    def locate(self, keys: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk, sub-chunk, found) of each key; keys not `present` (NULL) or without a director row are
        not found (their chunk and sub-chunk are -1)."""
        chunk = np.full(len(keys), -1, np.int64)
        sub = np.full(len(keys), -1, np.int64)
        found = np.zeros(len(keys), bool)
        bucket_of = np.searchsorted(np.asarray(self.starts, np.int64), keys, side="right")
        for bucket in np.unique(bucket_of[present]):
            rows = np.flatnonzero(present & (bucket_of == bucket))
            ids = np.load(Path(self.directory) / f"{bucket}.ids.npy", mmap_mode="r")
            if not len(ids):
                continue
            loc = np.load(Path(self.directory) / f"{bucket}.loc.npy", mmap_mode="r")
            wanted = keys[rows]
            pos = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
            hit = np.asarray(ids[pos]) == wanted
            hits = rows[hit]
            where = loc[pos[hit]]
            chunk[hits], sub[hits], found[hits] = where["chunk"], where["sub"], True
        return chunk, sub, found

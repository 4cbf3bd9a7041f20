"""Key checks between partition and collect: duplicate director ids, and child rows whose director is
missing (orphans). Both are found exactly, with memory bounded whatever the catalog size.

Each unit's keys (the director's id, or a child's director key) are read from its home shards, sorted,
and written to ``keys/<table>/<unit>.npy``. The check then walks all sorted arrays of a director and of
its children together in key order, one block of keys at a time (a k-way merge: every array is cut at the
same key), so a duplicate or a missing director is seen whichever chunks or units the rows are in.

What is found is returned with counts and examples; by the table's policy the run stops, or the rows are
left out of the contribution files (the collect stage writes them to ``quarantine/<table>/``) and the
keys to leave out are kept in ``keys/<table>.exclude.npy``, which verify also reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qdask.ledger import Shard
from qdask.stages.collect import CorruptShardError
from qdask.stages.shards import unit_file_key

EXAMPLES = 5


@dataclass
class KeyProblems:
    """What the check found for one table: rows and distinct keys, with a few example keys."""

    table: str
    column: str
    kind: str  # "duplicate ids" | "orphans"
    rows: int = 0
    keys: int = 0
    examples: list[int] = field(default_factory=list)
    excluded: np.ndarray | None = None  # the sorted keys whose rows are left out (quarantine policy)

    def describe(self) -> str:
        return (
            f"table {self.table}: {self.rows:,} row(s) with {self.kind} ({self.keys:,} distinct "
            f"{self.column} value(s), e.g. {', '.join(str(k) for k in self.examples)})"
        )


def _read_keys(shard: Shard, column: str) -> pa.ChunkedArray:
    """One shard's key column; a shard gone, resized or unreadable raises `CorruptShardError` (its unit
    is then partitioned again, as when the collect stage finds it so)."""
    path = Path(shard.path)
    if not path.is_file():
        raise CorruptShardError(shard, "missing")
    if path.stat().st_size != shard.bytes:
        raise CorruptShardError(shard, "altered (its size differs from the ledger)")
    try:
        return pq.read_table(path, columns=[column])[column]
    except (OSError, pa.ArrowException) as exc:
        raise CorruptShardError(shard, f"unreadable ({exc})") from exc


def unit_keys(shards: Sequence[Shard], column: str, path: Path) -> np.ndarray:
    """The sorted `column` values of a unit's home shards, saved to `path` (atomically) and returned."""
    parts = [_read_keys(s, column) for s in shards if not s.overlap]
    values = pa.chunked_array([c for p in parts for c in p.chunks], pa.int64()) if parts else None
    keys = np.sort(values.to_numpy()) if values is not None and len(values) else np.empty(0, np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, keys)
    tmp.replace(path)
    return keys


def _blocks(arrays: Sequence[np.ndarray], block: int) -> Iterator[list[np.ndarray]]:
    """Cut every sorted array at the same keys, `block` keys at most per array and pass (plus ties)."""
    cursors = [0] * len(arrays)
    while True:
        live = [i for i, a in enumerate(arrays) if cursors[i] < len(a)]
        if not live:
            return
        high = min(arrays[i][min(cursors[i] + block, len(arrays[i])) - 1] for i in live)
        parts = []
        for i, a in enumerate(arrays):
            end = cursors[i] + int(np.searchsorted(a[cursors[i] :], high, side="right"))
            parts.append(np.asarray(a[cursors[i] : end]))
            cursors[i] = end
        yield parts


def check_keys(
    director: str,
    director_key: str,
    director_units: dict[str, list[Shard]],
    children: dict[str, tuple[str, dict[str, list[Shard]]]],
    keys_root: Path,
    *,
    quarantine_duplicates: bool,
    block: int = 1 << 16,
) -> list[KeyProblems]:
    """Duplicate ids of `director` and orphans of each child (name → (director key column, units)).

    With `quarantine_duplicates`, rows with a duplicated id are left out, so their children are orphans.
    """

    def arrays(table: str, column: str, units: dict[str, list[Shard]]) -> list[np.ndarray]:
        out = []
        for unit_id, shards in sorted(units.items()):
            path = keys_root / table / f"{unit_file_key(unit_id)}.npy"
            unit_keys(shards, column, path)
            out.append(np.load(path, mmap_mode="r"))
        return out

    ids = arrays(director, director_key, director_units)
    child_names = sorted(children)
    child_arrays = [arrays(name, children[name][0], children[name][1]) for name in child_names]
    bounds = np.cumsum([len(ids)] + [len(a) for a in child_arrays])
    duplicates = KeyProblems(director, director_key, "duplicate ids")
    dup_keys: list[np.ndarray] = []
    orphans = {n: KeyProblems(n, children[n][0], "orphans (no director row)") for n in child_names}
    orphan_keys: dict[str, list[np.ndarray]] = {n: [] for n in child_names}
    for parts in _blocks(ids + [a for group in child_arrays for a in group], block):
        found = np.concatenate(parts[: bounds[0]]) if bounds[0] else np.empty(0, np.int64)
        unique, counts = np.unique(found, return_counts=True)
        repeated = unique[counts > 1]
        if len(repeated):
            duplicates.rows += int(counts[counts > 1].sum())
            duplicates.keys += len(repeated)
            duplicates.examples += repeated[: EXAMPLES - len(duplicates.examples)].tolist()
            dup_keys.append(repeated)
        present = unique[counts == 1] if quarantine_duplicates else unique
        for j, name in enumerate(child_names):
            chunk = parts[bounds[j] : bounds[j + 1]]
            values = np.concatenate(chunk) if chunk else np.empty(0, np.int64)
            missing = values[~np.isin(values, present)]
            if len(missing):
                keys = np.unique(missing)
                problem = orphans[name]
                problem.rows += len(missing)
                problem.keys += len(keys)
                problem.examples += keys[: EXAMPLES - len(problem.examples)].tolist()
                orphan_keys[name].append(keys)
    duplicates.excluded = np.concatenate(dup_keys) if dup_keys else np.empty(0, np.int64)
    for name in child_names:
        keys = orphan_keys[name]
        orphans[name].excluded = np.concatenate(keys) if keys else np.empty(0, np.int64)
    return [p for p in [duplicates, *orphans.values()] if p.rows]


def exclusion_path(keys_root: Path, table: str) -> Path:
    """Where the sorted keys whose rows are left out of `table` are kept (read by collect and verify)."""
    return Path(keys_root) / f"{table}.exclude.npy"


def save_exclusion(keys_root: Path, table: str, keys: np.ndarray | None) -> Path | None:
    """Record (or clear) the keys to leave out of `table`; returns the path when there are any."""
    path = exclusion_path(keys_root, table)
    if keys is None or not len(keys):
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, np.sort(keys).astype(np.int64))
    tmp.replace(path)
    return path


def load_exclusion(keys_root: Path, table: str) -> np.ndarray | None:
    path = exclusion_path(keys_root, table)
    return np.load(path) if path.is_file() else None

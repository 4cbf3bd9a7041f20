"""A table's loaded integer ids checked for repeats in the staged shards, in bounded memory, without the czar.

Verify's ``GROUP BY id HAVING n > 1`` brings every id of a table to the czar. A director's ids need it
only for small tables (the key check proved them unique before loading), but nothing before loading
looks at a child's own id (DP0.2's Source: billions of rows); the key check reads its director key. Here
the ids are read from the staged shards one unit at a time (the id column only, plus the column the key
check excluded rows by, so the ids are those loaded), sorted and kept in a scratch directory, one file per
unit; then all the files are walked together in id order, a bounded pass at a time (`aligned_blocks`):
memory is one unit's ids while reading and a fixed budget of ids while merging (`MERGE_KEYS`), and no file
is held open between reads, however many units there are. The same pass yields the ids, per
unit, for verify's key checksum, so the shards are read once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qdask.ledger import Shard
from qdask.stages.key_match import without_keys
from qdask.stages.keys import MERGE_KEYS, KeyFile, aligned_blocks, key_values, unique_counts
from qdask.stages.shards import home_rows, unit_file_key


def loaded_ids(shard: Shard, key: str, exclusion: tuple[str, np.ndarray] | None) -> np.ndarray:
    """The non-NULL ``key`` values of a shard's home rows as loaded (rows the key check left out were never
    loaded), as int64."""
    columns = [key] if exclusion is None else list(dict.fromkeys([key, exclusion[0]]))
    parts = []
    for batch in home_rows(shard, columns):
        if exclusion is not None:
            batch = without_keys(batch, *exclusion)
        parts.append(key_values(batch.column(key)))  # as the czar's COUNT/SUM(key): no NULLs, exact int64
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def sorted_unit_ids(
    shards: Iterable[Shard], key: str, exclusion: tuple[str, np.ndarray] | None, scratch: Path
) -> Iterator[tuple[Path, np.ndarray]]:
    """For each unit of `shards`, its loaded ids sorted, saved to `scratch` (path, ids): one unit in memory
    at a time."""
    by_unit: dict[str, list[Shard]] = {}
    for shard in shards:
        by_unit.setdefault(shard.unit_id, []).append(shard)
    scratch.mkdir(parents=True, exist_ok=True)
    for unit_id, unit_shards in sorted(by_unit.items()):
        parts = [loaded_ids(s, key, exclusion) for s in unit_shards]
        ids = np.concatenate(parts) if parts else np.empty(0, np.int64)
        ids.sort()
        path = scratch / f"{unit_file_key(unit_id)}.npy"
        np.save(path, ids)
        yield path, ids


@dataclass
class Repeats:
    """Ids found more than once: how many rows hold them, how many ids, and the first few (id, times)."""

    rows: int = 0
    ids: int = 0
    examples: list[tuple[int, int]] = field(default_factory=list)


def repeated_ids(paths: Sequence[Path], shown: int, budget: int = MERGE_KEYS) -> Repeats:
    """The ids repeated within or across the sorted id files at `paths`, by one walk in id order holding
    about `budget` ids at a time (`aligned_blocks`)."""
    arrays = [KeyFile(p) for p in paths]
    found = Repeats()
    for parts in aligned_blocks(arrays, budget):
        values, counts = unique_counts(parts)
        twice = counts > 1
        if not twice.any():
            continue
        found.rows += int(counts[twice].sum())
        found.ids += int(twice.sum())
        room = max(shown - len(found.examples), 0)
        shown_values, shown_counts = values[twice][:room], counts[twice][:room]
        found.examples += [(int(v), int(n)) for v, n in zip(shown_values, shown_counts, strict=True)]
    return found

"""Key checks between partition and collect: duplicate director ids, and child rows whose director is
missing (orphans). Both are found exactly, with memory bounded whatever the catalog size.

What runs where:

* **partition task** (Dask worker): while it writes a unit's shards it keeps the unit's keys (a
  director's id, or a child's director key, of its home rows) and saves them sorted to
  ``keys/<table>/<unit>.<digest>.npy``, the digest being that of the shards the ledger records for the
  unit. The file is written once per partition attempt, and the shards are never read back for it; a
  file found missing (lost, or staging written by an older qdask) is rebuilt from the unit's home shards
  by `unit_keys_task`.
* **check task** (`check_family_task`, one Dask task per director and its children): walks all the
  sorted arrays of the family together in key order, a bounded pass of keys at a time (every array is
  cut at the same keys, `aligned_blocks`), so a duplicate or a missing director is seen
  whichever chunks or units the rows are in. It applies each table's policy by writing (or clearing)
  ``keys/<table>.exclude.npy`` — the keys whose rows the collect stage then writes to
  ``quarantine/<table>/`` instead of the contribution file, and which verify leaves out — and returns
  counts and examples only.
* **driver**: decides the policies up front (`table_policy`) and turns what was found into notes or a
  stop (`outcome`).

NULL keys are neither checked nor excluded (a NULL is no id and refers to none).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

import numpy as np
import pyarrow as pa

from qdask.ledger import Shard, shards_digest
from qdask.stages.shards import home_rows, unit_file_key

log = logging.getLogger(__name__)

EXAMPLES = 5
MERGE_KEYS = 1 << 21
"""Keys a merge pass holds over all its files (16 MiB of int64; `np.unique` of a pass needs a few times
that): a family of thousands of units is checked in the same memory as one of ten."""

KeyPolicy = Literal["stop", "quarantine", "report"]


# -- unit key files (partition task, or `unit_keys_task` when missing) ----------------------------


def unit_key_path(keys_root: Path | str, table: str, unit_id: str, shards: Iterable[Shard]) -> Path:
    """Where the sorted keys of a unit's home rows are kept, for the shards the ledger records for it."""
    digest = shards_digest(shards).removeprefix("sha256:")[:16]
    return Path(keys_root) / table / f"{unit_file_key(unit_id)}.{digest}.npy"


def save_unit_keys(values: np.ndarray, path: Path) -> Path:
    """Save `values` sorted (in place: no copy) to `path` atomically, and remove the unit's key files of
    other attempts."""
    keys = np.asarray(values, np.int64)
    if not keys.flags.writeable:  # e.g. a zero-copy view of an Arrow buffer
        keys = keys.copy()
    keys.sort()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, keys)
    tmp.replace(path)
    unit_key = path.name.rsplit(".", 2)[0]
    for old in path.parent.glob(f"{unit_key}.*.npy"):
        if old != path and not old.name.endswith(".tmp.npy"):
            old.unlink(missing_ok=True)
    return path


def key_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The non-NULL values of an integer key column as int64 (never through float: ids near 2^63 stay
    exact)."""
    return column.drop_null().cast(pa.int64()).to_numpy(zero_copy_only=False)


def _read_keys(shard: Shard, column: str) -> np.ndarray:
    """A shard's home-row keys; a shard gone, resized, altered or unreadable raises `CorruptShardError`
    (its unit is then partitioned again, as when the collect stage finds it so)."""
    parts = [key_values(batch.column(column)) for batch in home_rows(shard, [column])]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def unit_keys_task(shards: Sequence[Shard], column: str, path: str) -> str:
    """Rebuild a unit's key file from its home shards (a Dask task; the partition task normally writes
    it). Returns the path."""
    parts = [_read_keys(s, column) for s in shards]
    values = np.concatenate(parts) if parts else np.empty(0, np.int64)
    save_unit_keys(values, Path(path))
    log.debug("keys of %d shard(s) rebuilt in %s", len(parts), path)
    return path


# -- the merge (pure: sorted arrays in, problems out) ----------------------------------------------


@dataclass
class KeyProblems:
    """What the check found for one table: rows and distinct keys, with a few example keys."""

    table: str
    column: str
    kind: str  # "duplicate ids" | "orphans (no director row)"
    rows: int = 0
    keys: int = 0
    examples: list[int] = field(default_factory=list)
    excluded: np.ndarray | None = None  # the sorted keys found (left out under the quarantine policy)

    def describe(self) -> str:
        return (
            f"table {self.table}: {self.rows:,} row(s) with {self.kind} ({self.keys:,} distinct "
            f"{self.column} value(s), e.g. {', '.join(str(k) for k in self.examples)})"
        )

    def add(self, rows: int, keys: np.ndarray) -> None:
        self.rows += rows
        self.keys += len(keys)
        self.examples += keys[: max(EXAMPLES - len(self.examples), 0)].tolist()


class KeyArrays(NamedTuple):
    """One table's sorted key arrays (one per unit) and the column they come from."""

    table: str
    column: str
    arrays: Sequence[SortedKeys]


class SortedKeys(Protocol):
    """A sorted array of keys as the merge reads it (`np.ndarray`, `KeyFile`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> np.ndarray: ...

    def upto(self, start: int, key: int) -> np.ndarray: ...


def quantile_cuts(arrays: Sequence[SortedKeys | np.ndarray], parts: int, step: int) -> list[int]:
    """The keys that cut sorted `arrays` together into about `parts` parts of equal size: quantiles of a
    sample of every `step`-th key of each array (distinct, in order)."""
    sample = np.sort(np.concatenate([np.asarray(a[::step]) for a in arrays]))
    return sorted({int(c) for c in sample[(np.arange(1, parts) * len(sample)) // parts]})


def _upto(keys: SortedKeys | np.ndarray, start: int, key: int | None) -> np.ndarray:
    """The keys from position `start` up to `key` included (to the end for None)."""
    if isinstance(keys, np.ndarray):
        end = len(keys) if key is None else start + int(np.searchsorted(keys[start:], key, side="right"))
        return keys[start:end]
    return keys[start:] if key is None else keys.upto(start, key)


def aligned_blocks(arrays: Sequence[SortedKeys | np.ndarray], budget: int) -> Iterator[list[np.ndarray]]:
    """Cut every sorted array at the same keys into passes of about `budget` keys in all (more by at most
    the larger of half the budget and twice the number of arrays, and by runs of equal keys), so equal
    keys of all arrays always arrive in the same pass.

    The cuts are quantiles of a sample of every array (every `step`-th key, `step` small enough that the
    sampling errs by at most half the budget), so each pass reads each array once, whatever the number
    of arrays or how their ranges overlap: the work is linear in the keys, not in keys × arrays."""
    arrays = list(arrays)
    total = sum(len(a) for a in arrays)
    if not total:
        return
    passes = -(-total // max(budget, 1))
    cuts: list[int | None] = [None]
    if passes > 1:
        cuts = [*quantile_cuts(arrays, passes, max(1, budget // (2 * len(arrays)))), None]
    starts = [0] * len(arrays)
    for cut in cuts:
        parts = []
        for i, a in enumerate(arrays):
            part = np.asarray(_upto(a, starts[i], cut))
            starts[i] += len(part)
            parts.append(part)
        if any(len(p) for p in parts):  # the last cut may be the largest key
            yield parts


def _joined(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def unique_counts(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(..., return_counts=True)` of sorted arrays together. A stable sort (timsort) merges their
    runs in about linear time, where np.unique's sort does not see them: 5M keys in 5 runs, 0.08 against
    0.5-0.66 s on this project's machines."""
    keys = np.sort(_joined(parts), kind="stable")
    if not len(keys):
        return keys, np.empty(0, np.intp)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.diff(np.append(starts, len(keys)))


def find_key_problems(
    director: KeyArrays,
    children: Sequence[KeyArrays],
    *,
    quarantine_duplicates: bool,
    unique_ids: bool = True,
    budget: int = MERGE_KEYS,
) -> list[KeyProblems]:
    """Duplicate ids of the director and orphans of each child, found by one merge over all arrays.

    With `quarantine_duplicates`, rows with a duplicated id are left out, so their children are orphans.
    Without `unique_ids` (Qserv's ``unique_primary_key: 0``) repeated ids are the catalog's own and no
    problem. Returns only the tables with problems, the director first; `excluded` holds the keys found.
    """
    n_ids = len(director.arrays)
    bounds = np.cumsum([n_ids] + [len(c.arrays) for c in children])
    duplicates = KeyProblems(director.table, director.column, "duplicate ids")
    orphans = [KeyProblems(c.table, c.column, "orphans (no director row)") for c in children]
    found: list[list[np.ndarray]] = [[] for _ in range(1 + len(children))]  # keys found, per table
    everything = [*director.arrays, *(a for c in children for a in c.arrays)]
    for parts in aligned_blocks(everything, budget):
        unique, counts = unique_counts(parts[:n_ids])
        repeated = unique[counts > 1] if unique_ids else unique[:0]
        if len(repeated):
            duplicates.add(int(counts[counts > 1].sum()), repeated)
            found[0].append(repeated)
        present = unique[counts == 1] if quarantine_duplicates and unique_ids else unique
        for j, problem in enumerate(orphans):
            values = _joined(parts[bounds[j] : bounds[j + 1]])
            missing = values[~np.isin(values, present)]
            if len(missing):
                keys = np.unique(missing)
                problem.add(len(missing), keys)
                found[j + 1].append(keys)
    problems = [duplicates, *orphans]
    for problem, parts in zip(problems, found, strict=True):
        problem.excluded = _joined(parts)
    return [p for p in problems if p.rows]


# -- the check task (Dask worker) -----------------------------------------------------------------


class CorruptKeyFile(RuntimeError):
    """A unit key file that cannot be read as sorted int64 keys; it was removed, to be rebuilt."""


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class KeyFile:
    """A sorted key file (``.npy`` of int64) read a slice at a time, with no file left open between reads:
    a merge over thousands of unit files stays under the common limit of 1024 open files (a memory map
    holds its file open for as long as it, or any view of it, lives). The header is read once; a slice is
    one ``pread`` into its array."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in _NPY_HEADERS:
                raise ValueError(f"is a .npy file of version {version}, which qdask does not write")
            shape, fortran, dtype = _NPY_HEADERS[version](f)
            self.offset = f.tell()
            size = os.fstat(f.fileno()).st_size
        if dtype != np.int64 or len(shape) != 1 or fortran:
            raise ValueError(f"holds {dtype} values of {len(shape)} dimension(s), not a list of int64")
        self.length = int(shape[0])
        if size != self.offset + 8 * self.length:
            raise ValueError(f"has {size} bytes, not the {self.offset + 8 * self.length} its header says")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: slice, /) -> np.ndarray:
        start, stop, step = index.indices(self.length)
        if stop <= start:
            return np.empty(0, np.int64)
        if step != 1:  # a sample (every n-th key): a map reads only the pages it touches
            return np.array(self._map()[index])
        out = np.empty(stop - start, np.int64)
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            got = os.preadv(fd, [out.data], self.offset + 8 * start)
        finally:
            os.close(fd)
        if got != out.nbytes:
            raise ValueError(f"{self.path} is shorter than its header says")
        return out

    def _map(self) -> np.ndarray:
        """The keys as a read-only memory map (its file stays open while it or a view of it lives)."""
        return np.memmap(self.path, np.int64, "r", offset=self.offset, shape=(self.length,))

    def upto(self, start: int, key: int) -> np.ndarray:
        """The keys from position `start` up to `key` included, found by a binary search of the file."""
        if start >= self.length:
            return np.empty(0, np.int64)
        keys = self._map()
        return np.array(keys[start : start + int(np.searchsorted(keys[start:], key, side="right"))])


def _open_keys(path: str) -> KeyFile:
    """A unit key file; a damaged one is removed and raises `CorruptKeyFile` (running out of open files is
    no damage: that raises as it is)."""
    try:
        return KeyFile(path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            raise
        Path(path).unlink(missing_ok=True)
        raise CorruptKeyFile(
            f"key file {path} is damaged ({exc}); it will be rebuilt from its shards"
        ) from None


@dataclass(frozen=True)
class KeyTable:
    """One table of a family as the check task needs it: key column, policy and unit key files."""

    name: str
    column: str
    policy: KeyPolicy
    files: tuple[str, ...]
    unique: bool = True  # a director whose ids Qserv indexes as unique (unique_primary_key, the default)


@dataclass(frozen=True)
class KeyFamily:
    """A director and its children: what one check task reads and decides on."""

    director: KeyTable
    children: tuple[KeyTable, ...]

    @property
    def tables(self) -> tuple[KeyTable, ...]:
        return (self.director, *self.children)


def check_family_task(family: KeyFamily, keys_root: str, budget: int = MERGE_KEYS) -> list[KeyProblems]:
    """Check one family and apply each table's policy to its exclusion file (a Dask task).

    The unit key files are walked in passes of `budget` keys, none held open. Returns the problems
    found without their key arrays (those stay on disk, in the exclusion files).
    """
    t0 = time.perf_counter()

    def arrays(table: KeyTable) -> KeyArrays:
        return KeyArrays(table.name, table.column, [_open_keys(f) for f in table.files])

    problems = find_key_problems(
        arrays(family.director),
        [arrays(c) for c in family.children],
        quarantine_duplicates=family.director.policy == "quarantine",
        unique_ids=family.director.unique,
        budget=budget,
    )
    found = {p.table: p for p in problems}
    for table in family.tables:
        problem = found.get(table.name)
        keep_out = problem.excluded if problem is not None and table.policy == "quarantine" else None
        save_exclusion(Path(keys_root), table.name, keep_out)
    log.debug(
        "keys of %s and %d child table(s): %d file(s) checked in %.2f s, %d problem(s)",
        family.director.name,
        len(family.children),
        sum(len(t.files) for t in family.tables),
        time.perf_counter() - t0,
        len(problems),
    )
    return [replace(p, excluded=None) for p in problems]


# -- what the driver makes of it ------------------------------------------------------------------


@dataclass
class KeyOutcome:
    """Notes for the summary, and the problems whose policy stops the run."""

    notes: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)


def outcome(
    problems: Iterable[KeyProblems], policies: Mapping[str, KeyPolicy], quarantine_root: Path
) -> KeyOutcome:
    """Each problem by its table's policy: reported and loaded, quarantined, or a reason to stop."""
    result = KeyOutcome()
    for problem in problems:
        policy = policies[problem.table]
        if policy == "report":
            result.notes.append(
                f"{problem.describe()}: loaded as they are (set policies.orphans to act on them)"
            )
        elif policy == "quarantine":
            where = Path(quarantine_root) / problem.table / "*.excluded.parquet"
            result.notes.append(f"{problem.describe()}: quarantined to {where}")
        else:
            result.stops.append(problem.describe())
    return result


class UnitKeyFile(NamedTuple):
    """A unit's key file as the ledger's shards name it, and what rebuilding it needs."""

    unit_id: str
    column: str
    path: Path
    shards: tuple[Shard, ...]


def unit_key_files(
    shards: Iterable[Shard], columns: Mapping[str, str], keys_root: Path
) -> dict[str, list[UnitKeyFile]]:
    """Per table of `columns` (table → key column): each unit's key file, in unit order."""
    by_unit: dict[tuple[str, str], list[Shard]] = {}
    for shard in shards:
        if shard.table in columns:
            by_unit.setdefault((shard.table, shard.unit_id), []).append(shard)
    out: dict[str, list[UnitKeyFile]] = {table: [] for table in columns}
    for (table, unit_id), unit_shards in sorted(by_unit.items()):
        path = unit_key_path(keys_root, table, unit_id, unit_shards)
        out[table].append(UnitKeyFile(unit_id, columns[table], path, tuple(unit_shards)))
    return out


# -- exclusion files (read by collect and verify) ---------------------------------------------------


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

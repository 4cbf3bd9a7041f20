"""The key checks: the merge against a brute-force model (small blocks, ties across units, ids near
±2^63), the unit key files the partition task writes, the check task's exclusion files, and the policy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from qdask.config import config_from_dict
from qdask.ledger import Shard
from qdask.stages.collect import CorruptShardError
from qdask.stages.key_policy import family_checks, table_policy
from qdask.stages.keys import (
    EXAMPLES,
    CorruptKeyFile,
    KeyArrays,
    KeyFamily,
    KeyFile,
    KeyProblems,
    KeyTable,
    aligned_blocks,
    check_family_task,
    exclusion_path,
    find_key_problems,
    load_exclusion,
    outcome,
    save_unit_keys,
    unique_counts,
    unit_key_files,
    unit_key_path,
    unit_keys_task,
)
from qdask.stages.partition import TablePlan, partition_batches
from qdask.stages.shards import home_rows

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LOW, HIGH = np.iinfo(np.int64).min, np.iinfo(np.int64).max


def _sorted_units(rng, pool: np.ndarray, units: int, size: int) -> list[np.ndarray]:
    """`units` sorted arrays drawn from `pool` (with repeats, so keys repeat within and across units)."""
    return [np.sort(rng.choice(pool, size=rng.integers(0, size + 1))) for _ in range(units)]


def _pool(rng, n: int) -> np.ndarray:
    """Keys spread over the whole int64 range, the extremes included (exact only as int64)."""
    edges = np.array([LOW, LOW + 1, -1, 0, 1, HIGH - 1, HIGH], np.int64)
    near = np.concatenate([LOW + rng.integers(0, 50, n // 3), HIGH - rng.integers(0, 50, n // 3)])
    return np.unique(np.concatenate([edges, near, rng.integers(LOW, HIGH, n // 3, dtype=np.int64)]))


def _model(ids: list[np.ndarray], children: dict[str, list[np.ndarray]], quarantine_duplicates: bool):
    """Brute force: every key counted in plain Python integers."""
    counts = Counter(int(k) for a in ids for k in a)
    dup = sorted(k for k, n in counts.items() if n > 1)
    present = {k for k, n in counts.items() if n == 1 or not quarantine_duplicates}
    out = {"ids": (sum(counts[k] for k in dup), dup)}
    for name, arrays in children.items():
        values = [int(k) for a in arrays for k in a]
        missing = [k for k in values if k not in present]
        out[name] = (len(missing), sorted(set(missing)))
    return out


@pytest.mark.parametrize("budget", [1, 2, 3, 20, 1 << 16])
def test_the_passes_cut_every_array_at_the_same_keys(budget):
    rng = np.random.default_rng(budget)
    pool = _pool(rng, 60)
    arrays = _sorted_units(rng, pool, 5, 25) + [np.empty(0, np.int64)]
    passes = list(aligned_blocks(arrays, budget))
    for i, a in enumerate(arrays):  # every array is cut into consecutive pieces, nothing lost or repeated
        assert np.array_equal(np.concatenate([p[i] for p in passes] or [np.empty(0, np.int64)]), a)
    for before, after in zip(passes, passes[1:], strict=False):  # a key never spans two passes
        assert max(int(p[-1]) for p in before if len(p)) < min(int(p[0]) for p in after if len(p))
    total = sum(len(a) for a in arrays)
    assert len(passes) >= min(total // budget, len(np.unique(np.concatenate(arrays)))) // 2
    slack = max(budget // 2, 2 * len(arrays)) + 1  # how far the sampled cuts may err
    for parts in passes:  # at most `budget` keys in all plus the slack, but for runs of one key
        keys = np.concatenate(parts)
        assert len(np.unique(keys)) <= budget + slack


@pytest.mark.parametrize("quarantine_duplicates", [False, True])
@pytest.mark.parametrize("budget", [1, 2, 3, 1 << 16])
@pytest.mark.parametrize("seed", range(4))
def test_the_merge_finds_exactly_what_brute_force_finds(budget, seed, quarantine_duplicates):
    rng = np.random.default_rng(seed)
    pool = _pool(rng, 90)
    ids = _sorted_units(rng, pool[: len(pool) * 2 // 3], 4, 30)  # some ids repeat within and across units
    children = {  # child keys drawn from ids and from keys no director has: orphans
        "Source": _sorted_units(rng, pool, 3, 40),
        "ForcedSource": _sorted_units(rng, pool[len(pool) // 2 :], 2, 20),
    }
    found = find_key_problems(
        KeyArrays("Object", "objectId", ids),
        [KeyArrays(name, "objectId", arrays) for name, arrays in children.items()],
        quarantine_duplicates=quarantine_duplicates,
        budget=budget,
    )
    model = _model(ids, children, quarantine_duplicates)
    got = {("ids" if p.table == "Object" else p.table): p for p in found}
    assert set(got) == {name for name, (rows, _) in model.items() if rows}
    for name, problem in got.items():
        rows, keys = model[name]
        assert problem.rows == rows and problem.keys == len(keys)
        assert problem.excluded.dtype == np.int64 and problem.excluded.tolist() == keys
        assert problem.examples == keys[:EXAMPLES]


@pytest.mark.parametrize("quarantine_duplicates", [False, True])
@pytest.mark.parametrize("budget", [1, 3, 1 << 16])
def test_repeated_ids_of_a_non_unique_director_are_no_problem_but_orphans_still_are(
    budget, quarantine_duplicates
):
    """Qserv's unique_primary_key: 0 — repeated ids are the catalog's own: never reported nor left out
    (whatever the duplicate policy would say), and a child key matching any copy has its director."""
    rng = np.random.default_rng(budget)
    pool = _pool(rng, 90)
    ids = _sorted_units(rng, pool[: len(pool) * 2 // 3], 4, 30)
    assert len(np.unique(np.concatenate(ids))) < sum(map(len, ids))  # ids do repeat
    children = {"Source": _sorted_units(rng, pool, 3, 40)}
    found = find_key_problems(
        KeyArrays("Object", "objectId", ids),
        [KeyArrays(name, "objectId", arrays) for name, arrays in children.items()],
        quarantine_duplicates=quarantine_duplicates,
        unique_ids=False,
        budget=budget,
    )
    rows, keys = _model(ids, children, False)["Source"]
    assert [(p.table, p.rows, p.excluded.tolist()) for p in found] == [("Source", rows, keys)] and rows


def test_the_merge_of_a_clean_family_finds_nothing():
    ids = [np.array([1, 5, 9], np.int64), np.array([2, HIGH], np.int64)]
    children = [KeyArrays("Source", "objectId", [np.array([1, 1, 2, HIGH], np.int64)])]
    director = KeyArrays("Object", "id", ids)
    assert find_key_problems(director, children, quarantine_duplicates=True, budget=1) == []


def _plan(kind: str, key: str | None) -> TablePlan:
    fields = [
        pa.field("id", pa.int64()),
        pa.field("oid", pa.int64()),
        pa.field("ra", pa.float64()),
        pa.field("dec", pa.float64()),
    ]
    if kind != "regular":
        fields += [pa.field("chunkId", pa.int32()), pa.field("subChunkId", pa.int32())]
    return TablePlan("T", kind, pa.schema(fields), ra="ra", dec="dec", layout=(85, 12, 0.1), key_column=key)


def _rows(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    oid = pa.array(rng.integers(HIGH - 10**6, HIGH, n), pa.int64(), mask=rng.random(n) < 0.1)  # some NULL
    ra, dec = rng.uniform(10, 14, n), rng.uniform(-2, 2, n)
    ra[:3] = np.nan  # invalid positions: quarantined, so not among the unit's keys
    return pa.table({"id": np.arange(n, dtype=np.int64) + (HIGH - n), "oid": oid, "ra": ra, "dec": dec})


@pytest.mark.parametrize(("kind", "column"), [("director", "id"), ("child", "oid"), ("regular", "id")])
def test_the_partition_task_saves_the_sorted_keys_of_its_home_rows(tmp_path, kind, column):
    rows = _rows(5_000)
    result = partition_batches(
        rows.to_batches(max_chunksize=700),
        _plan(kind, column),
        "unit:1",
        tmp_path / "s",
        tmp_path / "q",
        tmp_path / "keys",
    )
    path = unit_key_path(tmp_path / "keys", "T", "unit:1", result.shards)
    placed = rows if kind == "regular" else rows.slice(3)
    want = np.sort(placed[column].drop_null().to_numpy())
    assert np.array_equal(np.load(path), want) and np.load(path).dtype == np.int64
    home = pa.Table.from_batches([b for s in result.shards for b in home_rows(s, [column])])
    assert np.array_equal(np.sort(home[column].drop_null().to_numpy()), want)  # the keys of what was staged
    # rebuilt from the shards it is the same file; a rerun replaces it, leaving one file per unit
    again = tmp_path / "again.npy"
    unit_keys_task(result.shards, column, str(again))
    assert np.array_equal(np.load(again), want)
    partition_batches(
        rows.to_batches(), _plan(kind, column), "unit:1", tmp_path / "s", tmp_path / "q", tmp_path / "keys"
    )
    assert [p.name for p in (tmp_path / "keys" / "T").iterdir()] == [path.name]


def test_no_key_file_without_a_key_column(tmp_path):
    partition_batches(
        _rows(100).to_batches(),
        _plan("director", None),
        "u",
        tmp_path / "s",
        tmp_path / "q",
        tmp_path / "keys",
    )
    assert not (tmp_path / "keys").exists()


def test_a_key_file_names_the_shards_it_was_made_from(tmp_path):
    shard = Shard("u", "T", str(tmp_path / "a.arrows"), 3, 100, "sha256:aa")
    path = unit_key_path(tmp_path, "T", "u", [shard])
    assert path == unit_key_path(tmp_path, "T", "u", [shard])
    assert path != unit_key_path(tmp_path, "T", "u", [Shard(*[*shard.__dict__.values()][:5], "sha256:bb")])
    files = unit_key_files([shard], {"T": "id", "Other": "id"}, tmp_path)
    assert files == {"T": [(("u", "id", path, (shard,)))], "Other": []}


def test_rebuilding_from_a_damaged_shard_sends_its_unit_back(tmp_path):
    result = partition_batches(
        _rows(500).to_batches(), _plan("director", "id"), "u", tmp_path / "s", tmp_path / "q"
    )
    [home] = result.shards
    Path(home.path).write_bytes(Path(home.path).read_bytes()[:-10])
    with pytest.raises(CorruptShardError) as info:
        unit_keys_task(result.shards, "id", str(tmp_path / "k.npy"))
    assert info.value.shard == home and "altered" in str(info.value)


def _family(tmp_path, policies: dict[str, str]) -> KeyFamily:
    def files(table, arrays):
        return tuple(str(save_unit_keys(a, tmp_path / table / f"u{i}.x.npy")) for i, a in enumerate(arrays))

    ids = [np.array([1, 2, 3, 3], np.int64), np.array([3, 4], np.int64)]  # 3 three times
    source = [np.array([1, 3, 9, 9], np.int64)]  # 9: orphan twice
    return KeyFamily(
        KeyTable("Object", "objectId", policies["Object"], files("Object", ids)),
        (KeyTable("Source", "objectId", policies["Source"], files("Source", source)),),
    )


def test_the_check_task_applies_each_policy_to_the_exclusion_files(tmp_path):
    keys = tmp_path / "keys"
    stale = exclusion_path(keys, "Source")
    stale.parent.mkdir(parents=True)
    np.save(stale, np.array([42], np.int64))  # an earlier round's exclusion: replaced

    family = _family(tmp_path, {"Object": "quarantine", "Source": "quarantine"})
    problems = check_family_task(family, str(keys))
    found = {p.table: (p.rows, p.keys, p.examples, p.excluded) for p in problems}
    # duplicated ids quarantined: their children are orphans too
    assert found == {"Object": (3, 1, [3], None), "Source": (3, 2, [3, 9], None)}
    assert load_exclusion(keys, "Object").tolist() == [3]
    assert load_exclusion(keys, "Source").tolist() == [3, 9]

    family = _family(tmp_path, {"Object": "stop", "Source": "report"})
    problems = check_family_task(family, str(keys), budget=1)
    assert {p.table: p.rows for p in problems} == {"Object": 3, "Source": 2}
    assert load_exclusion(keys, "Object") is None and load_exclusion(keys, "Source") is None  # none left out


@pytest.mark.parametrize("cut", [slice(0, 20), slice(0, -8)], ids=["header", "last key"])
def test_a_damaged_key_file_is_removed_to_be_rebuilt(tmp_path, cut):
    family = _family(tmp_path, {"Object": "stop", "Source": "report"})
    damaged = Path(family.children[0].files[0])
    damaged.write_bytes(damaged.read_bytes()[cut])
    with pytest.raises(CorruptKeyFile, match=str(damaged)):
        check_family_task(family, str(tmp_path / "keys"))
    assert not damaged.exists()


def test_the_outcome_follows_each_tables_policy(tmp_path):
    def problem(table):
        return KeyProblems(table, "objectId", "orphans (no director row)", rows=2, keys=1, examples=[7])

    result = outcome(
        [problem("A"), problem("B"), problem("C")], {"A": "report", "B": "quarantine", "C": "stop"}, tmp_path
    )
    assert result.notes == [
        "table A: 2 row(s) with orphans (no director row) (1 distinct objectId value(s), e.g. 7): loaded as "
        "they are (set policies.orphans to act on them)",
        f"table B: 2 row(s) with orphans (no director row) (1 distinct objectId value(s), e.g. 7): "
        f"quarantined to {tmp_path / 'B' / '*.excluded.parquet'}",
    ]
    assert result.stops == [problem("C").describe()]


def _case01(policies: dict[str, dict]):
    raw = yaml.safe_load((CONFIGS / "case01.yaml").read_text())
    raw["tables"] = raw["tables"][:3]
    for table in raw["tables"]:
        table["policies"] = policies.get(table["name"], {})
    return config_from_dict(raw, CONFIGS, check_paths=False)


def test_policies_come_from_the_config_and_orphans_are_reported_unless_set(shared_data):
    config = _case01({})
    tables = {t.name: t for t in config.tables}
    assert [table_policy(tables[n]) for n in ("Object", "Source", "Filter")] == ["stop", "report", None]
    config = _case01({"Object": {"duplicate_ids": "quarantine"}, "Source": {"orphans": "stop"}})
    tables = {t.name: t for t in config.tables}
    assert [table_policy(tables[n]) for n in ("Object", "Source")] == ["quarantine", "stop"]


def test_families_are_checked_while_they_have_chunks_to_collect(tmp_path, shared_data):
    config = _case01({})
    files = {"Object": [], "Source": []}
    checks, notes = family_checks(config, files, pending={"Source"})
    assert [(c.director.name, [t.name for t in c.children]) for c in checks] == [("Object", ["Source"])]
    assert (checks[0].director.column, checks[0].children[0].column) == ("objectId", "objectId")
    assert notes == []
    assert family_checks(config, files, pending={"Filter"}) == ([], [])
    checks, notes = family_checks(config, {"Source": []}, pending={"Object"})  # Object's ids not integers
    assert checks == [] and notes == ["keys of Object are not integers: not checked"]


def test_a_key_file_reads_the_slices_and_samples_numpy_does(tmp_path):
    keys = np.sort(np.random.default_rng(5).integers(-(2**63), 2**63 - 1, 10_000, dtype=np.int64))
    path = tmp_path / "u.npy"
    np.save(path, keys)
    file = KeyFile(path)
    assert len(file) == len(keys)
    for index in (
        slice(0, 10),
        slice(9_990, 20_000),
        slice(5, 5),
        slice(3_000, 7_001),
        slice(None, None, 97),
    ):
        got = file[index]
        assert got.dtype == np.int64 and np.array_equal(got, keys[index])
        got[:1] = 0  # a copy of its own: the caller may change it
    assert np.array_equal(file.upto(100, int(keys[200])), keys[100:201])
    np.save(path, np.empty(0, np.int64))
    assert len(KeyFile(path)) == 0 and KeyFile(path)[0:5].size == 0 and KeyFile(path).upto(0, 7).size == 0


@pytest.mark.parametrize("seed", range(4))
def test_unique_counts_of_sorted_arrays_match_numpy(seed):
    """Runs with keys repeated within and across arrays, empty arrays, one key: as np.unique counts."""
    rng = np.random.default_rng(seed)
    parts = [np.sort(rng.integers(-50, 50, int(rng.integers(0, 40)))) for _ in range(int(rng.integers(1, 6)))]
    parts.append(np.empty(0, np.int64))
    keys, counts = unique_counts(parts)
    want_keys, want_counts = np.unique(np.concatenate(parts), return_counts=True)
    assert keys.tolist() == want_keys.tolist() and counts.tolist() == want_counts.tolist()
    assert unique_counts([np.array([7, 7, 7])])[1].tolist() == [3]
    assert len(unique_counts([])[0]) == 0

"""The collect stage: a destination's shards → its contribution file, with the rows the key check
excluded written to the quarantine instead (NULL keys kept), and damaged shards refused by name."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qdask import tsv as tsv_module
from qdask.ledger import REGULAR_CHUNK, ChunkKey, shards_digest
from qdask.stages import collect as collect_module
from qdask.stages import shards as shards_module
from qdask.stages.collect import (
    CollectTask,
    CorruptShardError,
    collect_chunks,
    collect_task,
    collect_task_for,
    contribution_path,
    excluded_rows_path,
    key_text,
    plan_collect,
)
from qdask.stages.keys import exclusion_path, save_exclusion
from qdask.stages.partition import TablePlan, partition_batches

SCHEMA = pa.schema(
    [
        pa.field("sourceId", pa.int64()),
        pa.field("objectId", pa.int64()),
        pa.field("ra", pa.float64()),
        pa.field("dec", pa.float64()),
        pa.field("chunkId", pa.int32()),
        pa.field("subChunkId", pa.int32()),
    ]
)
HIGH = np.iinfo(np.int64).max


def _staged(tmp_path, units: int = 2, n: int = 400):
    """Shards of a child table in one chunk from `units` units; returns (shards of the chunk, rows)."""
    plan = TablePlan("Source", "child", SCHEMA, ra="ra", dec="dec", layout=(85, 12, 0.0))
    rng = np.random.default_rng(3)
    tables, shards = [], []
    for u in range(units):
        object_id = pa.array(HIGH - rng.integers(0, 20, n), pa.int64(), mask=rng.random(n) < 0.05)
        rows = pa.table(
            {
                "sourceId": np.arange(n, dtype=np.int64) + u * n,
                "objectId": object_id,
                "ra": np.full(n, 10.0),
                "dec": np.full(n, 1.0),
            }
        )  # one chunk
        result = partition_batches(
            rows.to_batches(max_chunksize=97), plan, f"unit{u}", tmp_path / "shards", tmp_path / "q"
        )
        shards += result.shards
        tables.append(rows)
    assert len({k for s in shards for k in s.keys()}) == 1
    return shards, pa.concat_tables(tables)


def _sky_shards(tmp_path, plan: TablePlan, *, units: int, n: int, seed: int, batch: int, object_ids) -> list:
    """The shards of `units` units of `n` rows each, uniform over the sphere (sourceIds unit by unit,
    objectIds as `object_ids` of the row number), partitioned in batches of `batch` rows."""
    rng = np.random.default_rng(seed)
    shards = []
    for u in range(units):
        rows = pa.table(
            {
                "sourceId": np.arange(n, dtype=np.int64) + u * n,
                "objectId": object_ids(np.arange(n, dtype=np.int64)),
                "ra": rng.uniform(0, 360, n),
                "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
            }
        )
        shards += partition_batches(
            rows.to_batches(max_chunksize=batch), plan, f"u{u}", tmp_path / "s", tmp_path / "q"
        ).shards
    return shards


def _identity(shard) -> tuple:
    """What names a shard and checks it (a task's copy carries only its own destinations' index)."""
    return (shard.unit_id, shard.table, shard.path, shard.rows, shard.bytes, shard.checksum)


def _lines(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_a_task_excludes_only_when_the_key_check_left_keys_out(tmp_path):
    key = ChunkKey("Source", 7, True)
    keys = tmp_path / "keys"
    task = collect_task_for(
        [key],
        [],
        ["a"],
        "utf8mb4",
        exclusion_keys=exclusion_path(keys, "Source"),
        exclusion_column="objectId",
        quarantine_root=tmp_path / "q",
    )
    assert task == CollectTask((key,), (), ("a",), "utf8mb4")  # no exclusion file: nothing left out
    save_exclusion(keys, "Source", np.array([5], np.int64))
    task = collect_task_for(
        [key],
        [],
        ["a"],
        "utf8mb4",
        exclusion_keys=exclusion_path(keys, "Source"),
        exclusion_column="objectId",
        quarantine_root=tmp_path / "q",
    )
    assert task.exclusion is not None and task.exclusion.column == "objectId"
    assert excluded_rows_path(task.exclusion.quarantine_root, key) == (
        tmp_path / "q/Source/chunk_7_overlap.excluded.parquet"
    )
    with pytest.raises(ValueError, match="Source: an exclusion needs its column"):
        collect_task_for([key], [], ["a"], "utf8mb4", exclusion_keys=exclusion_path(keys, "Source"))


def test_excluded_rows_go_to_the_quarantine_and_null_keys_stay(tmp_path):
    shards, rows = _staged(tmp_path)
    excluded = np.array([HIGH - 3, HIGH - 1, HIGH], np.int64)  # ids near 2^63: exact as int64 only
    save_exclusion(tmp_path / "keys", "Source", excluded)
    [key] = shards[0].keys()
    task = collect_task_for(
        [key],
        shards,
        SCHEMA.names,
        "utf8mb4",
        exclusion_keys=exclusion_path(tmp_path / "keys", "Source"),
        exclusion_column="objectId",
        quarantine_root=tmp_path / "q",
    )
    [collected] = collect_task(task, str(tmp_path / "contrib"))

    object_ids = rows["objectId"].to_pylist()
    out = [i for i, v in enumerate(object_ids) if v is not None and v in set(excluded.tolist())]
    kept = [i for i in range(rows.num_rows) if i not in set(out)]
    assert out and any(object_ids[i] is None for i in kept)
    lines = _lines(Path(collected.file.path))
    assert sorted(int(line[0]) for line in lines) == kept  # by sourceId
    assert sum(line[1] == "\\N" for line in lines) == sum(v is None for v in object_ids)
    quarantined = pq.read_table(excluded_rows_path(tmp_path / "q", key))
    assert sorted(quarantined["sourceId"].to_pylist()) == out
    assert collected.file.rows == len(kept) and collected.file.sources == shards_digest(shards)
    assert collected.file.path == str(contribution_path(tmp_path / "contrib", key))


def test_without_an_exclusion_every_row_is_written(tmp_path):
    shards, rows = _staged(tmp_path, units=3)
    task = collect_task_for(shards[0].keys(), shards, SCHEMA.names, "utf8mb4")
    [collected] = collect_chunks(task, tmp_path / "contrib")
    assert sorted(int(line[0]) for line in _lines(Path(collected.file.path))) == list(range(rows.num_rows))
    assert not (tmp_path / "q" / "Source").exists()


def test_a_damaged_shard_is_refused_naming_it_and_survives_the_trip_to_the_driver(tmp_path):
    shards, _ = _staged(tmp_path)
    data = bytearray(Path(shards[1].path).read_bytes())
    data[len(data) // 2] ^= 1  # one bit of one value, same size
    Path(shards[1].path).write_bytes(bytes(data))
    with pytest.raises(CorruptShardError) as info:
        collect_chunks(collect_task_for(shards[0].keys(), shards, SCHEMA.names, "utf8mb4"), tmp_path / "c")
    assert _identity(info.value.shard) == _identity(shards[1]) and "unit1" in str(info.value)
    again = pickle.loads(pickle.dumps(info.value))  # as a Dask worker's error reaches the driver
    assert _identity(again.shard) == _identity(shards[1]) and str(again) == str(info.value)


def _as_staged_before_xxh3(shard):
    """`shard` as a ledger written before XXH3 records it: each segment's digest the first 16 bytes of
    the SHA-256 of its bytes, the checksum prefixed ``sha256:``."""
    segments = np.frombuffer(shard.segments, shards_module.SEGMENTS).copy()
    data = Path(shard.path).read_bytes()
    for entry in segments:
        piece = data[int(entry["offset"]) : int(entry["offset"]) + int(entry["length"])]
        entry["digest"] = hashlib.sha256(piece).digest()[:16]
    checksum = "sha256:" + hashlib.sha256(segments["digest"].tobytes()).hexdigest()
    return dataclasses.replace(shard, segments=segments.tobytes(), checksum=checksum)


def test_shards_are_checked_by_xxh3_and_a_ledger_staged_with_sha256_still_reads(tmp_path):
    shards, rows = _staged(tmp_path)
    assert all(s.checksum.startswith(shards_module.CHECKSUM_PREFIX) for s in shards)
    older = [_as_staged_before_xxh3(s) for s in shards]
    assert [s.segments for s in older] != [s.segments for s in shards]  # the digests do differ
    task = collect_task_for(older[0].keys(), older, SCHEMA.names, "utf8mb4")
    [collected] = collect_chunks(task, tmp_path / "contrib")  # resumed after an upgrade: read, not redone
    assert sorted(int(line[0]) for line in _lines(Path(collected.file.path))) == list(range(rows.num_rows))
    data = bytearray(Path(older[1].path).read_bytes())
    data[len(data) // 2] ^= 1
    Path(older[1].path).write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match="checksum differs"):  # and still checked, by SHA-256
        collect_chunks(collect_task_for(older[0].keys(), older, SCHEMA.names, "utf8mb4"), tmp_path / "c")


def test_files_are_named_as_qserv_names_them(tmp_path):
    def path(*key) -> str:
        return str(contribution_path(tmp_path, ChunkKey(*key)).relative_to(tmp_path))

    assert path("Object", 12, False) == "Object/chunk_12.txt"
    assert path("Object", 12, True) == "Object/chunk_12_overlap.txt"
    assert path("Filter", REGULAR_CHUNK, False) == "Filter/Filter.txt"
    assert key_text(ChunkKey("Object", 12, True)) == "Object-12-overlap"


@pytest.mark.parametrize("slice_bytes, solo_rows", [(None, None), (700, None), (None, 12), (700, 12)])
def test_a_group_of_destinations_writes_each_file_as_one_destination_alone_would(
    tmp_path, monkeypatch, slice_bytes, solo_rows
):
    """Units spread over many chunks (a shard each, several sorted runs): grouped collect tasks write every
    destination's file with each row once, byte for byte as a task of that destination alone; the rows the
    key check excluded go to each destination's quarantine file instead. With 700-byte encoder slices (a
    few rows each), most files start in one slice and end in a later one. With `solo_rows` 12, most
    destinations (~20 rows) are encoded in slices of their own, cut without a look for line ends, between
    runs of small ones that are."""
    if slice_bytes is not None:
        monkeypatch.setattr(tsv_module, "SLICE_BYTES", slice_bytes)
    if solo_rows is not None:
        monkeypatch.setattr(collect_module, "SOLO_ROWS", solo_rows)
    monkeypatch.setattr(shards_module, "BUFFER_BYTES", 20_000)  # several sorted runs per unit
    monkeypatch.setattr(shards_module, "SEGMENT_BYTES", 4_000)
    plan = TablePlan("Source", "child", SCHEMA, ra="ra", dec="dec", layout=(20, 3, 0.0))
    n = 2000
    shards = _sky_shards(tmp_path, plan, units=3, n=n, seed=5, batch=300, object_ids=lambda i: i % 7)
    assert all(len(np.frombuffer(s.segments, shards_module.SEGMENTS)) > 4 for s in shards)
    keys = sorted({k for s in shards for k in s.keys()})
    assert len(keys) > 300
    groups = plan_collect(keys, shards, group_bytes=30_000, group_keys=64)
    assert 5 < len(groups) < len(keys) and sorted(k for g, _ in groups for k in g) == keys
    save_exclusion(tmp_path / "keys", "Source", np.array([3], np.int64))

    def task(keys, shards, quarantine):
        return collect_task_for(
            keys,
            shards,
            SCHEMA.names,
            "utf8mb4",
            exclusion_keys=exclusion_path(tmp_path / "keys", "Source"),
            exclusion_column="objectId",
            quarantine_root=quarantine,
        )

    seen = []
    for group, held in groups:
        for c in collect_chunks(task(group, held, tmp_path / "qg"), tmp_path / "g"):
            lines = _lines(Path(c.file.path))
            assert c.file.rows == len(lines) and {int(line[4]) for line in lines} == {c.file.key.chunk_id}
            seen += [int(line[0]) for line in lines]
    out = sorted(i for u in range(3) for i in range(u * n, (u + 1) * n) if (i - u * n) % 7 == 3)
    assert sorted(seen) == sorted(set(range(3 * n)) - set(out))  # every row once, but the excluded ones
    quarantined = [pq.read_table(f)["sourceId"].to_pylist() for f in (tmp_path / "qg").rglob("*.parquet")]
    assert sorted(i for q in quarantined for i in q) == out
    for key in keys[:: len(keys) // 10]:
        [alone] = collect_chunks(task([key], shards, tmp_path / "qa"), tmp_path / "a")
        assert Path(alone.file.path).read_bytes() == Path(contribution_path(tmp_path / "g", key)).read_bytes()
        assert alone.file.rows == len(_lines(contribution_path(tmp_path / "g", key)))


def test_a_group_stopped_mid_file_leaves_its_finished_files_and_no_temporary_one(tmp_path, monkeypatch):
    """A disk full while a group's file is being written piece by piece (700-byte slices: most files span
    several): the error reaches the caller, the files finished before it are whole, the one being written
    leaves no temporary file and no partial contribution."""
    monkeypatch.setattr(tsv_module, "SLICE_BYTES", 700)
    monkeypatch.setattr(collect_module, "SOLO_ROWS", 12)
    plan = TablePlan("Source", "child", SCHEMA, ra="ra", dec="dec", layout=(20, 3, 0.0))
    shards = _sky_shards(tmp_path, plan, units=2, n=2000, seed=7, batch=500, object_ids=lambda i: i)
    keys = sorted({k for s in shards for k in s.keys()})
    task = collect_task_for(keys[:40], shards, SCHEMA.names, "utf8mb4")
    victim = keys[20]
    monkeypatch.setenv("QDASK_KILL_AT", f"collect.task={key_text(victim)}:1")
    monkeypatch.setenv("QDASK_FAULT_MODE", "enospc")
    with pytest.raises(OSError, match="No space left"):
        collect_chunks(task, tmp_path / "c")
    folder = tmp_path / "c" / "Source"
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted(contribution_path(tmp_path / "c", k).name for k in keys[:20])
    monkeypatch.delenv("QDASK_KILL_AT")
    for key in keys[:20:5]:  # whole: as a task of that destination alone writes it
        [alone] = collect_chunks(collect_task_for([key], shards, SCHEMA.names, "utf8mb4"), tmp_path / "a")
        assert Path(alone.file.path).read_bytes() == contribution_path(tmp_path / "c", key).read_bytes()


def test_slices_cover_every_row_once_and_never_cross_a_large_destinations_bounds(monkeypatch):
    monkeypatch.setattr(collect_module, "SOLO_ROWS", 10)
    monkeypatch.setattr(collect_module, "STEP_ROWS", 7)
    ends = np.cumsum([3, 0, 25, 4, 2, 10, 9, 0, 40, 1]).tolist()
    ranges = list(collect_module._slices(ends))
    assert [r[0] for r in ranges[1:]] == [r[1] for r in ranges[:-1]] and ranges[0][0] == 0
    assert ranges[-1][1] == ends[-1] and all(0 < b - a <= 7 for a, b in ranges)
    large = [(b, e) for b, e in zip([0, *ends], ends, strict=False) if e - b >= 10]
    assert large == [(3, 28), (34, 44), (53, 93)]
    for begin, end in large:  # each of its ranges inside it, or outside it entirely
        assert all(b >= end or e <= begin or (begin <= b and e <= end) for b, e in ranges)
    assert list(collect_module._slices([])) == []


def test_a_collect_task_carries_only_its_own_destinations_index_entries(tmp_path, monkeypatch):
    """Units spread over the whole sky (every shard holds most destinations): each collect task is sent,
    for each shard it reads, the index entries (destinations, segments) of its own group only, with the
    shard's identity and checksum as recorded, so its size follows its group, not shards x destinations;
    the files it writes record the same shards digest as the ledger's shards give, and a damaged segment
    it reads is still refused by unit."""
    monkeypatch.setattr(shards_module, "BUFFER_BYTES", 50_000)  # a few sorted runs per unit
    monkeypatch.setattr(shards_module, "SEGMENT_BYTES", 4_000)
    monkeypatch.setattr(shards_module, "SEGMENT_BYTES_PER_COLUMN", 500)
    plan = TablePlan("Source", "child", SCHEMA, ra="ra", dec="dec", layout=(30, 3, 0.05))
    shards = _sky_shards(tmp_path, plan, units=4, n=3000, seed=14, batch=500, object_ids=lambda i: i)
    keys = sorted({k for s in shards for k in s.keys()})
    assert len(keys) > 1000 and all(len(s.dests()) > len(keys) // 2 for s in shards)  # all-sky shards
    by_unit = {s.unit_id: s for s in shards}
    groups = plan_collect(keys, shards, group_keys=64)
    assert len(groups) > 10
    files, sent_segments, all_segments = {}, 0, 0
    for group, held in groups:
        task = collect_task_for(group, held, SCHEMA.names, "utf8mb4")
        wanted = np.sort([k.chunk_id * 2 + k.overlap for k in group])
        holding = sorted(s.unit_id for s in held if set(s.keys()) & set(group))
        assert [s.unit_id for s in task.shards] == holding
        for sent in task.shards:
            whole = by_unit[sent.unit_id]
            assert _identity(sent) == _identity(whole)
            mine = sent.dests()
            assert 0 < len(mine) <= len(group) and np.isin(mine["dest"], wanted).all()
            assert [sent.rows_in(k) for k in group] == [whole.rows_in(k) for k in group]
            segments = np.frombuffer(sent.segments, shards_module.SEGMENTS)
            every = np.frombuffer(whole.segments, shards_module.SEGMENTS)
            assert np.isin(segments, every).all() and segments[0] == every[0] and segments[-1] == every[-1]
            inner = segments[1:-1]
            assert all(((wanted >= s["first"]) & (wanted <= s["last"])).any() for s in inner)
            sent_segments, all_segments = sent_segments + len(segments), all_segments + len(every)
        whole_task = CollectTask(task.keys, tuple(by_unit[s.unit_id] for s in task.shards), task.columns, "x")
        assert len(pickle.dumps(task)) < len(pickle.dumps(whole_task)) / 4
        assert len(pickle.dumps(task)) < 2_000 + len(task.shards) * (600 + 16 * len(group)) + 100 * len(group)
        for c in collect_chunks(task, tmp_path / "c"):
            files[c.file.key] = c.file
    assert sorted(files) == keys and sent_segments < all_segments / 2
    for key, file in files.items():
        assert file.sources == shards_digest(s for s in shards if s.rows_in(key))  # as the ledger compares
        assert file.rows == sum(s.rows_in(key) for s in shards)

    group, held = groups[len(groups) // 2]
    task = collect_task_for(group, held, SCHEMA.names, "utf8mb4")
    damaged = task.shards[1]
    segment = np.frombuffer(damaged.segments, shards_module.SEGMENTS)[1]  # one this task reads
    data = bytearray(Path(damaged.path).read_bytes())
    data[int(segment["offset"]) + int(segment["length"]) // 2] ^= 1
    Path(damaged.path).write_bytes(bytes(data))
    with pytest.raises(CorruptShardError) as info:
        collect_chunks(task, tmp_path / "d")
    assert _identity(info.value.shard) == _identity(by_unit[damaged.unit_id])
    assert damaged.unit_id in str(info.value)

"""The partition stage on real Parquet files: every row lands in its Qserv chunk exactly once."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qdask.ledger import dest_of
from qdask.sky import Chunker
from qdask.stages.partition import InvalidPositionsError, TablePlan, partition_batches
from qdask.stages.shards import DEST, SEGMENTS, ShardReader, all_rows

LAYOUT = (85, 12, 0.01667)


def _plan(kind: str = "director", policy: str = "quarantine") -> TablePlan:
    fields = [
        pa.field("id", pa.int64()),
        pa.field("ra", pa.float64()),
        pa.field("decl", pa.float64()),
        pa.field("flux", pa.float32()),
    ]
    if kind != "regular":
        fields += [pa.field("chunkId", pa.int32()), pa.field("subChunkId", pa.int32())]
    return TablePlan(
        name="Object",
        kind=kind,
        schema=pa.schema(fields),
        rename={"dec": "decl"},
        ra="ra",
        dec="decl",
        layout=LAYOUT if kind != "regular" else None,
        invalid_policy=policy,
    )


def _batches(n: int, seed: int = 1, bad: int = 0, size: int = 997):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(50, 75, n)  # a DC2-like footprint: a few dozen chunks, as a real unit touches
    dec = rng.uniform(-45, -27, n)
    if bad:
        ra[:bad] = np.nan
        dec[bad : 2 * bad] = 95.0
    table = pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            "ra": ra,
            "dec": dec,
            "flux": rng.normal(size=n).astype(np.float32),
            "ignored": np.zeros(n),
        }
    )
    return table, table.to_batches(max_chunksize=size)


def _read_shards(result, overlap: bool) -> pa.Table:
    data = pa.Table.from_batches([b for s in result.shards for b in all_rows(s)])
    return data.filter(pa.array((data[DEST].to_numpy() & 1) == int(overlap))).drop_columns([DEST])


def test_director_rows_land_in_their_home_and_overlap_chunks(tmp_path):
    table, batches = _batches(20_000)
    result = partition_batches(batches, _plan(), "unit:A", tmp_path / "shards", tmp_path / "q")
    chunker = Chunker(*LAYOUT)
    home_c, home_s = chunker.locate(table["ra"].to_numpy(), table["dec"].to_numpy())
    rows, o_c, o_s = chunker.locate_overlap(table["ra"].to_numpy(), table["dec"].to_numpy())

    home = _read_shards(result, overlap=False).sort_by("id")
    assert result.rows_read == result.rows_staged == 20_000 and result.rows_invalid == 0
    assert home["id"].to_pylist() == list(range(20_000))
    assert np.array_equal(home["chunkId"].to_numpy(), home_c)
    assert np.array_equal(home["subChunkId"].to_numpy(), home_s)
    assert home.column_names == ["id", "ra", "decl", "flux", "chunkId", "subChunkId"]

    copies = _read_shards(result, overlap=True)
    assert result.overlap_rows == len(rows) == copies.num_rows > 0
    got = sorted(
        zip(
            copies["id"].to_pylist(),
            copies["chunkId"].to_pylist(),
            copies["subChunkId"].to_pylist(),
            strict=True,
        )
    )
    assert got == sorted(zip(rows.tolist(), o_c.tolist(), o_s.tolist(), strict=True))
    [shard] = result.shards  # one file for the unit, whatever the chunks; rows per destination recorded
    assert len(shard.dests()) > 20 and shard.rows == 20_000 + len(rows)
    for key in shard.keys():
        with ShardReader(shard) as reader:
            dest = int(dest_of(key.chunk_id, key.overlap))
            data = pa.Table.from_batches(list(reader.batches(dest, dest)))
        assert set(data["chunkId"].to_pylist()) == {key.chunk_id} and data.num_rows == shard.rows_in(key)


def test_rerun_writes_the_same_shards_at_the_same_paths(tmp_path):
    _, batches = _batches(3_000)
    first = partition_batches(batches, _plan(), "unit:A", tmp_path / "s", tmp_path / "q")
    second = partition_batches(batches, _plan(), "unit:A", tmp_path / "s", tmp_path / "q")
    assert [(s.path, s.rows, s.checksum) for s in first.shards] == [
        (s.path, s.rows, s.checksum) for s in second.shards
    ]
    assert not list((tmp_path / "s").rglob("*.tmp*"))


def test_invalid_positions_are_quarantined_not_dropped(tmp_path):
    _, batches = _batches(5_000, bad=7)
    result = partition_batches(batches, _plan(), "unit:B", tmp_path / "s", tmp_path / "q")
    assert result.rows_invalid == 14 and result.rows_staged == 5_000 - 14
    quarantined = pq.read_table(result.quarantine_path)
    assert sorted(quarantined["id"].to_pylist()) == list(range(14))
    assert sum(sum(s.home_rows().values()) for s in result.shards) == 5_000 - 14
    assert result.invalid_examples[0][0] == 0


def test_invalid_positions_stop_the_unit_when_the_policy_says_so(tmp_path):
    _, batches = _batches(2_000, bad=3)
    with pytest.raises(InvalidPositionsError, match=r"unit:C: 6 row\(s\) of table Object"):
        partition_batches(batches, _plan(policy="stop"), "unit:C", tmp_path / "s", tmp_path / "q")
    assert not [p for p in (tmp_path / "s").rglob("*") if p.is_file()]


def test_a_value_that_does_not_fit_its_column_fails_the_unit(tmp_path):
    table = pa.table(
        {"id": pa.array([1, 2**40], pa.int64()), "ra": [1.0, 2.0], "dec": [0.0, 0.0], "flux": [1.0, 2.0]}
    )
    plan = _plan()
    plan = TablePlan(**{**plan.__dict__, "schema": plan.schema.set(0, pa.field("id", pa.int32()))})
    with pytest.raises(ValueError, match="column 'id' of table Object does not fit int32"):
        partition_batches(table.to_batches(), plan, "unit:D", tmp_path / "s", tmp_path / "q")


def test_regular_table_goes_to_one_shard(tmp_path):
    _, batches = _batches(1_000)
    result = partition_batches(batches, _plan("regular"), "unit:E", tmp_path / "s", tmp_path / "q")
    [shard] = result.shards
    assert [(k.chunk_id, k.overlap, shard.rows_in(k)) for k in shard.keys()] == [(-1, False, 1_000)]


def test_a_segment_checksum_ending_in_zero_bytes_is_kept_whole():
    """One segment in 256 has a checksum whose last byte is 0; a NUL-stripping record type lost it and the
    shard was refused as altered."""
    digest = b"\x07" + b"\x00" * 15
    packed = np.array([(0, 0, 0, 0, digest)], SEGMENTS).tobytes()  # as the ledger stores it
    assert bytes(np.frombuffer(packed, SEGMENTS)[0]["digest"]) == digest


def test_units_read_back_whole_whatever_their_checksums(tmp_path):
    _, batches = _batches(4000, seed=7)
    for unit in range(16):  # every segment of every shard checked as read, and every row there
        [shard] = partition_batches(
            batches[unit % 4 :], _plan(), f"u{unit}", tmp_path / "s", tmp_path / "q"
        ).shards
        assert sum(b.num_rows for b in all_rows(shard)) == shard.rows

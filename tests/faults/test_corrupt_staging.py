"""Staged files damaged on disk after their checksums were recorded: found before anything is sent to
Qserv, and rebuilt from what they were made of (a contribution file from its shards, a shard from its
unit), so the catalog still equals the source."""

from __future__ import annotations

from pathlib import Path

from qdask.config import load_config
from qdask.ingest import Ingest
from qdask.ledger import Ledger
from tests.faults.conftest import write_case01


def _staged(qserv, tmp_path, database):
    config = load_config(write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", database))
    Ingest(config).run(stage_only=True)
    return config, Ledger(config.staging.directory / "ledger.sqlite")


def test_truncated_altered_and_missing_contribution_files_are_rebuilt(qserv, truth, tmp_path, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    config, ledger = _staged(qserv, tmp_path, "faults_corrupt_files")
    with ledger:
        files = ledger.chunk_files()
    object_file = next(f for f in files if f.table == "Object" and not f.overlap)
    source_file = next(f for f in files if f.table == "Source")
    regular_file = next(f for f in files if f.table == "Filter")
    data = Path(object_file.path).read_bytes()
    Path(object_file.path).write_bytes(data[: len(data) // 2])  # truncated
    data = bytearray(Path(source_file.path).read_bytes())
    data[10] = ord("7") if data[10] != ord("7") else ord("8")  # one digit altered, same size
    Path(source_file.path).write_bytes(bytes(data))
    Path(regular_file.path).unlink()  # gone
    summary = Ingest(config).run()
    assert summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    assert truth.problems(qserv, config.database.name) == []
    notes = " ".join(summary.notes)
    for file in (object_file, source_file, regular_file):
        assert file.path in notes  # each was found and rebuilt, none was loaded as it was
    assert summary.chunks_collected == 3
    with Ledger(config.staging.directory / "ledger.sqlite") as ledger:
        loaded = {f.key: f for f in ledger.chunk_files()}
    assert loaded[source_file.key].checksum == source_file.checksum  # rebuilt to the very same bytes


def test_missing_shard_is_rebuilt_from_its_unit(qserv, truth, tmp_path, monkeypatch):
    """A contribution file is damaged and so is the shard it would be rebuilt from: the unit is partitioned
    again, then the file collected again."""
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    config, ledger = _staged(qserv, tmp_path, "faults_corrupt_shard")
    with ledger:
        file = next(f for f in ledger.chunk_files() if f.table == "Source")
        shards = ledger.shards(file.key)
        units_before = {u.unit_id: u.attempts for u in ledger.units()}
    Path(file.path).write_bytes(b"")
    for shard in shards:
        Path(shard.path).unlink()
    summary = Ingest(config).run()
    assert summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    assert truth.problems(qserv, config.database.name) == []
    assert summary.units_partitioned == len({s.unit_id for s in shards})
    assert all(Path(s.path).is_file() for s in shards)
    with Ledger(config.staging.directory / "ledger.sqlite") as ledger:
        again = {u.unit_id for u in ledger.units() if u.attempts > units_before[u.unit_id]}
    assert again == {s.unit_id for s in shards}


def test_lost_and_damaged_key_files_are_rebuilt_from_their_shards(qserv, tmp_path, monkeypatch):
    """The unit key files the partition task wrote are gone or damaged when the key check needs them
    again (a chunk to collect again): they are rebuilt from the units' home shards, and the check finds
    the same orphans as before (case01's own: Source rows whose Object is not in the catalog)."""
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    config = load_config(write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "faults_keys"))
    first = Ingest(config).run(stage_only=True)
    orphans = [n for n in first.notes if "orphans" in n]
    assert len(orphans) == 1 and "table Source: 36 row(s)" in orphans[0]
    keys = config.staging.directory / "keys"
    saved = {p: p.read_bytes() for p in keys.rglob("*.npy")}
    lost, damaged = sorted(p for p in saved if p.parent.name in ("Object", "Source"))
    lost.unlink()
    damaged.write_bytes(saved[damaged][:30])
    with Ledger(config.staging.directory / "ledger.sqlite") as ledger:
        for file in ledger.chunk_files(table="Source")[:2]:
            ledger.drop_chunk_file(file.key)  # collected again: the key check runs again

    again = Ingest(config).run(stage_only=True)
    assert again.chunks_collected == 2
    assert any(f"key file {damaged} is damaged" in n for n in again.notes), again.notes
    assert [n for n in again.notes if "orphans" in n] == orphans
    assert {p: p.read_bytes() for p in keys.rglob("*.npy")} == saved  # the same keys, rebuilt

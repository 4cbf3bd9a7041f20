"""Contribution checksums: XXH3-128 now, SHA-256 (earlier qdask versions) still read and compared."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import xxhash

from qdask.checksums import CONTRIBUTION_ALGORITHM, algorithm_of, file_checksum, new_digest, same_content
from qdask.ledger import ChunkFile, ChunkKey, Ledger, Unit
from qdask.stages.load import staged_file_problem
from tests.test_ledger import OBJ, collect, partitioned, shard

DATA = b"1\t2.5\t\\N\n" * 100_000


def test_a_file_checksum_names_its_algorithm_and_is_that_algorithms_digest(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(DATA)
    assert CONTRIBUTION_ALGORITHM == "xxh3_128"
    assert file_checksum(path) == "xxh3_128:" + xxhash.xxh3_128_hexdigest(DATA)
    assert file_checksum(path, "sha256", block=4096) == "sha256:" + hashlib.sha256(DATA).hexdigest()
    digest = new_digest()
    digest.update(DATA[:7])
    digest.update(DATA[7:])
    assert "xxh3_128:" + digest.hexdigest() == file_checksum(path)
    assert [algorithm_of(c) for c in ("sha256:ab", "xxh3_128:ab", "md5:ab", "ab", "")] == [
        "sha256",
        "xxh3_128",
        None,
        None,
        None,
    ]
    with pytest.raises(ValueError, match="unknown checksum algorithm 'md5'"):
        new_digest("md5")


def test_a_checksum_of_another_algorithm_is_compared_by_hashing_the_file_that_way(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(DATA)
    now, before = file_checksum(path), file_checksum(path, "sha256")
    assert same_content(path, now, now) and same_content(path, now, before)
    path.write_bytes(DATA[:-1] + b"\r")  # same size, other bytes: the old checksum no longer holds
    changed = file_checksum(path)
    assert not same_content(path, changed, before)
    assert not same_content(path, changed, now)  # same algorithm: the strings decide, no read
    assert not same_content(path, changed, "md5:" + "0" * 32) and not same_content(path, changed, None)
    path.unlink()
    assert not same_content(path, changed, before)


def test_a_ledger_staged_with_sha256_keeps_a_file_collected_again_with_the_same_bytes(tmp_path):
    """A ledger an earlier qdask staged (SHA-256 checksums): collect writing the same file again, now with an
    XXH3 checksum, is the same file (kept, not invalidated); different bytes replace it."""
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.open_run("sha256:cfg")
        ledger.plan_units([Unit("u1", OBJ, {"uri": "a"}, "planned")])
        partitioned(ledger, "u1", [shard("u1", 10)], rows_read=10)
        recorded = collect(ledger, ChunkKey(OBJ, 10, False))
        path = tmp_path / "chunk_10.txt"
        path.write_bytes(DATA)
        old = dataclasses.replace(
            recorded, path=str(path), bytes=len(DATA), checksum=file_checksum(path, "sha256")
        )
        assert ledger.record_chunk_file(old) is True
        again = dataclasses.replace(old, checksum=file_checksum(path))
        assert ledger.record_chunk_file(again) is False
        assert ledger.chunk_files() == [old]
        path.write_bytes(DATA[::-1])
        other = dataclasses.replace(old, checksum=file_checksum(path))
        assert ledger.record_chunk_file(other) is True
        assert ledger.chunk_files() == [other]


def test_a_staged_file_is_checked_by_the_algorithm_its_checksum_names(tmp_path):
    path = tmp_path / "chunk_7.txt"
    path.write_bytes(DATA)
    for algorithm in ("sha256", "xxh3_128"):
        file = ChunkFile("Obj", 7, False, str(path), 100_000, len(DATA), file_checksum(path, algorithm), "s")
        assert staged_file_problem(file) is None
        assert staged_file_problem(dataclasses.replace(file, checksum=f"{algorithm}:00")) == (
            "no longer matches its recorded checksum"
        )

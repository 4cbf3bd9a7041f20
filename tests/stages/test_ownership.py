"""Ownership rules (`stages.ownership`) and the staging lock, against the Qserv stand-in: who owns a
transaction is read back from Qserv's `context`; a run refuses beside another's transactions, loses a
race to a lower transaction id, and takes over a lost run's committed transactions only when its files
match."""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path

import pytest

from qdask.checksums import file_checksum
from qdask.ledger import REGULAR_CHUNK, ChunkFile, FileStatus, Ledger, TransactionState, shards_digest
from qdask.qserv import QservClient
from qdask.stages.load import transaction_context
from qdask.stages.ownership import Identity, Owners, OwnershipError, check_race, refuse_foreign, take_over
from qdask.staging_lock import StagingBusy, StagingLock

_names = itertools.count()
A = Identity("run-a", "host-a", "/staging/a", "/staging/a/ledger.sqlite")
B = Identity("run-b", "host-b", "/staging/b", "/staging/b/ledger.sqlite")


@pytest.fixture
def setup(qserv, tmp_path):
    """A registered database with a regular table, B's ledger with one staged file per table, a client."""
    database = f"owners_{next(_names)}"
    client = QservClient(qserv.controller_url, qserv.auth_key)
    client.register_database(database, 85, 12, 0.01667)
    client.register_table(database, "Filter", [("filterId", "INT")], is_partitioned=False)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.open_run("sha256:x", run_id=B.run_id)
    files = [
        ChunkFile(t, REGULAR_CHUNK, False, str(tmp_path / f"{t}.txt"), 1, 2, f"sum-{t}", shards_digest([]))
        for t in ("T1", "T2")
    ]
    for file in files:
        ledger.record_chunk_file(file)
    with client, ledger:
        yield client, ledger, database, files


def _begin(client, database, who: Identity | None, files) -> int:
    context = transaction_context(who.run_id, files, who.to_context()) if who else {"note": "not qdask"}
    return client.begin_transaction(database, context=context).id


def test_refusal_names_the_owner_with_committed_and_open_counts(setup):
    client, ledger, database, files = setup
    done = _begin(client, database, A, files[:1])
    client.commit_transaction(done)
    _begin(client, database, A, files[1:])
    with pytest.raises(OwnershipError) as found:
        refuse_foreign(Owners(client, ledger, database, B))
    text = str(found.value)
    assert "run run-a (host host-a, staging directory /staging/a): 1 committed and 1 open" in text
    assert "--take-over" in text and "Nothing was loaded by this run" in text


def test_a_transaction_without_identity_is_refused_even_with_take_over(setup):
    client, ledger, database, files = setup
    _begin(client, database, None, files)
    owners = Owners(client, ledger, database, B)
    with pytest.raises(OwnershipError, match="no qdask run"):
        refuse_foreign(owners, take_over=True)
    with pytest.raises(OwnershipError, match="no qdask run"):
        take_over(owners)


def test_lower_transaction_id_wins_the_race(setup, tmp_path):
    client, ledger, database, files = setup
    first = _begin(client, database, A, files)
    second = _begin(client, database, B, files)
    with pytest.raises(OwnershipError, match=rf"transaction {first} < {second}"):
        check_race(Owners(client, ledger, database, B), second)
    with Ledger(tmp_path / "a.sqlite") as ledger_a:
        ledger_a.open_run("sha256:x", run_id=A.run_id)
        check_race(Owners(client, ledger_a, database, A), first)  # the winner goes on


def test_take_over_adopts_matching_commits_and_aborts_open_ones(setup):
    client, ledger, database, (t1, t2) = setup
    committed = _begin(client, database, A, [t1])
    client.commit_transaction(committed)
    left_open = _begin(client, database, A, [t2])
    notes = take_over(Owners(client, ledger, database, B))
    assert client.get_transaction(left_open).state == "ABORTED"
    assert [(t.transaction_id, t.state, t.files) for t in ledger.transactions()] == [
        (committed, TransactionState.COMMITTED, (t1.key,))
    ]
    assert {f.table: f.status for f in ledger.chunk_files()} == {
        "T1": FileStatus.LOADED,
        "T2": FileStatus.STAGED,
    }
    assert any("took over 1 committed transaction(s) of run run-a" in n for n in notes)
    refuse_foreign(Owners(client, ledger, database, B))  # adopted: no longer another run's


def test_take_over_refuses_files_that_differ(setup):
    client, ledger, database, (t1, _) = setup
    changed = ChunkFile(t1.table, t1.chunk_id, t1.overlap, t1.path, 5, 2, "other", t1.sources)
    committed = _begin(client, database, A, [changed])
    client.commit_transaction(committed)
    with pytest.raises(OwnershipError, match="committed with 5 row"):
        take_over(Owners(client, ledger, database, B))
    assert ledger.transactions() == []


def test_staging_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    with StagingLock(ledger, what="ingest"):
        with pytest.raises(StagingBusy) as busy:
            StagingLock(ledger, what="reset").acquire()
        assert f"`qdask ingest`, pid {os.getpid()} on host" in str(busy.value)
    with StagingLock(ledger, what="reset") as again:  # released with its holder
        assert again.held


def test_take_over_of_a_run_by_an_earlier_qdask_compares_its_sha256_checksums_with_the_files(setup, tmp_path):
    """The lost run committed with SHA-256 checksums (qdask before XXH3); this run staged the same bytes
    with XXH3 checksums: adopted. A file whose bytes differ is refused."""
    client, ledger, database, _ = setup
    mine = []
    for table, text in (("T3", b"1\t2\n"), ("T4", b"3\t4\n")):
        path = tmp_path / f"{table}.txt"
        path.write_bytes(text)
        mine.append(
            ChunkFile(table, REGULAR_CHUNK, False, str(path), 1, 4, file_checksum(path), shards_digest([]))
        )
        ledger.record_chunk_file(mine[-1])
    theirs = [dataclasses.replace(f, checksum=file_checksum(f.path, "sha256")) for f in mine]
    for file in theirs:
        client.commit_transaction(_begin(client, database, A, [file]))
    Path(mine[1].path).write_bytes(b"3\t5\n")  # T4 differs from what the lost run loaded
    with pytest.raises(OwnershipError, match=r"T4.*\(checksum sha256:"):
        take_over(Owners(client, ledger, database, B))
    Path(mine[1].path).write_bytes(b"3\t4\n")
    take_over(Owners(client, ledger, database, B))
    assert {f.table: f.status for f in ledger.chunk_files() if f.table in ("T3", "T4")} == {
        "T3": FileStatus.LOADED,
        "T4": FileStatus.LOADED,
    }

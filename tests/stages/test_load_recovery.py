"""Recovery decisions of the load stage (`recover`), against the Qserv stand-in: what a run left open is
settled from what Qserv says, and only this run's transactions are touched."""

from __future__ import annotations

import itertools

import pytest

from qdask.ledger import REGULAR_CHUNK, ChunkFile, FileStatus, Ledger, TransactionState, shards_digest
from qdask.qserv import QservClient
from qdask.stages.load import recover, transaction_context

RUN = "run-recover"
_names = itertools.count()


@pytest.fixture
def setup(qserv, tmp_path):
    """A registered database with a regular table, a ledger with one staged file per table, a client."""
    database = f"recover_{next(_names)}"
    client = QservClient(qserv.controller_url, qserv.auth_key)
    client.register_database(database, 85, 12, 0.01667)
    client.register_table(database, "Filter", [("filterId", "INT")], is_partitioned=False)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.open_run("sha256:x", run_id=RUN)
    files = [
        ChunkFile(t, REGULAR_CHUNK, False, str(tmp_path / f"{t}.txt"), 1, 2, "c", shards_digest([]))
        for t in ("A", "B", "C")
    ]
    for file in files:
        ledger.record_chunk_file(file)
    with client, ledger:
        yield client, ledger, database, files


def _begin(client, ledger, database, files, *, run=RUN, record=True) -> int:
    context = transaction_context(run, files)
    tid = client.begin_transaction(database, context=context).id
    if record:
        ledger.transaction_started(tid, database, [f.key for f in files], context)
    return tid


def test_open_transactions_are_settled_from_what_qserv_says(setup):
    client, ledger, database, (a, b, c) = setup
    open_one = _begin(client, ledger, database, [a])  # left open: aborted, its file loaded again later
    committed = _begin(client, ledger, database, [b])
    client.commit_transaction(committed)  # committed in Qserv, the answer lost: the ledger is told now
    unknown = _begin(client, ledger, database, [c], record=False)  # started, never recorded: aborted
    other = _begin(client, ledger, database, [c], run="another-run", record=False)  # not ours: untouched

    notes = recover(client, ledger, database, RUN)

    states = {t.transaction_id: t.state for t in ledger.transactions()}
    assert states == {open_one: TransactionState.ABORTED, committed: TransactionState.COMMITTED}
    qserv_states = {t: client.get_transaction(t).state for t in (open_one, committed, unknown, other)}
    assert qserv_states == {open_one: "ABORTED", committed: "FINISHED", unknown: "ABORTED", other: "STARTED"}
    assert {f.table: f.status for f in ledger.chunk_files()} == {
        "A": FileStatus.STAGED,
        "B": FileStatus.LOADED,
        "C": FileStatus.STAGED,
    }
    assert [f.table for f in ledger.files_to_load()] == ["A", "C"]
    assert len(notes) == 3 and all(str(t) in " ".join(notes) for t in (open_one, committed, unknown))
    client.abort_transaction(other)


def test_recovery_is_idempotent_and_leaves_settled_transactions_alone(setup):
    client, ledger, database, (a, b, _) = setup
    done = _begin(client, ledger, database, [a])
    client.commit_transaction(done)
    ledger.transaction_state(done, TransactionState.COMMITTED)
    dropped = _begin(client, ledger, database, [b])
    assert recover(client, ledger, database, RUN) == [
        f"transaction {dropped} was left STARTED; aborted, its files will be redone"
    ]
    assert recover(client, ledger, database, RUN) == []  # nothing left to settle
    assert {t.transaction_id: t.state for t in ledger.transactions()} == {
        done: TransactionState.COMMITTED,
        dropped: TransactionState.ABORTED,
    }

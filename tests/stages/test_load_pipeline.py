"""The load stage commits a transaction while the next one's files are sent (issue 14: a commit, with its
director index build, no longer leaves the upload slots idle), against the Qserv stand-in."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from qdask.ledger import ChunkFile, FileStatus, Ledger, TransactionState, shards_digest
from qdask.qserv import QservClient
from qdask.sky.chunker import Chunker
from qdask.stages.load import Loader, LoadError, LoadSettings
from qdask.tsv import write_tsv

SCHEMA = [
    ("objectId", "BIGINT"),
    ("ra", "DOUBLE"),
    ("decl", "DOUBLE"),
    ("chunkId", "INT"),
    ("subChunkId", "INT"),
]


class EventClient(QservClient):
    """Logs when each commit is sent and answered and when each upload is answered (per transaction)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events: list[tuple[float, str, int]] = []
        self._events_lock = threading.Lock()

    def _log(self, what: str, tid: int) -> None:
        with self._events_lock:
            self.events.append((time.monotonic(), what, tid))

    def commit_transaction(self, transaction_id: int):
        self._log("commit sent", transaction_id)
        answer = super().commit_transaction(transaction_id)
        self._log("commit answered", transaction_id)
        return answer

    def ingest_csv(self, worker, transaction_id, *args, **kwargs):
        answer = super().ingest_csv(worker, transaction_id, *args, **kwargs)
        self._log("upload answered", transaction_id)
        return answer


def _setup(qserv, tmp_path, database: str) -> tuple[EventClient, Ledger, list[ChunkFile]]:
    """A registered director table, a ledger with three staged one-chunk files of two rows each."""
    client = EventClient(qserv.controller_url, qserv.auth_key)
    client.register_database(database, 85, 12, 0.01667)
    client.register_table(
        database,
        "Obj",
        SCHEMA,
        is_partitioned=True,
        director_key="objectId",
        latitude_key="decl",
        longitude_key="ra",
    )
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.open_run("sha256:x", run_id="run-pipeline")
    files = []
    for i, chunk in enumerate(Chunker(85, 12, 0.01667).all_chunks()[500:503].tolist()):
        rows = pa.table(
            {
                "objectId": pa.array([10 * i, 10 * i + 1], pa.int64()),
                "ra": [1.0, 2.0],
                "decl": [3.0, 4.0],
                "chunkId": pa.array([chunk, chunk], pa.int32()),
                "subChunkId": pa.array([0, 1], pa.int32()),
            }
        )
        info = write_tsv(rows, tmp_path / f"Obj_{chunk}.txt", charset="latin1")
        files.append(
            ChunkFile(
                "Obj", chunk, False, str(info.path), info.rows, info.bytes, info.checksum, shards_digest([])
            )
        )
    ledger.record_chunk_files(files)
    return client, ledger, files


def _settings(database: str, **extra) -> LoadSettings:
    return LoadSettings(
        database=database,
        run_id="run-pipeline",
        charsets={"Obj": "latin1"},
        max_chunks_per_transaction=1,  # three transactions, one file each
        concurrency_total=2,
        **extra,
    )


def test_a_commit_runs_while_the_next_transaction_is_sent(qserv, tmp_path):
    database = "load_pipeline"
    client, ledger, files = _setup(qserv, tmp_path, database)
    qserv.faults.add("delay", match={"path": "/ingest/trans/", "method": "PUT"}, seconds=1.0, times=0)
    try:
        summary = Loader(client, ledger, _settings(database)).run(files)
    finally:
        qserv.faults.clear()

    assert (summary.transactions_committed, summary.rows, summary.contributions) == (3, 6, 3)
    order = [tid for _, what, tid in client.events if what == "commit sent"]
    assert len(order) == 3
    answered = {tid: t for t, what, tid in client.events if what == "commit answered"}
    uploaded = {tid: t for t, what, tid in client.events if what == "upload answered"}
    for previous, following in zip(order, order[1:], strict=False):  # sent while the commit was held 1 s
        assert uploaded[following] < answered[previous]
    committed = {t.transaction_id for t in ledger.transactions(state=TransactionState.COMMITTED)}
    assert committed == set(order)
    assert [f.status for f in ledger.chunk_files()] == [FileStatus.LOADED] * 3
    recorded = ledger.contributions()  # every accepted answer reached the ledger with its commit
    assert sorted((c.transaction_id, c.status, c.num_rows_loaded) for c in recorded) == [
        (tid, "FINISHED", 2) for tid in sorted(order)
    ]
    ledger.close()
    client.close()


def test_a_failed_commit_leaves_no_transaction_open(qserv, tmp_path):
    """The commit fails for good (no redo allowed) while the next transaction's files are already sent:
    that transaction is aborted too, not left open for the next run."""
    database = "load_pipeline_fail"
    client, ledger, files = _setup(qserv, tmp_path, database)
    qserv.faults.add("fail_commit", match={"database": database}, times=0)
    try:
        with pytest.raises(LoadError, match="gave up after 1 attempts"):
            Loader(client, ledger, _settings(database, redo_attempts=0)).run(files)
    finally:
        qserv.faults.clear()
    sent = [tid for _, what, tid in client.events if what == "upload answered"]
    assert len(sent) == 2  # the first transaction's file, and the next one's, sent during the commit
    states = {t.id: t.state for t in client.list_transactions(database)}
    assert set(states) == set(sent) and set(states.values()) == {"ABORTED"}
    assert {t.state for t in ledger.transactions()} == {TransactionState.ABORTED}
    assert [f.status for f in ledger.chunk_files()] == [FileStatus.STAGED] * 3
    ledger.close()
    client.close()

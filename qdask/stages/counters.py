"""Verify before publish: Qserv's own row counters, per table, chunk and transaction, against the ledger.

A published catalog cannot be repaired (Qserv accepts no transaction in a published database), so before
publishing, the driver asks Qserv to count the rows each transaction holds in every chunk and overlap
table (``POST /ingest/table-stats`` then ``GET /ingest/table-stats/:db/:table``: Qserv's
``SqlRowStatsJob``, src/replica/contr/HttpIngestModule.cc _scanTableStats/_tableStats) and compares them
with what the ledger says each committed transaction carries (the contribution files' rows), and each
recorded contribution's answer with its file. Any difference — rows of a transaction this run does not
own (a second loader), a chunk short or long, a contribution whose answer disagrees with its file — stops
the run unpublished. Qserv cannot delete rows from a committed transaction (rows can only leave with
their whole transaction by an abort, which a commit rules out, or with the table or database), so the
way out is `qdask drop CONFIG`, then the same `qdask ingest` again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from qdask.ledger import REGULAR_CHUNK, Ledger, TransactionState
from qdask.qserv import QservClient
from qdask.stages.ownership import DEAD, place_text

log = logging.getLogger(__name__)

#: Qserv's dummy chunk, created empty in every partitioned table (never holds rows).
DUMMY_CHUNK = 1234567890


@dataclass(frozen=True)
class Place:
    """Rows of one transaction in one (table, chunk, overlap); chunk 0 for a regular table."""

    table: str
    chunk: int
    overlap: bool
    transaction_id: int

    def __str__(self) -> str:
        where = "" if self.chunk == 0 and not self.overlap else f" chunk {self.chunk}"
        return f"{self.table}{where}{' overlap' if self.overlap else ''} transaction {self.transaction_id}"


def expected(ledger: Ledger, tables: list[str]) -> dict[Place, int]:
    """Rows each committed transaction of the ledger put in each (table, chunk, overlap), by its files."""
    rows = {f.key: f.rows for f in ledger.chunk_files()}
    want: dict[Place, int] = {}
    for t in ledger.transactions(state=TransactionState.COMMITTED):
        for key in t.files:
            if key.table in tables and rows.get(key):
                chunk = 0 if key.chunk_id == REGULAR_CHUNK else key.chunk_id
                want[Place(key.table, chunk, key.overlap, t.transaction_id)] = rows[key]
    return want


def counted(client: QservClient, database: str, tables: list[str]) -> dict[Place, int]:
    """Qserv's counters, freshly scanned, of every live transaction (one entry per place: replicas of a
    chunk hold the same rows, and Qserv keeps one counter per (transaction, chunk, overlap))."""
    dead = {t.id for t in client.list_transactions(database) if t.state in DEAD}
    got: dict[Place, int] = {}
    for table in tables:
        client.delete_table_stats(database, table)  # a fresh count only: Qserv keeps older counters
        client.scan_table_stats(database, table, force=True)
        for e in client.table_stats(database, table):
            tid, chunk, n = int(e["transaction_id"]), int(e["chunk"]), int(e["num_rows"])
            if tid in dead or chunk == DUMMY_CHUNK or n == 0:  # counters kept from before an abort
                continue
            got[Place(table, chunk, bool(int(e["is_overlap"])), tid)] = n
    return got


def contribution_problems(ledger: Ledger) -> list[str]:
    """Loaded files whose recorded contributions (the last answer per worker) disagree with the file."""
    rows = {f.key: f.rows for f in ledger.chunk_files()}
    committed = {t.transaction_id for t in ledger.transactions(state=TransactionState.COMMITTED)}
    found = []
    for c in ledger.contributions():
        if c.transaction_id in committed and c.status == "FINISHED" and c.num_rows_loaded != rows.get(c.file):
            found.append(
                f"{place_text(c.file)} transaction {c.transaction_id} on {c.worker}: Qserv answered "
                f"{c.num_rows_loaded} row(s) loaded, the file holds {rows.get(c.file)}"
            )
    return found


def counter_problems(client: QservClient, ledger: Ledger, database: str, tables: list[str]) -> list[str]:
    """Every difference between Qserv's counters and the ledger, and in the recorded contributions."""
    want, got = expected(ledger, tables), counted(client, database, tables)
    problems = []
    for place in sorted(set(want) | set(got), key=lambda p: (p.table, p.chunk, p.overlap, p.transaction_id)):
        w, g = want.get(place), got.get(place, 0)
        if w is None:
            problems.append(f"{place}: Qserv holds {g} row(s) the ledger does not know of")
        elif w != g:
            problems.append(f"{place}: Qserv holds {g} row(s), the ledger {w}")
    problems += contribution_problems(ledger)
    log.info(
        "counters: %d place(s) compared (%d row(s) in Qserv, %d in the ledger), %d problem(s)",
        len(set(want) | set(got)),
        sum(got.values()),
        sum(want.values()),
        len(problems),
    )
    return problems

"""The load side of the ledger: Qserv transactions as last seen, the chunk files each carries, and each
contribution (one upload of a chunk file to a worker) with Qserv's answer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from qdask.ledger.base import LedgerBase, now
from qdask.ledger.records import (
    TRANSACTION_STATES,
    ChunkKey,
    Contribution,
    FileStatus,
    LedgerConflict,
    LedgerError,
    Transaction,
    TransactionState,
)
from qdask.ledger.schema import secret_keys


class LoadRecords(LedgerBase):
    """Transactions and contributions, as the load stage and its recovery record them."""

    def transaction_started(
        self, transaction_id: int, database: str, files: Iterable[ChunkKey], context: Mapping | None = None
    ) -> None:
        """Record a Qserv transaction just started and the chunk files it will carry.

        Idempotent for the same id and files. Refused (``LedgerConflict``) if a file is not recorded or is
        already carried by another started or committed transaction, and (``LedgerError``) if the
        context has a key that looks like a secret (the context is also sent to Qserv).
        """
        files = list(files)
        secrets = secret_keys(context or {})
        if secrets:
            raise LedgerError(f"a transaction context must not carry secrets; remove {', '.join(secrets)}")
        with self._write() as db:
            row = db.execute(
                "SELECT database FROM transactions WHERE transaction_id = ?", (transaction_id,)
            ).fetchone()
            if row is not None and row["database"] != database:
                raise LedgerConflict(
                    f"transaction {transaction_id} is recorded for database {row['database']}"
                )
            if row is None:
                db.execute(
                    "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        transaction_id,
                        database,
                        TransactionState.STARTED,
                        json.dumps(dict(context or {}), sort_keys=True),
                        now(),
                        now(),
                    ),
                )
            for key in files:
                file_id = self._file_id(db, key)
                other = db.execute(
                    "SELECT t.transaction_id, t.state FROM transaction_files tf JOIN transactions t "
                    "USING (transaction_id) WHERE tf.file_id = ? AND t.state != ? "
                    "AND t.transaction_id != ?",
                    (file_id, TransactionState.ABORTED, transaction_id),
                ).fetchone()
                if other is not None:
                    raise LedgerConflict(
                        f"chunk file {key} is already in {other['state']} transaction "
                        f"{other['transaction_id']}"
                    )
                db.execute("INSERT OR IGNORE INTO transaction_files VALUES (?, ?)", (transaction_id, file_id))

    def transaction_state(self, transaction_id: int, state: TransactionState | str) -> None:
        """Record a transaction's state as last seen in Qserv: ``committed`` (its files become loaded) or
        ``aborted`` (its files are free to load again). Re-recording the same state is a no-op; leaving a
        final state is refused."""
        if state not in TRANSACTION_STATES:
            raise ValueError(f"transaction state must be one of {TRANSACTION_STATES}, not {state!r}")
        state = TransactionState(state)
        with self._write() as db:
            row = db.execute(
                "SELECT state FROM transactions WHERE transaction_id = ?", (transaction_id,)
            ).fetchone()
            if row is None:
                raise LedgerError(f"transaction {transaction_id} is not recorded in {self.path}")
            if row["state"] == state:
                return
            if row["state"] != TransactionState.STARTED:
                raise LedgerConflict(
                    f"transaction {transaction_id} is {row['state']}; it cannot become {state}"
                )
            db.execute(
                "UPDATE transactions SET state = ?, updated = ? WHERE transaction_id = ?",
                (state, now(), transaction_id),
            )
            if state is TransactionState.COMMITTED:
                db.execute(
                    "UPDATE chunk_files SET status = ?, updated = ? WHERE file_id IN "
                    "(SELECT file_id FROM transaction_files WHERE transaction_id = ?)",
                    (FileStatus.LOADED, now(), transaction_id),
                )

    def transactions(self, *, state: TransactionState | None = None) -> list[Transaction]:
        out = []
        for r in self._select("transactions", "transaction_id", state=state):
            files = self._rows(
                "SELECT f.table_name, f.chunk_id, f.overlap FROM transaction_files tf JOIN chunk_files f "
                "USING (file_id) WHERE tf.transaction_id = ? ORDER BY 1, 2, 3",
                (r["transaction_id"],),
            )
            out.append(
                Transaction(
                    r["transaction_id"],
                    r["database"],
                    TransactionState(r["state"]),
                    json.loads(r["context"]),
                    tuple(ChunkKey(f[0], f[1], bool(f[2])) for f in files),
                )
            )
        return out

    def forget_loads(self) -> int:
        """Forget every transaction and contribution, and record every loaded chunk file as staged again:
        the database they were loaded into is gone (`qdask drop`), so the next run loads them all anew.
        Returns how many files were loaded."""
        with self._write() as db:
            loaded = db.execute(
                "UPDATE chunk_files SET status = ?, updated = ? WHERE status = ?",
                (FileStatus.STAGED, now(), FileStatus.LOADED),
            ).rowcount
            db.execute("DELETE FROM contributions")
            db.execute("DELETE FROM transaction_files")
            db.execute("DELETE FROM transactions")
        return loaded

    def open_transactions(self) -> list[Transaction]:
        """Transactions of this run last seen started: on resume, abort them in Qserv and redo their files."""
        return self.transactions(state=TransactionState.STARTED)

    def record_contribution(self, contribution: Contribution, *, retry: bool = False) -> None:
        """Record (or update) one upload of a chunk file to a worker in a transaction, with Qserv's answer.

        One record per (transaction, file, worker); ``retry=True`` counts another attempt of it.
        """
        c = contribution
        with self._write() as db:
            file_id = self._file_id(db, c.file)
            if (
                db.execute(
                    "SELECT 1 FROM transaction_files WHERE transaction_id = ? AND file_id = ?",
                    (c.transaction_id, file_id),
                ).fetchone()
                is None
            ):
                raise LedgerConflict(f"chunk file {c.file} is not carried by transaction {c.transaction_id}")
            db.execute(
                "INSERT INTO contributions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (transaction_id, file_id, worker) DO UPDATE SET qserv_id = excluded.qserv_id, "
                "status = excluded.status, num_rows = excluded.num_rows, "
                "num_rows_loaded = excluded.num_rows_loaded, num_bytes = excluded.num_bytes, "
                "num_warnings = excluded.num_warnings, warnings = excluded.warnings, error = excluded.error, "
                "retries = retries + ?, updated = excluded.updated",
                (
                    c.transaction_id,
                    file_id,
                    c.worker,
                    c.qserv_id,
                    c.status,
                    c.num_rows,
                    c.num_rows_loaded,
                    c.num_bytes,
                    c.num_warnings,
                    None if c.warnings is None else json.dumps(c.warnings),
                    c.error,
                    int(retry),
                    now(),
                    int(retry),
                ),
            )

    def contributions(self, transaction_id: int | None = None) -> list[Contribution]:
        sql, params = (
            "SELECT c.*, f.table_name, f.chunk_id, f.overlap FROM contributions c "
            "JOIN chunk_files f USING (file_id)",
            [],
        )
        if transaction_id is not None:
            sql, params = sql + " WHERE c.transaction_id = ?", [transaction_id]
        rows = self._rows(
            sql + " ORDER BY c.transaction_id, f.table_name, f.chunk_id, f.overlap, c.worker", params
        )
        return [
            Contribution(
                r["transaction_id"],
                ChunkKey(r["table_name"], r["chunk_id"], bool(r["overlap"])),
                r["worker"],
                r["status"],
                r["qserv_id"],
                r["num_rows"],
                r["num_rows_loaded"],
                r["num_bytes"],
                r["num_warnings"],
                None if r["warnings"] is None else json.loads(r["warnings"]),
                r["error"],
                r["retries"],
            )
            for r in rows
        ]

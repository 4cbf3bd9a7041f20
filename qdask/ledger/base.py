"""The ledger's connection: one sqlite3 connection to the staging directory's ledger file, created with
its schema on first use, its write transactions, and the run it belongs to."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from qdask.ledger.records import ChunkKey, FingerprintMismatch, LedgerConflict, LedgerError, Run
from qdask.ledger.schema import SCHEMA, SCHEMA_VERSION


def now() -> str:
    """The time a ledger row is written, as ISO 8601 UTC to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class LedgerBase:
    """The ledger file of one staging directory, opened (and created) with its schema; `Ledger` adds the
    records of each stage."""

    def __init__(self, path: str | os.PathLike, *, busy_timeout: float = 60.0):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Used by one thread at a time, but it may be closed by another (e.g. after a thread pool ends).
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA foreign_keys = ON")
        with self._write():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            elif version != SCHEMA_VERSION:
                raise LedgerError(
                    f"the ledger {self.path} has schema version {version}; this qdask reads {SCHEMA_VERSION} "
                    "(its staging was written by another qdask: `qdask reset CONFIG` starts it over)"
                )

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; IMMEDIATE takes the write lock up front (waiting up to the busy
        timeout), so two writers never deadlock upgrading read locks."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        return self._db.execute(sql, params).fetchall()

    def _select(self, source: str, order: str, **equal: Any) -> list[sqlite3.Row]:
        """``SELECT *`` from `source` (a table or a join) in `order`, the rows whose columns equal the given
        values (a value of None filters nothing): the one query behind each listing of records."""
        where = [(column, value) for column, value in equal.items() if value is not None]
        sql = f"SELECT * FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(f"{column} = ?" for column, _ in where)
        return self._rows(f"{sql} ORDER BY {order}", [value for _, value in where])

    # -- run --------------------------------------------------------------------------------------

    def open_run(self, fingerprint: str, *, run_id: str | None = None) -> Run:
        """The ledger's run, created on first use; ``FingerprintMismatch`` if it was another config's."""
        with self._write() as db:
            row = db.execute("SELECT run_id, fingerprint, created FROM run").fetchone()
            if row is None:
                run = Run(
                    run_id or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}", fingerprint, now()
                )
                db.execute("INSERT INTO run VALUES (1, ?, ?, ?)", (run.run_id, run.fingerprint, run.created))
                return run
        if row["fingerprint"] != fingerprint:
            raise FingerprintMismatch(self.path, row["fingerprint"], fingerprint)
        return Run(row["run_id"], row["fingerprint"], row["created"])

    def refingerprint(self, old: str, new: str) -> None:
        """The run's config became `new` (`qdask.extend`: it gained tables); only if it still is `old`."""
        with self._write() as db:
            db.execute("UPDATE run SET fingerprint = ? WHERE fingerprint = ?", (new, old))

    def run(self) -> Run | None:
        """The recorded run without checking a fingerprint (for ``qdask status``)."""
        row = self._db.execute("SELECT run_id, fingerprint, created FROM run").fetchone()
        return None if row is None else Run(row["run_id"], row["fingerprint"], row["created"])

    def _file_id(self, db: sqlite3.Connection, key: ChunkKey) -> int:
        """The row id of a recorded chunk file (both sides refer to files by it)."""
        row = db.execute(
            "SELECT file_id FROM chunk_files WHERE table_name = ? AND chunk_id = ? AND overlap = ?",
            (key.table, key.chunk_id, int(key.overlap)),
        ).fetchone()
        if row is None:
            raise LedgerConflict(f"no chunk file is recorded for {key}")
        return row[0]

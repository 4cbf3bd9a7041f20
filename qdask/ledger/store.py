"""The `Ledger`: the staging and load records over one sqlite3 connection, with the totals
``qdask status`` and verify read."""

from __future__ import annotations

from typing import Any

from qdask.ledger.loads import LoadRecords
from qdask.ledger.records import ChunkKey, FileStatus
from qdask.ledger.staging import StagingRecords


class Ledger(StagingRecords, LoadRecords):
    """The ledger of one staging directory. Open with ``Ledger(path)``; close with ``close()`` or ``with``."""

    def __reduce__(self):
        return (_reopen, (str(self.path), self.busy_timeout))

    # -- totals and summary -----------------------------------------------------------------------

    def chunk_rows(
        self, *, table: str | None = None, status: FileStatus | None = None
    ) -> dict[ChunkKey, int]:
        """Rows per (table, chunk, overlap) from the chunk files, for comparing with Qserv's counts."""
        return {f.key: f.rows for f in self.chunk_files(table=table, status=status)}

    def table_rows(self) -> dict[str, dict[str, int]]:
        """Per table: rows read from the input, invalid, quarantined (units) and rows/overlap rows staged
        and loaded (chunk files)."""
        out: dict[str, dict[str, int]] = {}
        for r in self._rows(
            "SELECT table_name, SUM(rows_read), SUM(rows_invalid), SUM(rows_quarantined) FROM units "
            "GROUP BY table_name"
        ):
            out[r[0]] = {"rows_read": r[1] or 0, "rows_invalid": r[2] or 0, "rows_quarantined": r[3] or 0}
        for r in self._rows(
            "SELECT table_name, overlap, status, SUM(rows) FROM chunk_files "
            "GROUP BY table_name, overlap, status"
        ):
            entry = out.setdefault(r[0], {"rows_read": 0, "rows_invalid": 0, "rows_quarantined": 0})
            name = ("overlap_rows_" if r[1] else "rows_") + r[2]
            entry[name] = entry.get(name, 0) + r[3]
        return out

    def summary(self) -> dict[str, Any]:
        """Counts per stage and state, for ``qdask status``."""

        def counts(sql: str) -> dict[str, int]:
            return {r[0]: r[1] for r in self._rows(sql)}

        shard = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(rows), 0), COALESCE(SUM(bytes), 0) FROM shards"
        )
        n_shards, shard_rows, shard_bytes = shard.fetchone()
        run = self.run()
        return {
            "run_id": run.run_id if run else None,
            "units": counts("SELECT status, COUNT(*) FROM units GROUP BY status"),
            "shards": {"count": n_shards, "rows": shard_rows, "bytes": shard_bytes},
            "chunks_to_collect": len(self.chunks_to_collect()),
            "chunk_files": counts("SELECT status, COUNT(*) FROM chunk_files GROUP BY status"),
            "transactions": counts("SELECT state, COUNT(*) FROM transactions GROUP BY state"),
            "contributions": counts("SELECT status, COUNT(*) FROM contributions GROUP BY status"),
        }


def _reopen(path: str, busy_timeout: float) -> Ledger:
    return Ledger(path, busy_timeout=busy_timeout)

"""The rows of a catalog as Qserv holds them, counted from the ledger: catalog rows, overlap copies and
replicas of regular tables, each counted once however often its transaction was redone.

A partitioned table's row is stored once in the table of its chunk: a *catalog row*. A director's row
near a chunk edge is stored again in the overlap table of each neighbouring chunk within the overlap
radius: *overlap copies*, which Qserv uses for near-neighbour joins and never returns as rows of the
table. A regular table is stored whole on every Qserv worker: its rows count once as catalog rows, and
the copies on the other workers are *replicas*. Only chunk files recorded loaded count, by the
contributions of their committed transaction, so a transaction aborted and redone counts once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from qdask.ledger import REGULAR_CHUNK, ChunkKey, FileStatus, Ledger, TransactionState

__all__ = ["RowCounts", "loaded_rows", "total"]


@dataclass(frozen=True)
class RowCounts:
    """Rows of one table (or of a catalog) in Qserv: the catalog's own rows, overlap copies, replicas."""

    catalog: int = 0
    overlap: int = 0
    replicas: int = 0

    @property
    def stored(self) -> int:
        """Every row Qserv's workers hold: catalog rows, overlap copies and replicas."""
        return self.catalog + self.overlap + self.replicas

    def __add__(self, other: RowCounts) -> RowCounts:
        return RowCounts(
            self.catalog + other.catalog, self.overlap + other.overlap, self.replicas + other.replicas
        )

    def to_dict(self) -> dict[str, int]:
        return {"catalog": self.catalog, "overlap_copies": self.overlap, "replicas": self.replicas}


def loaded_rows(ledger: Ledger, only: Collection[ChunkKey] | None = None) -> dict[str, RowCounts]:
    """Per table, the rows of the chunk files the ledger records loaded (of `only` these files, if given).

    A regular table's replicas are its rows times the workers beyond the first that finished a
    contribution of its file in the committed transaction.
    """
    committed = {t.transaction_id for t in ledger.transactions(state=TransactionState.COMMITTED)}
    copies: Counter[ChunkKey] = Counter(
        c.file for c in ledger.contributions() if c.transaction_id in committed and c.status == "FINISHED"
    )
    out: dict[str, RowCounts] = {}
    for f in ledger.chunk_files(status=FileStatus.LOADED):
        if only is not None and f.key not in only:
            continue
        if f.overlap:
            counts = RowCounts(overlap=f.rows)
        elif f.chunk_id == REGULAR_CHUNK:
            counts = RowCounts(catalog=f.rows, replicas=f.rows * max(copies[f.key] - 1, 0))
        else:
            counts = RowCounts(catalog=f.rows)
        out[f.table] = out.get(f.table, RowCounts()) + counts
    return out


def total(by_table: dict[str, RowCounts]) -> RowCounts:
    """The sum over tables."""
    return sum(by_table.values(), RowCounts())

"""The ledger's records and states: what a unit, shard, chunk file, transaction and contribution are, the
states they pass through, the destination key of staged rows, and the ledger's errors."""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

import numpy as np

from qdask.errors import QdaskError

#: The chunk id under which a regular (non-partitioned) table's contribution file is recorded.
REGULAR_CHUNK = -1

#: A shard's destinations, packed: ``dest`` = chunk id x 2 + overlap (sorted), and its rows there.
DESTINATIONS = np.dtype([("dest", "<i8"), ("rows", "<i8")])


def dest_of(chunk_ids, overlap):
    """The packed destination of chunk id(s) and overlap flag(s): chunk x 2 + overlap (order-preserving)."""
    return np.asarray(chunk_ids, np.int64) * 2 + np.asarray(overlap, np.int64)


class UnitStatus(StrEnum):
    """A unit of input: to partition (planned), done (partitioned), or to redo (failed)."""

    PLANNED = "planned"
    PARTITIONED = "partitioned"
    FAILED = "failed"


class FileStatus(StrEnum):
    """A contribution file: written and checksummed (staged), or committed in Qserv (loaded)."""

    STAGED = "staged"
    LOADED = "loaded"


class TransactionState(StrEnum):
    """A Qserv transaction as last seen by this run (Qserv's own states are STARTED, FINISHED, ABORTED...)."""

    STARTED = "started"
    COMMITTED = "committed"
    ABORTED = "aborted"


UNIT_STATES = tuple(s.value for s in UnitStatus)
FILE_STATES = tuple(s.value for s in FileStatus)
TRANSACTION_STATES = tuple(s.value for s in TransactionState)


class LedgerError(QdaskError, RuntimeError):
    """The ledger cannot do what was asked; the message says why."""


class FingerprintMismatch(LedgerError):
    """The ledger belongs to a run of a different config."""

    def __init__(self, path: Path, stored: str, given: str):
        super().__init__(
            f"the ledger {path} records a run of another config (fingerprint {stored}, this config has "
            f"{given}); use the config it was made with, or another staging directory for this config"
        )
        self.stored = stored
        self.given = given


class LedgerConflict(LedgerError):
    """A write that would contradict what the ledger already holds (e.g. replace loaded rows)."""


class ChunkKey(NamedTuple):
    """The destination of rows in Qserv: table, chunk id (``REGULAR_CHUNK`` for regular tables), overlap."""

    table: str
    chunk_id: int
    overlap: bool


@dataclass(frozen=True)
class Run:
    """The run a ledger belongs to (one per ledger)."""

    run_id: str
    fingerprint: str
    created: str


@dataclass(frozen=True)
class Unit:
    """A unit of input (``spec``: what the partition task needs to read it, JSON-serialisable)."""

    unit_id: str
    table: str
    spec: dict = field(default_factory=dict)
    status: UnitStatus = UnitStatus.PLANNED
    est_rows: int | None = None
    est_bytes: int | None = None
    rows_read: int | None = None
    rows_invalid: int | None = None
    rows_quarantined: int | None = None
    error: str | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Shard:
    """The rows of one unit of one table, in one file sorted by destination (``qdask.stages.shards``).

    ``destinations`` packs (dest, rows) as ``DESTINATIONS``; ``segments`` is the file's segment index,
    opaque here."""

    unit_id: str
    table: str
    path: str
    rows: int
    bytes: int
    checksum: str
    destinations: builtins.bytes = field(default=b"", repr=False)
    segments: builtins.bytes = field(default=b"", repr=False)

    def dests(self) -> np.ndarray:
        """The destinations (``DESTINATIONS`` records, sorted by dest)."""
        return np.frombuffer(self.destinations, DESTINATIONS)

    def keys(self) -> list[ChunkKey]:
        """The (table, chunk, overlap) this shard holds rows for, in order."""
        return [ChunkKey(self.table, d >> 1, bool(d & 1)) for d in self.dests()["dest"].tolist()]

    def rows_in(self, key: ChunkKey) -> int:
        """Rows this shard holds for ``key`` (0 when none)."""
        dests = self.dests()
        want = int(dest_of(key.chunk_id, key.overlap))
        at = int(np.searchsorted(dests["dest"], want))
        return int(dests["rows"][at]) if at < len(dests) and dests["dest"][at] == want else 0

    def home_rows(self) -> dict[int, int]:
        """Home (non-overlap) rows per chunk id."""
        dests = self.dests()
        home = dests[(dests["dest"] & 1) == 0]
        return dict(zip((home["dest"] >> 1).tolist(), home["rows"].tolist(), strict=True))


@dataclass(frozen=True)
class ChunkFile:
    """The contribution file of one (table, chunk, overlap); ``sources`` = ``shards_digest`` of its shards."""

    table: str
    chunk_id: int
    overlap: bool
    path: str
    rows: int
    bytes: int
    checksum: str
    sources: str
    status: FileStatus = FileStatus.STAGED

    @property
    def key(self) -> ChunkKey:
        return ChunkKey(self.table, self.chunk_id, self.overlap)


@dataclass(frozen=True)
class Transaction:
    """A Qserv transaction as last seen, with the chunk files it carries."""

    transaction_id: int
    database: str
    state: TransactionState
    context: dict
    files: tuple[ChunkKey, ...]


@dataclass(frozen=True)
class Contribution:
    """One upload of a chunk file to a worker within a transaction, with Qserv's answer."""

    transaction_id: int
    file: ChunkKey
    worker: str
    status: str
    qserv_id: int | None = None
    num_rows: int | None = None
    num_rows_loaded: int | None = None
    num_bytes: int | None = None
    num_warnings: int | None = None
    warnings: list | None = None
    error: str | None = None
    retries: int = 0


def shards_digest(shards: Iterable[Shard]) -> str:
    """A digest of the shards a chunk file is built from (unit ids and checksums, order-independent)."""
    items = sorted(f"{s.unit_id}\0{s.checksum}" for s in shards)
    return "sha256:" + hashlib.sha256("\n".join(items).encode()).hexdigest()

"""The durable record of an ingest run: SQLite in the staging directory.

It holds what every stage has done, so that ``qdask ingest`` re-run after any stop resumes exactly:

* the **run**: one per ledger, with the fingerprint of the resolved config (secrets removed). Opening the
  ledger with another fingerprint raises ``FingerprintMismatch``; the caller decides what to say or do.
* **units** of input (planned → partitioned, or failed), with rows read/invalid/quarantined and attempts;
* **shards**: the rows of one unit of one table, as one file of runs sorted by destination
  (``qdask.stages.shards``), with rows/bytes/checksum, its destinations (rows per (chunk, overlap)) and
  its segments (byte ranges with their checksums), both as packed arrays: one row per unit, however many
  chunks the unit touches;
* **chunk files**: the contribution file of one (table, chunk, overlap), staged → loaded. A regular
  (non-partitioned) table has a single file under the sentinel chunk ``REGULAR_CHUNK`` (-1), overlap 0;
  the loader sends it to every worker (Qserv ignores the chunk number of regular tables);
* **transactions** (Qserv's id, database, state as last seen, the chunk files they carry, context JSON);
* **contributions**: one upload of a chunk file to a worker in a transaction, with Qserv's answer.

Invariants are in the schema (primary keys, unique keys, foreign keys, CHECKs), so a double record is
impossible, and every write is idempotent. The invalidation rule:

* re-recording a shard, a chunk file or a unit plan with the same content is a no-op;
* a shard whose checksum changes, that appears, or that disappears (a unit re-partitioned, or re-planned
  with another spec) deletes the chunk file of each (table, chunk, overlap) it held (before or after)
  when that file is only staged:
  the chunk is collected again. If the file is loaded (its transaction committed) or carried by a
  transaction still open, nothing is changed and ``LedgerConflict`` is raised: rows already in Qserv
  cannot be replaced silently;
* a chunk file is recorded with the digest of the checksums of the shards holding its destination
  (``shards_digest``);
  if the shards changed meanwhile, the record is refused (``LedgerConflict``), so a collect racing a
  re-partition cannot record a stale file;
* a chunk file can be carried by at most one transaction that is started or committed (never the same
  rows in two live transactions); it becomes ``loaded`` when that transaction is recorded committed.

Concurrency and durability: WAL journal, ``synchronous=FULL``, busy timeout, and every write in one short
``BEGIN IMMEDIATE`` transaction, so the driver and Dask worker processes can write at once. FULL (one
fsync of the WAL per commit) rather than NORMAL because the ledger records facts about Qserv (a started
transaction id, a commit): after a power loss NORMAL may forget the last commits, and a forgotten open
transaction would block publishing. Writes are per unit, chunk or contribution (thousands per run, not
millions), so the fsync costs nothing noticeable. A killed process loses only its uncommitted
transaction. WAL needs shared memory: all writers must run on the same host as the file (not over NFS);
workers on other hosts return their metadata to the driver, which records it.

One ``Ledger`` object per process and thread (it owns one sqlite3 connection, used by one thread at a
time; it may be closed from another thread); pickling a ``Ledger`` sends only its path, and the
receiving process opens its own connection.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from qdask.errors import QdaskError

__all__ = [
    "REGULAR_CHUNK",
    "ChunkFile",
    "ChunkKey",
    "Contribution",
    "FileStatus",
    "FingerprintMismatch",
    "Ledger",
    "LedgerConflict",
    "LedgerError",
    "Run",
    "Shard",
    "Transaction",
    "TransactionState",
    "Unit",
    "UnitStatus",
    "config_fingerprint",
    "dest_of",
    "shards_digest",
]

#: The chunk id under which a regular (non-partitioned) table's contribution file is recorded.
REGULAR_CHUNK = -1

SCHEMA_VERSION = 2

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

_SCHEMA = f"""
CREATE TABLE run (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    run_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE units (
    unit_id TEXT PRIMARY KEY,
    table_name TEXT NOT NULL,
    spec TEXT NOT NULL,
    est_rows INTEGER,
    est_bytes INTEGER,
    status TEXT NOT NULL CHECK (status IN {UNIT_STATES}),
    rows_read INTEGER,
    rows_invalid INTEGER,
    rows_quarantined INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL
);
CREATE INDEX units_by_table ON units (table_name, status);
CREATE TABLE shards (
    unit_id TEXT NOT NULL REFERENCES units (unit_id),
    table_name TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL CHECK (rows >= 0),
    bytes INTEGER NOT NULL CHECK (bytes >= 0),
    checksum TEXT NOT NULL,
    destinations BLOB NOT NULL,
    segments BLOB NOT NULL,
    PRIMARY KEY (unit_id, table_name)
);
CREATE INDEX shards_by_table ON shards (table_name);
CREATE TABLE chunk_files (
    file_id INTEGER PRIMARY KEY,
    table_name TEXT NOT NULL,
    chunk_id INTEGER NOT NULL,
    overlap INTEGER NOT NULL CHECK (overlap IN (0, 1)),
    path TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL CHECK (rows >= 0),
    bytes INTEGER NOT NULL CHECK (bytes >= 0),
    checksum TEXT NOT NULL,
    sources TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN {FILE_STATES}),
    updated TEXT NOT NULL,
    UNIQUE (table_name, chunk_id, overlap)
);
CREATE TABLE transactions (
    transaction_id INTEGER PRIMARY KEY CHECK (transaction_id > 0),
    database TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN {TRANSACTION_STATES}),
    context TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE transaction_files (
    transaction_id INTEGER NOT NULL REFERENCES transactions (transaction_id),
    file_id INTEGER NOT NULL REFERENCES chunk_files (file_id) ON DELETE CASCADE,
    PRIMARY KEY (transaction_id, file_id)
);
CREATE INDEX transaction_files_by_file ON transaction_files (file_id);
CREATE TABLE contributions (
    transaction_id INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    worker TEXT NOT NULL,
    qserv_id INTEGER,
    status TEXT NOT NULL,
    num_rows INTEGER,
    num_rows_loaded INTEGER,
    num_bytes INTEGER,
    num_warnings INTEGER,
    warnings TEXT,
    error TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL,
    PRIMARY KEY (transaction_id, file_id, worker),
    FOREIGN KEY (transaction_id, file_id) REFERENCES transaction_files (transaction_id, file_id)
        ON DELETE CASCADE
);
PRAGMA user_version = {SCHEMA_VERSION};
"""


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


_SECRET_WORDS = ("auth_key", "password", "secret", "token", "credential")


def config_fingerprint(config: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> str:
    """``sha256:<hex>`` of a resolved config as canonical JSON, without secrets or ``ignore``-d keys.

    Any key containing auth_key/password/secret/token/credential is dropped at every depth, so the
    fingerprint never depends on, nor reveals, a secret. ``ignore`` holds dotted paths of settings that
    do not change what is loaded (e.g. ``"cluster"``, ``"cluster.workers"``).
    """
    ignored = {tuple(p.split(".")) for p in ignore}

    def clean(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, Mapping):
            return {
                str(k): clean(v, (*path, str(k)))
                for k, v in value.items()
                if (*path, str(k)) not in ignored and not any(w in str(k).lower() for w in _SECRET_WORDS)
            }
        if isinstance(value, list | tuple):
            return [clean(v, path) for v in value]
        return value

    text = json.dumps(clean(config, ()), sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _secret_keys(value: Any, path: str = "") -> list[str]:
    """Dotted paths of the keys in ``value`` that look like secrets."""
    found = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            here = f"{path}.{k}" if path else str(k)
            if any(w in str(k).lower() for w in _SECRET_WORDS):
                found.append(here)
            found += _secret_keys(v, here)
    elif isinstance(value, list | tuple):
        for v in value:
            found += _secret_keys(v, path)
    return found


def shards_digest(shards: Iterable[Shard]) -> str:
    """A digest of the shards a chunk file is built from (unit ids and checksums, order-independent)."""
    items = sorted(f"{s.unit_id}\0{s.checksum}" for s in shards)
    return "sha256:" + hashlib.sha256("\n".join(items).encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Ledger:
    """The ledger of one staging directory. Open with ``Ledger(path)``; close with ``close()`` or ``with``."""

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
                for statement in _SCHEMA.split(";"):
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

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        return (_reopen, (str(self.path), self.busy_timeout))

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

    # -- run --------------------------------------------------------------------------------------

    def open_run(self, fingerprint: str, *, run_id: str | None = None) -> Run:
        """The ledger's run, created on first use; ``FingerprintMismatch`` if it was another config's."""
        with self._write() as db:
            row = db.execute("SELECT run_id, fingerprint, created FROM run").fetchone()
            if row is None:
                run = Run(
                    run_id or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}", fingerprint, _now()
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

    # -- units ------------------------------------------------------------------------------------

    def plan_units(self, units: Iterable[Unit]) -> int:
        """Record planned units in one transaction; returns how many were new or changed.

        A unit already recorded with the same table and spec is left as it is (whatever its status); one
        whose table or spec changed is reset to planned and its shards are removed (see the module rule).
        """
        changed = 0
        with self._write() as db:
            for unit in units:
                spec = json.dumps(unit.spec, sort_keys=True)
                row = db.execute(
                    "SELECT table_name, spec FROM units WHERE unit_id = ?", (unit.unit_id,)
                ).fetchone()
                if row is not None and (row["table_name"], row["spec"]) == (unit.table, spec):
                    continue
                if row is not None:
                    self._replace_shards(db, unit.unit_id, [])
                db.execute(
                    "INSERT INTO units (unit_id, table_name, spec, est_rows, est_bytes, status, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (unit_id) DO UPDATE SET "
                    "table_name = excluded.table_name, spec = excluded.spec, est_rows = excluded.est_rows, "
                    "est_bytes = excluded.est_bytes, status = excluded.status, rows_read = NULL, "
                    "rows_invalid = NULL, rows_quarantined = NULL, error = NULL, updated = excluded.updated",
                    (unit.unit_id, unit.table, spec, unit.est_rows, unit.est_bytes, UnitStatus.PLANNED,
                     _now()),
                )
                changed += 1
        return changed

    def unit_started(self, unit_id: str) -> int:
        """Count an attempt at partitioning a unit (before it runs, so a task that kills its worker shows)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE units SET attempts = attempts + 1, updated = ? WHERE unit_id = ? RETURNING attempts",
                (_now(), unit_id),
            )
            row = cur.fetchone()
            if row is None:
                raise LedgerError(f"unit {unit_id!r} is not planned in {self.path}")
            return row[0]

    def unit_partitioned(
        self,
        unit_id: str,
        shards: Iterable[Shard],
        *,
        rows_read: int,
        rows_invalid: int = 0,
        rows_quarantined: int = 0,
    ) -> list[ChunkKey]:
        """Record a unit's complete set of shards and mark it partitioned, atomically.

        The given shards replace the unit's previous ones. Returns the keys whose staged chunk file
        was invalidated (to be collected again); raises ``LedgerConflict`` if a loaded one would be.
        """
        shards = list(shards)
        for shard in shards:
            if shard.unit_id != unit_id:
                raise LedgerError(f"shard {shard.path} belongs to unit {shard.unit_id!r}, not {unit_id!r}")
        with self._write() as db:
            if db.execute("SELECT 1 FROM units WHERE unit_id = ?", (unit_id,)).fetchone() is None:
                raise LedgerError(f"unit {unit_id!r} is not planned in {self.path}")
            invalidated = self._replace_shards(db, unit_id, shards)
            db.execute(
                "UPDATE units SET status = ?, rows_read = ?, rows_invalid = ?, "
                "rows_quarantined = ?, error = NULL, updated = ? WHERE unit_id = ?",
                (UnitStatus.PARTITIONED, rows_read, rows_invalid, rows_quarantined, _now(), unit_id),
            )
        return invalidated

    def unit_failed(self, unit_id: str, error: str) -> None:
        """Mark a unit failed with its error text (its previous shards, if any, stay recorded)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE units SET status = ?, error = ?, updated = ? WHERE unit_id = ?",
                (UnitStatus.FAILED, error, _now(), unit_id),
            )
            if cur.rowcount == 0:
                raise LedgerError(f"unit {unit_id!r} is not planned in {self.path}")

    def _replace_shards(self, db: sqlite3.Connection, unit_id: str, shards: list[Shard]) -> list[ChunkKey]:
        rows = db.execute("SELECT * FROM shards WHERE unit_id = ?", (unit_id,))
        old = {r["table_name"]: _shard(r) for r in rows}
        new = {s.table: s for s in shards}
        if len(new) != len(shards):
            raise LedgerError(f"unit {unit_id!r}: two shards for the same table")
        changed = {t for t in old.keys() | new.keys() if old.get(t) != new.get(t)}
        invalidated: list[ChunkKey] = []
        for table in sorted(changed):
            # every destination the unit held, before or after, may have other rows now
            dests = np.union1d(
                old[table].dests()["dest"] if table in old else np.empty(0, np.int64),
                new[table].dests()["dest"] if table in new else np.empty(0, np.int64),
            )
            staged = [
                ChunkKey(table, r[0], bool(r[1]))
                for r in db.execute(
                    "SELECT chunk_id, overlap FROM chunk_files WHERE table_name = ? "
                    "ORDER BY chunk_id, overlap",
                    (table,),
                )
            ]
            hit = np.isin(dest_of([k.chunk_id for k in staged], [k.overlap for k in staged]), dests)
            hits = [k for k, h in zip(staged, hit.tolist(), strict=True) if h]
            invalidated += [k for k in hits if self._invalidate(db, k)]
            if table not in new:
                db.execute("DELETE FROM shards WHERE unit_id = ? AND table_name = ?", (unit_id, table))
                continue
            shard = new[table]
            db.execute(
                "INSERT INTO shards VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (unit_id, table_name) DO UPDATE SET path = excluded.path, rows = excluded.rows, "
                "bytes = excluded.bytes, checksum = excluded.checksum, destinations = excluded.destinations, "
                "segments = excluded.segments",
                (unit_id, table, shard.path, shard.rows, shard.bytes, shard.checksum, shard.destinations,
                 shard.segments),
            )
        return sorted(invalidated)

    def _invalidate(self, db: sqlite3.Connection, key: ChunkKey) -> bool:
        """Delete the staged chunk file of ``key``; refuse if it is loaded or in an open transaction."""
        row = db.execute(
            "SELECT f.file_id, f.status, f.path, ("
            "  SELECT MIN(t.transaction_id) FROM transaction_files tf"
            "  JOIN transactions t USING (transaction_id) WHERE tf.file_id = f.file_id"
            "  AND t.state = ?) AS open_tid "
            "FROM chunk_files f WHERE table_name = ? AND chunk_id = ? AND overlap = ?",
            (TransactionState.STARTED, key.table, key.chunk_id, int(key.overlap)),
        ).fetchone()
        if row is None:
            return False
        loaded = row["status"] == FileStatus.LOADED
        if loaded or row["open_tid"] is not None:
            where = (
                "is loaded in Qserv"
                if loaded
                else f"is in open transaction {row['open_tid']}"
            )
            raise LedgerConflict(
                f"the input of chunk file {row['path']} ({key.table}, chunk {key.chunk_id}, overlap "
                f"{int(key.overlap)}) changed, but that file {where}; its rows cannot be replaced silently"
            )
        db.execute("DELETE FROM chunk_files WHERE file_id = ?", (row["file_id"],))
        return True

    def units(self, *, table: str | None = None, status: UnitStatus | None = None) -> list[Unit]:
        sql = "SELECT * FROM units WHERE 1"
        params: list[Any] = []
        if table is not None:
            sql, params = sql + " AND table_name = ?", [*params, table]
        if status is not None:
            sql, params = sql + " AND status = ?", [*params, status]
        return [_unit(r) for r in self._rows(sql + " ORDER BY unit_id", params)]

    def units_to_partition(self) -> list[Unit]:
        """Units not yet partitioned (planned or failed), in id order."""
        rows = self._rows("SELECT * FROM units WHERE status != ? ORDER BY unit_id", (UnitStatus.PARTITIONED,))
        return [_unit(r) for r in rows]

    # -- shards and chunk files -------------------------------------------------------------------

    def shards(
        self, key: ChunkKey | None = None, *, unit_id: str | None = None, table: str | None = None
    ) -> list[Shard]:
        """Shards holding rows of one destination, or of one unit, or of one table, or all; in (table, unit)
        order."""
        sql, params = "SELECT * FROM shards WHERE 1", list[Any]()
        if key is not None or table is not None:
            sql, params = sql + " AND table_name = ?", [*params, key.table if key is not None else table]
        if unit_id is not None:
            sql, params = sql + " AND unit_id = ?", [*params, unit_id]
        shards = [_shard(r) for r in self._rows(sql + " ORDER BY table_name, unit_id", params)]
        if key is not None:
            shards = [s for s in shards if s.rows_in(key)]
        return shards

    def destinations(self, table: str) -> dict[ChunkKey, int]:
        """Every destination of ``table``'s shards with its rows (home and overlap), in destination order."""
        parts = [s.dests() for s in self.shards(table=table)]
        if not parts:
            return {}
        merged = np.concatenate(parts)
        dests, inverse = np.unique(merged["dest"], return_inverse=True)
        rows = np.bincount(inverse, weights=merged["rows"], minlength=len(dests)).astype(np.int64)
        return {
            ChunkKey(table, d >> 1, bool(d & 1)): n
            for d, n in zip(dests.tolist(), rows.tolist(), strict=True)
        }

    def chunks_to_collect(self) -> list[ChunkKey]:
        """Destinations with shards, no chunk file yet, and every unit of their table partitioned."""
        ready = self._rows(
            "SELECT table_name FROM units GROUP BY table_name "
            "HAVING SUM(status != ?) = 0 ORDER BY table_name",
            (UnitStatus.PARTITIONED,),
        )
        keys: list[ChunkKey] = []
        for (table,) in ready:
            staged = {
                ChunkKey(table, r[0], bool(r[1]))
                for r in self._rows(
                    "SELECT chunk_id, overlap FROM chunk_files WHERE table_name = ?", (table,)
                )
            }
            keys += [k for k in self.destinations(table) if k not in staged]
        return keys

    def record_chunk_file(self, file: ChunkFile) -> bool:
        """Record a collected contribution file as staged; returns False when it was already recorded.

        ``file.sources`` must equal ``shards_digest`` of the shards now holding its destination, else the
        file was built from stale shards and ``LedgerConflict`` is raised. A different file for the same
        destination replaces a staged record, and is refused for a loaded or in-transaction one.
        """
        return self.record_chunk_files([file])[0]

    def record_chunk_files(self, files: Sequence[ChunkFile]) -> list[bool]:
        """`record_chunk_file` for several files in one transaction (the shards are read once per table)."""
        out = []
        with self._write() as db:
            by_table: dict[str, list[Shard]] = {}
            for file in files:
                key = file.key
                if key.table not in by_table:
                    rows = db.execute("SELECT * FROM shards WHERE table_name = ?", (key.table,))
                    by_table[key.table] = [_shard(r) for r in rows]
                current = shards_digest(s for s in by_table[key.table] if s.rows_in(key))
                if file.sources != current:
                    raise LedgerConflict(
                        f"chunk file {file.path} was built from shards that changed since ({key.table}, "
                        f"chunk {key.chunk_id}, overlap {int(key.overlap)}); collect it again"
                    )
                out.append(self._record_chunk_file(db, file))
        return out

    def _record_chunk_file(self, db: sqlite3.Connection, file: ChunkFile) -> bool:
        key = file.key
        row = db.execute(
            "SELECT path, rows, bytes, checksum FROM chunk_files WHERE table_name = ? AND chunk_id = ? "
            "AND overlap = ?",
            (key.table, key.chunk_id, int(key.overlap)),
        ).fetchone()
        if row is not None and tuple(row) == (file.path, file.rows, file.bytes, file.checksum):
            return False
        if row is not None:
            self._invalidate(db, key)
        db.execute(
            "INSERT INTO chunk_files (table_name, chunk_id, overlap, path, rows, bytes, checksum, "
            "sources, status, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.table,
                key.chunk_id,
                int(key.overlap),
                file.path,
                file.rows,
                file.bytes,
                file.checksum,
                file.sources,
                FileStatus.STAGED,
                _now(),
            ),
        )
        return True

    def drop_chunk_file(self, key: ChunkKey) -> bool:
        """Forget a staged chunk file (e.g. found corrupt on disk) so it is collected again."""
        with self._write() as db:
            return self._invalidate(db, key)

    def chunk_files(self, *, status: FileStatus | None = None, table: str | None = None) -> list[ChunkFile]:
        sql = "SELECT * FROM chunk_files WHERE 1"
        params: list[Any] = []
        if status is not None:
            sql, params = sql + " AND status = ?", [*params, status]
        if table is not None:
            sql, params = sql + " AND table_name = ?", [*params, table]
        return [_chunk_file(r) for r in self._rows(sql + " ORDER BY table_name, chunk_id, overlap", params)]

    def files_to_load(self) -> list[ChunkFile]:
        """Staged chunk files not carried by a started transaction (after aborting the open ones on
        resume, their files are here again)."""
        rows = self._rows(
            "SELECT * FROM chunk_files f WHERE status = ? AND NOT EXISTS ("
            "  SELECT 1 FROM transaction_files tf JOIN transactions t USING (transaction_id) "
            "  WHERE tf.file_id = f.file_id AND t.state = ?) "
            "ORDER BY table_name, chunk_id, overlap",
            (FileStatus.STAGED, TransactionState.STARTED),
        )
        return [_chunk_file(r) for r in rows]

    # -- transactions and contributions -----------------------------------------------------------

    def transaction_started(
        self, transaction_id: int, database: str, files: Iterable[ChunkKey], context: Mapping | None = None
    ) -> None:
        """Record a Qserv transaction just started and the chunk files it will carry.

        Idempotent for the same id and files. Refused (``LedgerConflict``) if a file is not recorded or is
        already carried by another started or committed transaction, and (``LedgerError``) if the
        context has a key that looks like a secret (the context is also sent to Qserv).
        """
        files = list(files)
        secrets = _secret_keys(context or {})
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
                        _now(),
                        _now(),
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
                (state, _now(), transaction_id),
            )
            if state is TransactionState.COMMITTED:
                db.execute(
                    "UPDATE chunk_files SET status = ?, updated = ? WHERE file_id IN "
                    "(SELECT file_id FROM transaction_files WHERE transaction_id = ?)",
                    (FileStatus.LOADED, _now(), transaction_id),
                )

    def transactions(self, *, state: TransactionState | None = None) -> list[Transaction]:
        sql = "SELECT * FROM transactions"
        params: list[Any] = []
        if state is not None:
            sql, params = sql + " WHERE state = ?", [state]
        out = []
        for r in self._rows(sql + " ORDER BY transaction_id", params):
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
                (FileStatus.STAGED, _now(), FileStatus.LOADED),
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
                    _now(),
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

    def _file_id(self, db: sqlite3.Connection, key: ChunkKey) -> int:
        row = db.execute(
            "SELECT file_id FROM chunk_files WHERE table_name = ? AND chunk_id = ? AND overlap = ?",
            (key.table, key.chunk_id, int(key.overlap)),
        ).fetchone()
        if row is None:
            raise LedgerConflict(f"no chunk file is recorded for {key}")
        return row[0]

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


def _unit(r: sqlite3.Row) -> Unit:
    return Unit(
        r["unit_id"],
        r["table_name"],
        json.loads(r["spec"]),
        UnitStatus(r["status"]),
        r["est_rows"],
        r["est_bytes"],
        r["rows_read"],
        r["rows_invalid"],
        r["rows_quarantined"],
        r["error"],
        r["attempts"],
    )


def _shard(r: sqlite3.Row) -> Shard:
    return Shard(
        r["unit_id"],
        r["table_name"],
        r["path"],
        r["rows"],
        r["bytes"],
        r["checksum"],
        bytes(r["destinations"]),
        bytes(r["segments"]),
    )


def _chunk_file(r: sqlite3.Row) -> ChunkFile:
    return ChunkFile(
        r["table_name"],
        r["chunk_id"],
        bool(r["overlap"]),
        r["path"],
        r["rows"],
        r["bytes"],
        r["checksum"],
        r["sources"],
        FileStatus(r["status"]),
    )

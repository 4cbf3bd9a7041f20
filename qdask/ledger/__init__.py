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

from qdask.ledger.records import (
    DESTINATIONS,
    REGULAR_CHUNK,
    ChunkFile,
    ChunkKey,
    Contribution,
    FileStatus,
    FingerprintMismatch,
    LedgerConflict,
    LedgerError,
    Run,
    Shard,
    Transaction,
    TransactionState,
    Unit,
    UnitStatus,
    dest_of,
    shards_digest,
)
from qdask.ledger.schema import config_fingerprint
from qdask.ledger.store import Ledger

__all__ = [
    "DESTINATIONS",
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

"""The controller's records (Qserv's replication database), kept in memory and written through to MariaDB.

Every record (``records.py``) is stored as a JSON document in ``<instance>_replica.records`` under its kind
and key, so a restarted stand-in loads what happened before it stopped. Transaction and contribution ids
come from AUTO_INCREMENT sequences: global, never reused (as in Qserv).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from qdask.emulator.protocol import OperationFailed
from qdask.emulator.records import (
    RECORD_TYPES,
    ChunkReplica,
    Contribution,
    Database,
    Family,
    Record,
    Table,
    TableStats,
    Transaction,
    Worker,
)
from qdask.emulator.storage import SqlPool, qid


def now_ms() -> int:
    return int(time.time() * 1000)


class State:
    """All controller records. Reads are in memory; every change is persisted with :meth:`save`."""

    def __init__(self, pool: SqlPool, dbname: str):
        self.pool = pool
        self.dbname = dbname
        self.workers: dict[str, Worker] = {}
        self.families: dict[str, Family] = {}
        self.databases: dict[str, Database] = {}
        self.tables: dict[tuple[str, str], Table] = {}
        self.replicas: dict[str, dict[int, list[str]]] = {}
        self.transactions: dict[int, Transaction] = {}
        self.contribs: dict[int, Contribution] = {}
        self.stats: dict[tuple[str, str], TableStats] = {}
        self._load: dict[str, int] = {}  # chunk replicas per worker, all databases

    # ---- persistence
    def open(self) -> None:
        """Create the schema if needed and load every record (blocking; called once at start)."""
        db = qid(self.dbname)
        for sql in (
            f"CREATE DATABASE IF NOT EXISTS {db}",
            f"CREATE TABLE IF NOT EXISTS {db}.`records` (`kind` VARCHAR(16) NOT NULL,"
            " `id` VARCHAR(255) NOT NULL, `doc` LONGTEXT NOT NULL, PRIMARY KEY (`kind`, `id`)) ENGINE=InnoDB",
            *(
                f"CREATE TABLE IF NOT EXISTS {db}.`seq_{seq}` (`id` INT UNSIGNED NOT NULL AUTO_INCREMENT"
                " PRIMARY KEY) ENGINE=InnoDB"
                for seq in ("transaction", "contrib")
            ),
        ):
            self.pool.execute(sql)
        for kind, _key, doc in self.pool.execute(f"SELECT kind, id, doc FROM {db}.`records`"):
            self._index(RECORD_TYPES[kind].from_doc(json.loads(doc)))

    def _index(self, record: Record) -> None:
        """Put a record where reads find it."""
        match record:
            case Worker():
                self.workers[record.name] = record
            case Family():
                self.families[record.name] = record
            case Database():
                self.databases[record.name] = record
            case Table():
                self.tables[(record.database, record.name)] = record
            case ChunkReplica():
                previous = self.replicas.setdefault(record.database, {}).get(record.chunk, [])
                self._count(previous, -1)
                self._count(record.workers, +1)
                self.replicas[record.database][record.chunk] = record.workers
            case Transaction():
                self.transactions[record.id] = record
            case Contribution():
                self.contribs[record.id] = record
            case TableStats():
                self.stats[(record.database, record.table)] = record

    def _count(self, workers: list[str], delta: int) -> None:
        for w in workers:
            self._load[w] = self._load.get(w, 0) + delta

    async def save(self, record: Record) -> None:
        """Record (or replace) a record in memory and in MariaDB."""
        self._index(record)
        await self.pool.aexecute(
            f"REPLACE INTO {qid(self.dbname)}.`records` (kind, id, doc) VALUES (%s,%s,%s)",
            (record.KIND, record.key, json.dumps(record.to_doc())),
        )

    async def _delete(self, kind: str, key: str) -> None:
        await self.pool.aexecute(
            f"DELETE FROM {qid(self.dbname)}.`records` WHERE kind=%s AND id=%s", (kind, key)
        )

    async def next_id(self, seq: Literal["transaction", "contrib"]) -> int:
        def go(conn: Any) -> int:
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {qid(self.dbname)}.`seq_{seq}` () VALUES ()")
                return int(cur.lastrowid)

        result: int = await self.pool.run(go)
        return result

    async def forget_database(self, name: str) -> None:
        """Remove every record of a database (``DELETE /ingest/database``); ids are not reused."""
        self.databases.pop(name, None)
        for key in [k for k in self.tables if k[0] == name]:
            del self.tables[key]
        for workers in self.replicas.pop(name, {}).values():
            self._count(workers, -1)
        for tid in [i for i, t in self.transactions.items() if t.database == name]:
            del self.transactions[tid]
        for cid in [i for i, c in self.contribs.items() if c.database == name]:
            del self.contribs[cid]
        for key in [k for k in self.stats if k[0] == name]:
            del self.stats[key]
        like = name.replace("_", "\\_")
        await self.pool.aexecute(
            f"DELETE FROM {qid(self.dbname)}.`records` WHERE (kind='database' AND id=%s)"
            " OR (kind IN ('table','stats') AND id LIKE %s) OR (kind='replica' AND id LIKE %s)"
            " OR (kind IN ('trans','contrib') AND JSON_VALUE(doc, '$.database')=%s)",
            (name, like + ".%", like + "/%", name),
        )

    async def forget_table(self, db: str, table: str) -> None:
        self.tables.pop((db, table), None)
        self.stats.pop((db, table), None)
        for kind in (Table.KIND, TableStats.KIND):
            await self._delete(kind, f"{db}.{table}")

    # ---- lookups, failing with the texts of Qserv's configuration and database services
    def database(self, name: str) -> Database:
        """``Configuration::databaseInfo`` (``Configuration.cc:880-886``)."""
        db = self.databases.get(name)
        if db is None:
            raise OperationFailed(f"CONFIG  _databaseInfo no such database '{name}'.")
        return db

    def table(self, db: Database, name: str) -> Table:
        """``DatabaseInfo::findTable`` (``ConfigDatabase.cc:176-184``)."""
        t = self.tables.get((db.name, name))
        if t is None:
            raise OperationFailed(
                f"DatabaseInfo::findTable no such table '{name}' found in the database '{db.name}'."
            )
        return t

    def transaction(self, tid: int) -> Transaction:
        """``DatabaseServicesMySQL::transaction`` (``DatabaseServicesMySQL.cc:1495-1504``)."""
        t = self.transactions.get(tid)
        if t is None:
            raise OperationFailed(
                f"DatabaseServicesMySQL::_findTransactionImpl predicate=`id`={tid} no such transaction"
            )
        return t

    # ---- queries
    def db_tables(self, db: str) -> list[Table]:
        """The tables of a database by name (Qserv keeps them in a ``std::map``, ``ConfigDatabase.h:178``)."""
        return sorted((t for (d, _), t in self.tables.items() if d == db), key=lambda t: t.name)

    def db_transactions(self, db: str) -> list[Transaction]:
        return sorted((t for t in self.transactions.values() if t.database == db), key=lambda t: t.id)

    def trans_contribs(self, trans_id: int) -> list[Contribution]:
        return sorted((c for c in self.contribs.values() if c.transaction_id == trans_id), key=lambda c: c.id)

    def chunk_load(self) -> dict[str, int]:
        """Number of chunk replicas per worker across all databases (the least-loaded criterion)."""
        return {name: self._load.get(name, 0) for name in self.workers}

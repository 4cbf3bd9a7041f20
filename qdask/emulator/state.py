"""The controller's records (Qserv's replication database), kept in memory and written through to MariaDB.

Families, databases, tables, chunk replicas, transactions, contributions, row-count statistics and the
worker registry are stored as JSON documents in ``<instance>_replica.records``, so a restarted stand-in
loads what happened before it stopped. Transaction and contribution ids come from AUTO_INCREMENT
sequences: global, never reused (as in Qserv).
"""

from __future__ import annotations

import json
import time

from qdask.emulator.storage import SqlPool, qid

TRANSACTION_STATES = (
    "IS_STARTING",
    "STARTED",
    "IS_FINISHING",
    "IS_ABORTING",
    "FINISHED",
    "ABORTED",
    "START_FAILED",
    "FINISH_FAILED",
    "ABORT_FAILED",
)
TRANSITIONS = {
    "IS_STARTING": {"STARTED", "START_FAILED", "IS_ABORTING"},
    "STARTED": {"IS_FINISHING", "IS_ABORTING"},
    "IS_FINISHING": {"FINISHED", "FINISH_FAILED", "IS_ABORTING"},
    "IS_ABORTING": {"ABORTED", "ABORT_FAILED"},
    "START_FAILED": {"IS_ABORTING"},
    "FINISH_FAILED": {"IS_ABORTING"},
    "ABORT_FAILED": {"IS_ABORTING"},
    "FINISHED": set(),
    "ABORTED": set(),
}
CONTRIB_STATUSES = (
    "IN_PROGRESS",
    "CREATE_FAILED",
    "START_FAILED",
    "READ_FAILED",
    "LOAD_FAILED",
    "CANCELLED",
    "FINISHED",
)


def now_ms() -> int:
    return int(time.time() * 1000)


class State:
    """All controller records. Reads are in memory; every change is persisted with :meth:`put`."""

    KINDS = ("worker", "family", "database", "table", "replica", "trans", "contrib", "stats")

    def __init__(self, pool: SqlPool, dbname: str):
        self.pool = pool
        self.dbname = dbname
        self.workers: dict[str, dict] = {}
        self.families: dict[str, dict] = {}
        self.databases: dict[str, dict] = {}
        self.tables: dict[tuple[str, str], dict] = {}
        self.replicas: dict[str, dict[int, list[str]]] = {}
        self.transactions: dict[int, dict] = {}
        self.contribs: dict[int, dict] = {}
        self.stats: dict[str, dict] = {}
        self._load: dict[str, int] = {}  # chunk replicas per worker, all databases

    # ---- persistence
    def open(self) -> None:
        """Create the schema if needed and load every record (blocking; called once at start)."""
        db = qid(self.dbname)
        for sql in (
            f"CREATE DATABASE IF NOT EXISTS {db}",
            f"CREATE TABLE IF NOT EXISTS {db}.`records` (`kind` VARCHAR(16) NOT NULL,"
            " `id` VARCHAR(255) NOT NULL, `doc` LONGTEXT NOT NULL, PRIMARY KEY (`kind`, `id`)) ENGINE=InnoDB",
            f"CREATE TABLE IF NOT EXISTS {db}.`seq_transaction` (`id` INT UNSIGNED NOT NULL AUTO_INCREMENT"
            " PRIMARY KEY) ENGINE=InnoDB",
            f"CREATE TABLE IF NOT EXISTS {db}.`seq_contrib` (`id` INT UNSIGNED NOT NULL AUTO_INCREMENT"
            " PRIMARY KEY) ENGINE=InnoDB",
        ):
            self.pool.execute(sql)
        for kind, key, doc in self.pool.execute(f"SELECT kind, id, doc FROM {db}.`records`"):
            obj = json.loads(doc)
            if kind == "worker":
                self.workers[key] = obj
            elif kind == "family":
                self.families[key] = obj
            elif kind == "database":
                self.databases[key] = obj
            elif kind == "table":
                self.tables[(obj["database"], obj["name"])] = obj
            elif kind == "replica":
                self.replicas.setdefault(obj["database"], {})[obj["chunk"]] = obj["workers"]
                for w in obj["workers"]:
                    self._load[w] = self._load.get(w, 0) + 1
            elif kind == "trans":
                self.transactions[int(key)] = obj
            elif kind == "contrib":
                self.contribs[int(key)] = obj
            elif kind == "stats":
                self.stats[key] = obj

    async def put(self, kind: str, key, doc: dict) -> None:
        await self.pool.aexecute(
            f"REPLACE INTO {qid(self.dbname)}.`records` (kind, id, doc) VALUES (%s,%s,%s)",
            (kind, str(key), json.dumps(doc)),
        )

    async def delete(self, kind: str, key) -> None:
        await self.pool.aexecute(
            f"DELETE FROM {qid(self.dbname)}.`records` WHERE kind=%s AND id=%s", (kind, str(key))
        )

    async def next_id(self, seq: str) -> int:
        def go(conn):
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {qid(self.dbname)}.`seq_{seq}` () VALUES ()")
                return cur.lastrowid

        return await self.pool.run(go)

    # ---- helpers used by controller and workers
    def put_worker(self, worker: dict):
        self.workers[worker["name"]] = worker
        return self.put("worker", worker["name"], worker)

    def put_family(self, fam: dict):
        self.families[fam["name"]] = fam
        return self.put("family", fam["name"], fam)

    def put_database(self, db: dict):
        self.databases[db["database"]] = db
        return self.put("database", db["database"], db)

    def put_table(self, t: dict):
        self.tables[(t["database"], t["name"])] = t
        return self.put("table", f"{t['database']}.{t['name']}", t)

    def put_replica(self, db: str, chunk: int, workers: list[str]):
        for w in self.replicas.get(db, {}).get(chunk, []):
            self._load[w] = self._load.get(w, 0) - 1
        for w in workers:
            self._load[w] = self._load.get(w, 0) + 1
        self.replicas.setdefault(db, {})[chunk] = workers
        return self.put("replica", f"{db}/{chunk}", {"database": db, "chunk": chunk, "workers": workers})

    def put_trans(self, t: dict):
        self.transactions[t["id"]] = t
        return self.put("trans", t["id"], t)

    def put_contrib(self, c: dict):
        self.contribs[c["id"]] = c
        return self.put("contrib", c["id"], c)

    def put_stats(self, key: str, s: dict):
        self.stats[key] = s
        return self.put("stats", key, s)

    async def forget_database(self, name: str) -> None:
        """Remove every record of a database (``DELETE /ingest/database``); ids are not reused."""
        self.databases.pop(name, None)
        for key in [k for k in self.tables if k[0] == name]:
            del self.tables[key]
        for workers in self.replicas.pop(name, {}).values():
            for w in workers:
                self._load[w] = self._load.get(w, 0) - 1
        for tid in [i for i, t in self.transactions.items() if t["database"] == name]:
            del self.transactions[tid]
        for cid in [i for i, c in self.contribs.items() if c["database"] == name]:
            del self.contribs[cid]
        for key in [k for k in self.stats if k.startswith(name + ".")]:
            del self.stats[key]
        db = qid(self.dbname)
        await self.pool.aexecute(
            f"DELETE FROM {db}.`records` WHERE (kind='database' AND id=%s)"
            " OR (kind IN ('table','stats') AND id LIKE %s) OR (kind='replica' AND id LIKE %s)"
            " OR (kind IN ('trans','contrib') AND JSON_VALUE(doc, '$.database')=%s)",
            (name, name.replace("_", "\\_") + ".%", name.replace("_", "\\_") + "/%", name),
        )

    async def forget_table(self, db: str, table: str) -> None:
        self.tables.pop((db, table), None)
        self.stats.pop(f"{db}.{table}", None)
        await self.delete("table", f"{db}.{table}")
        await self.delete("stats", f"{db}.{table}")

    def db_tables(self, db: str) -> list[dict]:
        """The tables of a database in registration order."""
        return sorted((t for (d, _), t in self.tables.items() if d == db), key=lambda t: t["seq"])

    def chunk_load(self) -> dict[str, int]:
        """Number of chunk replicas per worker across all databases (the least-loaded criterion)."""
        return {name: self._load.get(name, 0) for name in self.workers}

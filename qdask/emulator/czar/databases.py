"""The czar's view of a published catalog: one MariaDB database per catalog, queryable over MySQL.

Each partitioned table is a MERGE table over its chunk tables ``<T>_<chunk>`` on every worker
(overlap tables are not part of a table's rows, as in Qserv); each regular table is a MERGE table over
one worker's copy (every worker holds the same rows), so it reads as itself. Tables with generated
columns, which MERGE cannot carry, become ``UNION ALL`` views instead. Each publish creates the tables it
publishes; tables published before are left as they are (Qserv's ``_publishDatabaseInMaster`` skips them,
HttpIngestModule.cc:1126-1150, so a catalog that gained tables keeps its old ones untouched). The czar
database is dropped with the catalog. Clients read it through the czar front end
(``frontend.py``), which holds them to Qserv's SQL and turns Qserv's chunk dispatch into predicates
on each table's ``chunkId``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pymysql

from qdask.emulator.records import Table
from qdask.emulator.state import State
from qdask.emulator.storage import DUMMY_CHUNK, SqlPool, chunk_table, qid


class Czar:
    def __init__(self, state: State, pool: SqlPool, nodes: dict, prefix: str = ""):
        self.state = state
        self.pool = pool
        self.nodes = nodes
        self.prefix = prefix

    def dbname(self, db: str) -> str:
        return self.prefix + db

    async def publish(self, db: str, tables: Iterable[str]) -> None:
        """Create the czar database of ``db`` (if new) and in it the tables ``tables`` being published,
        from what the workers hold now."""
        await self.pool.run(self._build, db, set(tables))

    def _build(self, conn, db: str, publishing: set[str]) -> None:
        czar_db = self.dbname(db)
        tables = self.state.db_tables(db)
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {qid(czar_db)}")
            for t in tables:
                if not t.is_published or t.name not in publishing:
                    continue
                members = self._members(conn, db, t)
                first_worker = min(self.nodes)
                proto = qid(self.nodes[first_worker].storage.dbname(db), t.name)
                target = qid(czar_db, t.name)
                cur.execute(f"DROP TABLE IF EXISTS {target}")
                cur.execute(f"DROP VIEW IF EXISTS {target}")
                cur.execute(f"CREATE TABLE {target} LIKE {proto}")
                try:
                    cur.execute(
                        f"ALTER TABLE {target} ENGINE=MRG_MyISAM UNION=({', '.join(members)})"
                        " INSERT_METHOD=NO"
                    )
                except pymysql.err.MySQLError:
                    # MERGE cannot carry generated columns (error 1910): a UNION ALL view reads the same
                    cur.execute(f"DROP TABLE IF EXISTS {target}")
                    selects = " UNION ALL ".join(f"SELECT * FROM {m}" for m in (members or [proto]))
                    cur.execute(f"CREATE VIEW {target} AS {selects}")

    def _members(self, conn, db: str, t: Table) -> list[str]:
        if not t.is_partitioned:
            first_worker = min(self.nodes)
            return [qid(self.nodes[first_worker].storage.dbname(db), t.name)]
        out = []
        for name in sorted(self.nodes):
            storage = self.nodes[name].storage
            for chunk in storage.chunk_tables(conn, db, t.name):
                if chunk != DUMMY_CHUNK:
                    out.append(qid(storage.dbname(db), chunk_table(t.name, chunk, False)))
        return out

    async def drop_database(self, db: str) -> None:
        await self.pool.aexecute(f"DROP DATABASE IF EXISTS {qid(self.dbname(db))}")

    async def drop_table(self, db: str, table: str) -> None:
        await self.pool.aexecute(f"DROP TABLE IF EXISTS {qid(self.dbname(db), table)}")
        await self.pool.aexecute(f"DROP VIEW IF EXISTS {qid(self.dbname(db), table)}")

"""The director index (``qservMeta.<db>__<table>``): its life during ingest and Qserv's
``HttpDirectorIndexModule`` (``POST /ingest/index/secondary``).

During ingest the index is partitioned by transaction, like the tables: created with the director table
(``HttpIngestModule.cc:1305-1361``), given ``p<T>`` when a transaction begins
(``HttpIngestTransModule.cc:542-560``), filled from the transaction's rows at commit (``DirectorIndexJob``),
stripped of ``p<T>`` at abort, and de-partitioned by a consolidating publish (``:1363-1378``). The build
service makes a fresh, unpartitioned index from every chunk of a published director table.
"""

from __future__ import annotations

import pymysql
from aiohttp import web

from qdask.emulator.contract import (
    CHUNK_COLUMN,
    PARTITION_COLUMN,
    PARTITION_COLUMN_TYPE,
    SUB_CHUNK_COLUMN,
    ContribStatus,
)
from qdask.emulator.controller.context import ControllerContext, ControllerModule, WorkerDown
from qdask.emulator.protocol import ApiError, Call, endpoint
from qdask.emulator.records import Table, Transaction
from qdask.emulator.storage import chunk_table, qid


class DirectorIndex:
    """The index table operations the ingest services perform."""

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx

    async def create_partitioned(self, t: Table) -> None:
        """At table registration: drop any old index, create it partitioned by transaction with ``p0``."""
        key, name = t.director_key, self.ctx.index_table(t.database, t.name)
        unique = "UNIQUE KEY" if t.unique_primary_key else "KEY"
        await self.ctx.pool.aexecute(f"DROP TABLE IF EXISTS {name}")
        await self.ctx.pool.aexecute(
            f"CREATE TABLE IF NOT EXISTS {name} ({qid(PARTITION_COLUMN)} {PARTITION_COLUMN_TYPE},"
            f" {qid(key)} {t.column_type(key)}, {qid(CHUNK_COLUMN)} INT, {qid(SUB_CHUNK_COLUMN)} INT,"
            f" {unique} ({qid(PARTITION_COLUMN)},{qid(key)}), KEY ({qid(key)})) ENGINE=InnoDB"
            f" PARTITION BY LIST ({qid(PARTITION_COLUMN)}) (PARTITION `p0` VALUES IN (0))"
        )

    async def add_partition(self, t: Table, trans_id: int) -> None:
        """At transaction begin; no ``IF NOT EXISTS``, as in Qserv (a failure fails the begin)."""
        await self.ctx.pool.aexecute(
            f"ALTER TABLE {self.ctx.index_table(t.database, t.name)}"
            f" ADD PARTITION (PARTITION `p{trans_id}` VALUES IN ({trans_id}))"
        )

    async def drop_partition(self, t: Table, trans_id: int) -> None:
        """At abort; a partition that never got made is fine (``HttpIngestTransModule.cc:593-596``)."""
        await self.ctx.pool.aexecute(
            f"ALTER TABLE {self.ctx.index_table(t.database, t.name)} DROP PARTITION IF EXISTS `p{trans_id}`"
        )

    async def harvest(self, trans: Transaction, t: Table) -> None:
        """At commit: copy (key, chunkId, subChunkId) of the transaction's rows into its partition."""
        key, index = t.director_key, self.ctx.index_table(t.database, t.name)
        targets = sorted(
            {
                (c.worker, c.chunk)
                for c in self.ctx.state.trans_contribs(trans.id)
                if c.table == t.name and not c.overlap and c.status is ContribStatus.FINISHED
            }
        )
        for worker, chunk in targets:
            if worker in self.ctx.faults.down_workers:
                raise WorkerDown({worker: "worker is not responding"})
            src = qid(self.ctx.storages[worker].dbname(t.database), chunk_table(t.name, chunk, False))
            await self.ctx.pool.aexecute(
                f"INSERT INTO {index} ({qid(PARTITION_COLUMN)}, {qid(key)}, {qid(CHUNK_COLUMN)},"
                f" {qid(SUB_CHUNK_COLUMN)}) SELECT {qid(PARTITION_COLUMN)}, {qid(key)}, {qid(CHUNK_COLUMN)},"
                f" {qid(SUB_CHUNK_COLUMN)} FROM {src} PARTITION (`p{trans.id}`)"
            )

    async def consolidate(self, t: Table) -> None:
        """At a publish asked to consolidate: remove the index's partitioning."""
        await self.ctx.pool.aexecute(
            f"ALTER TABLE {self.ctx.index_table(t.database, t.name)} REMOVE PARTITIONING"
        )

    async def drop(self, db: str, table: str) -> None:
        await self.ctx.pool.aexecute(f"DROP TABLE IF EXISTS {self.ctx.index_table(db, table)}")


class DirectorIndexServices(ControllerModule):
    """``HttpDirectorIndexModule``: ``POST /ingest/index/secondary``."""

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/ingest/index/secondary", self.build)]

    @endpoint(22, auth=True)
    async def build(self, call: Call) -> dict:
        """``_buildDirectorIndex`` (``HttpDirectorIndexModule.cc:60-194``)."""
        dbname = call.json_str("database")
        director = call.json_str("director_table")
        if call.has("allow_for_published"):
            call.warn("Option 'allow_for_published' is obsolete as of the version 22 of the API.")
        rebuild = call.json_int("rebuild", 0) != 0
        if call.has("local"):
            call.warn("Option 'local' is obsolete as of the version 20 of the API.")
        db = self.state.database(dbname)
        t = self.state.table(db, director)
        if not t.is_director:  # :83-87
            raise ApiError(f"table '{t.name}' is not configured as a director table in database '{db.name}'")
        if not t.is_published:  # :88-92 (the leading blank is Qserv's)
            raise ApiError(f" the director table '{t.name}' of the database '{db.name}' is not published.")
        unique = call.json_int("unique_primary_key", int(t.unique_primary_key)) != 0
        key = t.director_key
        key_type, sub_type = t.column_type(key), t.column_type(SUB_CHUNK_COLUMN)
        if not key_type or not sub_type:
            raise ApiError(
                "column definitions for the director key or sub-chunk identifier columns are missing in the"
                f" director table schema for table '{t.name}' of database '{db.name}'"
            )
        name = self.ctx.index_table(db.name, t.name)
        statements = [f"DROP TABLE IF EXISTS {name}"] if rebuild else []
        # :154-159: no IF NOT EXISTS, so an existing index without 'rebuild' fails the request plainly
        statements.append(
            f"CREATE TABLE {name} ({qid(key)} {key_type},{qid(CHUNK_COLUMN)} INT,{qid(SUB_CHUNK_COLUMN)}"
            f" {sub_type},{'UNIQUE KEY' if unique else 'KEY'} ({qid(key)})) ENGINE=InnoDB"
        )
        for sql in statements:
            await self.ctx.execute(sql)
        errors: dict[str, dict[str, str]] = {}
        for chunk, workers in self.state.replicas.get(db.name, {}).items():
            for w in workers:
                if w in self.ctx.faults.down_workers:
                    errors.setdefault(w, {})[str(chunk)] = "worker is not responding"
                    continue
                src = qid(self.ctx.storages[w].dbname(db.name), chunk_table(t.name, chunk, False))
                try:
                    await self.ctx.pool.aexecute(
                        f"INSERT INTO {name} ({qid(key)}, {qid(CHUNK_COLUMN)}, {qid(SUB_CHUNK_COLUMN)})"
                        f" SELECT {qid(key)}, {qid(CHUNK_COLUMN)}, {qid(SUB_CHUNK_COLUMN)} FROM {src}"
                    )
                except pymysql.err.MySQLError as ex:
                    errors.setdefault(w, {})[str(chunk)] = str(ex)
        if errors:
            raise ApiError("index creation failed", errors)
        return {}

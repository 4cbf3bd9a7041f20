"""Databases: the database part of Qserv's ``HttpIngestModule`` (``/ingest/database``,
``/ingest/database/:db``, ``/ingest/chunk/empty``).

Registration, publishing and deletion follow ``HttpIngestModule.cc:167-485`` step by step: the worker jobs
first and the configuration after (so a refused duplicate still ran its ``CREATE DATABASE IF NOT EXISTS``),
publishing in Qserv's order (checks, director-index consolidation, row counters, missing chunk tables, MySQL
partitions removed, the empty-chunk list, then the configuration), and the czar view built last.
"""

from __future__ import annotations

from aiohttp import web

from qdask.emulator.chunks import all_chunks
from qdask.emulator.contract import CLOSED_STATES, OverlapSelector, RowCountersPolicy
from qdask.emulator.controller.context import ControllerContext, ControllerModule, WorkerDown
from qdask.emulator.controller.director_index import DirectorIndex
from qdask.emulator.controller.table_stats import TableStatsServices
from qdask.emulator.controller.tables import database_json
from qdask.emulator.protocol import ApiError, Call, InvalidParam, OperationFailed, endpoint
from qdask.emulator.records import Database, Family
from qdask.emulator.state import now_ms
from qdask.emulator.storage import qid


class DatabaseServices(ControllerModule):
    def __init__(self, ctx: ControllerContext, index: DirectorIndex, stats: TableStatsServices):
        super().__init__(ctx)
        self.index = index
        self.stats = stats

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/ingest/database", self.add_database),
            web.get("/ingest/database", self.list_databases),
            web.put("/ingest/database/{db}", self.publish_database),
            web.delete("/ingest/database/{db}", self.delete_database),
            web.post("/ingest/chunk/empty", self.build_empty_chunks),
        ]

    @endpoint(12)
    async def list_databases(self, call: Call) -> dict:
        """``_getDatabases`` (``HttpIngestModule.cc:167-202``)."""
        family = call.json_str("family", "")
        every = call.json_uint("all", 1) != 0
        published = call.json_uint("published") != 0 if not every else False
        return {
            "databases": [
                {"name": d.name, "family": d.family_name, "is_published": int(d.is_published)}
                for d in sorted(self.state.databases.values(), key=lambda d: d.name)
                if (not family or d.family_name == family) and (every or d.is_published == published)
            ]
        }

    @endpoint(12, auth=True)
    async def add_database(self, call: Call) -> dict:
        """``_addDatabase`` (``HttpIngestModule.cc:204-290``)."""
        name = call.json_str("database")
        stripes = call.json_uint("num_stripes")
        sub_stripes = call.json_uint("num_sub_stripes")
        overlap = call.json_float("overlap")
        auto_index = call.json_uint("auto_build_secondary_index", 1) != 0
        if call.has("local_load_secondary_index"):
            call.warn("Option 'local_load_secondary_index' is obsolete as of the version 20 of the API.")
        if overlap < 0:  # :227
            raise ApiError("overlap can't have a negative value")
        matching = [
            f
            for f in sorted(self.state.families.values(), key=lambda f: f.name)
            if (f.num_stripes, f.num_sub_stripes) == (stripes, sub_stripes)
        ]
        family = (
            matching[-1]
            if matching
            else Family(f"layout_{stripes}_{sub_stripes}", 1, stripes, sub_stripes, overlap)
        )
        if not matching:
            await self.state.save(family)
        try:
            await self.ctx.on_workers(lambda conn, st: st.create_database(conn, name))
        except WorkerDown as ex:
            raise ApiError(ex.report("database creation failed")) from None
        if name in self.state.databases:  # Configuration::addDatabase (Configuration.cc:561-564)
            raise OperationFailed(f"CONFIG  addDatabase the database '{name}' already exists.")
        await self.state.save(
            Database(name, family.name, create_time=now_ms(), auto_build_secondary_index=auto_index)
        )
        return {"database": database_json(self.ctx, name)}

    @endpoint(12, auth=True)
    async def publish_database(self, call: Call) -> dict:
        """``_publishDatabase`` (``HttpIngestModule.cc:292-386``)."""
        name = call.match("db")
        consolidate = call.json_int("consolidate_secondary_index", 0) != 0
        deploy = call.json_int("row_counters_deploy_at_qserv", 0) != 0
        db = self.state.database(name)
        if db.is_published:
            raise ApiError("the database is already published")
        if any(t.state not in CLOSED_STATES for t in self.state.db_transactions(name)):
            raise ApiError("database has uncommitted transactions")
        if not self.state.replicas.get(name):
            raise ApiError("the database doesn't have any chunks")
        tables = [t for t in self.state.db_tables(name) if not t.is_published]
        if db.auto_build_secondary_index and consolidate:
            for t in tables:
                if t.is_director:
                    await self.index.consolidate(t)
        if deploy:
            for t in tables:
                ext = await self.stats.scan(
                    db,
                    t,
                    OverlapSelector.CHUNK_AND_OVERLAP,
                    RowCountersPolicy.ENABLED,
                    deploy=True,
                    force=True,
                )
                if ext:
                    raise ApiError("Table rows scanning/deployment failed.", ext)
        await self._create_missing_chunk_tables(db)
        await self._remove_partitions(db)
        await self._build_empty_chunks(db, force=True)
        await self.ctx.publish_in_config(db)
        await self.ctx.czar.publish(name, [t.name for t in tables])  # the tables published now
        return {"database": database_json(self.ctx, name)}

    async def _create_missing_chunk_tables(self, db: Database) -> None:
        """``_createMissingChunkTables``: each partitioned table gets its tables in each chunk of a worker."""
        by_worker: dict[str, list[int]] = {}
        for chunk, workers in self.state.replicas.get(db.name, {}).items():
            for w in workers:
                by_worker.setdefault(w, []).append(chunk)
        for t in self.state.db_tables(db.name):
            if not t.is_partitioned or t.is_published:
                continue
            for w, chunks in sorted(by_worker.items()):
                try:
                    await self.ctx.on_workers(
                        lambda conn, st, name, chunks: [
                            st.ensure_chunk_tables(conn, db.name, [(name, False)], c, None) for c in chunks
                        ],
                        t.name,
                        sorted(chunks),
                        workers=[w],
                    )
                except WorkerDown as ex:
                    raise ApiError(ex.report(f"table creation failed for: '{t.name}'")) from None

    async def _remove_partitions(self, db: Database) -> None:
        """``_removeMySQLPartitions``: unpublished tables lose their transaction partitions everywhere."""
        error = ""
        for t in self.state.db_tables(db.name):
            if t.is_published:
                continue
            try:
                await self.ctx.on_workers(
                    lambda conn, st, name=t.name: st.remove_partitioning(conn, db.name, [name])
                )
            except WorkerDown as ex:
                error += ex.report(
                    f"MySQL partitions removal failed for database: {db.name}, table: {t.name}"
                )
        if error:
            raise ApiError(error)

    async def _build_empty_chunks(self, db: Database, force: bool) -> dict:
        """``_buildEmptyChunksListImpl`` (``HttpIngestModule.cc:1254-1303``): ``<db>_EmptyChunks`` holds every
        chunk of the layout without a replica."""
        if db.is_published:
            raise InvalidParam("database is already published")
        fam = self.ctx.family(db)
        every = all_chunks(fam.num_stripes, fam.num_sub_stripes)
        used = set(self.state.replicas.get(db.name, {}))
        empty = sorted(every - used)
        table = self.ctx.empty_chunks_table(db.name)
        await self.ctx.execute(f"CREATE DATABASE IF NOT EXISTS {qid(self.ctx.css_db)}")
        if force:
            await self.ctx.execute(f"DROP TABLE IF EXISTS {table}")
        await self.ctx.execute(f"CREATE TABLE {table} (`chunkId` INT NOT NULL PRIMARY KEY) ENGINE = INNODB")
        for i in range(0, len(empty), 10000):
            await self.ctx.execute(
                f"INSERT INTO {table} VALUES " + ",".join(f"({c})" for c in empty[i : i + 10000])
            )
        return {"num_chunks_ingested": len(used), "num_chunks_all": len(every)}

    @endpoint(31, auth=True)
    async def build_empty_chunks(self, call: Call) -> dict:
        """``_buildEmptyChunksList`` (``HttpIngestModule.cc:992-1003``)."""
        name = call.json_str("database")
        force = call.json_int("force", 0) != 0
        return await self._build_empty_chunks(self.state.database(name), force)

    @endpoint(12, auth=True)
    async def delete_database(self, call: Call) -> dict:
        """``_deleteDatabase`` (``HttpIngestModule.cc:388-485``)."""
        db = self.state.database(call.match("db"))
        if db.is_published and not call.is_admin:
            raise ApiError("deleting published databases requires administrator's privileges.")
        await self.ctx.czar.drop_database(db.name)
        await self.ctx.pool.aexecute(f"DROP TABLE IF EXISTS {self.ctx.empty_chunks_table(db.name)}")
        for t in self.state.db_tables(db.name):
            if t.is_director:
                await self.index.drop(db.name, t.name)
            await self.ctx.pool.aexecute(f"DROP TABLE IF EXISTS {self.ctx.rows_table(db.name, t.name)}")
        try:
            await self.ctx.on_workers(lambda conn, st: st.drop_database(conn, db.name))
        except WorkerDown as ex:
            raise ApiError(ex.report("database deletion failed")) from None
        await self.state.forget_database(db.name)
        return {}

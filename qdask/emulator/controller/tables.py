"""Tables: the table part of Qserv's ``HttpIngestModule`` (``POST /ingest/table``, ``GET /ingest/table/:db``,
``DELETE /ingest/table/:db/:table``).

Registration follows ``HttpIngestModule::_addTable`` (``HttpIngestModule.cc:508-663``) step by step:
version checks, parameters, the database, the schema, the configuration's sanitize/validate
(``table_rules.py``), then the prototype and dummy-chunk tables on every worker and, for a director table,
its index. Like Qserv, the table is registered before the worker jobs run.
"""

from __future__ import annotations

from aiohttp import web

from qdask.emulator.contract import DUMMY_CHUNK, INGEST_CHARSET, INGEST_COLLATION
from qdask.emulator.controller.context import ControllerContext, ControllerModule, WorkerDown
from qdask.emulator.controller.director_index import DirectorIndex
from qdask.emulator.controller.table_rules import sanitize, schema_columns, validate
from qdask.emulator.protocol import ApiError, Call, InvalidParam, check_version, endpoint
from qdask.emulator.records import DirectorRef, Table
from qdask.emulator.state import now_ms
from qdask.emulator.storage import chunk_table


def database_json(ctx: ControllerContext, name: str) -> dict:
    """``DatabaseInfo::toJson`` (``ConfigDatabase.cc:120-132``)."""
    db = ctx.state.database(name)
    return {
        "database": db.name,
        "family_name": db.family_name,
        "is_published": int(db.is_published),
        "create_time": db.create_time,
        "publish_time": db.publish_time,
        "tables": [t.to_json() for t in ctx.state.db_tables(db.name)],
    }


class TableServices(ControllerModule):
    def __init__(self, ctx: ControllerContext, index: DirectorIndex):
        super().__init__(ctx)
        self.index = index

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/ingest/table", self.add_table),
            web.get("/ingest/table/{db}", self.list_tables),
            web.delete("/ingest/table/{db}/{table}", self.delete_table),
        ]

    @endpoint(None, auth=True)
    async def add_table(self, call: Call) -> dict:
        # :514-521: versions checked per parameter family, with a warning when the version is too old
        if call.has("unique_primary_key"):
            check_version(call, 21, "'unique_primary_key' requires API version 21 or newer.")
        if call.has("charset_name") or call.has("collation_name"):
            check_version(call, 49, "'charset_name' and 'collation_name' require API version 49 or newer.")
        else:
            check_version(call, 12)
        dbname = call.json_str("database")
        name = call.json_str("table")
        is_partitioned = call.json_int("is_partitioned") != 0
        try:  # :527-530, DirectorTableRef's constructor (ConfigTable.cc:40-53)
            director = DirectorRef.parse(
                call.json_str("director_table", ""), call.json_str("director_key", "")
            )
            director2 = DirectorRef.parse(
                call.json_str("director_table2", ""), call.json_str("director_key2", "")
            )
        except ValueError as ex:
            raise InvalidParam(str(ex)) from None
        draft = Table(
            name=name,
            database=dbname,
            is_partitioned=is_partitioned,
            columns=[],
            director=director,
            director2=director2,
            latitude_key=call.json_str("latitude_key", ""),
            longitude_key=call.json_str("longitude_key", ""),
            flag=call.json_str("flag", ""),
            ang_sep=call.json_float("ang_sep", 0.0),
            unique_primary_key=call.json_int("unique_primary_key", 1) != 0,
            charset_name=call.json_str("charset_name", INGEST_CHARSET),
            collation_name=call.json_str("collation_name", INGEST_COLLATION),
        )
        schema = call.json_any("schema")
        db = self.state.database(dbname)
        if db.is_published:  # :559
            raise ApiError("the database is already published")
        if (dbname, name) in self.state.tables:  # :560
            raise ApiError("table already exists")
        draft.columns = schema_columns(schema, draft.is_director)
        draft.create_time = now_ms()
        table = validate(sanitize(draft), self._lookup, self.state.databases)
        await self.state.save(table)
        answer = {"database": database_json(self.ctx, dbname)}
        names = [table.name]
        if table.is_partitioned:
            names += [chunk_table(table.name, DUMMY_CHUNK, overlap) for overlap in (False, True)]
        for target in names:  # :631-644, one job per table
            try:
                await self.ctx.on_workers(
                    lambda conn, st, target=target: st.create_table(conn, table, target)
                )
            except WorkerDown as ex:
                raise ApiError(ex.report(f"table creation failed for: '{target}'")) from None
        if table.is_director and db.auto_build_secondary_index:
            await self.index.create_partitioned(table)
        return answer

    def _lookup(self, db: str, table: str) -> Table | None:
        return self.state.tables.get((db, table))

    @endpoint(12)
    async def list_tables(self, call: Call) -> dict:
        """``_getTables`` (``HttpIngestModule.cc:487-506``): partitioned tables first, each group by name."""
        db = self.state.database(call.match("db"))
        tables = self.state.db_tables(db.name)
        ordered = [t for t in tables if t.is_partitioned] + [t for t in tables if not t.is_partitioned]
        return {"tables": [{"name": t.name, "is_partitioned": int(t.is_partitioned)} for t in ordered]}

    @endpoint(12, auth=True)
    async def delete_table(self, call: Call) -> dict:
        """``_deleteTable`` (``HttpIngestModule.cc:665-749``)."""
        db = self.state.database(call.match("db"))
        t = self.state.table(db, call.match("table"))
        if db.is_published and not call.is_admin:
            raise ApiError("deleting tables of published databases requires administrator's privileges.")
        await self.ctx.czar.drop_table(db.name, t.name)
        if t.is_director:
            await self.index.drop(db.name, t.name)
        await self.ctx.pool.aexecute(f"DROP TABLE IF EXISTS {self.ctx.rows_table(db.name, t.name)}")
        try:
            await self.ctx.on_workers(lambda conn, st: st.drop_table(conn, db.name, t.name, t.is_partitioned))
        except WorkerDown as ex:
            raise ApiError(ex.report("table deletion failed")) from None
        if t.is_director and any(  # DatabaseInfo::removeTable (ConfigDatabase.cc:434-446), after the job
            o.is_partitioned and o.name != t.name and o.is_dependant_of(t.name)
            for o in self.state.db_tables(db.name)
        ):
            raise InvalidParam(
                f"DatabaseInfo::removeTable can't remove the director table '{t.name}' from the database"
                f" '{db.name}' because it has dependent tables."
            )
        await self.state.forget_table(db.name, t.name)
        return {}

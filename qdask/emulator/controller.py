"""The Master Replication Controller's REST services: databases, tables, transactions, chunk placement,
publishing, director index and row counters (contract §3), plus a non-Qserv admin route for faults.

Controller "jobs" on workers (create databases/tables, drop transaction partitions, de-partition at
publish) are direct calls into each worker's storage; a worker switched down by fault injection makes
the job fail with an error naming it, as Qserv's jobs do.
"""

from __future__ import annotations

import asyncio
import uuid

import pymysql
from aiohttp import web

from qdask.emulator.chunks import all_chunks, is_valid_chunk
from qdask.emulator.faults import FaultInjector
from qdask.emulator.protocol import (
    API_VERSION,
    ApiError,
    Call,
    InvalidParam,
    Keys,
    OperationFailed,
    endpoint,
    envelope,
)
from qdask.emulator.state import TRANSITIONS, State, now_ms
from qdask.emulator.storage import DUMMY_CHUNK, SqlPool, chunk_table, qid

TABLE_KEYS = (
    "name",
    "database",
    "is_published",
    "create_time",
    "publish_time",
    "is_partitioned",
    "is_director",
    "is_ref_match",
    "director_table",
    "director_database_name",
    "director_table_name",
    "director_key",
    "director_table2",
    "director_database_name2",
    "director_table_name2",
    "director_key2",
    "flag",
    "ang_sep",
    "unique_primary_key",
    "charset_name",
    "collation_name",
    "latitude_key",
    "longitude_key",
    "columns",
)


class WorkerDown(Exception):
    pass


class Controller:
    """Controller services over the shared :class:`State`; ``nodes`` are the emulated workers."""

    def __init__(
        self, state: State, pool: SqlPool, nodes: dict, keys: Keys, faults: FaultInjector, czar, meta_db: str
    ):
        self.state = state
        self.pool = pool
        self.nodes = nodes
        self.keys = keys
        self.faults = faults
        self.czar = czar
        self.meta_db = meta_db
        self.css_db = meta_db.replace("qservMeta", "qservCssData")
        self.id = str(uuid.uuid4())
        self.instance_id = "qdask-emulator"
        self._alloc_lock = asyncio.Lock()
        self._trans_locks: dict[int, asyncio.Lock] = {}
        self.switch_worker = None  # async (name, down) → None, set by the server

    def routes(self) -> list[web.RouteDef]:
        r = web
        return [
            r.get("/meta/version", self.meta_version),
            r.get("/replication/config", self.get_config),
            r.put("/replication/config/database/{db}", self.config_database),
            r.post("/ingest/database", self.add_database),
            r.get("/ingest/database", self.list_databases),
            r.put("/ingest/database/{db}", self.publish_database),
            r.delete("/ingest/database/{db}", self.delete_database),
            r.post("/ingest/table", self.add_table),
            r.get("/ingest/table/{db}", self.list_tables),
            r.delete("/ingest/table/{db}/{table}", self.delete_table),
            r.put("/ingest/config", self.put_ingest_config),
            r.get("/ingest/config", self.get_ingest_config),
            r.post("/ingest/trans", self.begin_trans),
            r.get("/ingest/trans", self.list_trans),
            r.get("/ingest/trans/contrib/{id}", self.get_contrib),
            r.get("/ingest/trans/{id}", self.get_trans),
            r.put("/ingest/trans/{id}", self.end_trans),
            r.post("/ingest/chunk", self.add_chunk),
            r.post("/ingest/chunks", self.add_chunks),
            r.post("/ingest/chunk-multi", self.add_chunk_multi),
            r.post("/ingest/chunks-multi", self.add_chunks_multi),
            r.get("/ingest/chunks", self.list_chunks),
            r.post("/ingest/chunk/empty", self.build_empty_chunks),
            r.get("/ingest/regular", self.regular_locations),
            r.post("/ingest/index/secondary", self.build_index),
            r.post("/ingest/table-stats", self.scan_table_stats),
            r.get("/ingest/table-stats/{db}/{table}", self.get_table_stats),
            r.delete("/ingest/table-stats/{db}/{table}", self.delete_table_stats),
            # not Qserv: fault injection for tests
            r.get("/emulator/faults", self.faults_list),
            r.post("/emulator/faults", self.faults_add),
            r.delete("/emulator/faults", self.faults_clear),
            r.delete("/emulator/faults/{id}", self.faults_remove),
        ]

    # ------------------------------------------------------------------ helpers
    def database(self, name: str) -> dict:
        db = self.state.databases.get(name)
        if db is None:
            raise InvalidParam(f"no such database '{name}'.")
        return db

    def table(self, db: str, name: str) -> dict:
        t = self.state.tables.get((db, name))
        if t is None:
            raise InvalidParam(f"no such table '{name}' in database '{db}'")
        return t

    def transaction(self, tid: int) -> dict:
        t = self.state.transactions.get(tid)
        if t is None:
            raise OperationFailed(f"DatabaseServicesMySQL::transaction  no such transaction, id={tid}")
        return t

    def db_json(self, db: dict) -> dict:
        out = {k: db[k] for k in ("database", "family_name", "is_published", "create_time", "publish_time")}
        out["tables"] = [self.table_json(t) for t in self.state.db_tables(db["database"])]
        return out

    @staticmethod
    def table_json(t: dict) -> dict:
        return {k: t[k] for k in TABLE_KEYS}

    def trans_json(self, t: dict, call: Call | None = None, contrib: dict | None = None) -> dict:
        flags = call.query if call is not None else {}
        out = {
            k: t[k]
            for k in ("id", "database", "state", "begin_time", "start_time", "transition_time", "end_time")
        }
        out["context"] = t["context"] if flags.get("include_context", "0") != "0" else {}
        out["log"] = t["log"] if flags.get("include_log", "0") != "0" else []
        if contrib is not None:
            out["contrib"] = contrib
        return out

    def location(self, worker: str, chunk: int | None = None) -> dict:
        w = self.state.workers[worker]
        loc = {
            "worker": worker,
            "host": w["loader-host"]["addr"],
            "host_name": w["loader-host"]["name"],
            "port": w["loader-port"],
            "http_host": w["http-loader-host"]["addr"],
            "http_host_name": w["http-loader-host"]["name"],
            "http_port": w["http-loader-port"],
        }
        return loc if chunk is None else {"chunk": chunk, **loc}

    def num_chunks(self, db: str) -> int:
        return len(self.state.replicas.get(db, {}))

    def enabled_workers(self) -> list[str]:
        return sorted(n for n, w in self.state.workers.items() if w["is-enabled"] and not w["is-read-only"])

    async def on_workers(self, fn, *args, workers=None, what: str = "job"):
        """Run a storage job on every worker (or ``workers``); a down worker fails the job by name."""
        names = sorted(self.nodes) if workers is None else workers
        errors = {}
        for name in names:
            if name in self.faults.down_workers:
                errors[name] = "worker is not responding (connection refused)"
                continue
            node = self.nodes[name]
            try:
                await self.pool.run(fn, node.storage, *args)
            except pymysql.err.MySQLError as ex:
                errors[name] = str(ex)
        if errors:
            raise WorkerDown(errors)

    def _context_json(self, call: Call) -> dict:
        ctx = call.optional("context", {}, (dict,))
        return ctx

    # ------------------------------------------------------------------ meta and config
    @endpoint(None)
    async def meta_version(self, call: Call) -> dict:
        return {
            "kind": "replication-controller",
            "id": self.id,
            "instance_id": self.instance_id,
            "version": API_VERSION,
            "database_schema_version": 15,
        }

    @endpoint(12)
    async def get_config(self, call: Call) -> dict:
        fams = [
            {
                "name": f["name"],
                "min_replication_level": f["min_replication_level"],
                "num_stripes": f["num_stripes"],
                "num_sub_stripes": f["num_sub_stripes"],
                "overlap": f["overlap"],
            }
            for f in self.state.families.values()
        ]
        return {
            "config": {
                "general": {
                    "worker": {
                        "ingest-charset-name": "latin1",
                        "ingest-num-retries": 1,
                        "ingest-max-retries": 10,
                        "loader-max-warnings": 64,
                        "num-async-loader-processing-threads": 2,
                        "async-loader-auto-resume": 1,
                        "async-loader-cleanup-on-resume": 1,
                    },
                    "controller": {"http-server-port": 25081},
                },
                "workers": [dict(w) for _, w in sorted(self.state.workers.items())],
                "database_families": fams,
                "databases": [self.db_json(d) for d in self.state.databases.values()],
                "czars": [
                    {
                        "name": "default",
                        "id": 1,
                        "host": {"addr": "127.0.0.1", "name": "localhost"},
                        "port": self.pool.dsn.port,
                    }
                ],
                "meta": {"version": API_VERSION},
            }
        }

    @endpoint(12, auth=True)
    async def config_database(self, call: Call) -> dict:
        """Un-publish (admin) a database: ``PUT /replication/config/database/:db``."""
        if not call.is_admin:
            raise ApiError("administrator's privileges are required to (un-)publish databases.")
        db = self.database(call.match("db"))
        publish = call.optional_uint("publish", 0)
        if publish:
            if "version" not in call.body or int(call.body["version"]) < 34:
                raise ApiError(
                    "The requested version of the API is too low for parameter 'publish'.",
                    {"min_version": 34, "max_version": API_VERSION},
                )
        db["is_published"] = 1 if publish else 0
        await self.state.put_database(db)
        return {"config": {"databases": {db["database"]: self.db_json(db)}}}

    # ------------------------------------------------------------------ databases
    @endpoint(12, auth=True)
    async def add_database(self, call: Call) -> dict:
        name = call.required("database")
        stripes = call.required_uint("num_stripes")
        sub = call.required_uint("num_sub_stripes")
        overlap = call.required("overlap", (float, int))
        auto = call.optional_uint("auto_build_secondary_index", 1)
        if call.has("local_load_secondary_index"):
            call.warn(
                "The parameter 'local_load_secondary_index' is obsolete since version 20 of the API"
                " and it will be ignored."
            )
        if overlap < 0:
            raise InvalidParam("overlap can't have a negative value")
        if name in self.state.databases:
            raise OperationFailed(f"Configuration::addDatabase  the database '{name}' already exists.")
        family = next(
            (
                f
                for f in self.state.families.values()
                if f["num_stripes"] == stripes and f["num_sub_stripes"] == sub
            ),
            None,
        )
        if family is None:
            family = {
                "name": f"layout_{stripes}_{sub}",
                "min_replication_level": 1,
                "num_stripes": stripes,
                "num_sub_stripes": sub,
                "overlap": float(overlap),
            }
            await self.state.put_family(family)
        try:
            await self.on_workers(lambda conn, st: st.create_database(conn, name))
        except WorkerDown as ex:
            w, err = next(iter(ex.args[0].items()))
            raise ApiError(f"database creation failed, worker: {w}, error: {err}", ex.args[0]) from None
        db = {
            "database": name,
            "family_name": family["name"],
            "is_published": 0,
            "create_time": now_ms(),
            "publish_time": 0,
            "auto_build_secondary_index": auto,
            "ingest_config": {},
        }
        await self.state.put_database(db)
        return {"database": self.db_json(db)}

    @endpoint(12)
    async def list_databases(self, call: Call) -> dict:
        family = call.optional("family", "")
        all_ = call.optional_uint("all", 1)
        published = call.required_uint("published") if not all_ else None
        out = []
        for d in self.state.databases.values():
            if family and d["family_name"] != family:
                continue
            if published is not None and bool(d["is_published"]) != bool(published):
                continue
            out.append({"name": d["database"], "family": d["family_name"], "is_published": d["is_published"]})
        return {"databases": out}

    @endpoint(12, auth=True)
    async def publish_database(self, call: Call) -> dict:
        db = self.database(call.match("db"))
        name = db["database"]
        consolidate = call.optional_uint("consolidate_secondary_index", 0)
        deploy = call.optional_uint("row_counters_deploy_at_qserv", 0)
        if db["is_published"]:
            raise ApiError("the database is already published")
        if any(
            t["state"] not in ("FINISHED", "ABORTED")
            for t in self.state.transactions.values()
            if t["database"] == name
        ):
            raise ApiError("database has uncommitted transactions")
        if not self.state.replicas.get(name):
            raise ApiError("the database doesn't have any chunks")
        tables = [t for t in self.state.db_tables(name) if not t["is_published"]]
        partitioned = [(t["name"], False) for t in tables if t["is_partitioned"]]
        by_worker: dict[str, list[int]] = {}
        for chunk, workers in self.state.replicas.get(name, {}).items():
            for w in workers:
                by_worker.setdefault(w, []).append(chunk)

        def prepare(conn, storage, chunks):
            for chunk in chunks:
                storage.ensure_chunk_tables(conn, name, partitioned, chunk, None)
            storage.remove_partitioning(conn, name, [t["name"] for t in tables])

        for w in sorted(self.nodes):
            try:
                await self.on_workers(prepare, by_worker.get(w, []), workers=[w])
            except WorkerDown as ex:
                raise ApiError(
                    f"failed to publish database '{name}', worker: {w}, error: {ex.args[0][w]}",
                    {"worker": ex.args[0]},
                ) from None
        for t in tables:
            if t["is_director"] and db["auto_build_secondary_index"] and consolidate:
                await self.pool.aexecute(
                    f"ALTER TABLE {qid(self.meta_db, name + '__' + t['name'])} REMOVE PARTITIONING"
                )
        if deploy:
            for t in tables:
                await self._scan_stats(name, t, "CHUNK_AND_OVERLAP", deploy=True)
        ts = now_ms()
        for t in tables:
            t["is_published"] = 1
            t["publish_time"] = ts
            await self.state.put_table(t)
        db["is_published"] = 1
        db["publish_time"] = ts
        await self.state.put_database(db)
        await self._empty_chunks(name)
        await self.czar.publish(name)
        return {"database": self.db_json(db)}

    @endpoint(12, auth=True)
    async def delete_database(self, call: Call) -> dict:
        db = self.database(call.match("db"))
        name = db["database"]
        if db["is_published"] and not call.is_admin:
            raise ApiError("deleting published databases requires administrator's privileges.")
        try:
            await self.on_workers(lambda conn, st: st.drop_database(conn, name))
        except WorkerDown as ex:
            w, err = next(iter(ex.args[0].items()))
            raise ApiError(f"database deletion failed, worker: {w}, error: {err}", ex.args[0]) from None
        await self.czar.drop_database(name)
        await self.pool.aexecute(f"DROP TABLE IF EXISTS {qid(self.css_db, name + '_EmptyChunks')}")
        for t in self.state.db_tables(name):
            await self.pool.aexecute(f"DROP TABLE IF EXISTS {qid(self.meta_db, name + '__' + t['name'])}")
            await self.pool.aexecute(
                f"DROP TABLE IF EXISTS {qid(self.meta_db, name + '__' + t['name'] + '__rows')}"
            )
        await self.state.forget_database(name)
        return {}

    # ------------------------------------------------------------------ tables
    @endpoint(12, auth=True)
    async def add_table(self, call: Call) -> dict:
        dbname = call.required("database")
        name = call.required("table")
        is_partitioned = call.required_uint("is_partitioned") != 0
        schema = call.required("schema", (list,))
        db = self.database(dbname)
        if call.has("unique_primary_key"):
            self._min_version(call, 21, "unique_primary_key")
        if call.has("charset_name") or call.has("collation_name"):
            self._min_version(call, 49, "charset_name/collation_name")
        if (dbname, name) in self.state.tables:
            raise InvalidParam("DatabaseInfo::validate  table already exists")
        if db["is_published"]:
            raise InvalidParam("DatabaseInfo::validate  the database is already published")
        if len(dbname) + len(name) > 56:
            raise InvalidParam(
                "DatabaseInfo::validate  the combined length of the database and table names"
                " exceeds 56 characters"
            )
        columns = [{"name": "qserv_trans_id", "type": "INT NOT NULL"}]
        for col in schema:
            if not isinstance(col, dict):
                raise InvalidParam("columns definitions in table schema are not JSON objects")
            for attr in ("name", "type"):
                if attr not in col:
                    raise InvalidParam(
                        f"column attribute '{attr}' is missing in table schema for column number:"
                        f" {len(columns)}"
                    )
            if col["name"] == "qserv_trans_id":
                raise InvalidParam("reserved column 'qserv_trans_id' is not allowed")
            columns.append({"name": col["name"], "type": col["type"]})
        colnames = {c["name"] for c in columns}
        director_table = call.optional("director_table", "")
        director_key = call.optional("director_key", "")
        lat = call.optional("latitude_key", "")
        lon = call.optional("longitude_key", "")
        director_table2 = call.optional("director_table2", "")
        director_key2 = call.optional("director_key2", "")
        flag = call.optional("flag", "")
        ang_sep = call.optional("ang_sep", 0.0, (float, int))
        is_ref_match = bool(director_table2)
        is_director = is_partitioned and not director_table and not is_ref_match

        def need(col: str, role: str):
            if col not in colnames:
                raise InvalidParam(
                    f"DatabaseInfo::validate  no matching column '{col}' found in schema for"
                    f" parameter '{role}'"
                )

        if is_partitioned:
            if is_director:
                need(director_key, "director_key")
                if not lat or not lon:
                    raise InvalidParam(
                        "DatabaseInfo::validate  latitude_key and longitude_key are required for"
                        " director tables"
                    )
                need("subChunkId", "subChunkId")
                for c in columns[1:]:
                    if "BLOB" in c["type"].upper() or "TEXT" in c["type"].upper():
                        if c["name"] == director_key:
                            raise InvalidParam(
                                f"DatabaseInfo::validate  column '{c['name']}' of type"
                                f" '{c['type']}' is not allowed as the director key"
                            )
            elif is_ref_match:
                need(director_key, "director_key")
                need(director_key2, "director_key2")
                need(flag, "flag")
                if ang_sep <= 0:
                    raise InvalidParam("DatabaseInfo::validate  ang_sep must be greater than 0")
            else:
                need(director_key, "director_key")
                ddb, _, dt = director_table.rpartition(".")
                ddb = ddb or dbname
                d = self.state.tables.get((ddb, dt))
                if d is None or not d["is_director"]:
                    raise InvalidParam(
                        f"DatabaseInfo::validate  director table '{director_table}' does not"
                        " exist or is not a director"
                    )
            if bool(lat) != bool(lon):
                raise InvalidParam(
                    "DatabaseInfo::validate  both or none of latitude_key and longitude_key must be provided"
                )
            for key, role in ((lat, "latitude_key"), (lon, "longitude_key")):
                if key:
                    need(key, role)
        elif director_table or director_key or lat or lon:
            raise InvalidParam("DatabaseInfo::validate  regular tables can't have director or spatial keys")

        def split(dt: str) -> tuple[str, str]:
            if not dt:
                return "", ""
            d, _, t = dt.rpartition(".")
            return d or dbname, t

        dd, dtn = split(director_table if not is_director else "")
        dd2, dtn2 = split(director_table2)
        table = {
            "name": name,
            "database": dbname,
            "is_published": 0,
            "create_time": now_ms(),
            "publish_time": 0,
            "is_partitioned": int(is_partitioned),
            "is_director": int(is_director),
            "is_ref_match": int(is_ref_match),
            "director_table": director_table if not is_director else "",
            "director_database_name": dd,
            "director_table_name": dtn,
            "director_key": director_key,
            "director_table2": director_table2,
            "director_database_name2": dd2,
            "director_table_name2": dtn2,
            "director_key2": director_key2,
            "flag": flag,
            "ang_sep": float(ang_sep),
            "unique_primary_key": call.optional_uint("unique_primary_key", 1),
            "charset_name": call.optional("charset_name", "") or "latin1",
            "collation_name": call.optional("collation_name", "") or "latin1_general_ci",
            "latitude_key": lat,
            "longitude_key": lon,
            "columns": columns,
            "seq": max([t["seq"] for t in self.state.db_tables(dbname)] + [0]) + 1,
        }
        try:
            await self.on_workers(lambda conn, st: st.create_table(conn, dbname, table))
        except WorkerDown as ex:
            w, err = next(iter(ex.args[0].items()))
            raise ApiError(
                f"table creation failed for: '{name}', worker: {w}, error: {err}", ex.args[0]
            ) from None
        if is_director and db["auto_build_secondary_index"]:
            await self._create_index_table(dbname, table, partitioned=True)
        await self.state.put_table(table)
        return {"database": self.db_json(db)}

    def _min_version(self, call: Call, minimum: int, what: str) -> None:
        v = call.body.get("version", call.query.get("version"))
        if v is not None and int(v) < minimum:
            raise ApiError(
                f"The requested version {v} of the API is not in the range supported by the service.",
                {"min_version": minimum, "max_version": API_VERSION},
            )

    async def _create_index_table(self, db: str, table: dict, partitioned: bool) -> None:
        key = table["director_key"]
        ktype = next(c["type"] for c in table["columns"] if c["name"] == key)
        ktype = ktype.replace("NOT NULL", "").replace("not null", "").strip() + " NOT NULL"
        unique = "UNIQUE KEY" if table["unique_primary_key"] else "KEY"
        name = qid(self.meta_db, f"{db}__{table['name']}")
        await self.pool.aexecute(f"CREATE DATABASE IF NOT EXISTS {qid(self.meta_db)}")
        if partitioned:
            await self.pool.aexecute(
                f"CREATE TABLE IF NOT EXISTS {name} (`qserv_trans_id` INT NOT NULL, {qid(key)} {ktype},"
                f" `chunkId` INT, `subChunkId` INT, {unique} (`qserv_trans_id`, {qid(key)}),"
                f" KEY ({qid(key)}))"
                " ENGINE=InnoDB PARTITION BY LIST (`qserv_trans_id`) (PARTITION `p0` VALUES IN (0))"
            )
        else:
            await self.pool.aexecute(
                f"CREATE TABLE {name} ({qid(key)} {ktype}, `chunkId` INT, `subChunkId` INT,"
                f" {unique} ({qid(key)})) ENGINE=InnoDB"
            )

    @endpoint(12)
    async def list_tables(self, call: Call) -> dict:
        db = self.database(call.match("db"))
        return {
            "tables": [
                {"name": t["name"], "is_partitioned": t["is_partitioned"]}
                for t in self.state.db_tables(db["database"])
            ]
        }

    @endpoint(12, auth=True)
    async def delete_table(self, call: Call) -> dict:
        db = self.database(call.match("db"))
        t = self.table(db["database"], call.match("table"))
        if db["is_published"] and not call.is_admin:
            raise ApiError("deleting tables of published databases requires administrator's privileges.")
        name, dbname = t["name"], db["database"]
        try:
            await self.on_workers(
                lambda conn, st: st.drop_table(conn, dbname, name, bool(t["is_partitioned"]))
            )
        except WorkerDown as ex:
            w, err = next(iter(ex.args[0].items()))
            raise ApiError(
                f"table deletion failed for: '{name}', worker: {w}, error: {err}", ex.args[0]
            ) from None
        await self.czar.drop_table(dbname, name)
        await self.pool.aexecute(f"DROP TABLE IF EXISTS {qid(self.meta_db, dbname + '__' + name)}")
        await self.pool.aexecute(f"DROP TABLE IF EXISTS {qid(self.meta_db, dbname + '__' + name + '__rows')}")
        await self.state.forget_table(dbname, name)
        return {}

    # ------------------------------------------------------------------ ingest config
    CONFIG_KEYS = (
        "SSL_VERIFYHOST",
        "SSL_VERIFYPEER",
        "CAPATH",
        "CAINFO",
        "CAINFO_VAL",
        "PROXY_SSL_VERIFYHOST",
        "PROXY_SSL_VERIFYPEER",
        "PROXY_CAPATH",
        "PROXY_CAINFO",
        "PROXY_CAINFO_VAL",
        "CURLOPT_PROXY",
        "CURLOPT_NOPROXY",
        "CURLOPT_HTTPPROXYTUNNEL",
        "CONNECTTIMEOUT",
        "TIMEOUT",
        "LOW_SPEED_LIMIT",
        "LOW_SPEED_TIME",
        "ASYNC_PROC_LIMIT",
    )

    @endpoint(14, auth=True)
    async def put_ingest_config(self, call: Call) -> dict:
        db = self.database(call.required("database"))
        for key in self.CONFIG_KEYS:
            if call.has(key):
                db["ingest_config"][key] = call.body[key]
        await self.state.put_database(db)
        return {"config": {"database": db["database"], **db["ingest_config"]}}

    @endpoint(14)
    async def get_ingest_config(self, call: Call) -> dict:
        name = call.q_str("database")
        if not name:
            raise InvalidParam("No required parameter 'database' found in the request's query.")
        db = self.database(name)
        return {"config": {"database": db["database"], **db["ingest_config"]}}

    # ------------------------------------------------------------------ transactions
    def _trans_payload(self, t: dict, call: Call | None = None, contrib: dict | None = None) -> dict:
        return {
            "databases": {
                t["database"]: {
                    "num_chunks": self.num_chunks(t["database"]),
                    "transactions": [self.trans_json(t, call, contrib)],
                }
            }
        }

    async def _log(self, t: dict, name: str, data: dict | None = None) -> None:
        t["log"].append(
            {
                "id": len(t["log"]) + 1,
                "transaction_state": t["state"],
                "name": name,
                "time": now_ms(),
                "data": data or {},
            }
        )

    async def _set_state(self, t: dict, state: str) -> None:
        t["state"] = state
        ts = now_ms()
        if state == "STARTED":
            t["start_time"] = ts
        elif state in ("IS_FINISHING", "IS_ABORTING"):
            t["transition_time"] = ts
        elif state in ("FINISHED", "ABORTED"):
            t["end_time"] = ts
        await self.state.put_trans(t)

    def _directors_with_index(self, dbname: str) -> list[dict]:
        db = self.state.databases[dbname]
        if not db["auto_build_secondary_index"]:
            return []
        return [t for t in self.state.db_tables(dbname) if t["is_director"] and not t["is_published"]]

    @endpoint(12, auth=True)
    async def begin_trans(self, call: Call) -> dict:
        db = self.database(call.required("database"))
        context = self._context_json(call)
        if db["is_published"]:
            raise ApiError("the database is already published")
        tid = await self.state.next_id("transaction")
        t = {
            "id": tid,
            "database": db["database"],
            "state": "IS_STARTING",
            "begin_time": now_ms(),
            "start_time": 0,
            "transition_time": 0,
            "end_time": 0,
            "context": context,
            "log": [],
        }
        await self.state.put_trans(t)
        try:
            for d in self._directors_with_index(db["database"]):
                await self._log(t, "begin add dir idx part", {"table": d["name"]})
                await self.pool.aexecute(
                    f"ALTER TABLE {qid(self.meta_db, db['database'] + '__' + d['name'])} ADD PARTITION IF NOT"
                    f" EXISTS (PARTITION `p{tid}` VALUES IN ({tid}))"
                )
                await self._log(t, "end add dir idx part", {"table": d["name"]})
        except pymysql.err.MySQLError as ex:
            await self._set_state(t, "START_FAILED")
            raise OperationFailed(f"failed to add director index partition: {ex}") from None
        await self._set_state(t, "STARTED")
        return self._trans_payload(t, call)

    @endpoint(12, auth=True)
    async def end_trans(self, call: Call) -> dict:
        tid = _uint_path(call.match("id"), "id")
        if "abort" not in call.query:
            raise InvalidParam("No required parameter 'abort' found in the request's query.")
        abort = call.query["abort"] != "0"
        t = self.transaction(tid)
        if call.has("context"):
            t["context"] = self._context_json(call)
        lock = self._trans_locks.setdefault(tid, asyncio.Lock())
        async with lock:
            target = "IS_ABORTING" if abort else "IS_FINISHING"
            if target not in TRANSITIONS[t["state"]]:
                raise ApiError(
                    f"transaction id={tid} can't be ended at this time because of state={t['state']}."
                )
            await self._set_state(t, target)
            if abort:
                return await self._abort(call, t)
            return await self._commit(call, t)

    async def _commit(self, call: Call, t: dict) -> dict:
        tid, dbname = t["id"], t["database"]
        fault = self.faults.fire(("fail_commit",), {"transaction_id": tid, "database": dbname})
        if fault is not None:
            await self._set_state(t, "FINISH_FAILED")
            raise ApiError(f"transaction id={tid} commit failed: injected fault")
        index_ok = 1 if self._directors_with_index(dbname) else 0
        for d in self._directors_with_index(dbname):
            await self._log(t, "begin bld dir idx", {"table": d["name"]})
            try:
                await self._harvest_index(t, d)
                await self._log(t, "end bld dir idx", {"table": d["name"], "success": 1})
            except (pymysql.err.MySQLError, WorkerDown) as ex:
                index_ok = 0
                await self._log(t, "end bld dir idx", {"table": d["name"], "success": 0, "error": str(ex)})
        await self._set_state(t, "FINISHED")
        return {"secondary-index-build-success": index_ok, **self._trans_payload(t, call)}

    async def _harvest_index(self, t: dict, director: dict) -> None:
        """Copy (key, chunkId, subChunkId) of the transaction's director rows into the index partition."""
        tid, dbname, key = t["id"], t["database"], director["director_key"]
        idx = qid(self.meta_db, f"{dbname}__{director['name']}")
        targets = sorted(
            {
                (c["worker"], c["chunk"])
                for c in self.state.contribs.values()
                if c["transaction_id"] == tid
                and c["table"] == director["name"]
                and not c["overlap"]
                and c["status"] == "FINISHED"
            }
        )
        for worker, chunk in targets:
            if worker in self.faults.down_workers:
                raise WorkerDown({worker: "worker is not responding"})
            src = qid(self.nodes[worker].storage.dbname(dbname), chunk_table(director["name"], chunk, False))
            await self.pool.aexecute(
                f"INSERT INTO {idx} (`qserv_trans_id`, {qid(key)}, `chunkId`, `subChunkId`)"
                f" SELECT `qserv_trans_id`, {qid(key)}, `chunkId`, `subChunkId`"
                f" FROM {src} PARTITION (`p{tid}`)"
            )

    async def _abort(self, call: Call, t: dict) -> dict:
        tid, dbname = t["id"], t["database"]
        await self._log(t, "begin del table part")
        partitioned = [x["name"] for x in self.state.db_tables(dbname) if x["is_partitioned"]]
        targets: dict[str, set[str]] = {}
        for c in self.state.contribs.values():
            if c["transaction_id"] != tid:
                continue
            tbl = self.state.tables.get((dbname, c["table"]))
            if tbl is None:
                continue
            names = targets.setdefault(c["worker"], set())
            if tbl["is_partitioned"]:
                for name in partitioned:
                    names.add(chunk_table(name, c["chunk"], False))
                    names.add(chunk_table(name, c["chunk"], True))
            else:
                names.add(c["table"])
        errors = {}
        fault = self.faults.fire(("fail_abort",), {"transaction_id": tid, "database": dbname})
        if fault is not None:
            errors["controller"] = "injected fault"
        for worker, names in sorted(targets.items()):
            try:
                await self.on_workers(
                    lambda conn, st, names=names: [
                        st.drop_partition(conn, dbname, n, tid) for n in sorted(names)
                    ],
                    workers=[worker],
                )
            except WorkerDown as ex:
                errors.update(ex.args[0])
        if errors:
            await self._log(t, "end del table part", {"errors": errors})
            await self._set_state(t, "ABORT_FAILED")
            raise ApiError("failed to drop table partitions", {"job_id": f"abort-{tid}", "workers": errors})
        await self._log(t, "end del table part")
        for d in self._directors_with_index(dbname):
            await self._log(t, "begin del dir idx part", {"table": d["name"]})
            await self.pool.aexecute(
                f"ALTER TABLE {qid(self.meta_db, dbname + '__' + d['name'])}"
                f" DROP PARTITION IF EXISTS `p{tid}`"
            )
            await self._log(t, "end del dir idx part", {"table": d["name"]})
        await self._set_state(t, "ABORTED")
        return {"secondary-index-build-success": 0, **self._trans_payload(t, call)}

    def _trans_filter(self, call: Call):
        states = call.q_str("trans_state")
        if not states:
            return lambda s: True
        if states.startswith("!"):
            return lambda s: s != states[1:]
        allowed = set(states.split(","))
        return lambda s: s in allowed

    def _contrib_filter(self, call: Call):
        statuses = call.q_str("contrib_status")
        table, worker = call.q_str("table"), call.q_str("worker")
        chunk = call.q_str("chunk")
        min_retries = call.q_uint("min_retries", 0)
        min_warnings = call.q_uint("min_warnings", 0)

        def ok(c: dict) -> bool:
            if statuses:
                if statuses.startswith("!"):
                    if c["status"] == statuses[1:]:
                        return False
                elif c["status"] not in statuses.split(","):
                    return False
            if table and c["table"] != table:
                return False
            if worker and c["worker"] != worker:
                return False
            if chunk and str(c["chunk"]) != chunk:
                return False
            return c["num_failed_retries"] >= min_retries and c["num_warnings"] >= min_warnings

        return ok

    def contrib_json(self, c: dict, call: Call | None, default_ext: int = 0) -> dict:
        q = call.query if call is not None else {}
        out = dict(c)
        out.pop("_internal", None)
        if q.get("include_warnings", "0") == "0":
            out["warnings"] = []
        if q.get("include_retries", "0") == "0":
            out["failed_retries"] = []
        if q.get("include_extensions", str(default_ext)) == "0":
            out["http_headers"] = []
        return out

    def _contrib_section(self, tid: int, call: Call) -> dict | None:
        if call.q_uint("contrib", 0) == 0:
            return None
        ok = self._contrib_filter(call)
        contribs = sorted(
            (c for c in self.state.contribs.values() if c["transaction_id"] == tid and ok(c)),
            key=lambda c: c["id"],
        )
        summary = _summary(contribs)
        files = []
        if call.q_uint("contrib_long", 0):
            files = [self.contrib_json(c, call) for c in contribs]
            limit = call.q_uint("max_entries", 0)
            if limit:
                files = files[:limit]
        return {"summary": summary, "files": files}

    @endpoint(37)
    async def list_trans(self, call: Call) -> dict:
        name = call.q_str("database")
        state_ok = self._trans_filter(call)
        if name:
            names = [self.database(name)["database"]]
        else:
            fam = call.q_str("family")
            all_dbs = call.q_uint("all_databases", 0)
            published = call.q_uint("is_published", 0)
            names = [
                d["database"]
                for d in self.state.databases.values()
                if (not fam or d["family_name"] == fam)
                and (all_dbs or bool(d["is_published"]) == bool(published))
            ]
        out = {}
        for n in names:
            db = self.state.databases[n]
            trans = [
                self.trans_json(t, call, self._contrib_section(t["id"], call))
                for t in sorted(self.state.transactions.values(), key=lambda t: t["id"])
                if t["database"] == n and state_ok(t["state"])
            ]
            out[n] = {
                "is_published": db["is_published"],
                "num_chunks": self.num_chunks(n),
                "transactions": trans,
            }
        return {"databases": out}

    @endpoint(37)
    async def get_trans(self, call: Call) -> dict:
        tid = _uint_path(call.match("id"), "id")
        if tid == 0 and call.q_str("database"):
            return await type(self).list_trans.__wrapped__(self, call)
        t = self.transaction(tid)
        return self._trans_payload(t, call, self._contrib_section(tid, call))

    @endpoint(37)
    async def get_contrib(self, call: Call) -> dict:
        cid = _uint_path(call.match("id"), "id")
        c = self.state.contribs.get(cid)
        if c is None:
            raise OperationFailed(
                f"DatabaseServicesMySQL::transactionContrib  no such contribution, id={cid}"
            )
        return {"contribution": self.contrib_json(c, call, default_ext=1)}

    # ------------------------------------------------------------------ chunk placement
    def _db_for_alloc(self, call: Call) -> dict:
        if call.has("transaction_id"):
            t = self.transaction(call.required_uint("transaction_id"))
            db = self.database(t["database"])
        else:
            db = self.database(call.required("database"))
        if db["is_published"]:
            raise ApiError("the database is already published")
        return db

    async def _allocate(self, db: dict, chunk: int, multi: bool, per_chunk_msgs: bool) -> list[str]:
        fam = self.state.families[db["family_name"]]
        if not is_valid_chunk(chunk, fam["num_stripes"], fam["num_sub_stripes"]):
            raise ApiError(
                f"chunk {chunk} is not valid" if per_chunk_msgs else "this chunk number is not valid"
            )
        name = db["database"]
        async with self._alloc_lock:
            existing = self.state.replicas.get(name, {}).get(chunk)
            if existing:
                if len(existing) > 1 and not multi:
                    msg = (
                        f"chunk {chunk} has too many replicas"
                        if per_chunk_msgs
                        else "this chunk has too many replicas"
                    )
                    raise ApiError(msg, {"replicas": [self.location(w, chunk) for w in existing]})
                return existing
            candidates = self.enabled_workers()
            if not candidates:
                raise ApiError("no suitable worker found")
            load = self.state.chunk_load()
            siblings = [
                d["database"]
                for d in self.state.databases.values()
                if d["family_name"] == db["family_name"] and d["database"] != name
            ]
            colocated = sorted(
                {
                    w
                    for d in siblings
                    for w in self.state.replicas.get(d, {}).get(chunk, [])
                    if w in candidates
                }
            )
            if colocated:
                chosen = colocated if multi else [min(colocated, key=lambda w: (load.get(w, 0), w))]
            else:
                chosen = [min(candidates, key=lambda w: (load.get(w, 0), w))]
            await self.state.put_replica(name, chunk, chosen)
            return chosen

    @endpoint(12, auth=True)
    async def add_chunk(self, call: Call) -> dict:
        chunk = call.required_uint("chunk")
        db = self._db_for_alloc(call)
        workers = await self._allocate(db, chunk, multi=False, per_chunk_msgs=False)
        return {"location": self.location(workers[0], chunk)}

    @endpoint(54, auth=True)
    async def add_chunks(self, call: Call) -> dict:
        chunks = self._chunk_list(call)
        db = self._db_for_alloc(call)
        out = []
        for chunk in chunks:
            workers = await self._allocate(db, chunk, multi=False, per_chunk_msgs=True)
            out.append(self.location(workers[0], chunk))
        return {"locations": out}

    @endpoint(54, auth=True)
    async def add_chunk_multi(self, call: Call) -> dict:
        chunk = call.required_uint("chunk")
        db = self._db_for_alloc(call)
        workers = await self._allocate(db, chunk, multi=True, per_chunk_msgs=False)
        return {"locations": [self.location(w, chunk) for w in workers]}

    @endpoint(54, auth=True)
    async def add_chunks_multi(self, call: Call) -> dict:
        chunks = self._chunk_list(call)
        db = self._db_for_alloc(call)
        out = []
        for chunk in chunks:
            out += [self.location(w, chunk) for w in await self._allocate(db, chunk, True, True)]
        return {"locations": out}

    @staticmethod
    def _chunk_list(call: Call) -> list[int]:
        chunks = call.required("chunks", (list,))
        if any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in chunks):
            raise OperationFailed("[json.exception.type_error.302] type must be number, but is string")
        return chunks

    async def _empty_chunks(self, dbname: str) -> tuple[int, int]:
        """Rebuild ``<db>_EmptyChunks``: every chunk of the layout without a replica for the database."""
        fam = self.state.families[self.state.databases[dbname]["family_name"]]
        every = all_chunks(fam["num_stripes"], fam["num_sub_stripes"])
        used = set(self.state.replicas.get(dbname, {})) & every
        empty = sorted(every - used)
        table = qid(self.css_db, f"{dbname}_EmptyChunks")

        def rebuild(conn):
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {qid(self.css_db)}")
                cur.execute(f"DROP TABLE IF EXISTS {table}")
                cur.execute(f"CREATE TABLE {table} (`chunkId` INT NOT NULL PRIMARY KEY) ENGINE=InnoDB")
                for i in range(0, len(empty), 10000):
                    cur.execute(
                        f"INSERT INTO {table} VALUES " + ",".join(f"({c})" for c in empty[i : i + 10000])
                    )

        await self.pool.run(rebuild)
        return len(used), len(every)

    @endpoint(31, auth=True)
    async def build_empty_chunks(self, call: Call) -> dict:
        db = self.database(call.required("database"))
        call.optional_uint("force", 0)
        if db["is_published"]:
            raise ApiError("the database is already published")
        ingested, total = await self._empty_chunks(db["database"])
        return {"num_chunks_ingested": ingested, "num_chunks_all": total}

    @endpoint(12)
    async def list_chunks(self, call: Call) -> dict:
        name = call.q_str("database")
        if not name:
            raise InvalidParam("No required parameter 'database' found in the request's query.")
        db = self.database(name)
        tables = [t["name"] for t in self.state.db_tables(db["database"]) if t["is_partitioned"]]
        zero = {
            "rows": 0,
            "data_size": 0,
            "index_size": 0,
            "overlap_rows": 0,
            "overlap_data_size": 0,
            "overlap_index_size": 0,
        }
        replicas = []
        for chunk, workers in sorted(self.state.replicas.get(db["database"], {}).items()):
            for w in workers:
                replicas.append({"chunk": chunk, "worker": w, **{t: dict(zero) for t in tables}})
        return {"replica": replicas}

    @endpoint(12)
    async def regular_locations(self, call: Call) -> dict:
        if call.has("transaction_id"):
            db = self.database(self.transaction(call.required_uint("transaction_id"))["database"])
        else:
            db = self.database(call.required("database"))
        if db["is_published"]:
            raise ApiError(f"database '{db['database']} is already published.")
        return {"locations": [self.location(w) for w in self.enabled_workers()]}

    # ------------------------------------------------------------------ director index
    @endpoint(22, auth=True)
    async def build_index(self, call: Call) -> dict:
        dbname = call.required("database")
        director = call.required("director_table")
        rebuild = call.optional_uint("rebuild", 0)
        for obsolete, since in (("local", 20), ("allow_for_published", 22)):
            if call.has(obsolete):
                call.warn(
                    f"The parameter '{obsolete}' is obsolete since version {since} of the API and it will"
                    " be ignored."
                )
        db = self.database(dbname)
        t = self.table(dbname, director)
        if not t["is_director"]:
            raise InvalidParam(f"table '{director}' is not a director table")
        if not t["is_published"]:
            raise ApiError(f"the director table '{director}' of the database '{dbname}' is not published.")
        unique = call.optional_uint("unique_primary_key", t["unique_primary_key"])
        name = qid(self.meta_db, f"{dbname}__{director}")
        exists = await self.pool.aexecute(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
            (self.meta_db, f"{dbname}__{director}"),
        )
        if exists and not rebuild:
            raise ApiError(
                "index creation failed", {"table": f"the director index table of '{director}' already exists"}
            )
        await self.pool.aexecute(f"DROP TABLE IF EXISTS {name}")
        await self._create_index_table(dbname, {**t, "unique_primary_key": unique}, partitioned=False)
        key = t["director_key"]
        errors: dict = {}
        for chunk, workers in self.state.replicas.get(db["database"], {}).items():
            for w in workers:
                if w in self.faults.down_workers:
                    errors.setdefault(w, {})[str(chunk)] = "worker is not responding"
                    continue
                src = qid(self.nodes[w].storage.dbname(dbname), chunk_table(director, chunk, False))
                try:
                    await self.pool.aexecute(
                        f"INSERT INTO {name} ({qid(key)}, `chunkId`, `subChunkId`) SELECT"
                        f" {qid(key)}, `chunkId`, `subChunkId` FROM {src}"
                    )
                except pymysql.err.MySQLError as ex:
                    errors.setdefault(w, {})[str(chunk)] = str(ex)
        if errors:
            raise ApiError("index creation failed", errors)
        return {}

    # ------------------------------------------------------------------ row counters
    async def _scan_stats(self, dbname: str, t: dict, selector: str, deploy: bool) -> list[dict]:
        entries = []
        for wname in sorted(self.nodes):
            if wname in self.faults.down_workers:
                raise ApiError(
                    "Table rows scanning/deployment failed.",
                    {
                        "operation": "scan",
                        "job_id": f"stats-{dbname}-{t['name']}",
                        "workers": {
                            wname: {t["name"]: {"status": "FAILED", "error": "worker is not responding"}}
                        },
                    },
                )
            storage = self.nodes[wname].storage
            targets: list[tuple[str, int, int]] = []
            if t["is_partitioned"]:
                chunks = [c for c, ws in self.state.replicas.get(dbname, {}).items() if wname in ws]
                for chunk in chunks:
                    if selector in ("CHUNK_AND_OVERLAP", "CHUNK"):
                        targets.append((chunk_table(t["name"], chunk, False), chunk, 0))
                    if selector in ("CHUNK_AND_OVERLAP", "OVERLAP"):
                        targets.append((chunk_table(t["name"], chunk, True), chunk, 1))
            else:
                targets.append((t["name"], 0, 0))
            for name, chunk, is_overlap in targets:
                try:
                    rows = await self.pool.aexecute(
                        f"SELECT `qserv_trans_id`, COUNT(*) FROM {qid(storage.dbname(dbname), name)}"
                        " GROUP BY `qserv_trans_id`"
                    )
                except pymysql.err.ProgrammingError:
                    rows = []
                for trans_id, n in rows:
                    entries.append(
                        {
                            "transaction_id": int(trans_id),
                            "chunk": chunk,
                            "is_overlap": is_overlap,
                            "num_rows": int(n),
                            "update_time": now_ms(),
                            "worker": wname,
                        }
                    )
            if not t["is_partitioned"]:
                break  # a regular table is counted once (every worker holds the same rows)
        key = f"{dbname}.{t['name']}"
        await self.state.put_stats(key, {"database": dbname, "table": t["name"], "entries": entries})
        if deploy:
            rows_table = qid(self.meta_db, f"{dbname}__{t['name']}__rows")
            await self.pool.aexecute(f"CREATE DATABASE IF NOT EXISTS {qid(self.meta_db)}")
            await self.pool.aexecute(
                f"CREATE TABLE IF NOT EXISTS {rows_table} (`chunk` INT UNSIGNED NOT NULL,"
                " `num_rows` BIGINT UNSIGNED, UNIQUE KEY (`chunk`)) ENGINE=InnoDB"
            )
            await self.pool.aexecute(f"DELETE FROM {rows_table}")
            per_chunk: dict[int, int] = {}
            for e in entries:
                if not e["is_overlap"]:
                    per_chunk[e["chunk"]] = per_chunk.get(e["chunk"], 0) + e["num_rows"]
            if per_chunk:
                await self.pool.aexecute(
                    f"INSERT INTO {rows_table} (`chunk`, `num_rows`) VALUES "
                    + ",".join(f"({c},{n})" for c, n in sorted(per_chunk.items()))
                )
        return entries

    @endpoint(12, auth=True)
    async def scan_table_stats(self, call: Call) -> dict:
        dbname = call.required("database")
        tname = call.required("table")
        selector = call.optional("overlap_selector", "CHUNK_AND_OVERLAP")
        call.optional_uint("force_rescan", 0)
        policy = call.optional("row_counters_state_update_policy", "DISABLED")
        deploy = call.optional_uint("row_counters_deploy_at_qserv", 0)
        if selector not in ("CHUNK_AND_OVERLAP", "CHUNK", "OVERLAP"):
            raise InvalidParam(f"the value '{selector}' of the parameter 'overlap_selector' is not allowed")
        if policy not in ("DISABLED", "ENABLED", "FORCED"):
            raise InvalidParam(
                f"the value '{policy}' of the parameter 'row_counters_state_update_policy' is not allowed"
            )
        if deploy and (policy != "ENABLED" or selector == "OVERLAP"):
            raise InvalidParam(
                "deploying row counters at Qserv requires row_counters_state_update_policy=ENABLED"
                " and overlap_selector other than OVERLAP"
            )
        self.database(dbname)
        t = self.table(dbname, tname)
        await self._scan_stats(dbname, t, selector, bool(deploy))
        return {}

    @endpoint(12)
    async def get_table_stats(self, call: Call) -> dict:
        dbname, tname = call.match("db"), call.match("table")
        self.database(dbname)
        self.table(dbname, tname)
        stats = self.state.stats.get(f"{dbname}.{tname}", {"entries": []})
        entries = [
            {k: e[k] for k in ("transaction_id", "chunk", "is_overlap", "num_rows", "update_time")}
            for e in stats["entries"]
        ]
        return {"database": dbname, "table": tname, "entries": entries}

    @endpoint(12, auth=True)
    async def delete_table_stats(self, call: Call) -> dict:
        dbname, tname = call.match("db"), call.match("table")
        self.database(dbname)
        self.table(dbname, tname)
        selector = call.optional("overlap_selector", "CHUNK_AND_OVERLAP")
        qserv_only = call.optional_uint("qserv_only", 0)
        await self.pool.aexecute(
            f"DROP TABLE IF EXISTS {qid(self.meta_db, dbname + '__' + tname + '__rows')}"
        )
        if not qserv_only:
            key = f"{dbname}.{tname}"
            stats = self.state.stats.get(key, {"database": dbname, "table": tname, "entries": []})
            keep = {
                "CHUNK_AND_OVERLAP": lambda e: False,
                "CHUNK": lambda e: e["is_overlap"],
                "OVERLAP": lambda e: not e["is_overlap"],
            }[selector]
            stats["entries"] = [e for e in stats["entries"] if keep(e)]
            await self.state.put_stats(key, stats)
        return {}

    # ------------------------------------------------------------------ fault admin (not Qserv)
    async def faults_list(self, request: web.Request) -> web.Response:
        return envelope({"faults": self.faults.list(), "down_workers": sorted(self.faults.down_workers)})

    async def faults_add(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            kind = body.pop("kind")
            if kind in ("worker_down", "worker_up"):
                if body["worker"] not in self.nodes:
                    raise KeyError(f"no such worker {body['worker']}")
                await self.switch_worker(body["worker"], kind == "worker_down")
                return envelope({"fault": None})
            return envelope({"fault": self.faults.add(kind, **body).to_json()})
        except (KeyError, TypeError, ValueError) as ex:
            return envelope(error=f"invalid fault: {ex}")

    async def faults_clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        for w in list(self.faults.down_workers):
            await self.switch_worker(w, False)
        return envelope({})

    async def faults_remove(self, request: web.Request) -> web.Response:
        ok = self.faults.remove(int(request.match_info["id"]))
        return envelope({}) if ok else envelope(error="no such fault")


def _uint_path(value: str, name: str) -> int:
    if not value.isdigit():
        raise InvalidParam(f"the value of the parameter '{name}' is not an unsigned integer.")
    return int(value)


def _sums(contribs: list[dict]) -> dict:
    done = [c for c in contribs if c["status"] == "FINISHED"]
    return {
        "data_size_gb": sum(c["num_bytes"] for c in done) / 1e9,
        "num_failed_retries": sum(c["num_failed_retries"] for c in contribs),
        "num_warnings": sum(c["num_warnings"] for c in done),
        "num_rows": sum(c["num_rows"] for c in done),
        "num_rows_loaded": sum(c["num_rows_loaded"] for c in done),
    }


def _summary(contribs: list[dict]) -> dict:
    """The ``contrib.summary`` object of a transaction (only FINISHED contributions feed the sums)."""
    by_status: dict[str, int] = {}
    for c in contribs:
        by_status[c["status"]] = by_status.get(c["status"], 0) + 1
    regular = [c for c in contribs if c["chunk"] == 0 and c.get("_internal", {}).get("regular")]
    out = {
        "num_workers": len({c["worker"] for c in contribs}),
        "num_files_by_status": by_status,
        "num_regular_files": len(regular),
        "num_chunk_files": sum(1 for c in contribs if c not in regular and not c["overlap"]),
        "num_chunk_overlap_files": sum(1 for c in contribs if c not in regular and c["overlap"]),
        **_sums(contribs),
        "first_contrib_begin": min((c["create_time"] for c in contribs), default=0),
        "last_contrib_end": max((c["load_time"] for c in contribs), default=0),
        "table": {},
        "worker": {},
    }
    for t in sorted({c["table"] for c in contribs}):
        mine = [c for c in contribs if c["table"] == t]
        main = [c for c in mine if not c["overlap"]]
        over = [c for c in mine if c["overlap"]]
        out["table"][t] = {
            **_sums(main),
            "num_files": len(main),
            "overlap": {**_sums(over), "num_files": len(over)},
        }
    for w in sorted({c["worker"] for c in contribs}):
        mine = [c for c in contribs if c["worker"] == w]
        out["worker"][w] = {
            **_sums(mine),
            "num_files": len(mine),
            "num_regular_files": sum(1 for c in mine if c in regular),
            "num_chunk_files": sum(1 for c in mine if c not in regular and not c["overlap"]),
            "num_chunk_overlap_files": sum(1 for c in mine if c not in regular and c["overlap"]),
        }
    return out


__all__ = ["Controller", "DUMMY_CHUNK"]

"""What every controller module shares: the state, the workers' storage, and Qserv's lookups and job rules.

Controller "jobs" on workers (create databases and tables,
drop transaction partitions, de-partition at publish) are direct calls into each worker's storage; a
worker switched down by fault injection fails the job with an error naming it, as Qserv's jobs do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pymysql

from qdask.emulator.faults import FaultInjector
from qdask.emulator.protocol import Keys, OperationFailed
from qdask.emulator.records import Database, Family, Table, Worker
from qdask.emulator.state import State, now_ms
from qdask.emulator.storage import SqlPool, WorkerStorage, qid

if TYPE_CHECKING:
    from qdask.emulator.czar.databases import Czar


class WorkerDown(Exception):
    """A job failed on some workers: ``errors`` maps each of them to its first error."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors

    def report(self, prefix: str) -> str:
        """``jobCompletionErrorIfAny`` (``HttpIngestModule.cc:71-97``): one clause per failed worker."""
        return "".join(f"{prefix}, worker: {w},  error: {err} " for w, err in self.errors.items())


class ControllerContext:
    """The controller's view of the system, shared by its service modules."""

    def __init__(
        self,
        state: State,
        pool: SqlPool,
        storages: Mapping[str, WorkerStorage],
        keys: Keys,
        faults: FaultInjector,
        czar: Czar,
        meta_db: str,
    ):
        self.state = state
        self.pool = pool
        self.storages = storages
        self.keys = keys
        self.faults = faults
        self.czar = czar
        self.meta_db = meta_db
        self.css_db = meta_db.replace("qservMeta", "qservCssData")

    # ---- lookups
    def family(self, db: Database) -> Family:
        return self.state.families[db.family_name]

    def worker(self, name: str) -> Worker:
        return self.state.workers[name]

    def enabled_workers(self) -> list[str]:
        return sorted(n for n, w in self.state.workers.items() if w.is_enabled and not w.is_read_only)

    def num_chunks(self, db: str) -> int:
        return len(self.state.replicas.get(db, {}))

    def directors_with_index(self, db: Database) -> list[Table]:
        """Unpublished director tables whose index the ingest maintains (``autoBuildDirectorIndex``)."""
        if not db.auto_build_secondary_index:
            return []
        return [t for t in self.state.db_tables(db.name) if t.is_director and not t.is_published]

    # ---- qservMeta / qservCssData names
    def index_table(self, db: str, table: str) -> str:
        """``directorIndexTableName``: ``qservMeta.<db>__<table>``."""
        return qid(self.meta_db, f"{db}__{table}")

    def rows_table(self, db: str, table: str) -> str:
        """``rowCountersTable``: ``qservMeta.<db>__<table>__rows``."""
        return qid(self.meta_db, f"{db}__{table}__rows")

    def empty_chunks_table(self, db: str) -> str:
        return qid(self.css_db, f"{db}_EmptyChunks")

    async def execute(self, sql: str) -> None:
        """A statement on the czar's MariaDB (``qservMeta``, ``qservCssData``), failing as Qserv's
        ``Connection::execute`` reports a server error (``DatabaseMySQL.cc:185-187, 286-311``)."""
        try:
            await self.pool.aexecute(sql)
        except pymysql.err.MySQLError as ex:
            code, text = (ex.args + ("",))[:2]
            raise OperationFailed(
                f"Connection[1]::execute(_inTransaction=1)  mysql_real_query failed, query: '{sql}',"
                f" error: {text}, errno: {code}"
            ) from None

    # ---- jobs on workers
    async def on_workers(
        self, fn: Callable[..., Any], *args: Any, workers: Iterable[str] | None = None
    ) -> None:
        """Run a storage job ``fn(conn, storage, *args)`` on every worker (or ``workers``)."""
        names = sorted(self.storages) if workers is None else list(workers)
        errors = {}
        for name in names:
            if name in self.faults.down_workers:
                errors[name] = "worker is not responding (connection refused)"
                continue
            try:
                await self.pool.run(fn, self.storages[name], *args)
            except pymysql.err.MySQLError as ex:
                errors[name] = str(ex)
        if errors:
            raise WorkerDown(errors)

    # ---- shared writes
    async def publish_in_config(self, db: Database) -> None:
        """``Configuration::publishDatabase`` (``Configuration.cc:896-923``): tables, then the database."""
        ts = now_ms()
        for t in self.state.db_tables(db.name):
            if not t.is_published:
                t.is_published, t.publish_time = True, ts
                await self.state.save(t)
        db.is_published, db.publish_time = True, ts
        await self.state.save(db)


class ControllerModule:
    """Base of the controller's service modules: the shared context and the request context Qserv's
    controller modules report in authorization errors (``HttpModule::context()``: the task name)."""

    CONTEXT: ClassVar[str] = "HTTP-PROCESSOR "

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx

    @property
    def keys(self) -> Keys:
        return self.ctx.keys

    @property
    def state(self) -> State:
        return self.ctx.state

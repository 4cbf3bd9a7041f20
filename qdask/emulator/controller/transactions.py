"""Transactions: Qserv's ``HttpIngestTransModule`` (``/ingest/trans``, ``/ingest/trans/:id``,
``/ingest/trans/contrib/:id``).

Begin and end follow ``HttpIngestTransModule.cc:247-505``: the state machine of ``contract.TRANSITIONS``, a
log event around each step (director-index partitions, the abort job dropping ``p<T>`` on the workers,
the commit-time index build), a failed step leaving ``START_FAILED``/``FINISH_FAILED``/``ABORT_FAILED``,
and answers carrying the transaction with its context and log (``:316``, ``:494``). The reports read
context, log and contributions only when asked, as ``DatabaseServicesMySQL`` does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pymysql
from aiohttp import web

from qdask.emulator.contract import TRANSITIONS, TransactionState
from qdask.emulator.controller.context import ControllerContext, ControllerModule, WorkerDown
from qdask.emulator.controller.director_index import DirectorIndex
from qdask.emulator.controller.trans_summary import state_selector, status_selector, summarize
from qdask.emulator.protocol import ApiError, Call, InvalidParam, OperationFailed, endpoint
from qdask.emulator.records import Contribution, Database, Transaction, TransactionEvent
from qdask.emulator.state import now_ms
from qdask.emulator.storage import chunk_table

S = TransactionState


class TransactionServices(ControllerModule):
    def __init__(self, ctx: ControllerContext, index: DirectorIndex):
        super().__init__(ctx)
        self.index = index
        self._locks: dict[int, asyncio.Lock] = {}  # the "transaction:<id>" named mutexes

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/ingest/trans", self.begin),
            web.get("/ingest/trans", self.list_transactions),
            web.get("/ingest/trans/contrib/{id}", self.get_contribution),
            web.get("/ingest/trans/{id}", self.get_transaction),
            web.put("/ingest/trans/{id}", self.end),
        ]

    # ---------------------------------------------------------------- state changes and log
    async def _log(self, t: Transaction, name: str, data: dict[str, Any]) -> None:
        t.log.append(TransactionEvent(len(t.log) + 1, t.state, name, now_ms(), data))
        await self.state.save(t)

    async def _set_state(self, t: Transaction, state: TransactionState) -> None:
        """``updateTransaction(id, state)`` (``DatabaseServicesMySQL.cc:1362-1410``): a timestamp per kind
        of state."""
        if state not in TRANSITIONS[t.state]:
            raise InvalidParam(
                f"DatabaseServicesMySQL::updateTransaction id={t.id} state transition from {state}into"
                f" {state} is not allowed."
            )
        t.state = state
        ts = now_ms()
        if state is S.STARTED:
            t.start_time = ts
        elif state in (S.IS_FINISHING, S.IS_ABORTING):
            t.transition_time = ts
        else:
            t.end_time = ts
        await self.state.save(t)

    def _answer(self, db: Database, t: Transaction) -> dict:
        return {
            "databases": {
                db.name: {"transactions": [t.to_json()], "num_chunks": self.ctx.num_chunks(db.name)}
            }
        }

    # ---------------------------------------------------------------- begin
    @endpoint(12, auth=True)
    async def begin(self, call: Call) -> dict:
        """``_beginTransaction`` (``HttpIngestTransModule.cc:247-331``)."""
        db = self.state.database(call.json_str("database"))
        context = call.json_any("context", {})
        if db.is_published:
            raise ApiError("the database is already published")
        if not isinstance(context, dict):  # createTransaction (DatabaseServicesMySQL.cc:1330-1332)
            raise InvalidParam(
                f"DatabaseServicesMySQL::createTransaction database={db.name} a value of the parameter"
                " 'transactionContext is not a valid JSON object"
            )
        t = Transaction(
            await self.state.next_id("transaction"), db.name, S.IS_STARTING, now_ms(), context=context
        )
        self._locks[t.id] = asyncio.Lock()
        async with self._locks[t.id]:
            await self.state.save(t)
            try:
                for d in self.ctx.directors_with_index(db):
                    await self._log(t, "begin add dir idx part", {"table": d.name})
                    try:
                        await self.index.add_partition(d, t.id)
                    except pymysql.err.MySQLError as ex:
                        await self._log(
                            t, "end add dir idx part", {"table": d.name, "success": 0, "error": str(ex)}
                        )
                        raise OperationFailed(str(ex)) from None
                    await self._log(t, "end add dir idx part", {"table": d.name, "success": 1, "error": ""})
            except ApiError:
                await self._set_state(t, S.START_FAILED)
                raise
            await self._set_state(t, S.STARTED)
        return self._answer(db, t)

    # ---------------------------------------------------------------- end
    @endpoint(12, auth=True)
    async def end(self, call: Call) -> dict:
        """``_endTransaction`` (``HttpIngestTransModule.cc:333-505``)."""
        tid = call.path_id()
        abort = call.q_bool("abort")
        has_context = call.has("context")
        context = call.json_any("context", {})
        async with self._locks.setdefault(tid, asyncio.Lock()):
            t = self.state.transaction(tid)
            target = S.IS_ABORTING if abort else S.IS_FINISHING
            if target not in TRANSITIONS[t.state]:
                raise ApiError(
                    f"transaction id={tid} can't be ended at this time because of state={t.state}."
                )
            db = self.state.database(t.database)
            try:
                await self._set_state(t, target)
                if has_context:
                    if not isinstance(context, dict):  # DatabaseServicesMySQL.cc:1416-1418
                        raise InvalidParam(
                            f"DatabaseServicesMySQL::updateTransaction id={tid} a value of the parameter"
                            " 'transactionContext is not a valid JSON object"
                        )
                    t.context = context
                    await self.state.save(t)
                index_ok = await (self._abort(db, t) if abort else self._commit(db, t))
                await self._set_state(t, S.ABORTED if abort else S.FINISHED)
            except ApiError:
                await self._set_state(t, S.ABORT_FAILED if abort else S.FINISH_FAILED)
                raise
        return {"secondary-index-build-success": int(index_ok), **self._answer(db, t)}

    async def _commit(self, db: Database, t: Transaction) -> bool:
        """Build the transaction's layer of each director index; a failure only clears the success flag."""
        if self.ctx.faults.fire(("fail_commit",), {"transaction_id": t.id, "database": db.name}):
            raise ApiError(f"transaction id={t.id} commit failed: injected fault")
        if not db.auto_build_secondary_index:
            return False
        success = True
        for d in self.ctx.directors_with_index(db):
            job = {"job": f"dir-idx-{t.id}-{d.name}", "table": d.name}
            await self._log(t, "begin bld dir idx", job)
            try:
                await self.index.harvest(t, d)
                await self._log(t, "end bld dir idx", {**job, "success": 1, "error": {}})
            except (pymysql.err.MySQLError, WorkerDown) as ex:
                success = False
                await self._log(t, "end bld dir idx", {**job, "success": 0, "error": {"error": str(ex)}})
        return success

    async def _abort(self, db: Database, t: Transaction) -> bool:
        """``AbortTransactionJob``: drop ``p<T>`` where the transaction wrote, then the index partitions."""
        job = {"job": f"abort-{t.id}"}
        await self._log(t, "begin del table part", job)
        errors: dict[str, str] = {}
        if self.ctx.faults.fire(("fail_abort",), {"transaction_id": t.id, "database": db.name}):
            errors["controller"] = "injected fault"
        for worker, names in sorted(self._written(db, t).items()):
            try:
                await self.ctx.on_workers(
                    lambda conn, st, names=names: [
                        st.drop_partition(conn, db.name, n, t.id) for n in sorted(names)
                    ],
                    workers=[worker],
                )
            except WorkerDown as ex:
                errors.update(ex.errors)
        if errors:
            ext = {"job_id": job["job"], "workers": errors}
            await self._log(t, "end del table part", {**job, "success": 0, "error": ext})
            raise ApiError("failed to drop table partitions", ext)
        await self._log(t, "end del table part", {**job, "success": 1, "error": {}})
        for d in self.ctx.directors_with_index(db):
            await self._log(t, "begin del dir idx part", {"table": d.name})
            try:
                await self.index.drop_partition(d, t.id)
            except pymysql.err.MySQLError as ex:
                await self._log(t, "end del dir idx part", {"table": d.name, "success": 0, "error": str(ex)})
                raise OperationFailed(str(ex)) from None
            await self._log(t, "end del dir idx part", {"table": d.name, "success": 1, "error": ""})
        return False

    def _written(self, db: Database, t: Transaction) -> dict[str, set[str]]:
        """Per worker, the tables the transaction's contributions may have given a ``p<T>``."""
        partitioned = [x.name for x in self.state.db_tables(db.name) if x.is_partitioned]
        targets: dict[str, set[str]] = {}
        for c in self.state.trans_contribs(t.id):
            table = self.state.tables.get((db.name, c.table))
            if table is None:
                continue
            names = targets.setdefault(c.worker, set())
            if table.is_partitioned:
                names.update(chunk_table(n, c.chunk, o) for n in partitioned for o in (False, True))
            else:
                names.add(c.table)
        return targets

    # ---------------------------------------------------------------- reports
    def _trans_json(self, call: Call, t: Transaction, contribs: bool) -> dict:
        out = t.to_json(call.q_uint("include_context", 0) != 0, call.q_uint("include_log", 0) != 0)
        if contribs:
            out["contrib"] = self._contrib_section(call, t)
        return out

    def _contrib_section(self, call: Call, t: Transaction) -> dict:
        statuses = status_selector(call.q_str("contrib_status"))
        table, worker = call.q_str("table"), call.q_str("worker")
        chunk = call.q_int("chunk", -1)
        min_retries, min_warnings = call.q_uint("min_retries", 0), call.q_uint("min_warnings", 0)
        limit = call.q_uint("max_entries", 0)

        def wanted(c: Contribution) -> bool:
            return (
                (not statuses or c.status in statuses)
                and (not table or c.table == table)
                and (not worker or c.worker == worker)
                and (chunk < 0 or c.chunk == chunk)
                and c.num_failed_retries >= min_retries
                and c.num_warnings >= min_warnings
            )

        chosen = [c for c in self.state.trans_contribs(t.id) if wanted(c)]
        if limit:
            chosen = chosen[:limit]
        long = call.q_uint("contrib_long", 0) != 0
        flags = {
            k: long and call.q_uint(f"include_{k}", 0) != 0 for k in ("warnings", "retries", "extensions")
        }
        partitioned = {x.name: x.is_partitioned for x in self.state.db_tables(t.database)}
        return {
            "summary": summarize(chosen, lambda name: partitioned.get(name, False)),
            "files": [c.to_json(**flags) for c in chosen] if long else [],
        }

    def _newest_first(self, db: str, states: set[TransactionState]) -> list[Transaction]:
        """``_findTransactionsImpl`` orders by ``begin_time DESC`` (``DatabaseServicesMySQL.cc:1519``)."""
        found = [t for t in self.state.db_transactions(db) if not states or t.state in states]
        return sorted(found, key=lambda t: (t.begin_time, t.id), reverse=True)

    @endpoint(37)
    async def list_transactions(self, call: Call) -> dict:
        """``_getTransactions`` (``HttpIngestTransModule.cc:94-162``)."""
        name = call.q_str("database")
        family = call.q_str("family")
        all_databases = call.q_uint("all_databases", 0) != 0
        published = call.q_uint("is_published", 0) != 0
        contribs = call.q_uint("contrib", 0) != 0
        states = state_selector(call.q_str("trans_state"))
        status_selector(call.q_str("contrib_status"))
        if name:
            names = [name]
        else:
            names = [
                d.name
                for d in self.state.databases.values()
                if (not family or d.family_name == family) and (all_databases or d.is_published == published)
            ]
        out = {}
        for n in sorted(names):
            db = self.state.database(n)
            out[db.name] = {
                "is_published": int(db.is_published),
                "num_chunks": self.ctx.num_chunks(db.name),
                "transactions": [
                    self._trans_json(call, t, contribs) for t in self._newest_first(db.name, states)
                ],
            }
        return {"databases": out}

    @endpoint(37)
    async def get_transaction(self, call: Call) -> dict:
        """``_getTransaction`` (``HttpIngestTransModule.cc:164-245``); id 0 with a database lists it."""
        tid = call.path_id()
        name = call.q_str("database")
        contribs = call.q_uint("contrib", 0) != 0
        states = state_selector(call.q_str("trans_state"))
        status_selector(call.q_str("contrib_status"))
        if not name and tid == 0:
            raise ApiError("either 'id' or 'database' query parameter must be specified")
        if tid:
            t = self.state.transaction(tid)
            db = self.state.database(t.database)
            if name and name != db.name:
                raise ApiError(
                    f"transaction id={tid} is associated with database '{db.name}' which is different from"
                    f" the requested database '{name}'"
                )
            chosen = [t]
        else:
            db = self.state.database(name)
            chosen = self._newest_first(db.name, states)
        return {
            "databases": {
                db.name: {
                    "is_published": int(db.is_published),
                    "num_chunks": self.ctx.num_chunks(db.name),
                    "transactions": [self._trans_json(call, t, contribs) for t in chosen],
                }
            }
        }

    @endpoint(37)
    async def get_contribution(self, call: Call) -> dict:
        """``_getContribution``: extensions shown unless declined (``HttpIngestTransModule.cc:507-528``)."""
        cid = call.path_id()
        flags = {
            "extensions": call.q_uint("include_extensions", 1) != 0,
            "warnings": call.q_uint("include_warnings", 0) != 0,
            "retries": call.q_uint("include_retries", 0) != 0,
        }
        c = self.state.contribs.get(cid)
        if c is None:
            raise OperationFailed(
                f"DatabaseServicesMySQL::_transactionContribImpl predicate=`id`={cid}"
                " no such transaction contribution"
            )
        return {"contribution": c.to_json(**flags)}

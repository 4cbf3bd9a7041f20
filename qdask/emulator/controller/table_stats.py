"""Row counters: the table-statistics part of Qserv's ``HttpIngestModule`` (``POST /ingest/table-stats``,
``GET``/``DELETE /ingest/table-stats/:db/:table``) and the scan that a publish may deploy.

A scan counts rows per transaction in every chunk (and overlap) table of a partitioned table on every
worker holding the chunk, or in one copy of a regular table (``SqlRowStatsJob``); the counters are kept
only when the update policy allows it; deploying writes per-chunk sums to ``qservMeta.<db>__<table>__rows``
(``HttpIngestModule.cc:794-943``).
"""

from __future__ import annotations

import pymysql
from aiohttp import web

from qdask.emulator.contract import DUMMY_CHUNK, OverlapSelector, RowCountersPolicy
from qdask.emulator.controller.context import ControllerModule
from qdask.emulator.protocol import ApiError, Call, InvalidParam, endpoint
from qdask.emulator.records import Database, RowStatsEntry, Table, TableStats
from qdask.emulator.state import now_ms
from qdask.emulator.storage import chunk_table, qid


def overlap_selector(text: str) -> OverlapSelector:
    """``str2overlapSelector`` (``replica/util/Common.cc:60-69``)."""
    try:
        return OverlapSelector(text)
    except ValueError:
        raise InvalidParam(
            f"lsst::qserv::replica::str2overlapSelector the input string '{text}' doesn't match any selector."
        ) from None


def counters_policy(text: str) -> RowCountersPolicy:
    """``SqlRowStatsJob::str2policy`` (``SqlRowStatsJob.cc:61-69``)."""
    try:
        return RowCountersPolicy(text)
    except ValueError:
        raise InvalidParam(f"SqlRowStatsJob::str2policy: '{text}' is not a valid policy.") from None


class TableStatsServices(ControllerModule):
    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/ingest/table-stats", self.scan_table_stats),
            web.get("/ingest/table-stats/{db}/{table}", self.get_table_stats),
            web.delete("/ingest/table-stats/{db}/{table}", self.delete_table_stats),
        ]

    async def scan(
        self,
        db: Database,
        t: Table,
        selector: OverlapSelector,
        policy: RowCountersPolicy,
        deploy: bool,
        force: bool,
    ) -> dict:
        """``_scanTableStatsImpl``: rescan when forced or when the counters don't cover every chunk, keep
        them unless the policy is DISABLED, deploy per-chunk sums; returns Qserv's ``error_ext`` (or {})."""
        old = self.state.stats.get((db.name, t.name))
        entries = old.entries if old is not None and not force else []
        if force or not entries or (t.is_partitioned and self._incomplete(db, entries, selector)):
            scanned = await self._count_rows(db, t, selector)
            if isinstance(scanned, dict):
                return scanned
            if policy is not RowCountersPolicy.DISABLED:
                # saveTableRowStats upserts on (database, table, transaction_id, chunk, is_overlap)
                # (DatabaseServicesMySQL.cc:2278-2306; the UNIQUE KEY of stats_table_rows): one counter per
                # key whatever the replicas, and counters of earlier scans not seen now are kept
                kept = {(e.transaction_id, e.chunk, e.is_overlap): e for e in (old.entries if old else [])}
                kept.update({(e.transaction_id, e.chunk, e.is_overlap): e for e in scanned})
                await self.state.save(TableStats(db.name, t.name, list(kept.values())))
        if deploy:
            await self._deploy(db, t)
        return {}

    def _incomplete(self, db: Database, entries: list[RowStatsEntry], selector: OverlapSelector) -> bool:
        chunks = set(self.state.replicas.get(db.name, {})) - {DUMMY_CHUNK}
        plain = {e.chunk for e in entries if not e.is_overlap and e.chunk != DUMMY_CHUNK}
        overlap = {e.chunk for e in entries if e.is_overlap and e.chunk != DUMMY_CHUNK}
        wanted = {
            OverlapSelector.CHUNK: (plain,),
            OverlapSelector.OVERLAP: (overlap,),
            OverlapSelector.CHUNK_AND_OVERLAP: (plain, overlap),
        }[selector]
        return any(have != chunks for have in wanted)

    async def _count_rows(
        self, db: Database, t: Table, selector: OverlapSelector
    ) -> list[RowStatsEntry] | dict:
        entries = []
        for wname in sorted(self.ctx.storages):
            if wname in self.ctx.faults.down_workers:
                return {
                    "operation": "Scan table row counters.",
                    "job_id": f"stats-{db.name}-{t.name}",
                    "workers": {wname: {t.name: {"status": "FAILED", "error": "worker is not responding"}}},
                }
            targets: list[tuple[str, int, bool]] = []
            if t.is_partitioned:
                for chunk, workers in sorted(self.state.replicas.get(db.name, {}).items()):
                    if wname not in workers:
                        continue
                    if selector is not OverlapSelector.OVERLAP:
                        targets.append((chunk_table(t.name, chunk, False), chunk, False))
                    if selector is not OverlapSelector.CHUNK:
                        targets.append((chunk_table(t.name, chunk, True), chunk, True))
            else:
                targets.append((t.name, 0, False))
            schema = self.ctx.storages[wname].dbname(db.name)
            for name, chunk, is_overlap in targets:
                try:
                    rows = await self.ctx.pool.aexecute(
                        f"SELECT `qserv_trans_id`, COUNT(*) FROM {qid(schema, name)}"
                        " GROUP BY `qserv_trans_id`"
                    )
                except pymysql.err.ProgrammingError:
                    rows = []  # a chunk with no table of this kind yet
                entries += [
                    RowStatsEntry(int(tid), chunk, is_overlap, int(n), now_ms(), wname) for tid, n in rows
                ]
            if not t.is_partitioned:
                break  # every worker holds the same rows of a regular table
        return entries

    async def _deploy(self, db: Database, t: Table) -> None:
        stats = self.state.stats.get((db.name, t.name))
        per_chunk: dict[int, int] = {}
        for e in stats.entries if stats else []:
            if not t.is_partitioned:
                per_chunk[0] = per_chunk.get(0, 0) + e.num_rows
            elif not e.is_overlap:
                per_chunk[e.chunk] = per_chunk.get(e.chunk, 0) + e.num_rows
        table = self.ctx.rows_table(db.name, t.name)
        await self.ctx.pool.aexecute(f"CREATE DATABASE IF NOT EXISTS {qid(self.ctx.meta_db)}")
        await self.ctx.pool.aexecute(
            f"CREATE TABLE IF NOT EXISTS {table} (`chunk` INT UNSIGNED NOT NULL,"
            " `num_rows` BIGINT UNSIGNED DEFAULT 0, UNIQUE KEY (`chunk`)) ENGINE=InnoDB"
        )
        await self.ctx.pool.aexecute(f"DELETE FROM {table}")
        if per_chunk:
            await self.ctx.pool.aexecute(
                f"INSERT INTO {table} (`chunk`, `num_rows`) VALUES "
                + ",".join(f"({c},{n})" for c, n in sorted(per_chunk.items()))
            )

    @endpoint(12, auth=True)
    async def scan_table_stats(self, call: Call) -> dict:
        """``_scanTableStats`` (``HttpIngestModule.cc:751-792``)."""
        dbname = call.json_str("database")
        tname = call.json_str("table")
        selector = overlap_selector(call.json_str("overlap_selector", OverlapSelector.CHUNK_AND_OVERLAP))
        policy = counters_policy(
            call.json_str("row_counters_state_update_policy", RowCountersPolicy.DISABLED)
        )
        deploy = call.json_int("row_counters_deploy_at_qserv", 0) != 0
        force = call.json_int("force_rescan", 0) != 0
        where = f"{self.CONTEXT}::_scanTableStats'row_counters_deploy_at_qserv'=1 requires"
        if deploy and policy is not RowCountersPolicy.ENABLED:
            raise InvalidParam(f"{where} 'row_counters_state_update_policy'=ENABLED")
        if deploy and selector is OverlapSelector.OVERLAP:
            raise InvalidParam(f"{where} 'overlap_selector'=CHUNK or 'overlap_selector'=CHUNK_AND_OVERLAP")
        db = self.state.database(dbname)
        ext = await self.scan(db, self.state.table(db, tname), selector, policy, deploy, force)
        if ext:
            raise ApiError("Table rows scanning/deployment failed.", ext)
        return {}

    @endpoint(12)
    async def get_table_stats(self, call: Call) -> dict:
        """``_tableStats``: the counters as last kept (none before a scan that kept them)."""
        db = self.state.database(call.match("db"))
        t = self.state.table(db, call.match("table"))
        return (self.state.stats.get((db.name, t.name)) or TableStats(db.name, t.name)).to_json()

    @endpoint(12, auth=True)
    async def delete_table_stats(self, call: Call) -> dict:
        """``_deleteTableStats`` (``HttpIngestModule.cc:945-977``)."""
        db = self.state.database(call.match("db"))
        t = self.state.table(db, call.match("table"))
        qserv_only = call.json_int("qserv_only", 0) != 0
        selector = overlap_selector(call.json_str("overlap_selector", OverlapSelector.CHUNK_AND_OVERLAP))
        await self.ctx.pool.aexecute(f"DROP TABLE IF EXISTS {self.ctx.rows_table(db.name, t.name)}")
        stats = self.state.stats.get((db.name, t.name))
        if not qserv_only and stats is not None:
            keep = {
                OverlapSelector.CHUNK_AND_OVERLAP: lambda e: False,
                OverlapSelector.CHUNK: lambda e: e.is_overlap,
                OverlapSelector.OVERLAP: lambda e: not e.is_overlap,
            }[selector]
            await self.state.save(TableStats(db.name, t.name, [e for e in stats.entries if keep(e)]))
        return {}

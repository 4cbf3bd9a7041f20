"""The Master Replication Controller's REST services, one module per Qserv controller module.

- ``meta``: ``http::MetaModule`` and ``HttpConfigurationModule`` — ``/meta/version``, ``/replication/config``;
- ``databases``: ``HttpIngestModule`` (databases, publishing) — ``/ingest/database``, ``/ingest/chunk/empty``;
- ``tables`` (with ``table_rules``): ``HttpIngestModule`` (tables) — ``/ingest/table``;
- ``table_stats``: ``HttpIngestModule`` (row counters) — ``/ingest/table-stats``;
- ``transactions`` (with ``trans_summary``): ``HttpIngestTransModule`` — ``/ingest/trans``;
- ``chunk_placement``: ``HttpIngestChunksModule``, ``_getRegular`` — ``/ingest/chunk*``, ``/ingest/regular``;
- ``director_index``: ``HttpDirectorIndexModule`` — ``/ingest/index/secondary``;
- ``ingest_config``: ``HttpIngestConfigModule`` — ``/ingest/config``;
- ``fault_admin``: the stand-in's own — ``/emulator/faults``.

They share a :class:`~qdask.emulator.controller.context.ControllerContext` (state, storage, lookups).
"""

from __future__ import annotations

from aiohttp import web

from qdask.emulator.controller.chunk_placement import ChunkServices
from qdask.emulator.controller.context import ControllerContext
from qdask.emulator.controller.databases import DatabaseServices
from qdask.emulator.controller.director_index import DirectorIndex, DirectorIndexServices
from qdask.emulator.controller.fault_admin import FaultAdmin, SwitchWorker
from qdask.emulator.controller.ingest_config import IngestConfigServices
from qdask.emulator.controller.meta import MetaServices
from qdask.emulator.controller.table_stats import TableStatsServices
from qdask.emulator.controller.tables import TableServices
from qdask.emulator.controller.transactions import TransactionServices
from qdask.emulator.protocol import Routed


class Controller:
    """The controller's service modules over one shared context."""

    def __init__(self, ctx: ControllerContext, switch_worker: SwitchWorker):
        self.ctx = ctx
        index = DirectorIndex(self.ctx)
        stats = TableStatsServices(self.ctx)
        self.modules: list[Routed] = [
            MetaServices(self.ctx),
            DatabaseServices(self.ctx, index, stats),
            TableServices(self.ctx, index),
            stats,
            TransactionServices(self.ctx, index),
            ChunkServices(self.ctx),
            DirectorIndexServices(self.ctx),
            IngestConfigServices(self.ctx),
            FaultAdmin(ctx.faults, ctx.storages.keys(), switch_worker),
        ]

    def routes(self) -> list[web.RouteDef]:
        return [route for module in self.modules for route in module.routes()]


__all__ = ["Controller"]

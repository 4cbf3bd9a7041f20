"""The controller's identity and configuration: ``http::MetaModule`` (``GET /meta/version``) and the parts of
``HttpConfigurationModule`` an ingest uses (``GET /replication/config``, ``PUT
/replication/config/database/:db``)."""

from __future__ import annotations

import uuid

from aiohttp import web

from qdask.emulator.contract import (
    API_VERSION,
    ASYNC_LOADER_THREADS,
    DATABASE_SCHEMA_VERSION,
    INGEST_CHARSET,
    INGEST_MAX_RETRIES,
    INGEST_NUM_RETRIES,
    INSTANCE_ID,
    LOADER_MAX_WARNINGS,
)
from qdask.emulator.controller.context import ControllerContext, ControllerModule
from qdask.emulator.controller.tables import database_json
from qdask.emulator.protocol import ApiError, Call, OperationFailed, check_version, endpoint


class MetaServices(ControllerModule):
    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.id = str(uuid.uuid4())

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/meta/version", self.meta_version),
            web.get("/replication/config", self.get_config),
            web.put("/replication/config/database/{db}", self.config_database),
        ]

    @endpoint(None)
    async def meta_version(self, call: Call) -> dict:
        """``HttpProcessor.cc:97-104`` and ``MetaModule::_version``."""
        return {
            "kind": "replication-controller",
            "id": self.id,
            "instance_id": INSTANCE_ID,
            "database_schema_version": DATABASE_SCHEMA_VERSION,
            "version": API_VERSION,
        }

    @endpoint(12)
    async def get_config(self, call: Call) -> dict:
        """``HttpConfigurationModule::_get``: what an ingest reads (workers, families, databases)."""
        return {
            "config": {
                "general": {
                    "worker": {
                        "ingest-charset-name": INGEST_CHARSET,
                        "ingest-num-retries": INGEST_NUM_RETRIES,
                        "ingest-max-retries": INGEST_MAX_RETRIES,
                        "loader-max-warnings": LOADER_MAX_WARNINGS,
                        "num-async-loader-processing-threads": ASYNC_LOADER_THREADS,
                        "async-loader-auto-resume": 1,
                        "async-loader-cleanup-on-resume": 1,
                    },
                    "controller": {"http-server-port": 25081},
                },
                "workers": [w.to_json() for _, w in sorted(self.state.workers.items())],
                "database_families": [f.to_json() for _, f in sorted(self.state.families.items())],
                "databases": [database_json(self.ctx, name) for name in sorted(self.state.databases)],
                "czars": [
                    {
                        "name": "default",
                        "id": 1,
                        "host": {"addr": "127.0.0.1", "name": "localhost"},
                        "port": self.ctx.pool.dsn.port,
                    }
                ],
                "meta": {"version": API_VERSION},
            }
        }

    @endpoint(None, auth=True)
    async def config_database(self, call: Call) -> dict:
        """``_unpublishDatabase`` (``HttpConfigurationModule.cc:267-288``); admin only."""
        name = call.match("db")
        publish = call.json_int("publish", 0) != 0
        check_version(call, 34 if publish else 12)
        if not call.is_admin:
            raise ApiError("administrator's privileges are required to (un-)publish databases.")
        db = self.state.database(name)
        if publish == db.is_published:  # Configuration::_publishDatabase (Configuration.cc:888-895)
            state = "already published" if publish else "not published"
            raise OperationFailed(f"CONFIG  _publishDatabase database '{db.name}' is {state}.")
        if publish:
            await self.ctx.publish_in_config(db)
        else:
            db.is_published = False  # tables stay published: only the database's status changes
            await self.state.save(db)
        return {"config": {"databases": {db.name: database_json(self.ctx, db.name)}}}

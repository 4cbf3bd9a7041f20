"""Qserv's ``HttpIngestConfigModule``: per-database settings of the workers' HTTP file reader
(``PUT``/``GET /ingest/config``, ``HttpIngestConfigModule.cc:64-172``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from qdask.emulator.controller.context import ControllerModule
from qdask.emulator.protocol import Call, endpoint

#: The ``worker-http-file-reader`` parameters in Qserv's order, and how each is read (``ClientConfig.cc``).
PARAMETERS: dict[str, str] = {
    "SSL_VERIFYHOST": "int",
    "SSL_VERIFYPEER": "int",
    "CAPATH": "str",
    "CAINFO": "str",
    "CAINFO_VAL": "str",
    "PROXY_SSL_VERIFYHOST": "int",
    "PROXY_SSL_VERIFYPEER": "int",
    "PROXY_CAPATH": "str",
    "PROXY_CAINFO": "str",
    "PROXY_CAINFO_VAL": "str",
    "CURLOPT_PROXY": "str",
    "CURLOPT_NOPROXY": "str",
    "CURLOPT_HTTPPROXYTUNNEL": "int",
    "CONNECTTIMEOUT": "int",
    "TIMEOUT": "int",
    "LOW_SPEED_LIMIT": "int",
    "LOW_SPEED_TIME": "int",
    "ASYNC_PROC_LIMIT": "uint",
}


class IngestConfigServices(ControllerModule):
    def routes(self) -> list[web.RouteDef]:
        return [web.put("/ingest/config", self.update), web.get("/ingest/config", self.get)]

    @endpoint(14, auth=True)
    async def update(self, call: Call) -> dict:
        """``_update``: each parameter present is read with its type and saved; the answer is empty."""
        db = self.state.database(call.json_str("database"))
        read = {"int": call.json_int, "uint": call.json_uint, "str": call.json_str}
        for key, kind in PARAMETERS.items():
            if call.has(key):
                value: Any = read[kind](key)
                db.ingest_config[key] = value
        await self.state.save(db)
        return {}

    @endpoint(14)
    async def get(self, call: Call) -> dict:
        """``_get``: the parameters ever set for the database (``query().requiredString("database")``)."""
        db = self.state.database(call.q_required("database"))
        values = {k: db.ingest_config[k] for k in PARAMETERS if k in db.ingest_config}
        return {"config": {"database": db.name, **values}}

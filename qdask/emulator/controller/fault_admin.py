"""The stand-in's own admin route for fault injection (not part of Qserv): ``/emulator/faults``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

from qdask.emulator.faults import FaultInjector
from qdask.emulator.protocol import envelope

SwitchWorker = Callable[[str, bool], Awaitable[None]]


class FaultAdmin:
    """``GET``/``POST``/``DELETE /emulator/faults``, ``DELETE /emulator/faults/:id`` (see ``faults.py``)."""

    def __init__(self, faults: FaultInjector, workers: Collection[str], switch_worker: SwitchWorker):
        self.faults = faults
        self.workers = workers
        self.switch_worker = switch_worker

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/emulator/faults", self.list),
            web.post("/emulator/faults", self.add),
            web.delete("/emulator/faults", self.clear),
            web.delete("/emulator/faults/{id}", self.remove),
        ]

    async def list(self, request: web.Request) -> web.Response:
        return envelope({"faults": self.faults.list(), "down_workers": sorted(self.faults.down_workers)})

    async def add(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            kind = body.pop("kind")
            if kind in ("worker_down", "worker_up"):
                if body["worker"] not in self.workers:
                    raise KeyError(f"no such worker {body['worker']}")
                await self.switch_worker(body["worker"], kind == "worker_down")
                return envelope({"fault": None})
            return envelope({"fault": self.faults.add(kind, **body).to_json()})
        except (KeyError, TypeError, ValueError) as ex:
            return envelope(error=f"invalid fault: {ex}")

    async def clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        for w in list(self.faults.down_workers):
            await self.switch_worker(w, False)
        return envelope({})

    async def remove(self, request: web.Request) -> web.Response:
        ok = self.faults.remove(int(request.match_info["id"]))
        return envelope({}) if ok else envelope(error="no such fault")

"""A Worker Ingest Server: Qserv's ``IngestHttpSvc`` (``src/replica/ingest/IngestHttpSvc.cc``), its modules.

- ``file_svc``: ``IngestFileSvc`` and the contribution records — start, read, load (shared);
- ``by_reference``: ``IngestHttpSvcMod``, ``IngestRequest[Mgr]`` — ``/ingest/file[-async]``, retries, status;
- ``csv_upload``: ``http::FileUploadModule``, ``IngestFileHttpSvcMod`` — ``/ingest/csv``;
- ``json_rows``: ``IngestDataHttpSvcMod`` — ``/ingest/data``;
- ``sources``: ``IngestRequest::_read*File`` and ``http::Url`` — ``file://``, ``http(s)://``;
- ``loader`` (with ``wire``): ``IngestSvcConn`` — the binary protocol on the worker's ``loader-port``.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from aiohttp import web

from qdask.emulator.contract import API_VERSION, INSTANCE_ID
from qdask.emulator.faults import FaultInjector
from qdask.emulator.protocol import Call, Keys, Routed, endpoint
from qdask.emulator.state import State
from qdask.emulator.storage import SqlPool, WorkerStorage
from qdask.emulator.worker.by_reference import FileRequests
from qdask.emulator.worker.csv_upload import CsvUpload
from qdask.emulator.worker.file_svc import IngestFileSvc
from qdask.emulator.worker.json_rows import JsonRows
from qdask.emulator.worker.loader import BinaryLoader


class WorkerNode:
    """One emulated worker: its HTTP services, storage namespace and async request queue."""

    CONTEXT: ClassVar[str] = "INGEST-HTTP-SVC "

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        state: State,
        pool: SqlPool,
        storage: WorkerStorage,
        keys: Keys,
        faults: FaultInjector,
        tmp_dir: str,
    ):
        self.name = name
        self.host = host
        self.port = port
        self.storage = storage
        self._keys = keys
        self.svc = IngestFileSvc(name, state, pool, storage, faults, tmp_dir)
        self.requests = FileRequests(self.svc, keys)
        self.loader = BinaryLoader(self.svc, keys)
        self.loader_port = 0
        self._loader_server: asyncio.Server | None = None
        self.modules: list[Routed] = [self.requests, CsvUpload(self.svc, keys), JsonRows(self.svc, keys)]

    @property
    def keys(self) -> Keys:
        return self._keys

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/meta/version", self.meta_version)] + [r for m in self.modules for r in m.routes()]

    @endpoint(None)
    async def meta_version(self, call: Call) -> dict:
        """``IngestHttpSvc.cc:74-79``."""
        return {
            "kind": "replication-worker-ingest",
            "id": self.name,
            "instance_id": INSTANCE_ID,
            "version": API_VERSION,
        }

    def start_async(self) -> None:
        self.requests.start()

    async def resume(self) -> None:
        await self.requests.resume()

    async def open_loader(self, port: int) -> None:
        """Listen for the binary protocol (``port`` 0: any free port, remembered for reopening)."""
        self._loader_server = await asyncio.start_server(
            self.loader.handle, self.host, port, reuse_address=True
        )
        self.loader_port = self._loader_server.sockets[0].getsockname()[1]

    async def close_loader(self) -> None:
        if self._loader_server is not None:
            self._loader_server.close()
            await self._loader_server.wait_closed()
            self._loader_server = None

    async def close(self) -> None:
        await self.close_loader()
        await self.requests.close()


__all__ = ["WorkerNode"]

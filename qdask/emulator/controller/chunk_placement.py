"""Where contributions go: Qserv's ``HttpIngestChunksModule`` (``/ingest/chunk[s][-multi]``, ``GET
/ingest/chunks``) and the regular-table locations of ``HttpIngestModule::_getRegular`` (``/ingest/regular``).

A chunk keeps the worker it was placed on; a new chunk goes where the same chunk already lives for another
database of the family (co-location), else to the least-loaded worker by replica count over all databases
(``HttpIngestChunksModule.cc:157-268``). The multi variants place a chunk on every co-located worker.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from qdask.emulator.chunks import is_valid_chunk
from qdask.emulator.controller.context import ControllerContext, ControllerModule
from qdask.emulator.protocol import ApiError, Call, InvalidParam, endpoint
from qdask.emulator.records import ChunkReplica, Database


class ChunkServices(ControllerModule):
    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self._placement = asyncio.Lock()  # _ingestManagementMtx: one placement decision at a time

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/ingest/chunk", self.add_chunk),
            web.post("/ingest/chunks", self.add_chunks),
            web.post("/ingest/chunk-multi", self.add_chunk_multi),
            web.post("/ingest/chunks-multi", self.add_chunks_multi),
            web.get("/ingest/chunks", self.list_chunks),
            web.get("/ingest/regular", self.regular_locations),
        ]

    def scope(self, call: Call, func: str) -> Database:
        """``HttpModule::getDatabaseInfo`` (``HttpModule.cc:115-141``): ``database``, else the transaction's;
        refused once published."""
        if call.has("database"):
            name = call.json_str("database")
        elif call.has("transaction_id"):
            name = self.state.transaction(call.json_uint("transaction_id")).database
        else:
            raise InvalidParam(
                f"{self.CONTEXT}::{func} this service expects either 'database' or  'transaction_id' to be"
                " provided to define a scope of the request."
            )
        db = self.state.database(name)
        if db.is_published:
            raise ApiError(f"database '{db.name} is already published.")
        return db

    def _check_valid(self, db: Database, chunks: list[int], message: str) -> None:
        fam = self.ctx.family(db)
        for chunk in chunks:
            if not is_valid_chunk(chunk, fam.num_stripes, fam.num_sub_stripes):
                raise ApiError(message.format(chunk=chunk))

    def _least_loaded(self, candidates: list[str]) -> list[str]:
        load = self.state.chunk_load()
        return [min(candidates, key=lambda w: (load.get(w, 0), w))] if candidates else []

    def _colocated(self, db: Database, chunk: int) -> list[str]:
        """Workers holding the chunk for any database of the family."""
        family = [d.name for d in self.state.databases.values() if d.family_name == db.family_name]
        enabled = set(self.ctx.enabled_workers())
        return sorted(
            {w for d in family for w in self.state.replicas.get(d, {}).get(chunk, []) if w in enabled}
        )

    async def _place(self, db: Database, chunk: int, multi: bool) -> list[str]:
        """The chunk's workers, placing it first if it is new to the database."""
        existing = self.state.replicas.get(db.name, {}).get(chunk)
        if existing:
            return existing
        colocated = self._colocated(db, chunk)
        if colocated:
            chosen = colocated if multi else self._least_loaded(colocated)
        else:
            chosen = self._least_loaded(self.ctx.enabled_workers())
        if chosen:
            await self.state.save(ChunkReplica(db.name, chunk, chosen))
        return chosen

    def _location(self, worker: str, chunk: int) -> dict:
        return self.ctx.worker(worker).location(chunk)

    def _one(self, call: Call, func: str) -> tuple[Database, int]:
        chunk = call.json_uint("chunk")
        db = self.scope(call, func)
        self._check_valid(db, [chunk], "this chunk number is not valid")
        return db, chunk

    def _many(self, call: Call, func: str) -> tuple[Database, list[int]]:
        chunks = call.json_uints("chunks")
        db = self.scope(call, func)
        self._check_valid(db, chunks, "chunk {chunk} is not valid")
        return db, chunks

    @endpoint(12, auth=True)
    async def add_chunk(self, call: Call) -> dict:
        db, chunk = self._one(call, "_addChunk")
        async with self._placement:
            existing = self.state.replicas.get(db.name, {}).get(chunk, [])
            if len(existing) > 1:
                locations = [self._location(w, chunk) for w in existing]
                raise ApiError("this chunk has too many replicas", {"replicas": locations})
            workers = await self._place(db, chunk, multi=False)
        if not workers:
            raise ApiError("no suitable worker found")
        return {"location": self._location(workers[0], chunk)}

    @endpoint(54, auth=True)
    async def add_chunks(self, call: Call) -> dict:
        db, chunks = self._many(call, "_addChunks")
        locations = []
        async with self._placement:
            for chunk in chunks:
                if len(self.state.replicas.get(db.name, {}).get(chunk, [])) > 1:
                    raise ApiError(f"chunk {chunk} has too many replicas")
                workers = await self._place(db, chunk, multi=False)
                if not workers:
                    raise ApiError(f"no suitable worker found for chunk {chunk}")
                locations.append(self._location(workers[0], chunk))
        return {"locations": locations}

    @endpoint(54, auth=True)
    async def add_chunk_multi(self, call: Call) -> dict:
        db, chunk = self._one(call, "_addChunkMulti")
        async with self._placement:
            return {"locations": await self._multi(db, chunk)}

    @endpoint(54, auth=True)
    async def add_chunks_multi(self, call: Call) -> dict:
        db, chunks = self._many(call, "_addChunksMulti")
        async with self._placement:
            return {"locations": [loc for chunk in chunks for loc in await self._multi(db, chunk)]}

    async def _multi(self, db: Database, chunk: int) -> list[dict]:
        workers = await self._place(db, chunk, multi=True)
        if not workers:
            raise ApiError(f"no suitable workers found for chunk={chunk}")
        return [self._location(w, chunk) for w in workers]

    @endpoint(12)
    async def list_chunks(self, call: Call) -> dict:
        """``_getChunks`` (``HttpIngestChunksModule.cc:584-634``): every replica, per-table sizes at 0."""
        db = self.state.database(call.q_required("database"))
        tables = [t.name for t in self.state.db_tables(db.name) if t.is_partitioned]
        sizes = ("overlap_rows", "overlap_data_size", "overlap_index_size", "rows", "data_size", "index_size")
        return {
            "replica": [
                {"chunk": chunk, "worker": w, **{t: dict.fromkeys(sizes, 0) for t in tables}}
                for chunk, workers in sorted(self.state.replicas.get(db.name, {}).items())
                for w in workers
            ]
        }

    @endpoint(12)
    async def regular_locations(self, call: Call) -> dict:
        """``HttpIngestModule::_getRegular`` (``HttpIngestModule.cc:1005-1028``): every worker."""
        self.scope(call, "_getRegular")
        return {"locations": [self.ctx.worker(w).location() for w in self.ctx.enabled_workers()]}

"""A fake Qserv for the client tests.

`FakeQserv` is a tiny real HTTP server (aiohttp, loopback, own thread) that answers like Qserv where the
stand-in cannot help: it records every request exactly as received (headers, raw body, multipart parts in
order) and answers from per-test routes, so tests can check what the client puts on the wire and how it
reacts to errors, odd version windows, slow or dropped answers. It listens on two loopback ports: `url`
plays the controller, `worker_url` a worker ingest service (`kind` = `replication-worker-ingest`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DROP = object()  # a route answering DROP closes the connection without a response


@dataclass
class Recorded:
    method: str
    path: str
    role: str  # "controller" or "worker"
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    parts: list[dict] = field(default_factory=list)  # multipart: name, filename, size, sha256, text

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Slow:
    """A route answer delivered after `seconds`."""

    seconds: float
    answer: Any


class FakeQserv:
    """Loopback HTTP servers speaking Qserv's envelope; `url` is the controller, `worker_url` a worker."""

    def __init__(self):
        self.requests: list[Recorded] = []
        self.routes: dict[tuple[str, str], Callable[[Recorded], Any] | Any] = {}
        self.meta = {"kind": "replication-controller", "id": "ctl", "instance_id": "fake", "version": 55}
        self.worker_meta = {
            "kind": "replication-worker-ingest",
            "id": "w1",
            "instance_id": "fake",
            "version": 55,
        }
        self.url = ""
        self.worker_url = ""
        self.worker_port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []

    def route(self, method: str, path: str, answer: Any) -> None:
        """Answer `method path` with `answer`: a payload dict (wrapped in a success envelope unless it has
        `success`), a callable taking the `Recorded` request, `DROP`, `Slow(...)`, or `(status, text)`."""
        self.routes[(method, path)] = answer

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    async def _handle(self, role: str, request: web.Request) -> web.StreamResponse:
        path = request.path
        rec = Recorded(request.method, path, role, dict(request.query), dict(request.headers))
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                digest, size, head = hashlib.sha256(), 0, b""
                while chunk := await part.read_chunk(1 << 16):
                    digest.update(chunk)
                    size += len(chunk)
                    if len(head) < 4096:
                        head += chunk[: 4096 - len(head)]
                rec.parts.append(
                    {
                        "name": part.name,
                        "filename": part.filename,
                        "size": size,
                        "sha256": digest.hexdigest(),
                        "text": head.decode("latin1"),
                    }
                )
        else:
            rec.body = await request.read()
        self.requests.append(rec)
        if path == "/meta/version":
            answer: Any = self.worker_meta if role == "worker" else self.meta
        else:
            answer = self.routes.get((request.method, path))
            if answer is None:
                return web.Response(status=404, text="no such route")
        while True:
            if isinstance(answer, Slow):
                await asyncio.sleep(answer.seconds)
                answer = answer.answer
            elif callable(answer):
                answer = answer(rec)
            else:
                break
        if answer is DROP:
            request.transport.abort()
            return web.Response()
        if isinstance(answer, tuple):
            return web.Response(status=answer[0], text=answer[1])
        if "success" not in answer:
            answer = {"success": 1, "error": "", "error_ext": {}, "warning": "", **answer}
        return web.json_response(answer)

    def _serve(self, role: str) -> int:
        """Start the server playing `role` on a free loopback port; returns the port."""
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/{tail:.*}", functools.partial(self._handle, role))
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self._runners.append(runner)
        return site._server.sockets[0].getsockname()[1]

    def start(self) -> FakeQserv:
        self.url = f"http://127.0.0.1:{self._serve('controller')}"
        self.worker_port = self._serve("worker")
        self.worker_url = f"http://127.0.0.1:{self.worker_port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        for runner in self._runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def error(message: str, ext: dict | None = None, warning: str = "") -> dict:
    """A Qserv failure envelope (HTTP 200, success=0)."""
    return {"success": 0, "error": message, "error_ext": ext or {}, "warning": warning}

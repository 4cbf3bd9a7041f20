"""A read-only HTTP file server over the staging directory's contribution files, for the length of a load
(`qserv.transport: url` with `url_base: serve`): Qserv's workers pull each contribution with `GET` from it
(`POST /ingest/file` with an ``http://`` URL, src/replica/ingest/IngestRequest.cc, _readRemoteFile).

Only ``GET``/``HEAD`` of files under ``<staging>/contributions/`` are answered (no listing, no symlinks
followed out of it); the bytes go out with the kernel's sendfile, so the driver spends next to no CPU on
them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

from aiohttp import web

CONTRIBUTIONS = "contributions"


def advertised_host(host: str) -> str:
    """The host name to put in URLs: the bound address, or this machine's name for a wildcard bind."""
    if host in ("", "0.0.0.0", "::"):
        return socket.getfqdn()
    return f"[{host}]" if ":" in host else host


class StagingFileServer:
    """Serves ``<staging>/contributions`` at ``http://<host>:<port>/contributions/`` from a thread of its own;
    a context manager: `url_base` (the staging directory's URL) is set once it listens."""

    def __init__(self, staging: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(staging)
        self.host, self.port = host, port
        self.url_base = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> StagingFileServer:
        self._thread = threading.Thread(target=self._serve, name="qdask-file-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise OSError(f"cannot serve the staging directory on {self.host}:{self.port}: {self._error}")
        return self

    def __exit__(self, *exc) -> None:
        loop = self._loop
        if loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller by __enter__
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_static(f"/{CONTRIBUTIONS}", self.root / CONTRIBUTIONS, follow_symlinks=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))  # bound here: its port is known when 0 was asked for
        except OSError:
            sock.close()
            raise
        await web.SockSite(self._runner, sock).start()
        self.port = sock.getsockname()[1]
        self.url_base = f"http://{advertised_host(self.host)}:{self.port}/"

"""Reading a contribution by reference: ``file://`` and ``http(s)://`` sources, block by block
(``IngestRequest::_readLocalFile``/``_readRemoteFile``, ``IngestRequest.cc:556-650``). Every failure is
retry-allowed: nothing has touched the table yet."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp

from qdask.emulator.protocol import InvalidParam
from qdask.emulator.records import Contribution
from qdask.emulator.worker.file_svc import BLOCK, retry_allowed_error

Scheme = Literal["data-json", "data-csv", "file", "http", "https"]


def url_scheme(url: str) -> tuple[Scheme, str]:
    """``http::Url`` (``src/http/Url.cc:64-162``): the scheme and, for files, the absolute path (any host
    part dropped, nothing unquoted)."""
    schemes: tuple[Scheme, ...] = ("data-csv", "data-json", "file", "http", "https")
    for scheme in schemes:
        prefix = scheme + "://"
        if len(url) <= len(prefix) or not url.startswith(prefix):
            continue
        rest = url[len(prefix) :]
        slash = rest.find("/")
        if scheme == "data-json":
            if slash > 0 and len(rest) == slash + 1:
                return scheme, ""
        elif scheme in ("data-csv", "file"):
            if slash == 0 and len(rest) > 1:
                return scheme, rest
            if slash > 0 and len(rest) > slash + 1:
                return scheme, rest[slash:]
        elif rest[: slash if slash >= 0 else None].split(":")[0]:
            return scheme, ""
    raise InvalidParam(f"Url::_translate: invalid url '{url}'")


async def read_file(path: str) -> AsyncIterator[bytes]:
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as ex:
        raise retry_allowed_error(
            f"failed to open the file '{path}', error: '{ex.strerror}', errno: {ex.errno}",
            system_error=ex.errno or 0,
        ) from None
    with f:
        while True:
            block = await asyncio.to_thread(f.read, BLOCK)
            if not block:
                return
            yield block


class HttpReader:
    """One HTTP session per worker for pulling contributions."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def read(self, c: Contribution) -> AsyncIterator[bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {}
        for h in c.http_headers:
            name, _, value = h.partition(":")
            headers[name.strip()] = value.strip()
        try:
            async with self._session.request(
                c.http_method, c.url, data=c.http_data or None, headers=headers
            ) as resp:
                if resp.status != 200:
                    raise retry_allowed_error(
                        f"HTTP request failed with code {resp.status}", http_error=resp.status
                    )
                async for block in resp.content.iter_chunked(BLOCK):
                    yield block
        except aiohttp.ClientError as ex:
            raise retry_allowed_error(
                f"failed to read the input from '{c.url}': {ex}", system_error=errno.ECONNREFUSED
            ) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def source(c: Contribution, http: HttpReader) -> AsyncIterator[bytes]:
    """The blocks of a contribution's ``url`` (``file://`` or ``http(s)://``)."""
    scheme, path = url_scheme(c.url)
    return read_file(path) if scheme == "file" else http.read(c)

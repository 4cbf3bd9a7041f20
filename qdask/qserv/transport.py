"""HTTP transport to Qserv's Replication controller and its workers' ingest services (contract §1).

What every request does:

* JSON bodies are sent with the header `Content-Type: application/json` exactly (a charset suffix makes
  Qserv ignore the body);
* `version` is always sent (body, or query string for body-less calls), so the server never has to warn,
  and a call whose endpoint needs a newer version than the client speaks is refused before it is sent;
* calls that need authorization carry `auth_key`, even when it is the empty string;
* the envelope is parsed: `success=0` raises `QservError` with the server's `error` and `error_ext`, a
  non-empty `warning` is logged on the `qdask.qserv` logger;
* each service's version window is read once from `GET /meta/version` before its first call, and the
  client refuses to go on if its version is outside it;
* transport failures are retried with exponential backoff (`backoff` × 2^n, capped at `backoff_max`, with
  jitter) when the server cannot have acted on the request: any call whose connection could not be
  opened, and GETs whatever happened. Anything else is raised at once as `QservTransportError` so the
  caller can apply the contract's rules (`errors.classify`).

Threads: one `Transport` may be shared by any number of threads (Dask worker threads, the driver). Each
thread lazily gets its own `httpx.Client` (connection pool), closed by `close()`; the only other mutable
state, the version-window cache, is guarded by a lock. Pickling re-creates the transport from its settings
(the key travels inside, as it must for a task to authenticate).

Secrets: the key is held as `pydantic.SecretStr`; it never appears in `repr`, log lines or exception text
(server text is scrubbed of keys of 3 characters or more; shorter ones would garble every message and
protect nothing), and `refuse_keys` keeps it out of what the caller stores in Qserv.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import httpx
from pydantic import SecretStr

from qdask import faultpoints
from qdask.qserv.errors import (
    QservAuthError,
    QservError,
    QservProtocolError,
    QservTransportError,
    QservVersionError,
)
from qdask.qserv.models import VersionInfo

log = logging.getLogger("qdask.qserv")

API_VERSION = 55
CONTROLLER_KIND = "replication-controller"
WORKER_KIND = "replication-worker-ingest"

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_STATUS = (429, 502, 503, 504)
_UPLOAD_BLOCK = 1 << 20  # bytes read from disk per block when streaming a contribution


@dataclass(frozen=True)
class Limits:
    """How long a transport waits (seconds) and how often it tries again (see `Transport`)."""

    timeout: float
    load_timeout: float
    connect_timeout: float
    retries: int
    backoff: float
    backoff_max: float


class Transport:
    """Requests to a Qserv controller (and its workers' ingest services), as the module doc describes.

    `timeout` bounds ordinary calls (seconds per read/write); `slow=True` calls (the ones that do heavy
    work synchronously: contributions, commit, publish, index builds) are bounded by `load_timeout`.
    """

    def __init__(
        self,
        controller_url: str,
        auth_key: SecretStr | str,
        *,
        version: int = API_VERSION,
        timeout: float = 60.0,
        load_timeout: float = 3600.0,
        connect_timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
    ):
        self.controller_url = controller_url.rstrip("/")
        self._auth_key = auth_key if isinstance(auth_key, SecretStr) else SecretStr(str(auth_key))
        self.version = int(version)
        self.limits = Limits(timeout, load_timeout, connect_timeout, retries, backoff, backoff_max)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[httpx.Client] = []
        self._ssl_context: ssl.SSLContext | None = None
        self._windows: dict[str, VersionInfo] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Transport({self.controller_url!r}, version={self.version})"

    def __reduce__(self):
        return (_rebuild, (type(self), self.controller_url, self._auth_key, self.version, self.limits))

    def close(self) -> None:
        """Close every thread's connection pool (a later call opens a new one)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()
        self._local = threading.local()

    def _http(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            with self._lock:  # one TLS context for all threads: building one reads the CA store (~50 ms)
                if self._ssl_context is None:
                    self._ssl_context = ssl.create_default_context()
            client = httpx.Client(
                timeout=httpx.Timeout(self.limits.timeout, connect=self.limits.connect_timeout),
                limits=httpx.Limits(max_keepalive_connections=8, max_connections=32),
                trust_env=False,
                verify=self._ssl_context,
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    # -- secrets ---------------------------------------------------------------------------------

    def _scrub(self, value: Any) -> Any:
        """`value` (server-provided text, recursively) with the key replaced by `***`."""
        key = self._auth_key.get_secret_value()
        if len(key) < 3:
            return value
        if isinstance(value, str):
            return value.replace(key, "***")
        if isinstance(value, dict):
            return {self._scrub(k): self._scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        return value

    def refuse_keys(self, value: Any) -> Any:
        """`value` (JSON) unchanged, or `ValueError` if any of its strings (keys or values) holds the key."""
        json.dumps(value)  # must be JSON
        key = self._auth_key.get_secret_value()
        stack = [value]
        while key and stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
            elif key in str(item):
                raise ValueError("the transaction context must not contain an authorization key")
        return value

    # -- versions --------------------------------------------------------------------------------

    def require(self, minimum: int, what: str) -> None:
        """Refuse locally what needs API version `minimum` when this client speaks an older one."""
        if self.version < minimum:
            raise QservVersionError(
                what,
                f"{what} needs API version >= {minimum}, this client speaks {self.version}",
                {"min_version": minimum},
            )

    def check_version(self, base: str | None = None) -> VersionInfo:
        """The version window of the controller (or of the ingest service at URL `base`), read once, and
        `QservVersionError` if this client's version is outside it (done before a service's first call)."""
        base = self.controller_url if base is None else base.rstrip("/")
        info = self._windows.get(base)
        if info is not None:
            return info
        endpoint = f"GET {base}/meta/version"
        answer = self._request("GET", base, "/meta/version", params={"version": self.version})
        info = VersionInfo.from_json(answer, endpoint)
        kind = CONTROLLER_KIND if base == self.controller_url else WORKER_KIND
        if info.kind and info.kind != kind:
            raise QservProtocolError(
                endpoint, f"expected a {kind} service here, the server says it is {info.kind!r}"
            )
        if info.version < self.version or (info.min_version is not None and self.version < info.min_version):
            window = f"[{info.min_version if info.min_version is not None else '?'}, {info.version}]"
            raise QservVersionError(
                endpoint,
                f"the server's API version window {window} does not include version {self.version}, "
                "which this client speaks; upgrade the server or use a qdask matching it",
                {"min_version": info.min_version, "max_version": info.version},
            )
        with self._lock:
            self._windows[base] = info
        return info

    # -- requests --------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        worker: str | None = None,
        since: int = 0,
        auth: bool = False,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        slow: bool = False,
        form: dict[str, str] | None = None,
        upload: Path | None = None,
        upload_digest: Callable[[], Any] | None = None,
    ) -> dict[str, Any]:
        """One call of endpoint `method path` (at the controller, or at the ingest service `worker`).

        `since` is the endpoint's minimum API version; `auth` adds the key; `body` is sent as JSON, or
        `form` and `upload` as `multipart/form-data` (the fields in order, then the file streamed from
        disk). `upload_digest`, when given, makes a hashlib object per attempt that every block sent is
        fed to (the file is hashed as it is sent, never read twice). Returns the answer's envelope,
        `success=1`.
        """
        self.require(since, f"{method} {path}")
        base = self.controller_url if worker is None else worker.rstrip("/")
        self.check_version(base)
        key = {"auth_key": self._auth_key.get_secret_value()} if auth else {}
        if upload is not None:
            fields = {**key, **(form or {}), "version": str(self.version)}
            return self._request(
                method, base, path, params=params, slow=slow, form=fields, upload=upload, digest=upload_digest
            )
        if body is not None or auth:
            body = {**key, **(body or {}), "version": self.version}
        else:
            params = {**(params or {}), "version": self.version}
        return self._request(method, base, path, params=params, slow=slow, body=body)

    def _request(
        self,
        method: str,
        base: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        slow: bool = False,
        body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        upload: Path | None = None,
        digest: Callable[[], Any] | None = None,
    ) -> dict[str, Any]:
        """Send one request, retry what may be retried, parse the envelope."""
        endpoint = f"{method} {path}"
        idempotent = method == "GET"
        limits = self.limits
        seconds = limits.load_timeout if slow else limits.timeout
        timeout = httpx.Timeout(seconds, connect=limits.connect_timeout)
        attempt = 0
        while True:
            attempt += 1
            error: httpx.TransportError
            try:
                if upload is not None:
                    response = self._upload(method, base + path, params, timeout, form or {}, upload, digest)
                else:
                    response = self._http().request(
                        method,
                        base + path,
                        params=params,
                        content=None if body is None else json.dumps(body).encode(),
                        timeout=timeout,
                        headers={"Content-Type": "application/json"},
                    )
            except _NOT_SENT as exc:
                error, sent = exc, False
            except httpx.TransportError as exc:
                error, sent = exc, True
            else:
                if idempotent and response.status_code in _RETRY_STATUS and attempt <= limits.retries:
                    self._sleep(attempt, endpoint, f"HTTP {response.status_code}")
                    continue
                return self._parse(endpoint, response)
            if (not sent or idempotent) and attempt <= limits.retries:
                self._sleep(attempt, endpoint, type(error).__name__)
                continue
            text = self._scrub(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
            raise QservTransportError(endpoint, text, request_sent=sent, attempts=attempt) from None

    def _upload(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        timeout: httpx.Timeout,
        form: dict[str, str],
        path: Path,
        digest: Callable[[], Any] | None = None,
    ) -> httpx.Response:
        with open(path, "rb") as fh:
            stream = cast(IO[bytes], _BlockReader(fh, digest() if digest is not None else None))
            return self._http().request(
                method,
                url,
                params=params,
                timeout=timeout,
                data=form,
                files={"file": (path.name, stream, "application/octet-stream")},
            )

    def _sleep(self, attempt: int, endpoint: str, why: str) -> None:
        limits = self.limits
        delay = min(limits.backoff_max, limits.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        log.info(
            "%s: %s, retrying in %.1fs (attempt %d of %d)",
            endpoint,
            why,
            delay,
            attempt + 1,
            limits.retries + 1,
        )
        time.sleep(delay)

    def _parse(self, endpoint: str, response: httpx.Response) -> dict[str, Any]:
        if response.status_code != 200:
            raise QservProtocolError(
                endpoint,
                self._scrub(f"HTTP {response.status_code}: {response.text[:300]}"),
                response.status_code,
            )
        try:
            data = response.json()
        except ValueError:
            raise QservProtocolError(
                endpoint, f"the answer is not JSON: {self._scrub(response.text[:300])!r}", 200
            ) from None
        if not isinstance(data, dict) or "success" not in data:
            raise QservProtocolError(endpoint, "the answer is not a Qserv envelope (no 'success' key)", 200)
        warning = data.get("warning") or ""
        if warning:
            log.warning("Qserv %s warned: %s", endpoint, self._scrub(warning))
        if str(data.get("success")) != "1":
            error = self._scrub(str(data.get("error", "")))
            ext = self._scrub(data.get("error_ext") or {})
            if "range supported by the service" in error or "parameter version" in error:
                raise QservVersionError(endpoint, error, ext)
            if "authorization key" in error:
                raise QservAuthError(endpoint, error, ext)
            raise QservError(endpoint, error, ext)
        return data


class _BlockReader:
    """A read-only file wrapper that hands httpx at most one block per `read`, so the body is streamed.

    Each block passes the `upload.block` fault point, where the recovery tests kill a process mid-body,
    and is fed to `digest` when given.
    """

    def __init__(self, fh: BinaryIO, digest: Any = None):
        self._fh, self._digest = fh, digest

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > _UPLOAD_BLOCK:
            size = _UPLOAD_BLOCK
        faultpoints.reached("upload.block")
        block = self._fh.read(size)
        if self._digest is not None:
            self._digest.update(block)
        return block

    def fileno(self) -> int:  # lets httpx compute Content-Length from fstat without reading
        return self._fh.fileno()

    def tell(self) -> int:
        return self._fh.tell()

    def seek(self, *args) -> int:
        return self._fh.seek(*args)

    def __iter__(self):
        while block := self.read(_UPLOAD_BLOCK):
            yield block


def _rebuild(cls: type[Transport], url: str, key: SecretStr, version: int, limits: Limits) -> Transport:
    return cls(url, key, version=version, **asdict(limits))

"""Client for Qserv's Replication/Ingest REST API (controller and worker ingest services), API version 55.

Written from the contract in `qserv-ingest-api.md`; section numbers below refer to it. What every request
does (§1):

* JSON bodies are sent with the header `Content-Type: application/json` exactly (a charset suffix makes
  Qserv ignore the body);
* `version` is always sent (body, or query string for body-less GETs), so the server never has to warn;
* auth-required calls always carry `auth_key` (even when it is the empty string), or `admin_auth_key` for
  the few calls the contract reserves to the administrator (deleting a published database or table);
* the envelope is parsed: `success=0` raises `QservError` with the server's `error` and `error_ext`, a
  non-empty `warning` is logged on the `qdask.qserv` logger;
* the controller's version window is read once from `GET /meta/version` (and each worker's before its first
  contribution), and the client refuses to go on if its version is outside it.

Threads: a `QservClient` may be shared by any number of threads (Dask worker threads, the driver). Each
thread lazily gets its own `httpx.Client` (connection pool), created on first use and closed by
`close()`; nothing else is mutable after construction except the version-check caches, which are guarded
by a lock. Pickling re-creates the client from its settings (the keys travel inside, as they must for a
task to authenticate), so it can be shipped to Dask workers.

Secrets: the keys are held as `pydantic.SecretStr`; they never appear in `repr`, log lines or exception
text (server messages are scrubbed of keys of 3 characters or more; shorter ones would garble every
message and protect nothing), and `begin_transaction`/`commit_transaction` refuse a `context` that
contains one.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from qdask import faultpoints
from qdask.dialect import CSV, TSV, Dialect
from qdask.qserv.errors import (
    ContributionCheckError,
    QservAuthError,
    QservError,
    QservProtocolError,
    QservTransportError,
    QservVersionError,
)

log = logging.getLogger("qdask.qserv")

API_VERSION = 55
CONTROLLER_KIND = "replication-controller"
WORKER_KIND = "replication-worker-ingest"
DUMMY_CHUNK = 1234567890

#: Per-endpoint minimum API versions (§3, §4), checked before sending so a client pinned to an older
#: version fails clearly instead of being refused by the server.
MIN_VERSION = {
    "GET /replication/config": 12,
    "POST /ingest/database": 12,
    "GET /ingest/database": 12,
    "PUT /ingest/database": 12,
    "DELETE /ingest/database": 12,
    "POST /ingest/table": 12,
    "GET /ingest/table": 12,
    "DELETE /ingest/table": 12,
    "PUT /ingest/config": 14,
    "GET /ingest/config": 14,
    "POST /ingest/trans": 12,
    "PUT /ingest/trans": 12,
    "GET /ingest/trans": 37,
    "GET /ingest/trans/contrib": 37,
    "POST /ingest/chunk": 12,
    "POST /ingest/chunks": 54,
    "GET /ingest/chunks": 12,
    "GET /ingest/regular": 12,
    "POST /ingest/index/secondary": 22,
    "POST /ingest/table-stats": 12,
    "GET /ingest/table-stats": 12,
    "DELETE /ingest/table-stats": 12,
    "POST /ingest/file": 16,
    "POST /ingest/file-async": 16,
    "PUT /ingest/file": 16,
    "PUT /ingest/file-async": 16,
    "GET /ingest/file-async": 13,
    "DELETE /ingest/file-async": 13,
    "POST /ingest/data": 35,
    "POST /ingest/csv": 38,
}

#: Transaction states (§5).
TRANSACTION_STATES = (
    "IS_STARTING",
    "STARTED",
    "IS_FINISHING",
    "IS_ABORTING",
    "FINISHED",
    "ABORTED",
    "START_FAILED",
    "FINISH_FAILED",
    "ABORT_FAILED",
)

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_STATUS = (429, 502, 503, 504)
_UPLOAD_BLOCK = 1 << 20  # bytes read from disk per block when streaming a contribution


# --------------------------------------------------------------------------------------------------
# typed results


def _from_dict(cls, data: Mapping[str, Any], **extra):
    """Build dataclass `cls` from the keys of `data` it knows; the whole answer is kept in `raw`."""
    names = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names and k != "raw"}
    return cls(**kwargs, **extra, raw=dict(data))


@dataclass(frozen=True)
class VersionInfo:
    """`GET /meta/version` of a controller or a worker (§1)."""

    kind: str = ""
    id: str = ""
    instance_id: str = ""
    version: int = 0
    database_schema_version: int | None = None
    min_version: int | None = None  # not emitted by Qserv 55, honoured if a server sends it
    raw: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Location:
    """Where a chunk (or a regular table's copy) goes (§3.6): a worker and its ingest addresses."""

    worker: str
    http_host_name: str = ""
    http_host: str = ""
    http_port: int = 0
    host_name: str = ""
    host: str = ""
    port: int = 0
    chunk: int | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def http_url(self) -> str:
        """Base URL of the worker's HTTP ingest service: the first host name offered, else the IP (§3.6)."""
        name = self.http_host_name.split(",")[0].strip() or self.http_host
        if not name or not self.http_port:
            raise ValueError(f"location of worker {self.worker!r} has no HTTP ingest address")
        return f"http://{name}:{self.http_port}"


@dataclass(frozen=True)
class WorkerInfo:
    """A worker of the replication configuration (§3.1)."""

    name: str
    is_enabled: bool
    is_read_only: bool
    http_host_name: str
    http_host: str
    http_port: int
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def location(self) -> Location:
        return Location(self.name, self.http_host_name, self.http_host, self.http_port)


@dataclass(frozen=True)
class Transaction:
    """A super-transaction (§3.5). `contrib` holds the `summary`/`files` when asked for."""

    id: int
    database: str
    state: str
    begin_time: int = 0
    start_time: int = 0
    transition_time: int = 0
    end_time: int = 0
    context: Any = None
    log: list = field(default_factory=list)
    contrib: dict | None = None
    secondary_index_build_success: bool | None = None  # commit/abort answers only
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def contributions(self) -> list[Contribution]:
        """The contribution objects of `contrib.files` (needs `contrib=True, contrib_long=True`)."""
        return [Contribution.from_json(c) for c in (self.contrib or {}).get("files", [])]


@dataclass(frozen=True)
class Contribution:
    """A contribution descriptor (§4.5)."""

    id: int | None = None
    transaction_id: int | None = None
    worker: str = ""
    database: str = ""
    table: str = ""
    chunk: int = 0
    overlap: int = 0
    url: str = ""
    charset_name: str = ""
    status: str = ""
    async_: bool = False
    num_bytes: int = 0
    num_rows: int = 0
    num_rows_loaded: int = 0
    num_warnings: int = 0
    warnings: list = field(default_factory=list)
    max_num_warnings: int = 0
    retry_allowed: bool = False
    error: str = ""
    http_error: int = 0
    system_error: int = 0
    num_failed_retries: int = 0
    failed_retries: list = field(default_factory=list)
    max_retries: int = 0
    create_time: int = 0
    start_time: int = 0
    read_time: int = 0
    load_time: int = 0
    tmp_file: str = ""
    dialect_input: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Contribution:
        data = dict(data)
        kw = {k: v for k, v in data.items() if k in {f.name for f in fields(cls)} and k != "raw"}
        kw["async_"] = bool(data.get("async", 0))
        kw["retry_allowed"] = bool(data.get("retry_allowed", 0))
        for k in ("num_bytes", "num_rows", "num_rows_loaded", "num_warnings", "chunk", "overlap"):
            if kw.get(k) is None:
                kw[k] = 0
        return cls(**kw, raw=data)


def check_contribution(c: Contribution, expected_rows: int, expected_bytes: int) -> Contribution:
    """Raise `ContributionCheckError` unless `c` proves the staged file was loaded exactly (§4.5).

    Required: status FINISHED, `num_bytes` == the file's size, `num_rows` == `num_rows_loaded` ==
    `expected_rows`, and no warning at all — a warning means MariaDB altered or dropped something, which is
    never accepted as success. The message lists every difference.
    """
    problems = []
    if c.status != "FINISHED":
        why = f" ({c.error})" if c.error else ""
        problems.append(f"status is {c.status or 'missing'}, expected FINISHED{why}")
    if c.num_bytes != expected_bytes:
        problems.append(f"num_bytes={c.num_bytes}, expected {expected_bytes} (the staged file's size)")
    if c.num_rows != expected_rows:
        problems.append(f"num_rows={c.num_rows} (rows parsed by the worker), expected {expected_rows}")
    if c.num_rows_loaded != expected_rows:
        problems.append(
            f"num_rows_loaded={c.num_rows_loaded} (rows MariaDB loaded), expected {expected_rows}"
        )
    if c.num_warnings or c.warnings:
        shown = "; ".join(
            f"{w.get('level', '?')} {w.get('code', '?')}: {w.get('message', '')}" for w in c.warnings[:5]
        )
        more = f" [{shown}]" if shown else ""
        problems.append(f"num_warnings={c.num_warnings}, expected 0{more}")
    if problems:
        raise ContributionCheckError(c, problems)
    return c



# --------------------------------------------------------------------------------------------------
# the client


def _as_secret(value: SecretStr | str | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(str(value))


def _seg(value: Any) -> str:
    """A URL path segment: quoted so a name can never change the path."""
    return quote(str(value), safe="")


def _worker_url(worker: Location | WorkerInfo | str) -> str:
    if isinstance(worker, (Location, WorkerInfo)):
        worker = worker.location.http_url if isinstance(worker, WorkerInfo) else worker.http_url
    return worker.rstrip("/")


class QservClient:
    """Synchronous client of a Qserv controller and its workers' ingest services (thread-safe: module doc).

    `timeout` bounds control calls (seconds per read/write); `load_timeout` bounds the calls that do the
    heavy work synchronously (contributions, commit, publish, index and statistics builds). Transport
    failures are retried up to `retries` times with exponential backoff (`backoff` × 2^n, capped at
    `backoff_max`, with jitter) when the server cannot have acted on the request: for any call when the
    connection could not be opened, and for GETs whatever happened. Everything else is raised at once as
    `QservTransportError` so the caller can apply the contract's rules (see `errors.classify`).
    """

    def __init__(
        self,
        controller_url: str,
        auth_key: SecretStr | str,
        admin_auth_key: SecretStr | str | None = None,
        version: int = API_VERSION,
        timeout: float = 60.0,
        load_timeout: float = 3600.0,
        connect_timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
    ):
        self.controller_url = controller_url.rstrip("/")
        self._auth_key = _as_secret(auth_key) or SecretStr("")
        self._admin_auth_key = _as_secret(admin_auth_key)
        self.version = int(version)
        self.timeout = timeout
        self.load_timeout = load_timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[httpx.Client] = []
        self._ssl_context: ssl.SSLContext | None = None
        self._checked: dict[str, VersionInfo] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"QservClient({self.controller_url!r}, version={self.version})"

    def __reduce__(self):
        return (
            _rebuild,
            (
                self.controller_url,
                self._auth_key,
                self._admin_auth_key,
                self.version,
                self.timeout,
                self.load_timeout,
                self.connect_timeout,
                self.retries,
                self.backoff,
                self.backoff_max,
            ),
        )

    def __enter__(self) -> QservClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection pool."""
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
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                limits=httpx.Limits(max_keepalive_connections=8, max_connections=32),
                trust_env=False,
                verify=self._ssl_context,
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    # -- secrets ---------------------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        keys = [self._auth_key, self._admin_auth_key]
        return [k.get_secret_value() for k in keys if k is not None and len(k.get_secret_value()) >= 3]

    def _scrub(self, value: Any) -> Any:
        """Replace any key value in server-provided text (recursively) by `***`."""
        secrets = self._secrets()
        if not secrets:
            return value
        if isinstance(value, str):
            for s in secrets:
                value = value.replace(s, "***")
            return value
        if isinstance(value, dict):
            return {self._scrub(k): self._scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        return value

    def _check_context(self, context: Any) -> Any:
        """Refuse a transaction context in which any string (key or value) contains a key."""
        if context is None:
            return None
        json.dumps(context)  # must be JSON
        keys = [k.get_secret_value() for k in (self._auth_key, self._admin_auth_key) if k is not None]
        keys = [k for k in keys if k]
        stack = [context]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
            elif any(k in str(item) for k in keys):
                raise ValueError("the transaction context must not contain an authorization key")
        return context

    def _auth(self, admin: bool) -> dict[str, str]:
        if admin:
            if self._admin_auth_key is None:
                raise ValueError("this operation needs the administrator key (admin_auth_key)")
            return {"admin_auth_key": self._admin_auth_key.get_secret_value()}
        return {"auth_key": self._auth_key.get_secret_value()}

    # -- the request machinery -------------------------------------------------------------------

    def _request(
        self,
        method: str,
        base: str,
        path: str,
        *,
        family: str,
        body: dict | None = None,
        params: dict | None = None,
        auth: bool = False,
        admin: bool = False,
        timeout: float | None = None,
        form: dict | None = None,
        upload: Path | None = None,
        check_version: bool = True,
    ) -> dict:
        """Send one request, retry what may be retried, parse the envelope; return the payload dict.

        `family` is the endpoint as "METHOD /template" (for the version minimum and messages).
        For multipart uploads pass `form` (ordered fields) and `upload` (the file to stream).
        """
        endpoint = f"{method} {path}"
        minimum = MIN_VERSION.get(family)
        if minimum is not None and self.version < minimum:
            raise QservVersionError(
                endpoint,
                f"this client speaks API version {self.version}, the endpoint needs >= {minimum}",
                {"min_version": minimum},
            )
        if check_version:
            self._ensure_version(base, WORKER_KIND if base != self.controller_url else CONTROLLER_KIND)
        idempotent = method == "GET"
        url = base + path
        t = self.timeout if timeout is None else timeout
        request_timeout = httpx.Timeout(t, connect=self.connect_timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(method, url, body, params, auth, admin, request_timeout, form, upload)
            except _NOT_SENT as exc:
                error, sent = exc, False
            except httpx.TransportError as exc:
                error, sent = exc, True
            else:
                if idempotent and response.status_code in _RETRY_STATUS and attempt <= self.retries:
                    self._sleep(attempt, endpoint, f"HTTP {response.status_code}")
                    continue
                return self._parse(endpoint, response)
            if (not sent or idempotent) and attempt <= self.retries:
                self._sleep(attempt, endpoint, type(error).__name__)
                continue
            text = self._scrub(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
            raise QservTransportError(endpoint, text, request_sent=sent, attempts=attempt) from None

    def _send(self, method, url, body, params, auth, admin, timeout, form, upload) -> httpx.Response:
        http = self._http()
        if upload is not None:
            fields_ = {**(self._auth(admin) if auth else {}), **form, "version": str(self.version)}
            with open(upload, "rb") as fh:
                return http.request(
                    method,
                    url,
                    params=params,
                    timeout=timeout,
                    data=fields_,
                    files={"file": (upload.name, _BlockReader(fh), "application/octet-stream")},
                )
        payload = None
        if body is not None or auth:
            payload = {**(self._auth(admin) if auth else {}), **(body or {}), "version": self.version}
        q = dict(params or {})
        if payload is None:
            q["version"] = self.version
        content = json.dumps(payload).encode() if payload is not None else None
        return http.request(
            method,
            url,
            params=q,
            content=content,
            timeout=timeout,
            headers={"Content-Type": "application/json"},
        )

    def _sleep(self, attempt: int, endpoint: str, why: str) -> None:
        delay = min(self.backoff_max, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        log.info(
            "%s: %s, retrying in %.1fs (attempt %d of %d)",
            endpoint,
            why,
            delay,
            attempt + 1,
            self.retries + 1,
        )
        time.sleep(delay)

    def _parse(self, endpoint: str, response: httpx.Response) -> dict:
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

    # -- version window --------------------------------------------------------------------------

    def _ensure_version(self, base: str, kind: str) -> VersionInfo:
        info = self._checked.get(base)
        if info is not None:
            return info
        info = self._meta_version(base)
        endpoint = f"GET {base}/meta/version"
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
            self._checked[base] = info
        return info

    def _meta_version(self, base: str) -> VersionInfo:
        data = self._request("GET", base, "/meta/version", family="GET /meta/version", check_version=False)
        try:
            version = int(data["version"])
        except (KeyError, TypeError, ValueError):
            raise QservProtocolError(
                f"GET {base}/meta/version", "the answer has no numeric 'version'"
            ) from None
        return VersionInfo(
            kind=str(data.get("kind", "")),
            id=str(data.get("id", "")),
            instance_id=str(data.get("instance_id", "")),
            version=version,
            database_schema_version=data.get("database_schema_version"),
            min_version=int(data["min_version"]) if data.get("min_version") is not None else None,
            raw=data,
        )

    def check_version(self) -> VersionInfo:
        """Read the controller's version window (once) and refuse if this client's version is outside it."""
        return self._ensure_version(self.controller_url, CONTROLLER_KIND)

    def meta_version(self, worker: Location | WorkerInfo | str | None = None) -> VersionInfo:
        """`GET /meta/version` of the controller (default) or of a worker, without checking it."""
        return self._meta_version(self.controller_url if worker is None else _worker_url(worker))

    def check_worker_version(self, worker: Location | WorkerInfo | str) -> VersionInfo:
        """Like `check_version` for a worker's ingest service (done automatically before its first call)."""
        return self._ensure_version(_worker_url(worker), WORKER_KIND)

    def _ctl(self, method: str, path: str, family: str, **kw) -> dict:
        return self._request(method, self.controller_url, path, family=family, **kw)

    # -- configuration ---------------------------------------------------------------------------

    def replication_config(self) -> dict:
        """The whole replication configuration (`config` of `GET /replication/config`, §3.1)."""
        return self._ctl("GET", "/replication/config", "GET /replication/config")["config"]

    def workers(self) -> list[WorkerInfo]:
        """The workers of the configuration, with their HTTP ingest addresses."""
        out = []
        for w in self.replication_config().get("workers", []):
            host = w.get("http-loader-host") or {}
            out.append(
                WorkerInfo(
                    name=w["name"],
                    is_enabled=bool(w.get("is-enabled", 1)),
                    is_read_only=bool(w.get("is-read-only", 0)),
                    http_host_name=host.get("name", ""),
                    http_host=host.get("addr", ""),
                    http_port=int(w.get("http-loader-port", 0)),
                    raw=w,
                )
            )
        return out

    def set_ingest_config(self, database: str, **settings: Any) -> dict:
        """`PUT /ingest/config`: per-database HTTP-pull and async settings (§3.4), e.g. ASYNC_PROC_LIMIT=4."""
        return self._ctl(
            "PUT", "/ingest/config", "PUT /ingest/config", auth=True, body={"database": database, **settings}
        )

    def get_ingest_config(self, database: str) -> dict:
        return self._ctl("GET", "/ingest/config", "GET /ingest/config", params={"database": database})[
            "config"
        ]

    # -- databases -------------------------------------------------------------------------------

    def register_database(
        self,
        database: str,
        num_stripes: int,
        num_sub_stripes: int,
        overlap: float,
        auto_build_secondary_index: bool = True,
    ) -> dict:
        """`POST /ingest/database` (§3.2); returns the database object."""
        if overlap < 0:
            raise ValueError("overlap can't have a negative value")
        body = {
            "database": database,
            "num_stripes": int(num_stripes),
            "num_sub_stripes": int(num_sub_stripes),
            "overlap": float(overlap),
            "auto_build_secondary_index": int(bool(auto_build_secondary_index)),
        }
        return self._ctl("POST", "/ingest/database", "POST /ingest/database", auth=True, body=body)[
            "database"
        ]

    def list_databases(self, family: str | None = None, published: bool | None = None) -> list[dict]:
        """`GET /ingest/database` (§3.2): [{name, family, is_published}], optionally filtered."""
        body: dict[str, Any] = {}
        if family is not None:
            body["family"] = family
        if published is not None:
            body.update(all=0, published=int(published))
        return self._ctl("GET", "/ingest/database", "GET /ingest/database", body=body)["databases"]

    def database_info(self, database: str) -> dict | None:
        """The database object from the replication configuration, or None if not registered (§3.1)."""
        for db in self.replication_config().get("databases", []):
            if db.get("database") == database:
                return db
        return None

    def publish_database(
        self,
        database: str,
        consolidate_secondary_index: bool = False,
        row_counters_deploy_at_qserv: bool = False,
    ) -> dict:
        """`PUT /ingest/database/:db` — publish (§3.2). Synchronous and possibly long (`load_timeout`)."""
        body = {
            "consolidate_secondary_index": int(consolidate_secondary_index),
            "row_counters_deploy_at_qserv": int(row_counters_deploy_at_qserv),
        }
        return self._ctl(
            "PUT",
            f"/ingest/database/{_seg(database)}",
            "PUT /ingest/database",
            auth=True,
            body=body,
            timeout=self.load_timeout,
        )["database"]

    def delete_database(self, database: str, *, admin: bool = False) -> None:
        """`DELETE /ingest/database/:db` (§3.2). A published database needs `admin=True` (admin key)."""
        self._ctl(
            "DELETE",
            f"/ingest/database/{_seg(database)}",
            "DELETE /ingest/database",
            auth=True,
            admin=admin,
            body={},
            timeout=self.load_timeout,
        )

    # -- tables ----------------------------------------------------------------------------------

    def register_table(
        self,
        database: str,
        table: str,
        schema: Sequence[Mapping[str, str] | tuple[str, str]],
        *,
        is_partitioned: bool,
        director_table: str | None = None,
        director_key: str | None = None,
        latitude_key: str | None = None,
        longitude_key: str | None = None,
        chunk_id_key: str | None = None,
        sub_chunk_id_key: str | None = None,
        unique_primary_key: bool | None = None,
        charset_name: str | None = None,
        collation_name: str | None = None,
    ) -> dict:
        """`POST /ingest/table` (§3.3); returns the updated database object.

        Director: `is_partitioned=True`, `director_table=""` (or None), `director_key`, `latitude_key`,
        `longitude_key`, schema with `subChunkId`. Dependent: `director_table` names the director (may be
        `db.Table`), `director_key` is the foreign key, lat/lon both or neither. Regular: no keys at all.
        `chunk_id_key`/`sub_chunk_id_key` are obsolete in Qserv (the roles are fixed to `chunkId` and
        `subChunkId`), so they are only checked, never sent. `unique_primary_key` (API ≥ 21) and
        `charset_name`/`collation_name` (≥ 49) are sent only when given, so the server defaults apply.
        The checks here mirror the server's so a bad table fails before anything is written.
        """
        cols = [dict(c) if isinstance(c, Mapping) else {"name": c[0], "type": c[1]} for c in schema]
        for c in cols:
            if not c.get("name") or not c.get("type"):
                raise ValueError(f"table {table}: a schema column needs a non-empty 'name' and 'type': {c}")
        names = [c["name"] for c in cols]
        if "qserv_trans_id" in names:
            raise ValueError(f"table {table}: reserved column 'qserv_trans_id' is not allowed")
        if len(database) + len(table) > 56:
            raise ValueError(f"{database}.{table}: database and table names together exceed 56 characters")
        for role, expected in (("chunk_id_key", chunk_id_key), ("sub_chunk_id_key", sub_chunk_id_key)):
            fixed = "chunkId" if role == "chunk_id_key" else "subChunkId"
            if expected not in (None, "", fixed):
                raise ValueError(
                    f"table {table}: {role}={expected!r}, but Qserv fixes this role to column {fixed!r}"
                )
        body: dict[str, Any] = {
            "database": database,
            "table": table,
            "is_partitioned": int(is_partitioned),
            "schema": cols,
        }
        keys = {"director_key": director_key, "latitude_key": latitude_key, "longitude_key": longitude_key}
        if not is_partitioned:
            given = [k for k, v in {**keys, "director_table": director_table}.items() if v]
            if given:
                raise ValueError(f"regular table {table} may not carry {', '.join(given)}")
        else:
            director = not director_table
            if not director_key:
                raise ValueError(f"partitioned table {table} needs director_key")
            if director:
                if not (latitude_key and longitude_key):
                    raise ValueError(f"director table {table} needs latitude_key and longitude_key")
                if "subChunkId" not in names:
                    raise ValueError(f"director table {table} must have a 'subChunkId' column")
                bad = [c["name"] for c in cols if "BLOB" in c["type"].upper() or "TEXT" in c["type"].upper()]
                if bad:
                    raise ValueError(f"director table {table}: BLOB/TEXT columns are not allowed: {bad}")
            elif bool(latitude_key) != bool(longitude_key):
                raise ValueError(f"table {table}: give both latitude_key and longitude_key, or neither")
            for role, col in keys.items():
                if col and col not in names:
                    raise ValueError(
                        f"table {table}: no matching column '{col}' found in schema for parameter '{role}'"
                    )
            body["director_table"] = director_table or ""
            body.update({k: v for k, v in keys.items() if v})
        if unique_primary_key is not None:
            self._need(21, "unique_primary_key")
            body["unique_primary_key"] = int(unique_primary_key)
        for name, value in (("charset_name", charset_name), ("collation_name", collation_name)):
            if value is not None:
                self._need(49, name)
                body[name] = value
        return self._ctl(
            "POST", "/ingest/table", "POST /ingest/table", auth=True, body=body, timeout=self.load_timeout
        )["database"]

    def _need(self, minimum: int, what: str) -> None:
        if self.version < minimum:
            raise QservVersionError(
                "client", f"{what} needs API version >= {minimum}, client speaks {self.version}"
            )

    def list_tables(self, database: str) -> list[dict]:
        """`GET /ingest/table/:db` (§3.3): [{name, is_partitioned}]."""
        return self._ctl("GET", f"/ingest/table/{_seg(database)}", "GET /ingest/table")["tables"]

    def delete_table(self, database: str, table: str, *, admin: bool = False) -> None:
        """`DELETE /ingest/table/:db/:table` (§3.3); `admin=True` if the database is published."""
        self._ctl(
            "DELETE",
            f"/ingest/table/{_seg(database)}/{_seg(table)}",
            "DELETE /ingest/table",
            auth=True,
            admin=admin,
            body={},
            timeout=self.load_timeout,
        )

    # -- transactions ----------------------------------------------------------------------------

    @staticmethod
    def _transactions(data: dict, database: str | None = None) -> list[Transaction]:
        out = []
        for db, entry in (data.get("databases") or {}).items():
            if database is not None and db != database:
                continue
            for t in entry.get("transactions", []):
                out.append(_transaction(t, data))
        return out

    def begin_transaction(self, database: str, context: Any = None) -> Transaction:
        """`POST /ingest/trans` (§3.5): start; `context` is any JSON (e.g. run id, checksums)."""
        body: dict[str, Any] = {"database": database}
        if context is not None:
            body["context"] = self._check_context(context)
        data = self._ctl(
            "POST", "/ingest/trans", "POST /ingest/trans", auth=True, body=body, timeout=self.load_timeout
        )
        return self._one(data, database, "POST /ingest/trans")

    def _one(self, data: dict, database: str | None, endpoint: str) -> Transaction:
        found = self._transactions(data, database)
        if len(found) != 1:
            raise QservProtocolError(endpoint, f"expected one transaction in the answer, got {len(found)}")
        return found[0]

    def _end(self, transaction_id: int, abort: bool, context: Any) -> Transaction:
        body: dict[str, Any] = {}
        if context is not None:
            body["context"] = self._check_context(context)
        data = self._ctl(
            "PUT",
            f"/ingest/trans/{int(transaction_id)}",
            "PUT /ingest/trans",
            auth=True,
            body=body,
            params={"abort": int(abort)},
            timeout=self.load_timeout,
        )
        return self._one(data, None, f"PUT /ingest/trans/{transaction_id}")

    def commit_transaction(self, transaction_id: int, context: Any = None) -> Transaction:
        """`PUT /ingest/trans/:id?abort=0` (§3.5). A lost answer is an unknown outcome."""
        return self._end(transaction_id, False, context)

    def abort_transaction(self, transaction_id: int, context: Any = None) -> Transaction:
        """`PUT /ingest/trans/:id?abort=1` (§3.5); may be re-issued after ABORT_FAILED."""
        return self._end(transaction_id, True, context)

    @staticmethod
    def _trans_flags(
        contrib,
        contrib_long,
        include_context,
        include_log,
        include_warnings,
        include_retries,
        include_extensions,
        contrib_status,
    ) -> dict:
        q = {
            "contrib": int(contrib),
            "contrib_long": int(contrib_long),
            "include_context": int(include_context),
            "include_log": int(include_log),
            "include_warnings": int(include_warnings),
            "include_retries": int(include_retries),
            "include_extensions": int(include_extensions),
        }
        if contrib_status:
            q["contrib_status"] = (
                contrib_status if isinstance(contrib_status, str) else ",".join(contrib_status)
            )
        return q

    def get_transaction(
        self,
        transaction_id: int,
        *,
        contrib: bool = False,
        contrib_long: bool = False,
        include_context: bool = False,
        include_log: bool = False,
        include_warnings: bool = False,
        include_retries: bool = False,
        include_extensions: bool = False,
        contrib_status: str | Iterable[str] | None = None,
        table: str | None = None,
        worker: str | None = None,
        chunk: int | None = None,
    ) -> Transaction:
        """`GET /ingest/trans/:id` (§3.5) with contribution flags (`contrib_long` fills them)."""
        q = self._trans_flags(
            contrib,
            contrib_long,
            include_context,
            include_log,
            include_warnings,
            include_retries,
            include_extensions,
            contrib_status,
        )
        for k, v in (("table", table), ("worker", worker), ("chunk", chunk)):
            if v is not None:
                q[k] = v
        data = self._ctl("GET", f"/ingest/trans/{int(transaction_id)}", "GET /ingest/trans", params=q)
        return self._one(data, None, f"GET /ingest/trans/{transaction_id}")

    def settle_transaction(
        self, transaction_id: int, *, poll: float = 1.0, timeout: float | None = None
    ) -> Transaction:
        """Wait until a transaction leaves the transitional states (IS_STARTING/IS_FINISHING/IS_ABORTING).

        Use after a commit or abort whose answer was lost (§5): FINISHED means the commit happened,
        STARTED that it never arrived (commit again), *_FAILED that it must be aborted and redone.
        With `timeout`, the transaction is returned as it is when the time is up.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            t = self.get_transaction(transaction_id)
            if not t.state.startswith("IS_") or (deadline is not None and time.monotonic() >= deadline):
                return t
            time.sleep(poll)

    def list_transactions(
        self,
        database: str,
        *,
        states: str | Iterable[str] | None = None,
        contrib: bool = False,
        contrib_long: bool = False,
        include_context: bool = False,
        include_log: bool = False,
    ) -> list[Transaction]:
        """`GET /ingest/trans?database=` (§3.5); `states` is a list or e.g. "!FINISHED"."""
        q = self._trans_flags(contrib, contrib_long, include_context, include_log, False, False, False, None)
        q["database"] = database
        if states:
            q["trans_state"] = states if isinstance(states, str) else ",".join(states)
        return self._transactions(self._ctl("GET", "/ingest/trans", "GET /ingest/trans", params=q), database)

    def get_contribution(
        self, contribution_id: int, *, include_warnings: bool = True, include_retries: bool = True
    ) -> Contribution:
        """`GET /ingest/trans/contrib/:id` (§3.5) via the controller."""
        data = self._ctl(
            "GET",
            f"/ingest/trans/contrib/{int(contribution_id)}",
            "GET /ingest/trans/contrib",
            params={"include_warnings": int(include_warnings), "include_retries": int(include_retries)},
        )
        return Contribution.from_json(data["contribution"])

    # -- placement -------------------------------------------------------------------------------

    @staticmethod
    def _target(database: str | None, transaction_id: int | None) -> dict:
        if (database is None) == (transaction_id is None):
            raise ValueError("give exactly one of database or transaction_id")
        return {"database": database} if database is not None else {"transaction_id": int(transaction_id)}

    def allocate_chunk(
        self, chunk: int, *, database: str | None = None, transaction_id: int | None = None
    ) -> Location:
        """`POST /ingest/chunk` (§3.6): the worker owning `chunk` (sticky)."""
        body = {"chunk": int(chunk), **self._target(database, transaction_id)}
        data = self._ctl("POST", "/ingest/chunk", "POST /ingest/chunk", auth=True, body=body)
        return _location(data["location"], chunk=int(chunk))

    def allocate_chunks(
        self, chunks: Iterable[int], *, database: str | None = None, transaction_id: int | None = None
    ) -> dict[int, Location]:
        """`POST /ingest/chunks` (§3.6, API ≥ 54): bulk allocation, {chunk: location}."""
        wanted = [int(c) for c in chunks]
        if not wanted:
            return {}
        body = {"chunks": wanted, **self._target(database, transaction_id)}
        data = self._ctl(
            "POST", "/ingest/chunks", "POST /ingest/chunks", auth=True, body=body, timeout=self.load_timeout
        )
        locs = [_location(loc) for loc in data["locations"]]
        out = {loc.chunk: loc for loc in locs if loc.chunk is not None}
        missing = sorted(set(wanted) - set(out))
        if missing or len(locs) != len(wanted):
            raise QservProtocolError(
                "POST /ingest/chunks",
                f"{len(locs)} locations for {len(wanted)} chunks; missing: {missing[:10]}",
            )
        return out

    def list_chunks(self, database: str) -> list[dict]:
        """`GET /ingest/chunks?database=` (§3.6): informational replica list, not for placement."""
        return self._ctl("GET", "/ingest/chunks", "GET /ingest/chunks", params={"database": database})[
            "replica"
        ]

    def regular_locations(
        self, *, database: str | None = None, transaction_id: int | None = None
    ) -> list[Location]:
        """`GET /ingest/regular` (§3.6, a GET with a JSON body): every worker a regular table must go to."""
        data = self._ctl(
            "GET", "/ingest/regular", "GET /ingest/regular", body=self._target(database, transaction_id)
        )
        return [_location(loc) for loc in data["locations"]]

    # -- post-ingest -----------------------------------------------------------------------------

    def build_director_index(
        self,
        database: str,
        director_table: str,
        *,
        rebuild: bool = False,
        unique_primary_key: bool | None = None,
    ) -> dict:
        """`POST /ingest/index/secondary` (§3.7): build the director index of a published director table."""
        body: dict[str, Any] = {
            "database": database,
            "director_table": director_table,
            "rebuild": int(rebuild),
        }
        if unique_primary_key is not None:
            body["unique_primary_key"] = int(unique_primary_key)
        return self._ctl(
            "POST",
            "/ingest/index/secondary",
            "POST /ingest/index/secondary",
            auth=True,
            body=body,
            timeout=self.load_timeout,
        )

    def scan_table_stats(
        self,
        database: str,
        table: str,
        *,
        overlap_selector: str = "CHUNK_AND_OVERLAP",
        force_rescan: bool = False,
        row_counters_state_update_policy: str = "DISABLED",
        row_counters_deploy_at_qserv: bool = False,
    ) -> dict:
        """`POST /ingest/table-stats` (§3.8): scan (and optionally deploy) a table's row counters."""
        if overlap_selector not in ("CHUNK_AND_OVERLAP", "CHUNK", "OVERLAP"):
            raise ValueError(f"overlap_selector={overlap_selector!r}")
        if row_counters_state_update_policy not in ("DISABLED", "ENABLED", "FORCED"):
            raise ValueError(f"row_counters_state_update_policy={row_counters_state_update_policy!r}")
        body = {
            "database": database,
            "table": table,
            "overlap_selector": overlap_selector,
            "force_rescan": int(force_rescan),
            "row_counters_state_update_policy": row_counters_state_update_policy,
            "row_counters_deploy_at_qserv": int(row_counters_deploy_at_qserv),
        }
        return self._ctl(
            "POST",
            "/ingest/table-stats",
            "POST /ingest/table-stats",
            auth=True,
            body=body,
            timeout=self.load_timeout,
        )

    def table_stats(self, database: str, table: str) -> list[dict]:
        """`GET /ingest/table-stats/:db/:table` (§3.8): row counters per transaction/chunk/overlap."""
        return self._ctl(
            "GET", f"/ingest/table-stats/{_seg(database)}/{_seg(table)}", "GET /ingest/table-stats"
        )["entries"]

    # -- worker ingest services (§4) -------------------------------------------------------------

    def _wrk(self, worker, method: str, path: str, family: str, **kw) -> dict:
        return self._request(method, _worker_url(worker), path, family=family, **kw)

    @staticmethod
    def _common(transaction_id, table, chunk, overlap, dialect, charset_name, max_num_warnings) -> dict:
        d: dict[str, Any] = {
            "transaction_id": int(transaction_id),
            "table": table,
            "chunk": int(chunk),
            "overlap": int(bool(overlap)),
        }
        if dialect is not None:
            d.update(dialect.form_fields())
        if charset_name:
            d["charset_name"] = charset_name
        if max_num_warnings:
            d["max_num_warnings"] = int(max_num_warnings)
        return d

    def ingest_csv(
        self,
        worker: Location | WorkerInfo | str,
        transaction_id: int,
        table: str,
        path: str | os.PathLike,
        *,
        chunk: int = 0,
        overlap: bool = False,
        dialect: Dialect = TSV,
        charset_name: str | None = None,
        max_num_warnings: int | None = None,
    ) -> Contribution:
        """`POST /ingest/csv` (§4.3): upload one file as `multipart/form-data`, streamed from disk in blocks.

        Fields (auth_key first, then transaction_id, table, chunk, overlap, the dialect, charset_name,
        max_num_warnings, version) precede exactly one file part. For regular tables `chunk`/`overlap` are
        sent as 0 (required, ignored). The answer is the contribution; check it with `check_contribution`.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(path)
        form = {
            k: str(v)
            for k, v in self._common(
                transaction_id, table, chunk, overlap, dialect, charset_name, max_num_warnings
            ).items()
        }
        data = self._wrk(
            worker,
            "POST",
            "/ingest/csv",
            "POST /ingest/csv",
            auth=True,
            form=form,
            upload=path,
            timeout=self.load_timeout,
        )
        return Contribution.from_json(data["contrib"])

    def ingest_file(
        self,
        worker: Location | WorkerInfo | str,
        transaction_id: int,
        table: str,
        url: str,
        *,
        chunk: int = 0,
        overlap: bool = False,
        dialect: Dialect = TSV,
        charset_name: str | None = None,
        max_num_warnings: int | None = None,
        max_retries: int | None = None,
        http_method: str | None = None,
        http_data: str | None = None,
        http_headers: Sequence[str] | None = None,
        asynchronous: bool = False,
    ) -> Contribution:
        """`POST /ingest/file` (or `/ingest/file-async`, §4.1): the worker pulls `url`.

        `url` is `file:///abs/path` (on the worker host), `http://` or `https://`. `http_headers` is a list of
        "Name: value" strings (the code's form, §9.2); automatic re-reads use `max_retries` (§9.1).
        """
        if not url.startswith(("file:///", "http://", "https://")):
            raise ValueError(f"unsupported url {url!r}: use file:///abs/path, http:// or https://")
        body = self._common(transaction_id, table, chunk, overlap, dialect, charset_name, max_num_warnings)
        body["url"] = url
        if max_retries is not None:
            body["max_retries"] = int(max_retries)
        if http_method:
            body["http_method"] = http_method
        if http_data is not None:
            body["http_data"] = http_data
        if http_headers:
            body["http_headers"] = list(http_headers)
        path = "/ingest/file-async" if asynchronous else "/ingest/file"
        data = self._wrk(
            worker,
            "POST",
            path,
            f"POST {path}",
            auth=True,
            body=body,
            timeout=self.timeout if asynchronous else self.load_timeout,
        )
        return Contribution.from_json(data["contrib"])

    def async_status(self, worker: Location | WorkerInfo | str, contribution_id: int) -> Contribution:
        """`GET /ingest/file-async/:id` (§4.4)."""
        data = self._wrk(
            worker, "GET", f"/ingest/file-async/{int(contribution_id)}", "GET /ingest/file-async"
        )
        return Contribution.from_json(data["contrib"])

    def async_transaction_status(
        self, worker: Location | WorkerInfo | str, transaction_id: int
    ) -> list[Contribution]:
        """`GET /ingest/file-async/trans/:id` (§4.4): this worker's async contributions of a transaction."""
        data = self._wrk(
            worker, "GET", f"/ingest/file-async/trans/{int(transaction_id)}", "GET /ingest/file-async"
        )
        return [Contribution.from_json(c) for c in data["contribs"]]

    def cancel_async(self, worker: Location | WorkerInfo | str, contribution_id: int) -> Contribution:
        """`DELETE /ingest/file-async/:id` (§4.4): cancel a queued or reading request."""
        data = self._wrk(
            worker,
            "DELETE",
            f"/ingest/file-async/{int(contribution_id)}",
            "DELETE /ingest/file-async",
            auth=True,
            body={},
        )
        return Contribution.from_json(data["contrib"])

    def cancel_async_transaction(
        self, worker: Location | WorkerInfo | str, transaction_id: int
    ) -> list[Contribution]:
        """`DELETE /ingest/file-async/trans/:id` (§4.4)."""
        data = self._wrk(
            worker,
            "DELETE",
            f"/ingest/file-async/trans/{int(transaction_id)}",
            "DELETE /ingest/file-async",
            auth=True,
            body={},
        )
        return [Contribution.from_json(c) for c in data["contribs"]]

    def wait_async(
        self,
        worker: Location | WorkerInfo | str,
        contribution_id: int,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
    ) -> Contribution:
        """Poll `async_status` until the contribution leaves IN_PROGRESS (or `timeout` seconds pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            c = self.async_status(worker, contribution_id)
            if c.status != "IN_PROGRESS" or (deadline is not None and time.monotonic() >= deadline):
                return c
            time.sleep(poll)

    def retry_file(
        self, worker: Location | WorkerInfo | str, contribution_id: int, *, asynchronous: bool = False
    ) -> Contribution:
        """`PUT /ingest/file[-async]/:id` (§4.4): retry a READ_FAILED contribution at its worker."""
        base = "/ingest/file-async" if asynchronous else "/ingest/file"
        data = self._wrk(
            worker,
            "PUT",
            f"{base}/{int(contribution_id)}",
            f"PUT {base}",
            auth=True,
            body={},
            timeout=self.timeout if asynchronous else self.load_timeout,
        )
        return Contribution.from_json(data["contrib"])

    def ingest_data(
        self,
        worker: Location | WorkerInfo | str,
        transaction_id: int,
        table: str,
        rows: Sequence[Sequence[Any]],
        *,
        chunk: int = 0,
        overlap: bool = False,
        charset_name: str | None = None,
        binary_encoding: str = "hex",
        max_num_warnings: int | None = None,
    ) -> Contribution:
        """`POST /ingest/data` (§4.2): rows inside JSON, for small contributions.

        Floats are refused: the worker prints JSON floats with 6 decimals, silently losing precision — pass
        them as strings (e.g. `repr(x)`) or use `ingest_csv`. `None` is refused too (JSON null is rejected by
        the server); NULL is the string `\\N`. `bytes` are encoded with `binary_encoding` (hex, b64, array).
        Strings are sent verbatim: tab, newline, quote and backslash must already be escaped per LOAD DATA.
        """
        if binary_encoding not in ("hex", "b64", "array"):
            raise ValueError(f"binary_encoding={binary_encoding!r}: use hex, b64 or array")
        if not rows:
            raise ValueError("rows is empty")
        out = []
        for r, row in enumerate(rows):
            enc = []
            for c, v in enumerate(row):
                if isinstance(v, float):
                    raise TypeError(
                        f"row {r} column {c}: float {v!r} would be cut to 6 decimals by Qserv's "
                        "/ingest/data; send it as a string or use ingest_csv"
                    )
                if v is None:
                    raise TypeError(
                        f"row {r} column {c}: None is rejected by Qserv; send the string '\\\\N' for NULL"
                    )
                if isinstance(v, (bytes, bytearray)):
                    v = (
                        bytes(v).hex()
                        if binary_encoding == "hex"
                        else base64.b64encode(v).decode()
                        if binary_encoding == "b64"
                        else list(v)
                    )
                elif not isinstance(v, (str, int)):
                    raise TypeError(f"row {r} column {c}: unsupported type {type(v).__name__}")
                enc.append(v)
            out.append(enc)
        body = self._common(transaction_id, table, chunk, overlap, None, charset_name, max_num_warnings)
        body.update(rows=out, binary_encoding=binary_encoding)
        data = self._wrk(
            worker,
            "POST",
            "/ingest/data",
            "POST /ingest/data",
            auth=True,
            body=body,
            timeout=self.load_timeout,
        )
        return Contribution.from_json(data["contrib"])


class _BlockReader:
    """A read-only file wrapper that hands httpx at most one block per `read`, so the body is streamed."""

    def __init__(self, fh):
        self._fh = fh

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > _UPLOAD_BLOCK:
            size = _UPLOAD_BLOCK
        faultpoints.reached("upload.block")
        return self._fh.read(size)

    def fileno(self) -> int:  # lets httpx compute Content-Length from fstat without reading
        return self._fh.fileno()

    def tell(self) -> int:
        return self._fh.tell()

    def seek(self, *args) -> int:
        return self._fh.seek(*args)

    def __iter__(self):
        while block := self.read(_UPLOAD_BLOCK):
            yield block


def _rebuild(*args) -> QservClient:
    return QservClient(*args)


def _location(data: Mapping[str, Any], chunk: int | None = None) -> Location:
    if chunk is None and data.get("chunk") is not None:
        chunk = int(data["chunk"])
    return Location(
        worker=str(data.get("worker", "")),
        http_host_name=str(data.get("http_host_name", "") or ""),
        http_host=str(data.get("http_host", "") or ""),
        http_port=int(data.get("http_port", 0) or 0),
        host_name=str(data.get("host_name", "") or ""),
        host=str(data.get("host", "") or ""),
        port=int(data.get("port", 0) or 0),
        chunk=chunk,
        raw=dict(data),
    )


def _transaction(t: Mapping[str, Any], envelope: Mapping[str, Any]) -> Transaction:
    flag = envelope.get("secondary-index-build-success")
    return _from_dict(
        Transaction, t, **({"secondary_index_build_success": bool(flag)} if flag is not None else {})
    )


__all__ = [
    "API_VERSION",
    "CSV",
    "DUMMY_CHUNK",
    "TSV",
    "Contribution",
    "ContributionCheckError",
    "Dialect",
    "Location",
    "QservClient",
    "Transaction",
    "VersionInfo",
    "WorkerInfo",
    "check_contribution",
]

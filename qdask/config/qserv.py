"""The Qserv instance: replication controller, czar DSN, where auth keys come from, how qdask talks to it."""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from qdask.config.base import ConfigModel
from qdask.config.names import EnvName, Identifier
from qdask.config.quantities import Bytes, parse_bytes_field
from qdask.dsn import DSN, parse_dsn

__all__ = [
    "AUTO_CHUNKS_PER_TRANSACTION",
    "MAX_TRANSACTIONS",
    "MIN_API_VERSION",
    "Concurrency",
    "CzarDSN",
    "QservConfig",
    "Retries",
    "Timeouts",
]

CZAR_PORT = 4040  # the czar's MySQL-protocol port in a Qserv deployment


class CzarDSN(ConfigModel):
    """Where the czar answers SQL (MySQL protocol), from ``mysql://user[:pass]@host[:port][/db]``.

    Parsed by `qdask.dsn.parse_dsn`; the port defaults to 4040.
    """

    user: str = Field(min_length=1)
    password: SecretStr | None = None
    host: str = Field(min_length=1)
    port: int = Field(default=CZAR_PORT, gt=0, lt=65536)
    database: Identifier | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        dsn = parse_dsn(v)
        if dsn.user is None:
            raise ValueError(
                "expected mysql://user[:password]@host:port[/database]: user and host are required"
            )
        out: dict[str, Any] = {"user": dsn.user, "host": dsn.host, "database": dsn.database}
        if dsn.password is not None:
            out["password"] = dsn.password
        if dsn.port is not None:
            out["port"] = dsn.port
        return out

    def dsn(self) -> DSN:
        """This DSN as a `qdask.dsn.DSN`."""
        return DSN(self.host, self.port, self.user, self.password, self.database)

    def url(self, reveal: bool = False) -> str:
        """The DSN as a URL (user and password percent-encoded); the password is masked unless `reveal`."""
        return self.dsn().url(reveal=reveal)

    def __str__(self) -> str:
        return self.url()


def _mask_url(v: str) -> str:
    """`v` with any user:password part replaced, so a URL can be quoted in an error."""
    return re.sub(r"(?<=//)[^/@]*@", "***@", v)


def _check_controller(v: str) -> str:
    u = urlsplit(v)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(
            f"expected an http:// or https:// URL of the replication controller, got {_mask_url(v)!r}"
        )
    try:
        _ = u.port
    except ValueError:
        raise ValueError(f"the port in {_mask_url(v)!r} is not a number in 1..65535") from None
    if u.username or u.password:
        raise ValueError("do not put credentials in the controller URL; the auth key comes from auth_key_env")
    return v.rstrip("/")


class Concurrency(ConfigModel):
    """Bounds on simultaneous uploads to Qserv, in total and per Qserv worker."""

    total: int = Field(default=16, gt=0, le=1024)
    per_worker: int = Field(default=4, gt=0, le=256)

    @model_validator(mode="after")
    def _order(self) -> Concurrency:
        if self.per_worker > self.total:
            raise ValueError(f"per_worker ({self.per_worker}) cannot exceed total ({self.total})")
        return self


class Timeouts(ConfigModel):
    """Timeouts in seconds: opening a connection (controller, workers, czar), waiting on an ordinary
    call, and waiting on a call that does heavy work before it answers (contribution uploads, commits,
    publish, director index builds)."""

    connect: float = Field(default=10.0, gt=0)
    request: float = Field(default=600.0, gt=0)
    load: float = Field(default=3600.0, gt=0)


class Retries(ConfigModel):
    """Retries of transient failures: attempts (≥1, 1 = no retry), exponential backoff in seconds."""

    attempts: int = Field(default=5, ge=1, le=100)
    backoff: float = Field(default=1.0, ge=0)
    backoff_max: float = Field(default=60.0, ge=0)


SERVE = "serve"  # url_base: qdask serves the staging directory over HTTP itself while it loads
MIN_API_VERSION = 54  # POST /ingest/chunks (bulk chunk allocation) needs 54
MAX_TRANSACTIONS = 8192  # MariaDB partitions per table; one partition per transaction
AUTO_CHUNKS_PER_TRANSACTION = 100  # max_chunks_per_transaction: auto starts here, and grows only to fit


class QservConfig(ConfigModel):
    """The Qserv instance: endpoints, where the auth keys come from, and limits on how qdask talks to it."""

    controller: Annotated[str, AfterValidator(_check_controller)]
    czar: CzarDSN
    czar_password_env: EnvName | None = None
    auth_key_env: EnvName = "QSERV_AUTH_KEY"
    admin_auth_key_env: EnvName = "QSERV_ADMIN_AUTH_KEY"
    api_version: int = Field(default=55, ge=MIN_API_VERSION)
    transport: Literal["upload", "url"] = "upload"
    url_base: str | None = None
    serve_host: str = Field(default="127.0.0.1", min_length=1)
    serve_port: int = Field(default=0, ge=0, lt=65536)
    max_chunks_per_transaction: int | Literal["auto"] = "auto"
    max_bytes_per_transaction: Bytes = 10 * 2**30
    max_transactions: int = Field(default=1000, gt=0, le=MAX_TRANSACTIONS)
    concurrency: Concurrency = Field(default_factory=Concurrency)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retries: Retries = Field(default_factory=Retries)

    _auth_key: SecretStr | None = PrivateAttr(default=None)
    _admin_auth_key: SecretStr | None = PrivateAttr(default=None)

    _bytes = field_validator("max_bytes_per_transaction", mode="before")(parse_bytes_field)

    @field_validator("max_chunks_per_transaction", mode="before")
    @classmethod
    def _check_chunks(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            return v
        raise ValueError(f"a number of chunks above 0, or auto (got {v!r})")

    @model_validator(mode="before")
    @classmethod
    def _upload_renamed(cls, v: Any) -> Any:
        """`upload: csv` (the only value older qdask took) is today's `transport: upload`."""
        if isinstance(v, dict) and "upload" in v:
            v = dict(v)
            if v.pop("upload") != "csv" or "transport" in v:
                raise ValueError(
                    "upload was replaced by transport: upload (POST /ingest/csv) or url (POST /ingest/file, "
                    "with url_base)"
                )
        return v

    @field_validator("url_base")
    @classmethod
    def _check_url_base(cls, v: str | None) -> str | None:
        if v is None or v == SERVE:
            return v
        u = urlsplit(v)
        if u.scheme == "file":
            if u.netloc or not u.path.startswith("/"):
                raise ValueError(
                    f"a file:// url_base names an absolute path on the workers, as file:///path/, got {v!r}"
                )
        elif u.scheme in ("http", "https"):
            if not u.hostname:
                raise ValueError(f"expected http(s)://host[:port]/path/ as url_base, got {_mask_url(v)!r}")
            try:
                _ = u.port
            except ValueError:
                raise ValueError(f"the port in {_mask_url(v)!r} is not a number in 1..65535") from None
            if u.query or u.fragment:
                raise ValueError(f"url_base takes no ?query or #fragment, got {_mask_url(v)!r}")
        else:
            raise ValueError(
                f"url_base must start with file:/// or http(s)://, or be {SERVE}, got {_mask_url(v)!r}: "
                "Qserv's workers read only these (src/http/Url.cc)"
            )
        return v if v.endswith("/") else v + "/"

    @model_validator(mode="after")
    def _transport(self) -> QservConfig:
        if self.transport == "url" and self.url_base is None:
            raise ValueError(
                "transport url needs url_base: what the Qserv workers read the staging directory as, "
                f"file:///shared/staging/ or http://host:port/, or {SERVE} (qdask serves it over HTTP)"
            )
        if self.transport == "upload" and self.url_base is not None:
            raise ValueError(
                "url_base is only read with transport: url (the upload transport sends the bytes itself)"
            )
        served = {"serve_host", "serve_port"} & self.model_fields_set
        if served and self.url_base != SERVE:
            raise ValueError(f"{' and '.join(sorted(served))} are only read with url_base: {SERVE}")
        return self

    @property
    def auth_key(self) -> SecretStr:
        """Qserv's auth key, read from $auth_key_env on first use ('' when unset: Qserv's default key)."""
        if self._auth_key is None:
            self._auth_key = SecretStr(os.environ.get(self.auth_key_env, ""))
        return self._auth_key

    @property
    def admin_auth_key(self) -> SecretStr:
        """Qserv's admin auth key, read from $admin_auth_key_env on first use ('' when unset)."""
        if self._admin_auth_key is None:
            self._admin_auth_key = SecretStr(os.environ.get(self.admin_auth_key_env, ""))
        return self._admin_auth_key

    @property
    def czar_password(self) -> SecretStr | None:
        """The czar password: from $czar_password_env when named there, else from the DSN."""
        if self.czar_password_env:
            value = os.environ.get(self.czar_password_env)
            if value is not None:
                return SecretStr(value)
        return self.czar.password

    @field_serializer("czar")
    def _czar_masked(self, czar: CzarDSN) -> str:
        return czar.url()

"""What Qserv's Replication/Ingest answers say, as typed records (contract `qserv-ingest-api.md`).

Each record keeps the whole JSON object it was read from in `raw`, so nothing Qserv adds is lost; the
typed fields are the ones qdask reads. `check_contribution` is the one rule applied to an answer: a
contribution counts as loaded only when it proves that exactly the staged rows went in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from qdask.qserv.errors import ContributionCheckError, QservProtocolError, is_set

#: Super-transaction states (§5).
TransactionState = Literal[
    "IS_STARTING", "STARTED", "IS_FINISHING", "IS_ABORTING", "FINISHED", "ABORTED",
    "START_FAILED", "FINISH_FAILED", "ABORT_FAILED",
]  # fmt: skip
#: Contribution statuses (§6).
ContributionStatus = Literal[
    "IN_PROGRESS", "CREATE_FAILED", "START_FAILED", "READ_FAILED", "LOAD_FAILED", "CANCELLED", "FINISHED",
]  # fmt: skip


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The items of `data` that are fields of dataclass `cls` (but `raw`)."""
    names = {f.name for f in fields(cls)} - {"raw"}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class VersionInfo:
    """`GET /meta/version` of a controller or a worker ingest service (§1)."""

    kind: str
    version: int
    id: str = ""
    instance_id: str = ""
    database_schema_version: int | None = None
    min_version: int | None = None  # not emitted by Qserv 55, honoured if a server sends it
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], endpoint: str) -> VersionInfo:
        try:
            version = int(data["version"])
            minimum = None if data.get("min_version") is None else int(data["min_version"])
        except (KeyError, TypeError, ValueError):
            raise QservProtocolError(endpoint, "the answer has no numeric 'version'") from None
        return cls(
            kind=str(data.get("kind", "")),
            version=version,
            id=str(data.get("id", "")),
            instance_id=str(data.get("instance_id", "")),
            database_schema_version=data.get("database_schema_version"),
            min_version=minimum,
            raw=dict(data),
        )


@dataclass(frozen=True)
class Location:
    """Where a chunk (or a copy of a regular table) goes: a worker and its HTTP ingest service (§3.6)."""

    worker: str
    http_host: str = ""  # the address (IP) the worker registered
    http_host_name: str = ""  # the host name as the worker knows itself
    http_port: int = 0
    chunk: int | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], chunk: int | None = None) -> Location:
        if chunk is None and data.get("chunk") is not None:
            chunk = int(data["chunk"])
        return cls(
            worker=str(data.get("worker", "")),
            http_host=str(data.get("http_host") or ""),
            http_host_name=str(data.get("http_host_name") or ""),
            http_port=int(data.get("http_port") or 0),
            chunk=chunk,
            raw=dict(data),
        )

    @property
    def http_url(self) -> str:
        """Base URL of the worker's HTTP ingest service: its address, else its host name.

        The address is what Qserv itself connects with: its own loader posts to `http_host`
        (python/lsst/qserv/admin/replication_interface.py:333-336, 458), its services dial `addr`
        (src/replica/requests/MessengerConnector.cc:250), and ConfigHost.h calls the address the most
        reliable way to reach a service, the name possibly ambiguous or unknown to other hosts.
        """
        host = self.http_host or self.http_host_name.split(",")[0].strip()
        if not host or not self.http_port:
            raise ValueError(f"location of worker {self.worker!r} has no HTTP ingest address")
        return f"http://[{host}]:{self.http_port}" if ":" in host else f"http://{host}:{self.http_port}"


@dataclass(frozen=True)
class ContributionInfo:
    """A contribution descriptor (§4.5): one file (or set of rows) loaded into one table at one worker."""

    id: int | None = None
    transaction_id: int | None = None
    worker: str = ""
    database: str = ""
    table: str = ""
    chunk: int = 0
    overlap: int = 0
    status: ContributionStatus | Literal[""] = ""
    num_bytes: int = 0
    num_rows: int = 0
    num_rows_loaded: int = 0
    num_warnings: int = 0
    warnings: list = field(default_factory=list)
    retry_allowed: bool = False
    error: str = ""
    http_error: int = 0
    system_error: int = 0
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContributionInfo:
        known = _known(cls, data)
        for name in ("chunk", "overlap", "num_bytes", "num_rows", "num_rows_loaded", "num_warnings"):
            known[name] = int(known.get(name) or 0)  # Qserv sends null for counters not reached yet
        known["retry_allowed"] = is_set(data.get("retry_allowed"))
        return cls(**known, raw=dict(data))


@dataclass(frozen=True)
class TransactionInfo:
    """A super-transaction (§3.5). `contrib` holds its `summary` and `files` when they were asked for."""

    id: int
    database: str
    state: TransactionState
    begin_time: int = 0
    start_time: int = 0
    transition_time: int = 0
    end_time: int = 0
    context: Any = None
    log: list = field(default_factory=list)
    contrib: dict | None = None
    secondary_index_build_success: bool | None = None  # commit and abort answers only
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], envelope: Mapping[str, Any]) -> TransactionInfo:
        flag = envelope.get("secondary-index-build-success")
        built = None if flag is None else is_set(flag)
        return cls(**_known(cls, data), secondary_index_build_success=built, raw=dict(data))

    @property
    def contributions(self) -> list[ContributionInfo]:
        """The contributions of `contrib.files` (filled when read with `contributions=True`)."""
        return [ContributionInfo.from_json(c) for c in (self.contrib or {}).get("files", [])]


def transactions_in(answer: Mapping[str, Any], database: str | None = None) -> list[TransactionInfo]:
    """The transactions of a `databases → <db> → transactions` answer (§3.5), of `database` if given."""
    return [
        TransactionInfo.from_json(t, answer)
        for name, entry in (answer.get("databases") or {}).items()
        if database is None or name == database
        for t in entry.get("transactions", [])
    ]


def check_contribution(c: ContributionInfo, expected_rows: int, expected_bytes: int) -> ContributionInfo:
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

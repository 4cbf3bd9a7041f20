"""Typed records of the controller's state (what Qserv keeps in its replication database).

Each record renders itself as Qserv renders the matching C++ object (``to_json``), and as a document the
stand-in persists (``to_doc``/``from_doc``: the JSON plus the stand-in's own bookkeeping), so a restarted
stand-in reads back what it wrote. Field names are Qserv's JSON keys wherever Qserv has one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from qdask.emulator.contract import (
    ContribStage,
    ContribStatus,
    TransactionState,
)

Json = dict[str, Any]


@dataclass
class Host:
    """``ConfigHost``: an address and a host name."""

    addr: str
    name: str


@dataclass
class Worker:
    """``ConfigWorker``: a worker and the ports of its two ingest services."""

    KIND: ClassVar[str] = "worker"
    name: str
    is_enabled: bool
    is_read_only: bool
    loader_host: Host
    loader_port: int
    loader_tmp_dir: str
    http_loader_host: Host
    http_loader_port: int
    http_loader_tmp_dir: str

    @property
    def key(self) -> str:
        return self.name

    def to_json(self) -> Json:
        """``ConfigWorker::toJson`` (hyphenated keys, 0/1 flags)."""
        return {
            "name": self.name,
            "is-enabled": int(self.is_enabled),
            "is-read-only": int(self.is_read_only),
            "loader-host": asdict(self.loader_host),
            "loader-port": self.loader_port,
            "loader-tmp-dir": self.loader_tmp_dir,
            "http-loader-host": asdict(self.http_loader_host),
            "http-loader-port": self.http_loader_port,
            "http-loader-tmp-dir": self.http_loader_tmp_dir,
        }

    def to_doc(self) -> Json:
        return self.to_json()

    @classmethod
    def from_doc(cls, doc: Json) -> Worker:
        return cls(
            name=doc["name"],
            is_enabled=bool(doc["is-enabled"]),
            is_read_only=bool(doc["is-read-only"]),
            loader_host=Host(**doc["loader-host"]),
            loader_port=doc["loader-port"],
            loader_tmp_dir=doc["loader-tmp-dir"],
            http_loader_host=Host(**doc["http-loader-host"]),
            http_loader_port=doc["http-loader-port"],
            http_loader_tmp_dir=doc["http-loader-tmp-dir"],
        )

    def location(self, chunk: int | None = None) -> Json:
        """A worker location as the chunk and regular-table services report it
        (``HttpIngestChunksModule.cc:259-266``, ``HttpIngestModule.cc:1015-1022``)."""
        loc: Json = {} if chunk is None else {"chunk": chunk}
        loc.update(
            worker=self.name,
            host=self.loader_host.addr,
            host_name=self.loader_host.name,
            port=self.loader_port,
            http_host=self.http_loader_host.addr,
            http_host_name=self.http_loader_host.name,
            http_port=self.http_loader_port,
        )
        return loc


@dataclass
class Family:
    """``DatabaseFamilyInfo``: a partitioning layout shared by databases."""

    KIND: ClassVar[str] = "family"
    name: str
    min_replication_level: int
    num_stripes: int
    num_sub_stripes: int
    overlap: float

    @property
    def key(self) -> str:
        return self.name

    def to_json(self) -> Json:
        return asdict(self)

    def to_doc(self) -> Json:
        return self.to_json()

    @classmethod
    def from_doc(cls, doc: Json) -> Family:
        return cls(**doc)


@dataclass
class Database:
    """``DatabaseInfo`` plus the ingest parameters Qserv keeps beside it."""

    KIND: ClassVar[str] = "database"
    name: str
    family_name: str
    is_published: bool = False
    create_time: int = 0
    publish_time: int = 0
    auto_build_secondary_index: bool = True
    ingest_config: Json = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.name

    def to_doc(self) -> Json:
        doc = asdict(self)
        doc["database"] = doc.pop("name")
        return doc

    @classmethod
    def from_doc(cls, doc: Json) -> Database:
        doc = dict(doc)
        return cls(
            name=doc.pop("database"),
            family_name=doc["family_name"],
            is_published=bool(doc["is_published"]),
            create_time=doc["create_time"],
            publish_time=doc["publish_time"],
            auto_build_secondary_index=bool(doc["auto_build_secondary_index"]),
            ingest_config=doc["ingest_config"],
        )


@dataclass(frozen=True)
class DirectorRef:
    """``DirectorTableRef`` (``ConfigTable.cc:40-53``): ``[<db>.]<table>`` and the key column."""

    database_name: str = ""
    table_name: str = ""
    primary_key: str = ""

    @classmethod
    def parse(cls, spec: str, key: str) -> DirectorRef:
        """Split at the first '.', refusing what Qserv's constructor refuses (as ``ValueError``)."""
        db, dot, table = spec.partition(".")
        if not dot:
            db, table = "", spec
        if db and not table:
            raise ValueError(f"DirectorTableRef: invalid database & table spec '{spec}'")
        if table and not key:
            raise ValueError("DirectorTableRef: primary key column name can not be empty")
        return cls(db, table, key)

    @property
    def spec(self) -> str:
        """``databaseTableName()``: ``<db>.<table>``, or the table alone."""
        return f"{self.database_name}.{self.table_name}" if self.database_name else self.table_name

    @property
    def empty(self) -> bool:
        return not (self.database_name or self.table_name or self.primary_key)


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass
class Table:
    """``TableInfo`` (``ConfigTable.h``); its kind follows from the director references as in Qserv."""

    KIND: ClassVar[str] = "table"
    name: str
    database: str
    is_partitioned: bool
    columns: list[Column]
    director: DirectorRef = DirectorRef()
    director2: DirectorRef = DirectorRef()
    flag: str = ""
    ang_sep: float = 0.0
    unique_primary_key: bool = True
    charset_name: str = ""
    collation_name: str = ""
    latitude_key: str = ""
    longitude_key: str = ""
    is_published: bool = False
    create_time: int = 0
    publish_time: int = 0

    @property
    def key(self) -> str:
        return f"{self.database}.{self.name}"

    @property
    def is_director(self) -> bool:
        """``ConfigTable.h:128``."""
        return self.is_partitioned and not self.director.table_name

    @property
    def is_ref_match(self) -> bool:
        """``ConfigTable.h:129-131``."""
        return self.is_partitioned and not self.director.empty and bool(self.director2.table_name)

    @property
    def director_key(self) -> str:
        return self.director.primary_key

    def column_type(self, name: str) -> str | None:
        return next((c.type for c in self.columns if c.name == name), None)

    def to_json(self) -> Json:
        """``TableInfo::toJson`` (``ConfigTable.cc:106-142``)."""
        return {
            "name": self.name,
            "database": self.database,
            "is_published": int(self.is_published),
            "create_time": self.create_time,
            "publish_time": self.publish_time,
            "is_partitioned": int(self.is_partitioned),
            "is_director": int(self.is_director),
            "is_ref_match": int(self.is_ref_match),
            "director_table": self.director.spec,
            "director_database_name": self.director.database_name,
            "director_table_name": self.director.table_name,
            "director_key": self.director.primary_key,
            "director_table2": self.director2.spec,
            "director_database_name2": self.director2.database_name,
            "director_table_name2": self.director2.table_name,
            "director_key2": self.director2.primary_key,
            "flag": self.flag,
            "ang_sep": self.ang_sep,
            "unique_primary_key": int(self.unique_primary_key),
            "charset_name": self.charset_name,
            "collation_name": self.collation_name,
            "latitude_key": self.latitude_key,
            "longitude_key": self.longitude_key,
            "columns": [asdict(c) for c in self.columns],
        }

    def is_dependant_of(self, table: str) -> bool:
        """``TableInfo::isDependantOf`` (``ConfigTable.cc:89-95``)."""
        return table in (self.director.spec, self.director2.spec)

    def to_doc(self) -> Json:
        return self.to_json()

    @classmethod
    def from_doc(cls, doc: Json) -> Table:
        return cls(
            name=doc["name"],
            database=doc["database"],
            is_partitioned=bool(doc["is_partitioned"]),
            columns=[Column(**c) for c in doc["columns"]],
            director=DirectorRef(
                doc["director_database_name"], doc["director_table_name"], doc["director_key"]
            ),
            director2=DirectorRef(
                doc["director_database_name2"], doc["director_table_name2"], doc["director_key2"]
            ),
            flag=doc["flag"],
            ang_sep=doc["ang_sep"],
            unique_primary_key=bool(doc["unique_primary_key"]),
            charset_name=doc["charset_name"],
            collation_name=doc["collation_name"],
            latitude_key=doc["latitude_key"],
            longitude_key=doc["longitude_key"],
            is_published=bool(doc["is_published"]),
            create_time=doc["create_time"],
            publish_time=doc["publish_time"],
        )


@dataclass
class ChunkReplica:
    """Where a chunk of a database lives (``ReplicaInfo``, one chunk, its workers)."""

    KIND: ClassVar[str] = "replica"
    database: str
    chunk: int
    workers: list[str]

    @property
    def key(self) -> str:
        return f"{self.database}/{self.chunk}"

    def to_doc(self) -> Json:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: Json) -> ChunkReplica:
        return cls(**doc)


@dataclass
class TransactionEvent:
    """``TransactionInfo::Event``: one entry of a transaction's log."""

    id: int
    transaction_state: TransactionState
    name: str
    time: int
    data: Json


@dataclass
class Transaction:
    """``TransactionInfo`` (``DatabaseServices.cc:209-224``)."""

    KIND: ClassVar[str] = "trans"
    id: int
    database: str
    state: TransactionState
    begin_time: int
    start_time: int = 0
    transition_time: int = 0
    end_time: int = 0
    context: Json = field(default_factory=dict)
    log: list[TransactionEvent] = field(default_factory=list)

    @property
    def key(self) -> str:
        return str(self.id)

    def to_json(self, include_context: bool = True, include_log: bool = True) -> Json:
        """Qserv reads context and log only when asked (``DatabaseServicesMySQL.cc:1513-1517``)."""
        out = asdict(self)
        if not include_context:
            out["context"] = {}
        if not include_log:
            out["log"] = []
        return out

    def to_doc(self) -> Json:
        return self.to_json()

    @classmethod
    def from_doc(cls, doc: Json) -> Transaction:
        doc = dict(doc)
        doc["state"] = TransactionState(doc["state"])
        doc["log"] = [
            TransactionEvent(**{**e, "transaction_state": TransactionState(e["transaction_state"])})
            for e in doc["log"]
        ]
        return cls(**doc)


@dataclass
class FailedRetry:
    """``TransactionContribInfo::FailedRetry``: what a failed read attempt left behind."""

    num_bytes: int
    num_rows: int
    start_time: int
    read_time: int
    tmp_file: str
    http_error: int
    system_error: int
    error: str


@dataclass
class LoadWarning:
    """One row of ``SHOW WARNINGS`` after a load."""

    level: str
    code: int
    message: str


@dataclass
class Contribution:
    """``TransactionContribInfo`` plus the stand-in's bookkeeping (``stage``)."""

    KIND: ClassVar[str] = "contrib"
    id: int
    transaction_id: int
    worker: str
    database: str
    table: str
    chunk: int
    overlap: bool
    url: str
    charset_name: str
    is_async: bool
    dialect_input: dict[str, str]
    max_num_warnings: int
    max_retries: int = 0
    http_method: str = "GET"
    http_data: str = ""
    http_headers: list[str] = field(default_factory=list)
    num_failed_retries: int = 0
    failed_retries: list[FailedRetry] = field(default_factory=list)
    num_bytes: int = 0
    num_rows: int = 0
    num_rows_loaded: int = 0
    create_time: int = 0
    start_time: int = 0
    read_time: int = 0
    load_time: int = 0
    status: ContribStatus = ContribStatus.IN_PROGRESS
    tmp_file: str = ""
    http_error: int = 0
    system_error: int = 0
    error: str = ""
    retry_allowed: bool = False
    num_warnings: int = 0
    warnings: list[LoadWarning] = field(default_factory=list)
    # the stand-in's own bookkeeping, never shown
    stage: ContribStage = "queued"

    _PRIVATE: ClassVar[tuple[str, ...]] = ("stage",)

    @property
    def key(self) -> str:
        return str(self.id)

    def to_json(self, warnings: bool = True, retries: bool = True, extensions: bool = True) -> Json:
        """``TransactionContribInfo::toJson``; the optional parts are empty unless asked for."""
        out = asdict(self)
        for name in self._PRIVATE:
            del out[name]
        out["async"] = int(out.pop("is_async"))
        out["overlap"] = int(self.overlap)
        out["retry_allowed"] = int(self.retry_allowed)
        if not warnings:
            out["warnings"] = []
        if not retries:
            out["failed_retries"] = []
        if not extensions:
            out["http_headers"] = []
        return out

    def to_doc(self) -> Json:
        return {**self.to_json(), **{name: getattr(self, name) for name in self._PRIVATE}}

    @classmethod
    def from_doc(cls, doc: Json) -> Contribution:
        doc = dict(doc)
        legacy = doc.pop("_internal", None)  # written by stand-ins before the typed records
        if legacy is not None:
            doc["stage"] = legacy.get("stage", "done")
        doc["is_async"] = bool(doc.pop("async"))
        doc["overlap"] = bool(doc["overlap"])
        doc["retry_allowed"] = bool(doc["retry_allowed"])
        doc["status"] = ContribStatus(doc["status"])
        doc["failed_retries"] = [FailedRetry(**r) for r in doc["failed_retries"]]
        doc["warnings"] = [LoadWarning(**w) for w in doc["warnings"]]
        return cls(**doc)


@dataclass
class RowStatsEntry:
    """``TableRowStatsEntry``: rows of one transaction in one chunk (or overlap) of a table."""

    transaction_id: int
    chunk: int
    is_overlap: bool
    num_rows: int
    update_time: int
    worker: str = ""

    def to_json(self) -> Json:
        return {
            "transaction_id": self.transaction_id,
            "chunk": self.chunk,
            "is_overlap": int(self.is_overlap),
            "num_rows": self.num_rows,
            "update_time": self.update_time,
        }


@dataclass
class TableStats:
    """``TableRowStats``: the row counters of a table, as last scanned."""

    KIND: ClassVar[str] = "stats"
    database: str
    table: str
    entries: list[RowStatsEntry] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.database}.{self.table}"

    def to_json(self) -> Json:
        return {
            "database": self.database,
            "table": self.table,
            "entries": [e.to_json() for e in self.entries],
        }

    def to_doc(self) -> Json:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: Json) -> TableStats:
        return cls(doc["database"], doc["table"], [RowStatsEntry(**e) for e in doc["entries"]])


Record = Worker | Family | Database | Table | ChunkReplica | Transaction | Contribution | TableStats

#: Persisted kinds and how to read them back.
RECORD_TYPES: dict[str, type[Record]] = {
    cls.KIND: cls
    for cls in (Worker, Family, Database, Table, ChunkReplica, Transaction, Contribution, TableStats)
}

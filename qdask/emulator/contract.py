"""The stand-in's copy of Qserv's ingest contract constants, typed, in one place.

The client (``qdask.qserv``) keeps its own copy on purpose: the stand-in must not import the client, so
that a shared mistake cannot make both sides agree on something a real Qserv would refuse. Every value
here is Qserv's (commit 5314826); the comments name the source that decides it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal

#: ``http::MetaModule::version`` — the newest API version the services speak.
API_VERSION: Final = 55

#: ``global/constants.h``: the chunk every worker holds empty tables for.
DUMMY_CHUNK: Final = 1234567890

#: ``HttpIngestModule.cc:122-123``: the first column of every table, the MySQL partitioning key.
PARTITION_COLUMN: Final = "qserv_trans_id"
PARTITION_COLUMN_TYPE: Final = "INT NOT NULL"

#: ``global/constants.h``: the special columns of partitioned tables.
CHUNK_COLUMN: Final = "chunkId"
SUB_CHUNK_COLUMN: Final = "subChunkId"

#: ``ConfigDatabase.cc:216``: ``<db>__<table>__rows`` must fit MySQL's 64 characters.
MAX_DATABASE_TABLE_NAME_LENGTH: Final = 64 - len("__") - len("__rows")

#: Worker configuration defaults (``ConfigurationSchema.cc``) the services fall back to.
INGEST_CHARSET: Final = "latin1"
INGEST_COLLATION: Final = "latin1_general_ci"
LOADER_MAX_WARNINGS: Final = 64
INGEST_NUM_RETRIES: Final = 1
INGEST_MAX_RETRIES: Final = 10
ASYNC_LOADER_THREADS: Final = 2

#: The ``instance_id`` the services report (``ServiceProvider::instanceId``).
INSTANCE_ID: Final = "qdask-emulator"

#: The ``database_schema_version`` reported by the controller's ``/meta/version``.
DATABASE_SCHEMA_VERSION: Final = 15


class TransactionState(StrEnum):
    """``TransactionInfo::State`` (``DatabaseServices.h``)."""

    IS_STARTING = "IS_STARTING"
    STARTED = "STARTED"
    IS_FINISHING = "IS_FINISHING"
    IS_ABORTING = "IS_ABORTING"
    FINISHED = "FINISHED"
    ABORTED = "ABORTED"
    START_FAILED = "START_FAILED"
    FINISH_FAILED = "FINISH_FAILED"
    ABORT_FAILED = "ABORT_FAILED"


_S = TransactionState

#: ``TransactionInfo::stateTransitionIsAllowed`` (``DatabaseServices.cc``).
TRANSITIONS: Final[dict[TransactionState, frozenset[TransactionState]]] = {
    _S.IS_STARTING: frozenset({_S.STARTED, _S.START_FAILED, _S.IS_ABORTING}),
    _S.STARTED: frozenset({_S.IS_FINISHING, _S.IS_ABORTING}),
    _S.IS_FINISHING: frozenset({_S.FINISHED, _S.FINISH_FAILED, _S.IS_ABORTING}),
    _S.IS_ABORTING: frozenset({_S.ABORTED, _S.ABORT_FAILED}),
    _S.START_FAILED: frozenset({_S.IS_ABORTING}),
    _S.FINISH_FAILED: frozenset({_S.IS_ABORTING}),
    _S.ABORT_FAILED: frozenset({_S.IS_ABORTING}),
    _S.FINISHED: frozenset(),
    _S.ABORTED: frozenset(),
}

#: States a database may be published in (``HttpIngestModule.cc:312-316``).
CLOSED_STATES: Final = frozenset({_S.FINISHED, _S.ABORTED})


class ContribStatus(StrEnum):
    """``TransactionContribInfo::Status`` (``DatabaseServices.h``)."""

    IN_PROGRESS = "IN_PROGRESS"
    CREATE_FAILED = "CREATE_FAILED"
    START_FAILED = "START_FAILED"
    READ_FAILED = "READ_FAILED"
    LOAD_FAILED = "LOAD_FAILED"
    CANCELLED = "CANCELLED"
    FINISHED = "FINISHED"


class OverlapSelector(StrEnum):
    """``ChunkOverlapSelector`` of the row-counter services."""

    CHUNK_AND_OVERLAP = "CHUNK_AND_OVERLAP"
    CHUNK = "CHUNK"
    OVERLAP = "OVERLAP"


class RowCountersPolicy(StrEnum):
    """``SqlRowStatsJob::StateUpdatePolicy``."""

    DISABLED = "DISABLED"
    ENABLED = "ENABLED"
    FORCED = "FORCED"


class BinaryEncoding(StrEnum):
    """``http::BinaryEncodingMode`` of ``/ingest/data``."""

    HEX = "hex"
    B64 = "b64"
    ARRAY = "array"


#: How far a contribution got on its worker (the stand-in's own bookkeeping, not part of Qserv's JSON).
ContribStage = Literal["queued", "read", "load", "done"]

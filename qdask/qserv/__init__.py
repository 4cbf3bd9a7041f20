"""Access to Qserv: the Replication/Ingest REST client (`client`) and SQL through the czar (`czar`)."""

from qdask.qserv.client import (
    API_VERSION,
    CSV,
    DUMMY_CHUNK,
    TSV,
    Contribution,
    Dialect,
    Location,
    QservClient,
    Transaction,
    VersionInfo,
    WorkerInfo,
    check_contribution,
)
from qdask.qserv.errors import (
    ContributionCheckError,
    QservAuthError,
    QservError,
    QservProtocolError,
    QservTransportError,
    QservVersionError,
    Recovery,
    classify,
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
    "QservAuthError",
    "QservClient",
    "QservError",
    "QservProtocolError",
    "QservTransportError",
    "QservVersionError",
    "Recovery",
    "Transaction",
    "VersionInfo",
    "WorkerInfo",
    "check_contribution",
    "classify",
]

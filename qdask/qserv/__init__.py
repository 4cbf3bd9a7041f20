"""Access to Qserv: the Replication/Ingest REST client and SQL through the czar (`czar`).

The client is split by concept: `models` (the records Qserv's answers are read into), `transport` (HTTP,
envelope, key, versions, retries), `client` (the endpoints), `errors` (what can fail and what to do then).
"""

from qdask.dialect import CSV, TSV, Dialect
from qdask.qserv.client import QservClient
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
from qdask.qserv.models import ContributionInfo, Location, TransactionInfo, VersionInfo, check_contribution
from qdask.qserv.transport import API_VERSION

__all__ = [
    "API_VERSION",
    "CSV",
    "TSV",
    "ContributionCheckError",
    "ContributionInfo",
    "Dialect",
    "Location",
    "QservAuthError",
    "QservClient",
    "QservError",
    "QservProtocolError",
    "QservTransportError",
    "QservVersionError",
    "Recovery",
    "TransactionInfo",
    "VersionInfo",
    "check_contribution",
    "classify",
]

"""The one base of every error a user can cause or meet (bad config, bad input, Qserv refusing, a full disk).

`qdask` prints a `QdaskError` as its message alone and exits with its `exit_code`; any other exception is
a bug in qdask and keeps its traceback. Each module keeps its own error classes (`ConfigError`,
`SchemaError`, `QservError`, ...) and derives them from this one.
"""

from __future__ import annotations


class QdaskError(Exception):
    """An error whose message says what went wrong and what to do; shown to the user as it is."""

    exit_code: int = 1


class QdaskUsageError(QdaskError):
    """The command or its configuration is wrong, and nothing was done (exit 2, as for a usage error)."""

    exit_code = 2


class IngestError(QdaskError, RuntimeError):
    """The ingest stopped; the message says why, and the ledger lets the same command resume (raised by
    the driver, `qdask.ingest`, and its staging run, `qdask.staging_run`)."""

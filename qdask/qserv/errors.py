"""Errors raised by the Qserv client, and the recovery rule the load stage applies to each.

The rules follow `qserv-ingest-api.md`: §1 (envelope: errors come as HTTP 200 with `success=0`),
§6 (contribution statuses and `retry_allowed`) and §2 step 9 ("any communication failure during a
contribution request ⇒ abort"). No message built here ever contains an authorization key: the client
scrubs server text before it reaches these classes, and requests bodies are never quoted.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from qdask.errors import QdaskError

if TYPE_CHECKING:
    from qdask.qserv.models import ContributionInfo


def is_set(flag: Any) -> bool:
    """A Qserv 0/1 flag as a bool: Qserv sends ints (1), JSON readers may hand over "1" or True."""
    return flag is True or str(flag) == "1"


class QservError(QdaskError):
    """Qserv answered `success=0`: `endpoint` is "METHOD /path", `error`/`error_ext` are the server's own."""

    def __init__(self, endpoint: str, error: str, error_ext: Any = None):
        self.endpoint = endpoint
        self.error = error
        self.error_ext = error_ext if error_ext is not None else {}
        super().__init__(endpoint, error, self.error_ext)

    @property
    def retry_allowed(self) -> bool:
        """True only when the server said so (`error_ext.retry_allowed=1`, §6: the table was not touched)."""
        ext = self.error_ext
        return isinstance(ext, dict) and is_set(ext.get("retry_allowed"))

    def __str__(self) -> str:
        ext = f" (error_ext: {self.error_ext})" if self.error_ext else ""
        return f"Qserv {self.endpoint} failed: {self.error}{ext}"


class QservVersionError(QservError):
    """The server's API version window does not contain the version this client speaks (§1)."""


class QservAuthError(QservError):
    """The server refused the authorization key (§1): a configuration problem, never worth retrying."""


class QservProtocolError(QservError):
    """The answer was not a Qserv envelope (non-200 status, not JSON, no `success`): wrong URL or a proxy."""

    def __init__(self, endpoint: str, error: str, status_code: int | None = None):
        super().__init__(endpoint, error, {"status_code": status_code} if status_code is not None else {})
        self.status_code = status_code


class QservTransportError(QservError):
    """The HTTP exchange itself failed (connect, timeout, reset) after the client's own retries.

    `request_sent` is False only when the connection could not be opened, i.e. the server cannot have
    seen the request. Otherwise the outcome is unknown: for a contribution or a commit this means the
    transaction must be aborted and redone (§2 step 9, §6).
    """

    def __init__(self, endpoint: str, error: str, *, request_sent: bool, attempts: int):
        super().__init__(endpoint, error, {"request_sent": request_sent, "attempts": attempts})
        self.request_sent = request_sent
        self.attempts = attempts

    @property
    def outcome_unknown(self) -> bool:
        return self.request_sent


class ContributionCheckError(Exception):
    """A contribution's answer does not prove that exactly the staged rows were loaded (§4.5, §6)."""

    def __init__(self, contribution: ContributionInfo, problems: list[str]):
        self.contribution = contribution
        self.problems = problems
        where = (
            f"contribution id={contribution.id} transaction={contribution.transaction_id} "
            f"table={contribution.table} chunk={contribution.chunk} overlap={contribution.overlap} "
            f"worker={contribution.worker}"
        )
        super().__init__(f"{where}: " + "; ".join(problems))


class Recovery(enum.Enum):
    """What the load stage may do after a failure (see `classify`)."""

    #: §6: `retry_allowed=1` — the destination table was not modified; resend in the same transaction.
    RETRY_IN_TRANSACTION = "retry-in-transaction"
    #: §6 / §2.9: rows may have been loaded (LOAD_FAILED, warnings, row mismatch) or the outcome is
    #: unknown (lost response, timeout, connection reset mid-request): abort the transaction and redo all
    #: of its contributions in a new one.
    ABORT_AND_REDO = "abort-and-redo"
    #: Transport failure of a request the server cannot have acted on (idempotent GET, or a connection
    #: that never opened): wait with backoff and send it again.
    RETRY_WITH_BACKOFF = "retry-with-backoff"
    #: Retrying cannot help (wrong key, version outside the server's window, not a Qserv service):
    #: stop with the message.
    FATAL = "fatal"


#: Statuses a contribution reaches before anything is written into its table: for these Qserv's own
#: `retry_allowed` decides (§6). Past them (LOAD_FAILED) rows may be in, whatever a flag says.
_BEFORE_LOADING = {"CREATE_FAILED", "START_FAILED", "READ_FAILED", "CANCELLED"}


def classify(failure: Exception | ContributionInfo, *, idempotent: bool = False) -> Recovery:
    """Map an exception (or a contribution that did not finish) to the recovery the contract permits.

    `idempotent` says the failed call was a read (GET) with no effect on the server.

    ===========================================================  ======================  ===========
    failure                                                      recovery                contract
    ===========================================================  ======================  ===========
    wrong key, version outside the window                        FATAL                   §1
    connection never opened (any call); transport error of a GET RETRY_WITH_BACKOFF      §1, §8
    lost answer / timeout / reset after the request was sent     ABORT_AND_REDO          §2.9, §6
    `success=0` with `error_ext.retry_allowed=1`                 RETRY_IN_TRANSACTION    §6
    any other `success=0` of a contribution or commit            ABORT_AND_REDO          §6, §5
    CREATE/START/READ_FAILED, CANCELLED: as `retry_allowed` says RETRY_IN_TRANSACTION/   §6
                                                                 ABORT_AND_REDO
    LOAD_FAILED, still IN_PROGRESS                               ABORT_AND_REDO          §6
    FINISHED but warnings or row/byte mismatch (check failed)    ABORT_AND_REDO          §4.5, §6
    ===========================================================  ======================  ===========

    The flag is taken exactly as Qserv sets it. A contribution record carries 1 until loading begins:
    an `/ingest/csv` or `/ingest/data` request sets it before any check (IngestFileHttpSvcMod.cc:101,
    IngestDataHttpSvcMod.cc:120), so CREATE_FAILED and START_FAILED are recorded with 1
    (DatabaseServicesMySQL.cc:1686-1690), and it is cleared before LOAD DATA (IngestFileHttpSvcMod.cc:209);
    a by-reference request records 0 when its context changed and 1 when its temporary file failed
    (IngestRequest.cc:388-431). A synchronous answer carries the flag in `error_ext` only when the failure
    was raised with it (temporary file, read errors: src/http/Exceptions.cc:33-39); Qserv answers other
    refusals with `error_ext` {} (src/http/Module.cc:44-52, FileUploadModule.cc:81-88) even where the
    record says 1 — a transaction that is not active, a chunk not allocated to the worker, a bad dialect —
    and resending those in the same transaction fails the same way, so the answer decides.
    """
    if isinstance(failure, (QservVersionError, QservAuthError)):
        return Recovery.FATAL
    if isinstance(failure, QservTransportError):
        if not failure.request_sent or idempotent:
            return Recovery.RETRY_WITH_BACKOFF
        return Recovery.ABORT_AND_REDO
    if isinstance(failure, QservProtocolError):
        if idempotent and failure.status_code in (429, 502, 503, 504):
            return Recovery.RETRY_WITH_BACKOFF
        return Recovery.FATAL if idempotent else Recovery.ABORT_AND_REDO
    if isinstance(failure, ContributionCheckError):
        return classify(failure.contribution)
    if isinstance(failure, QservError):
        return Recovery.RETRY_IN_TRANSACTION if failure.retry_allowed else Recovery.ABORT_AND_REDO
    status = getattr(failure, "status", None)
    if status is None:
        raise TypeError(f"cannot classify {type(failure).__name__}")
    if status in _BEFORE_LOADING and is_set(getattr(failure, "retry_allowed", 0)):
        return Recovery.RETRY_IN_TRANSACTION
    return Recovery.ABORT_AND_REDO  # LOAD_FAILED, FINISHED with a failed check, IN_PROGRESS, or no flag

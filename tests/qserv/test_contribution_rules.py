"""The contribution success check and the recovery rules of the load stage (contract §4.5, §6).

Contribution records are written as Qserv writes them (src/replica/ingest/TransactionContrib.cc:176 and
the `retry_allowed` cases cited in `errors.classify`).
"""

from __future__ import annotations

import pytest

from qdask.qserv import ContributionCheckError, ContributionInfo, Recovery, check_contribution, classify
from qdask.qserv.errors import (
    QservAuthError,
    QservError,
    QservProtocolError,
    QservTransportError,
    QservVersionError,
)

GOOD = {
    "id": 11, "transaction_id": 7, "worker": "w1", "database": "db1", "table": "Object", "chunk": 57,
    "overlap": 0, "status": "FINISHED", "num_bytes": 1000, "num_rows": 10, "num_rows_loaded": 10,
    "num_warnings": 0, "warnings": [], "retry_allowed": 0, "async": 0,
}  # fmt: skip


TRUNCATED = {"level": "Warning", "code": 1265, "message": "Data truncated for column 'ra' at row 3"}


def contrib(**changes) -> ContributionInfo:
    return ContributionInfo.from_json({**GOOD, **changes})


def test_a_clean_contribution_passes():
    c = contrib()
    assert check_contribution(c, expected_rows=10, expected_bytes=1000) is c


@pytest.mark.parametrize(
    ("changes", "rows", "nbytes", "expected"),
    [
        ({"num_rows_loaded": 9}, 10, 1000, ["num_rows_loaded=9 (rows MariaDB loaded), expected 10"]),
        ({"num_rows": 11, "num_rows_loaded": 11}, 10, 1000,
         ["num_rows=11 (rows parsed by the worker), expected 10",
          "num_rows_loaded=11 (rows MariaDB loaded), expected 10"]),
        ({}, 10, 999, ["num_bytes=1000, expected 999 (the staged file's size)"]),
        ({"num_warnings": 2, "warnings": [TRUNCATED]}, 10, 1000,
         ["num_warnings=2, expected 0 [Warning 1265: Data truncated for column 'ra' at row 3]"]),
        ({"status": "LOAD_FAILED", "error": "MySQL load failed", "num_rows_loaded": 0}, 10, 1000,
         ["status is LOAD_FAILED, expected FINISHED (MySQL load failed)",
          "num_rows_loaded=0 (rows MariaDB loaded), expected 10"]),
    ],
)  # fmt: skip
def test_every_difference_is_named(changes, rows, nbytes, expected):
    c = contrib(**changes)
    with pytest.raises(ContributionCheckError) as err:
        check_contribution(c, expected_rows=rows, expected_bytes=nbytes)
    assert err.value.problems == expected
    assert str(err.value).startswith(
        "contribution id=11 transaction=7 table=Object chunk=57 overlap=0 worker=w1: "
    )
    # loaded-with-problems can only be undone by aborting the whole transaction
    assert classify(err.value) is Recovery.ABORT_AND_REDO


def test_warnings_are_never_success_even_when_counts_match():
    c = contrib(num_warnings=0, warnings=[{"level": "Note", "code": 1366, "message": "x"}])
    with pytest.raises(ContributionCheckError, match="Note 1366"):
        check_contribution(c, 10, 1000)


@pytest.mark.parametrize(
    ("changes", "recovery"),
    [
        # /ingest/csv and /ingest/data set retry_allowed before any check (IngestFileHttpSvcMod.cc:101,
        # IngestDataHttpSvcMod.cc:120), so their refusals are recorded with 1 (DatabaseServicesMySQL.cc:1690)
        ({"status": "CREATE_FAILED", "retry_allowed": 1}, Recovery.RETRY_IN_TRANSACTION),
        ({"status": "START_FAILED", "retry_allowed": 1}, Recovery.RETRY_IN_TRANSACTION),
        # a by-reference request whose context changed before it started (IngestRequest.cc:391-397)
        ({"status": "START_FAILED", "retry_allowed": 0}, Recovery.ABORT_AND_REDO),
        ({"status": "CREATE_FAILED", "retry_allowed": 0}, Recovery.ABORT_AND_REDO),
        ({"status": "READ_FAILED", "retry_allowed": 1}, Recovery.RETRY_IN_TRANSACTION),
        ({"status": "CANCELLED", "retry_allowed": 1}, Recovery.RETRY_IN_TRANSACTION),
        ({"status": "LOAD_FAILED", "retry_allowed": 0}, Recovery.ABORT_AND_REDO),
        # never trust a retry past the start of loading (Qserv clears the flag there: :209)
        ({"status": "LOAD_FAILED", "retry_allowed": 1}, Recovery.ABORT_AND_REDO),
        # a csv upload in progress is recorded with 1 (set at :101, written by the start update,
        # DatabaseServices.cc:283-287): its outcome is unknown all the same
        ({"status": "IN_PROGRESS", "retry_allowed": 1}, Recovery.ABORT_AND_REDO),
        # FINISHED reaches classify only when the check failed (warnings, counts): the rows are in
        ({"status": "FINISHED", "retry_allowed": 1}, Recovery.ABORT_AND_REDO),
    ],
)
def test_contribution_statuses_follow_the_flag_as_qserv_sets_it(changes, recovery):
    assert classify(contrib(**changes)) is recovery


@pytest.mark.parametrize(
    ("flag", "allowed"), [(1, True), ("1", True), (True, True), (0, False), ("0", False), (None, False)]
)
def test_retry_allowed_is_read_as_a_flag(flag, allowed):
    assert contrib(status="READ_FAILED", retry_allowed=flag).retry_allowed is allowed
    assert QservError("POST /ingest/csv", "x", {"retry_allowed": flag}).retry_allowed is allowed


def test_exceptions_map_to_the_contract():
    sent = QservTransportError("POST /ingest/csv", "ReadTimeout", request_sent=True, attempts=1)
    unsent = QservTransportError("POST /ingest/csv", "ConnectError", request_sent=False, attempts=6)
    assert classify(sent) is Recovery.ABORT_AND_REDO
    assert classify(sent, idempotent=True) is Recovery.RETRY_WITH_BACKOFF
    assert classify(unsent) is Recovery.RETRY_WITH_BACKOFF
    assert (
        classify(QservError("POST /ingest/csv", "x", {"retry_allowed": 1})) is Recovery.RETRY_IN_TRANSACTION
    )
    assert (
        classify(QservError("POST /ingest/csv", "transactionId=7 is not active")) is Recovery.ABORT_AND_REDO
    )
    assert classify(QservAuthError("POST /ingest/csv", "authorization key ...")) is Recovery.FATAL
    assert classify(QservVersionError("POST /ingest/csv", "The requested version ...")) is Recovery.FATAL
    assert classify(QservProtocolError("GET /ingest/chunks", "HTTP 503", 503), idempotent=True) is (
        Recovery.RETRY_WITH_BACKOFF
    )
    assert classify(QservProtocolError("POST /ingest/csv", "HTTP 502", 502)) is Recovery.ABORT_AND_REDO
    with pytest.raises(TypeError):
        classify(ValueError("x"))


def test_contribution_parsing_keeps_everything():
    c = contrib(**{"async": 1, "failed_retries": [{"http_error": 500}], "extra_key": "kept"})
    assert c.raw["async"] == 1 and c.raw["failed_retries"] == [{"http_error": 500}]
    assert c.raw["extra_key"] == "kept"
    assert ContributionInfo.from_json({"status": "IN_PROGRESS", "num_rows": None}).num_rows == 0

"""Fixtures shared by the whole suite: a private MariaDB server and the path to the shared test data."""

from __future__ import annotations

from pathlib import Path

import pytest

from qdask.mariadb import PrivateMariaDB

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the checkout; a missing copy fails the test with a clear message."""
    if not (SHARED_DATA / "qserv-itest").is_dir():
        pytest.fail(
            f"the shared test data is missing: expected {SHARED_DATA}/qserv-itest beside the checkout"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def mariadb():
    """A private MariaDB server for the whole test session (root, no password, a free loopback port)."""
    with PrivateMariaDB() as server:
        yield server


@pytest.fixture(scope="session")
def qserv(mariadb):
    """The Qserv stand-in (controller + 3 workers + czar) on the session's private MariaDB.

    See tests/emulator/conftest.py for what it offers; keys are "ingest-key" / "admin-key".
    """
    from qdask.emulator.server import EmulatorThread

    with EmulatorThread(
        mariadb.dsn, workers=3, auth_key="ingest-key", admin_auth_key="admin-key", instance="qserv"
    ) as emulator:
        yield emulator

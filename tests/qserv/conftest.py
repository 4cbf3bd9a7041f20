"""Fixtures for the Qserv client tests: `fake_qserv` (a loopback aiohttp server, see fakeqserv.py), the
stand-in `qserv_standin`, and Qserv's `test101` catalog."""

from __future__ import annotations

import pytest
from fakeqserv import FakeQserv


@pytest.fixture
def fake_qserv():
    server = FakeQserv().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def qserv_standin(mariadb):
    """The Qserv stand-in (controller, 3 workers, czar) on the session MariaDB, namespaced for these tests.

    Has `controller_url`, `auth_key`, `admin_auth_key`, `czar_dsn`, `faults` (see qdask/emulator/faults.py).
    """
    from qdask.emulator.server import EmulatorThread

    with EmulatorThread(
        mariadb.dsn,
        workers=3,
        auth_key="client-test-key",
        admin_auth_key="client-admin-key",
        instance="qclient",
    ) as emulator:
        yield emulator


@pytest.fixture
def test101(shared_data):
    """Qserv's integration catalog test101 (see itest101.py)."""
    return shared_data / "qserv-itest" / "test101"

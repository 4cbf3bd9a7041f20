"""Fixtures for the Qserv client tests: `fake_qserv` (a loopback aiohttp server, see fakeqserv.py)."""

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

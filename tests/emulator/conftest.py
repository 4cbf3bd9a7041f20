"""Fixtures for the Qserv stand-in.

``qserv`` (session scope) is a running :class:`qdask.emulator.server.EmulatorThread` on the session's
private MariaDB (the ``mariadb`` fixture), with 3 workers. Use it from any test::

    def test_something(qserv):
        qserv.controller_url          # "http://127.0.0.1:PORT" — Qserv's controller REST API (v55)
        qserv.worker_urls             # {"worker-1": "http://127.0.0.1:PORT", ...}
        qserv.czar_dsn                # "mysql://qsmaster@127.0.0.1:PORT" — the czar front end (Qserv's SQL)
        qserv.czar_connect("mydb")    # a direct pymysql connection to the czar database "mydb"
        qserv.auth_key, qserv.admin_auth_key   # "ingest-key", "admin-key"
        qserv.faults.add("load_failed", match={"table": "Object", "chunk": 7480})   # see faults.py
        qserv.set_worker_down("worker-2")      # connections refused until set_worker_down(name, False)

The fixture is shared by the whole session: give each test catalog a unique database name. Faults and
worker switches are cleared after every test by the autouse ``_clean_faults`` fixture of this package;
tests elsewhere should call ``qserv.faults.clear()`` themselves when they install faults.
"""

from __future__ import annotations

import pytest

from qdask.emulator.server import EmulatorThread

AUTH_KEY = "ingest-key"
ADMIN_KEY = "admin-key"


@pytest.fixture(scope="session")
def qserv(mariadb):
    """The Qserv stand-in (controller + 3 workers + czar) on the session's private MariaDB."""
    with EmulatorThread(
        mariadb.dsn, workers=3, auth_key=AUTH_KEY, admin_auth_key=ADMIN_KEY, instance="qserv"
    ) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean_faults(request):
    yield
    if "qserv" in request.fixturenames:
        emulator = request.getfixturevalue("qserv")
        emulator.faults.clear()
        for name in list(emulator.faults.down_workers):
            emulator.set_worker_down(name, False)

"""Fixtures shared by the whole suite: a private MariaDB server and the path to the shared test data.

Qserv's integration-test case01 is used by several modules: the `case01` fixture is its data directory,
and a test marked ``@pytest.mark.case01_tables`` runs once per case01 table (its argument `table`).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from qdask.mariadb import PrivateMariaDB

# resolved as configs resolve their paths, so a symlinked ../shared compares equal too
SHARED_DATA = (Path(__file__).resolve().parents[2] / "shared" / "data").resolve()

#: The tables of case01 (its schema/*.schema files, ingest/*.json bodies and *.tsv.gz dumps).
CASE01_TABLES = (
    "Filter",
    "LeapSeconds",
    "Logs",
    "Object",
    "RefSrcMatch",
    "Science_Ccd_Exposure",
    "SimRefObject",
    "Source",
    "sdqa_Metric",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "case01_tables: run the test once per case01 table (argument `table`)")
    # A shell without job control starts background commands with SIGINT ignored, and every process they
    # start inherits that (Python then installs no KeyboardInterrupt handler): the Ctrl-C tests would test
    # how pytest was launched, not what qdask does with a Ctrl-C. Their processes start as a terminal's do.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("case01_tables"):
        metafunc.parametrize("table", CASE01_TABLES)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the checkout; a missing copy fails the test with a clear message."""
    if not (SHARED_DATA / "qserv-itest").is_dir():
        pytest.fail(
            f"the shared test data is missing: expected {SHARED_DATA}/qserv-itest beside the checkout"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def case01(shared_data: Path) -> Path:
    """case01's data directory (fails with a clear message when the shared data are missing)."""
    return shared_data / "qserv-itest" / "case01" / "data"


@pytest.fixture(scope="session")
def case01_tables() -> tuple[str, ...]:
    """The names of case01's tables."""
    return CASE01_TABLES


@pytest.fixture(scope="session")
def one_table_config():
    """A function building the plain data of a small valid config: one regular table read from the files
    `glob` matches (`files` adds file options); keyword arguments replace whole sections."""

    def build(glob: str = "t.tsv", *, files: dict | None = None, **sections: dict) -> dict:
        table = {"name": "T", "kind": "regular", "input": {"files": {"glob": glob, **(files or {})}}}
        return {
            "database": {
                "name": "db",
                "partitioning": {"num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.01},
            },
            "tables": [{**table, "schema": {"infer": True}}],
            "qserv": {"controller": "http://127.0.0.1:25081", "czar": "mysql://qsmaster@127.0.0.1:4040"},
            **sections,
        }

    return build


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

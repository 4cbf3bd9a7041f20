"""Fixtures of the czar tests: Qserv's case01 catalog ingested into the session's stand-in (queried through
its czar front end), the same files loaded by a plain client into a plain database (the reference), and
connections to the front end.

The ingest reuses ``tests/test_ingest_case01.py``'s config helper and the plain load reuses
``tests/faults/conftest.py``'s loader; the reference gains the ``chunkId``/``subChunkId`` columns Qserv's
partitioner adds (Qserv's own integration test precooks them the same way, see query 2100).
"""

from __future__ import annotations

import os

import pymysql
import pytest

from qdask.ingest import Ingest
from qdask.qserv.czar import parse_dsn
from qdask.sky import Chunker
from tests.faults.conftest import ALL_TABLES, PARTITIONED, load_plain
from tests.test_ingest_case01 import case01_config

CZAR_DB = "czar_case01"
PLAIN_DB = "czar_plain_case01"


@pytest.fixture(scope="session")
def czar_case01(qserv, tmp_path_factory):
    """case01 ingested (and verified) into the stand-in as database ``czar_case01``: config, summary."""
    old = os.environ.get("QSERV_AUTH_KEY")
    os.environ["QSERV_AUTH_KEY"] = qserv.auth_key
    try:
        config = case01_config(qserv, tmp_path_factory.mktemp("czar_staging"), CZAR_DB)
        summary = Ingest(config).run()
    finally:
        if old is None:
            os.environ.pop("QSERV_AUTH_KEY", None)
        else:
            os.environ["QSERV_AUTH_KEY"] = old
    return config, summary


@pytest.fixture(scope="session")
def czar_plain(mariadb, shared_data, tmp_path_factory):
    """The case01 dumps in a plain database, with each partitioned row's chunkId/subChunkId."""
    data = shared_data / "qserv-itest" / "case01" / "data"
    name = load_plain(mariadb, data, tmp_path_factory.mktemp("czar_plain"), PLAIN_DB, tables=ALL_TABLES)
    conn = mariadb.connect(name)
    chunker = Chunker(85, 12, 0.0)
    with conn.cursor() as cur:
        for table, (ra, dec, _) in PARTITIONED.items():
            key = "objectId" if table == "Object" else "sourceId"
            cur.execute(f"SELECT {key}, {ra}, {dec} FROM {table}")
            rows = cur.fetchall()
            chunk, sub = chunker.locate([r[1] for r in rows], [r[2] for r in rows])
            cur.execute(f"ALTER TABLE {table} ADD COLUMN chunkId INT, ADD COLUMN subChunkId INT")
            cur.executemany(
                f"UPDATE {table} SET chunkId=%s, subChunkId=%s WHERE {key}=%s",
                [(int(c), int(s), r[0]) for c, s, r in zip(chunk, sub, rows, strict=True)],
            )
    conn.close()
    return name


@pytest.fixture(scope="session")
def czar_connect(qserv):
    """Connections to the stand-in's czar front end (``czar_connect(db)``), as a MySQL client makes them."""

    def connect(database: str | None = None, **options) -> pymysql.connections.Connection:
        dsn = parse_dsn(qserv.czar_dsn)
        return pymysql.connect(
            host=dsn.host, port=dsn.port, user=dsn.user, database=database, autocommit=True, **options
        )

    return connect

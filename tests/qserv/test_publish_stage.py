"""The publish stage against the stand-in, when Qserv does not build the director index at commit
(`auto_build_director_index: false`): whatever an earlier run left — published without an index (killed
in between) or with a partial one (a build that failed on a worker) — the next run ends with the index
holding every director row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from itest101 import lines, table_args

from qdask.qserv import CSV, QservClient, QservError, check_contribution
from qdask.stages.publish import is_published, publish

#: One run of the publish stage, in its own process (so that it can be killed at a fault point).
RUN = """
import os, sys
from qdask.qserv import QservClient
from qdask.stages.publish import publish

url, database = sys.argv[1:3]
with QservClient(url, os.environ["QSERV_AUTH_KEY"]) as qc:
    print(publish(qc, database, directors=["Object"], auto_build_director_index=False))
"""


def load_object(qc: QservClient, test101, database: str) -> tuple[int, str]:
    """`database` with test101's Object chunk 7480 committed, no index built; (rows, worker of the chunk)."""
    path = test101 / "data" / "Object" / "chunk_7480.txt"
    qc.register_database(database, 85, 12, 0.01667, auto_build_secondary_index=False)
    qc.register_table(database, "Object", **table_args(test101 / "table_Object.json"))
    t = qc.begin_transaction(database)
    place = qc.allocate_chunks([7480], transaction_id=t.id)[7480]
    check_contribution(
        qc.ingest_csv(place, t.id, "Object", path, chunk=7480, dialect=CSV), lines(path), path.stat().st_size
    )
    assert qc.commit_transaction(t.id).state == "FINISHED"
    return lines(path), place.worker


def index_rows(mariadb, standin, database: str) -> int | None:
    """Rows of the director index of `database`.Object in the stand-in's `qservMeta`, None if it has none."""
    meta, table = f"{standin.config.instance}_qservMeta", f"{database}__Object"
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
                (meta, table),
            )
            if not cur.fetchall():
                return None
            cur.execute(f"SELECT COUNT(DISTINCT objectId) FROM `{meta}`.`{table}`")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_the_run_after_a_kill_between_publish_and_index_builds_the_index(qserv_standin, test101, mariadb):
    db = "qdask_publish_killed"
    with QservClient(qserv_standin.controller_url, qserv_standin.auth_key) as qc:
        rows, _ = load_object(qc, test101, db)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QDASK_")}
        env.update(QSERV_AUTH_KEY=qserv_standin.auth_key, QDASK_KILL_AT="publish.answered:1")
        killed = subprocess.run(
            [sys.executable, "-c", RUN, qserv_standin.controller_url, db],
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
        assert is_published(qc, db) and index_rows(mariadb, qserv_standin, db) is None  # died in between

        del env["QDASK_KILL_AT"]
        rerun = subprocess.run(
            [sys.executable, "-c", RUN, qserv_standin.controller_url, db],
            env=env,
            capture_output=True,
            timeout=300,
        )
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert rerun.stdout.decode().strip() == str(
        [f"database {db} was already published", "director index of Object built"]
    )
    assert index_rows(mariadb, qserv_standin, db) == rows


def test_a_partial_index_from_a_failed_build_is_rebuilt_by_the_next_run(qserv_standin, test101, mariadb):
    db = "qdask_publish_partial"
    with QservClient(qserv_standin.controller_url, qserv_standin.auth_key, retries=0) as qc:
        rows, worker = load_object(qc, test101, db)
        qc.publish_database(db)
        qserv_standin.set_worker_down(worker)  # the worker holding every Object row
        try:
            with pytest.raises(QservError, match="index creation failed"):
                publish(qc, db, directors=["Object"], auto_build_director_index=False)
        finally:
            qserv_standin.set_worker_down(worker, False)
        assert index_rows(mariadb, qserv_standin, db) == 0  # the index table exists, without the rows

        notes = publish(qc, db, directors=["Object"], auto_build_director_index=False)
        assert index_rows(mariadb, qserv_standin, db) == rows
        # a further run finds everything in place and leaves it complete
        assert publish(qc, db, directors=["Object"], auto_build_director_index=False) == notes
    assert index_rows(mariadb, qserv_standin, db) == rows
    assert notes == [f"database {db} was already published", "director index of Object built"]

"""The whole ingest workflow through `QservClient` against the Qserv stand-in on real MariaDB.

Data: Qserv's own `test101` catalog (genuine partitioner output: Object chunk 7480 + overlaps, Source chunk
7480, the regular table Filter), registered with the REST bodies Qserv ships for it. The test drives the
contract's steps in order (§2) and ends by counting rows through the czar.
"""

from __future__ import annotations

import logging

import pytest
from itest101 import lines, table_args

from qdask.qserv import (
    CSV,
    TSV,
    ContributionCheckError,
    QservAuthError,
    QservClient,
    QservError,
    Recovery,
    check_contribution,
    classify,
)
from qdask.qserv.czar import Czar


def test_full_workflow(qserv_standin, test101, caplog):
    db = "qdask_test101"
    data = test101 / "data"
    ingest = {
        # (table, chunk, overlap, file, dialect)
        ("Object", 7480, False): data / "Object" / "chunk_7480.txt",
        ("Object", 7480, True): data / "Object" / "chunk_7480_overlap.txt",
        ("Object", 7310, True): data / "Object" / "chunk_7310_overlap.txt",
        ("Source", 7480, False): data / "Source" / "chunk_7480.txt",
    }
    caplog.set_level(logging.WARNING, logger="qdask.qserv")
    with QservClient(qserv_standin.controller_url, qserv_standin.auth_key) as qc:
        assert qc.check_version().version >= 55

        qc.register_database(db, 85, 12, 0.01667)
        for name in ("Object", "Source", "Filter"):  # director first
            qc.register_table(db, name, **table_args(test101 / f"table_{name}.json"))
        assert sorted(t["name"] for t in qc.list_tables(db)) == ["Filter", "Object", "Source"]

        # a transaction that is aborted: its rows must not survive
        doomed = qc.begin_transaction(db, context={"run": "test", "purpose": "abort"})
        locs = qc.allocate_chunks([7480], transaction_id=doomed.id)
        c = qc.ingest_csv(
            locs[7480], doomed.id, "Source", ingest[("Source", 7480, False)], chunk=7480, dialect=CSV
        )
        check_contribution(
            c, lines(ingest[("Source", 7480, False)]), ingest[("Source", 7480, False)].stat().st_size
        )
        assert qc.abort_transaction(doomed.id).state == "ABORTED"

        t = qc.begin_transaction(db, context={"run": "test"})
        assert t.state == "STARTED"
        locs = qc.allocate_chunks([7480, 7310], transaction_id=t.id)
        assert locs == qc.allocate_chunks([7310, 7480], database=db)  # allocation is sticky

        for (table, chunk, overlap), path in ingest.items():
            c = qc.ingest_csv(locs[chunk], t.id, table, path, chunk=chunk, overlap=overlap, dialect=CSV)
            check_contribution(c, lines(path), path.stat().st_size)
            assert (c.transaction_id, c.table, c.chunk, c.overlap, c.worker) == (
                t.id,
                table,
                chunk,
                int(overlap),
                locs[chunk].worker,
            )

        regular = qc.regular_locations(transaction_id=t.id)
        assert sorted(loc.worker for loc in regular) == sorted(qserv_standin.worker_urls)
        for loc in regular:  # a regular table goes to every worker
            c = qc.ingest_csv(loc, t.id, "Filter", data / "Filter.csv", dialect=TSV)
            check_contribution(c, 9, (data / "Filter.csv").stat().st_size)

        # what the controller knows about the transaction's contributions
        seen = qc.get_transaction(t.id, contributions=True, include_context=True)
        assert seen.context == {"run": "test"}
        assert len(seen.contributions) == len(ingest) + len(regular)
        assert all(x.status == "FINISHED" for x in seen.contributions)

        assert qc.commit_transaction(t.id).state == "FINISHED"
        states = {x.id: x.state for x in qc.list_transactions(db)}
        assert states == {doomed.id: "ABORTED", t.id: "FINISHED"}

        published = qc.publish_database(db)
        assert published["is_published"]

        czar = Czar(qserv_standin.czar_dsn)
        assert czar.count(db, "Object") == lines(ingest[("Object", 7480, False)])
        assert czar.count(db, "Source") == lines(ingest[("Source", 7480, False)])  # the aborted copy is gone
        assert czar.count(db, "Filter") == 9
        ids = sorted(
            int(line.split(b",")[0]) for line in ingest[("Object", 7480, False)].read_bytes().splitlines()
        )
        with czar.query(f"SELECT objectId FROM `{db}`.`Object` ORDER BY objectId") as rows:
            assert rows.columns == ["objectId"]
            assert [r[0] for r in rows] == ids  # each director row exactly once, no overlap copies
    # every request carried the version, so the server never warned about it (or anything else)
    assert [r.getMessage() for r in caplog.records if r.name == "qdask.qserv"] == []


def test_contract_errors_from_the_standin(qserv_standin, test101, tmp_path):
    db = "qdask_errors"
    qc = QservClient(qserv_standin.controller_url, qserv_standin.auth_key, retries=1, backoff=0.01)
    wrong = QservClient(qserv_standin.controller_url, "not-the-key", retries=0)
    with qc, wrong:
        with pytest.raises(QservAuthError) as err:
            wrong.register_database(db, 85, 12, 0.01667)
        assert "not-the-key" not in str(err.value)
        assert classify(err.value) is Recovery.FATAL

        with pytest.raises(QservError, match="no such database") as err:
            qc.begin_transaction("qdask_nope")
        assert err.value.endpoint == "POST /ingest/trans"

        qc.register_database(db, 85, 12, 0.01667)
        with pytest.raises(QservError, match="already exists"):
            qc.register_database(db, 85, 12, 0.01667)
        qc.register_table(db, "Object", **table_args(test101 / "table_Object.json"))
        t = qc.begin_transaction(db)
        loc = qc.allocate_chunks([7480], transaction_id=t.id)[7480]

        # a file with a short row and a non-number: loaded with warnings, which are never success
        bad = tmp_path / "bad.txt"
        good_line = (test101 / "data" / "Object" / "chunk_7480.txt").read_text().splitlines()[0]
        bad.write_text(
            good_line + "\n" + "1,2,3\n" + good_line.replace(good_line.split(",")[2], "abc", 1) + "\n"
        )
        c = qc.ingest_csv(loc, t.id, "Object", bad, chunk=7480, dialect=CSV)
        assert c.status == "FINISHED" and c.num_warnings > 0
        with pytest.raises(ContributionCheckError, match="num_warnings=") as check:
            check_contribution(c, 3, bad.stat().st_size)
        assert classify(check.value) is Recovery.ABORT_AND_REDO

        # a worker that does not own the chunk refuses it
        others = [loc2 for loc2 in qc.regular_locations(database=db) if loc2.worker != loc.worker]
        with pytest.raises(QservError, match="not allocated to worker"):
            qc.ingest_csv(others[0], t.id, "Object", bad, chunk=7480, dialect=CSV)

        assert qc.abort_transaction(t.id).state == "ABORTED"
        with pytest.raises(QservError, match="is not active"):
            qc.ingest_csv(loc, t.id, "Object", bad, chunk=7480, dialect=CSV)
        with pytest.raises(QservError, match="can't be ended at this time"):
            qc.commit_transaction(t.id)


def test_director_index_is_built_after_publishing(qserv_standin, test101):
    """With auto-build off, commits build no index; the index needs the database published first."""
    db = "qdask_post"
    path = test101 / "data" / "Object" / "chunk_7480.txt"
    with QservClient(qserv_standin.controller_url, qserv_standin.auth_key) as qc:
        qc.register_database(db, 85, 12, 0.01667, auto_build_secondary_index=False)
        qc.register_table(db, "Object", **table_args(test101 / "table_Object.json"))
        t = qc.begin_transaction(db)
        loc = qc.allocate_chunks([7480], transaction_id=t.id)[7480]
        check_contribution(
            qc.ingest_csv(loc, t.id, "Object", path, chunk=7480, dialect=CSV), 1000, path.stat().st_size
        )
        assert qc.commit_transaction(t.id).secondary_index_build_success is False  # auto-build is off
        with pytest.raises(QservError, match="is not published"):
            qc.build_director_index(db, "Object")
        assert not qc.database_info(db)["is_published"]
        assert qc.publish_database(db)["is_published"]
        assert qc.database_info(db)["is_published"]

        qc.build_director_index(db, "Object")
        with pytest.raises(QservError):  # rebuild=0 refuses an existing index
            qc.build_director_index(db, "Object")
        qc.build_director_index(db, "Object", rebuild=True)


def test_one_client_shared_by_upload_threads(qserv_standin, test101):
    """As in the load stage: several threads share one client and upload into one transaction at once."""
    from concurrent.futures import ThreadPoolExecutor

    db = "qdask_threads"
    data = test101 / "data"
    jobs = [
        ("Object", 7480, False, data / "Object" / "chunk_7480.txt"),
        ("Object", 7480, True, data / "Object" / "chunk_7480_overlap.txt"),
        ("Object", 7310, True, data / "Object" / "chunk_7310_overlap.txt"),
        ("Source", 7480, False, data / "Source" / "chunk_7480.txt"),
    ]
    qc = QservClient(qserv_standin.controller_url, qserv_standin.auth_key)
    with qc:
        qc.register_database(db, 85, 12, 0.01667)
        for name in ("Object", "Source", "Filter"):
            qc.register_table(db, name, **table_args(test101 / f"table_{name}.json"))
        t = qc.begin_transaction(db)
        locs = qc.allocate_chunks([7480, 7310], transaction_id=t.id)
        regular = qc.regular_locations(database=db)

        def chunk_job(job):
            table, chunk, overlap, path = job
            c = qc.ingest_csv(locs[chunk], t.id, table, path, chunk=chunk, overlap=overlap, dialect=CSV)
            return check_contribution(c, lines(path), path.stat().st_size)

        def regular_job(loc):
            c = qc.ingest_csv(loc, t.id, "Filter", data / "Filter.csv", dialect=TSV)
            return check_contribution(c, 9, (data / "Filter.csv").stat().st_size)

        with ThreadPoolExecutor(4) as pool:
            done = list(pool.map(chunk_job, jobs)) + list(pool.map(regular_job, regular))
        assert len({c.id for c in done}) == len(jobs) + len(regular)
        assert len(qc._clients) > 1  # the threads each used their own connection pool
        qc.commit_transaction(t.id)
        qc.publish_database(db)
        czar = Czar(qserv_standin.czar_dsn)
        assert (czar.count(db, "Object"), czar.count(db, "Source"), czar.count(db, "Filter")) == (
            lines(jobs[0][3]),
            lines(jobs[3][3]),
            9,
        )

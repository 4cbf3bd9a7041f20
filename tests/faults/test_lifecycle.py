"""Verify before publish, `qdask drop`, the staging lock and refusals up front, on real processes.

A row Qserv holds that the ledger does not know (an extra contribution slipped into the run's own open
transaction while it is held before its commit) stops the run before publishing, with the chunk and
transaction named; `qdask drop` then deletes the unpublished database and the same `qdask ingest` loads it
exactly. A published database is refused to a new run up front, and deleted only with `--published`
and the administrator's key. A second run on one staging directory refuses at once, naming the holder;
a SIGKILLed holder does not block the next run.
"""

from __future__ import annotations

import os
import signal
import socket

from qdask.ledger import Ledger
from qdask.qserv import QservClient
from tests.faults.conftest import Runner, write_case01
from tests.faults.test_ownership import Background, _clean, _exact


def _client(qserv) -> QservClient:
    return QservClient(qserv.controller_url, qserv.auth_key)


def test_counters_stop_publish_then_drop_and_reload(qserv, truth, tmp_path, runner):
    database = "own_counters"
    staging = tmp_path / "staging"
    config = write_case01(tmp_path / "case01.yaml", qserv, staging, database)
    run = Background(runner, config, kill_at="commit.sending:1", mode="hold")
    run.wait_held("commit.sending")
    tid = int((runner.fault_dir / "kills.log").read_text().split()[-1])
    with Ledger(staging / "ledger.sqlite") as ledger:
        (open_,) = [t for t in ledger.transactions() if t.transaction_id == tid]
        files = {f.key: f for f in ledger.chunk_files()}
    key = next(k for k in open_.files if k.table == "Object" and not k.overlap)
    extra = files[key]
    with _client(qserv) as client:  # a second copy of one chunk file, inside the run's own transaction
        where = client.allocate_chunks([key.chunk_id], transaction_id=tid)[key.chunk_id]
        client.ingest_csv(where, tid, "Object", extra.path, chunk=key.chunk_id, charset_name="latin1")
    run.release()
    stopped = run.outcome()
    assert stopped.returncode == 1, stopped.output[-3000:]
    _clean(stopped)
    assert "verification before publish failed" in stopped.output
    where = f"Object chunk {key.chunk_id} transaction {tid}"
    assert f"{where}: Qserv holds {2 * extra.rows} row(s), the ledger {extra.rows}" in stopped.output
    with _client(qserv) as client:
        assert not client.database_info(database)["is_published"]

    dropped = runner.run("drop", str(config), "--yes")
    assert dropped.returncode == 0, dropped.output
    with _client(qserv) as client:
        assert client.database_info(database) is None
    again = runner.ingest(config)
    assert again.returncode == 0, again.output[-3000:]
    assert _exact(qserv, truth, config, database) == []

    # published: a new run (another staging directory) is refused before it stages anything
    other = write_case01(tmp_path / "b" / "case01.yaml", qserv, tmp_path / "b" / "staging", database)
    refused = runner.ingest(other)
    assert refused.returncode == 1 and "is already published" in refused.output, refused.output[-3000:]
    _clean(refused)
    assert not (tmp_path / "b" / "staging" / "contributions").exists()

    # drop of a published database: only with --published, and only with the admin key
    no_flag = runner.run("drop", str(config), "--yes")
    assert no_flag.returncode == 2 and "--published" in no_flag.output, no_flag.output
    key_env = runner.env.pop("QSERV_ADMIN_AUTH_KEY")
    try:
        no_key = runner.run("drop", str(config), "--yes", "--published")
    finally:
        runner.env["QSERV_ADMIN_AUTH_KEY"] = key_env
    assert no_key.returncode == 2 and "QSERV_ADMIN_AUTH_KEY" in no_key.output, no_key.output
    with _client(qserv) as client:
        assert client.database_info(database)["is_published"]
    done = runner.run("drop", str(config), "--yes", "--published")
    assert done.returncode == 0, done.output
    with _client(qserv) as client:
        assert client.database_info(database) is None


def test_staging_lock_refuses_a_second_run_and_dies_with_its_holder(qserv, truth, tmp_path, runner):
    """Run 1 holds its staging directory (held after planning); run 2 on the same directory refuses at
    once, naming run 1's pid and host. Run 1 is then SIGKILLed (its whole process group, as a lost pod):
    its lock file stays, its lock does not, and run 3 resumes and finishes exactly."""
    database = "own_lock"
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", database)
    first = Background(runner, config, kill_at="plan.recorded:1", mode="hold")
    first.wait_held("plan.recorded")
    holder = int((runner.fault_dir / "kills.log").read_text().split()[0])
    second = Runner(qserv, tmp_path / "second").ingest(config)
    assert second.returncode == 1, second.output[-3000:]
    _clean(second)
    assert "is in use by another qdask process" in second.output
    assert f"pid {holder} on host {socket.gethostname()}" in second.output
    assert not (tmp_path / "staging" / "shards").exists()  # refused before any staging work

    os.killpg(holder, signal.SIGKILL)
    assert first.outcome().killed
    assert (tmp_path / "staging" / "ledger.sqlite.lock").exists()
    third = Runner(qserv, tmp_path / "third").ingest(config)
    assert third.returncode == 0, third.output[-3000:]
    assert _exact(qserv, truth, config, database) == []

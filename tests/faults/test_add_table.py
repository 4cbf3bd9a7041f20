"""Tables added to a published catalog by Qserv's path (`qdask.extend`), on real processes, the stand-in and
MariaDB: un-publish with the admin key, register and load only the new tables, publish again.

A catalog of Object and Filter is ingested and published; the config then gains Source (a child of the
published Object) and LeapSeconds (a regular table). Without ``--published``, or without the admin key,
the run is refused at once (exit 2, one message, nothing recorded or sent). With both it loads the new
tables only: every table equals the plain load, and the published tables' transactions, contributions,
worker tables, director index and czar tables are exactly as they were. A run killed right after the
un-publish resumes with the same command and ends published, every row once. New input files of a
published table are refused up front: Qserv cannot append rows to a published table.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import yaml

from qdask.ledger import Ledger
from qdask.qserv import QservClient
from qdask.qserv.czar import quote_identifier, quote_qualified
from tests.faults.conftest import CONFIGS, Runner, write_case01
from tests.faults.test_ownership import _clean, _exact

OLD = ["Object", "Filter"]
ADDED = ["Source", "LeapSeconds"]


def _client(qserv) -> QservClient:
    return QservClient(qserv.controller_url, qserv.auth_key)


def _info(qserv, database: str) -> dict:
    """Qserv's database object of `database` (registered)."""
    with _client(qserv) as client:
        info = client.database_info(database)
    assert info is not None, database
    return info


def _fingerprint(ledger: Ledger) -> str:
    run = ledger.run()
    assert run is not None
    return run.fingerprint


def _tables(qserv, database: str) -> dict[str, tuple[bool, int]]:
    """Qserv's tables of `database`: name → (published, publish time)."""
    info = _info(qserv, database)
    return {t["name"]: (bool(t["is_published"]), t["publish_time"]) for t in info["tables"]}


def _contributions(qserv, database: str) -> Counter:
    """Qserv's own count of contributions per (table, transaction) of `database`."""
    found: Counter = Counter()
    with _client(qserv) as client:
        for t in client.list_transactions(database):
            for c in client.get_transaction(t.id, contributions=True).contributions:
                found[(c.table, t.id)] += 1
    return found


def _snapshot(qserv, mariadb, database: str, tables: list[str]) -> dict[str, object]:
    """What publishing must leave alone of `tables`: each worker table's checksum and creation time (a
    table de-partitioned or rebuilt again is created anew), the director index's, and the czar tables'
    definitions (marked by `_mark_czar`)."""
    conn = mariadb.connect()
    seen: dict[str, object] = {}

    def created(schema: str, name: str) -> object:
        cur.execute(
            "SELECT CREATE_TIME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
            (schema, name),
        )
        return cur.fetchone()[0]

    try:
        with conn.cursor() as cur:
            for i in range(1, len(qserv.worker_urls) + 1):
                wdb = f"{qserv.config.instance}_w{i}__{database}"
                cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (wdb,))
                for (name,) in cur.fetchall():
                    if any(name == t or name.startswith((f"{t}_", f"{t}FullOverlap_")) for t in tables):
                        cur.execute(f"CHECKSUM TABLE {quote_qualified(wdb, name)}")
                        seen[f"{wdb}.{name}"] = (cur.fetchone()[1], created(wdb, name))
            meta = f"{qserv.config.instance}_qservMeta"
            index = quote_qualified(meta, f"{database}__Object")
            cur.execute(f"CHECKSUM TABLE {index}")
            seen["director index"] = (cur.fetchone()[1], created(meta, f"{database}__Object"))
            cur.execute(f"SELECT COUNT(*) FROM {index}")
            seen["director index rows"] = cur.fetchone()[0]
            for t in tables:
                cur.execute(f"SHOW CREATE TABLE {quote_qualified(database, t)}")
                seen[f"czar {t}"] = cur.fetchone()[1]
    finally:
        conn.close()
    assert len(seen) > 2 * len(tables) + 2, seen  # worker tables found
    return seen


def _mark_czar(mariadb, database: str, tables: list[str]) -> None:
    """A comment on the czar's tables of `tables`: a publish that rebuilds them drops it."""
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            for t in tables:
                cur.execute(f"ALTER TABLE {quote_qualified(database, t)} COMMENT = 'published before'")
    finally:
        conn.close()


def _write(path: Path, qserv, staging: Path, database: str, tables: list[str], **settings) -> Path:
    """case01's `tables` (`write_case01`), with `settings` of its `database:`."""
    path = write_case01(path, qserv, staging, database, tables=tables)
    raw = yaml.safe_load(path.read_text())
    raw["database"].update(settings)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _first_catalog(qserv, runner, tmp_path: Path, database: str, **settings) -> tuple[Path, Path]:
    """Object and Filter ingested and published; returns the staging directory and the grown config."""
    staging = tmp_path / "staging"
    first = _write(tmp_path / "old.yaml", qserv, staging, database, OLD, **settings)
    done = runner.ingest(first)
    assert done.returncode == 0, done.output[-3000:]
    assert _tables(qserv, database).keys() == set(OLD)
    grown = _write(tmp_path / "grown.yaml", qserv, staging, database, OLD + ADDED, **settings)
    return staging, grown


def _refused(outcome, *needles: str) -> None:
    """Exit 2 (usage), one message naming `needles`, no traceback."""
    assert outcome.returncode == 2, outcome.output[-3000:]
    _clean(outcome)
    for needle in needles:
        assert needle in outcome.output, outcome.output[-3000:]
    assert outcome.output.count("Nothing was staged or sent") == 1, outcome.output[-3000:]


def test_tables_added_to_a_published_catalog(qserv, mariadb, truth, tmp_path, runner):
    database = "add_tables"
    staging, grown = _first_catalog(qserv, runner, tmp_path, database)
    tables, contributions = _tables(qserv, database), _contributions(qserv, database)
    _mark_czar(mariadb, database, OLD)
    before = _snapshot(qserv, mariadb, database, OLD)
    with Ledger(staging / "ledger.sqlite") as ledger:
        fingerprint, units = _fingerprint(ledger), len(ledger.units())

    # refused up front: no --published; then --published without the admin key
    no_flag = runner.ingest(grown)
    _refused(no_flag, f"database {database} is published", "re-run with --published", "$QSERV_ADMIN_AUTH_KEY")
    key = runner.env.pop("QSERV_ADMIN_AUTH_KEY")
    try:
        no_key = runner.run("ingest", str(grown), "--published")
        runner.env["QSERV_ADMIN_AUTH_KEY"] = "not-the-admin-key"
        wrong_key = runner.run("ingest", str(grown), "--published")
    finally:
        runner.env["QSERV_ADMIN_AUTH_KEY"] = key
    _refused(no_key, "administrator's key", "set $QSERV_ADMIN_AUTH_KEY")
    _refused(wrong_key, f"the Qserv controller at {qserv.controller_url} refused the administrator's key")
    assert _tables(qserv, database) == tables  # nothing sent: still published, no table registered
    with Ledger(staging / "ledger.sqlite") as ledger:  # nothing recorded either
        assert (_fingerprint(ledger), len(ledger.units())) == (fingerprint, units)

    added = runner.run("ingest", str(grown), "--published")
    assert added.returncode == 0, added.output[-3000:]
    _clean(added)
    assert f"database {database} un-published to add table(s)" in added.output
    assert _exact(qserv, truth, grown, database) == []
    after = _tables(qserv, database)
    assert after.keys() == set(OLD + ADDED) and all(published for published, _ in after.values())
    assert {t: after[t] for t in OLD} == tables  # published once, never again
    grown_by = _contributions(qserv, database) - contributions
    assert _contributions(qserv, database) & contributions == contributions  # the old ones, all kept
    assert {table for table, _ in grown_by} == set(ADDED)  # nothing of Object or Filter sent again
    assert _snapshot(qserv, mariadb, database, OLD) == before
    assert _info(qserv, database)["is_published"]

    again = runner.run("ingest", str(grown), "--published")  # nothing left: no un-publish, no change
    assert again.returncode == 0, again.output[-3000:]
    assert "un-published" not in again.output
    assert _contributions(qserv, database) == contributions + grown_by


def test_killed_after_unpublish_resumes_published(qserv, mariadb, truth, tmp_path, runner):
    """Killed right after the un-publish; meanwhile a run from another staging directory is refused (the
    catalog's transactions name their owner); the same command resumes. The director index is built by
    qdask after publishing here (`auto_build_director_index: false`): Object's, built by the first publish,
    is not built again."""
    database = "add_tables_kill"
    _, grown = _first_catalog(qserv, runner, tmp_path, database, auto_build_director_index=False)
    contributions = _contributions(qserv, database)
    _mark_czar(mariadb, database, OLD)
    before = _snapshot(qserv, mariadb, database, OLD)
    killed = runner.run("ingest", str(grown), "--published", kill_at="unpublish.answered:1")
    assert killed.killed and any("unpublish.answered" in f for f in killed.fired), killed.output[-3000:]
    assert not _info(qserv, database)["is_published"]
    assert all(_tables(qserv, database)[t][0] for t in OLD)  # un-publishing leaves the tables published

    # while it is unpublished, a run from another staging directory is refused by the ownership rule
    other = _write(tmp_path / "b" / "grown.yaml", qserv, tmp_path / "b" / "staging", database, OLD + ADDED)
    intruder = Runner(qserv, tmp_path / "intruder").run("ingest", str(other), "--published")
    assert intruder.returncode == 1, intruder.output[-3000:]
    _clean(intruder)
    assert f"database {database} is being loaded by another run" in intruder.output
    assert not (tmp_path / "b" / "staging" / "contributions").exists()  # refused before staging
    assert _contributions(qserv, database) == contributions

    resumed = Runner(qserv, tmp_path / "resumed").run("ingest", str(grown), "--published")
    assert resumed.returncode == 0, resumed.output[-3000:]
    _clean(resumed)
    assert _exact(qserv, truth, grown, database) == []
    assert _info(qserv, database)["is_published"]
    assert _contributions(qserv, database) & contributions == contributions
    assert {table for table, _ in _contributions(qserv, database) - contributions} == set(ADDED)
    assert _snapshot(qserv, mariadb, database, OLD) == before


def test_new_files_of_a_published_table_are_refused(qserv, mariadb, truth, tmp_path, runner):
    """Qserv cannot append rows to a published table: a file added to a published table's input is
    refused before anything is recorded or sent, also with --published and the admin key."""
    database = "add_tables_append"
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(
        (CONFIGS / "../../shared/data/qserv-itest/case01/data/Filter.tsv.gz").resolve(),
        data / "Filter.tsv.gz",
    )
    config = _write(tmp_path / "filter.yaml", qserv, tmp_path / "staging", database, ["Object", "Filter"])
    raw = yaml.safe_load(config.read_text())
    (filter_table,) = [t for t in raw["tables"] if t["name"] == "Filter"]
    filter_table["input"]["files"]["glob"] = str(data / "Filter*.tsv.gz")
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    done = runner.ingest(config)
    assert done.returncode == 0, done.output[-3000:]
    with _client(qserv) as client:
        transactions = client.list_transactions(database)
    with Ledger(tmp_path / "staging" / "ledger.sqlite") as ledger:
        units = len(ledger.units())

    shutil.copy(data / "Filter.tsv.gz", data / "Filter_more.tsv.gz")
    refused = runner.run("ingest", str(config), "--published")
    assert refused.returncode == 2, refused.output[-3000:]
    _clean(refused)
    says = "table(s) Filter of database add_tables_append are published in Qserv"
    assert refused.output.count(says) == 1 and "cannot append rows to a published table" in refused.output
    assert _info(qserv, database)["is_published"]
    with _client(qserv) as client:
        assert client.list_transactions(database) == transactions
    with Ledger(tmp_path / "staging" / "ledger.sqlite") as ledger:
        assert len(ledger.units()) == units
    conn = mariadb.connect(database)  # the published rows, as they were
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {quote_identifier('Filter')}")
        assert cur.fetchone()[0] == sum(truth.rows["Filter"].values())
    conn.close()

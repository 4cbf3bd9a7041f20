"""End to end on Qserv's own case01 data: `qdask ingest` into the stand-in equals a plain MariaDB load."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from qdask.cli import main
from qdask.config import config_from_dict
from qdask.ingest import Ingest
from tests.faults.conftest import ALL_TABLES, load_plain
from tests.faults.conftest import _columns as columns_of
from tests.faults.conftest import _rows as rows_of

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def case01_config(qserv, staging: Path, database: str):
    """configs/case01.yaml pointed at the stand-in, a staging directory and a database name of the test's."""
    raw = yaml.safe_load((CONFIGS / "case01.yaml").read_text())
    raw["database"]["name"] = database
    raw["qserv"]["controller"] = qserv.controller_url
    raw["qserv"]["czar"] = qserv.czar_dsn
    raw["staging"] = {"directory": str(staging)}
    raw["cluster"] = {"kind": "local", "workers": 2, "memory_per_worker": "2GiB"}
    return config_from_dict(raw, CONFIGS)


@pytest.fixture(scope="module")
def auth_env(qserv):
    old = os.environ.get("QSERV_AUTH_KEY")
    os.environ["QSERV_AUTH_KEY"] = qserv.auth_key
    yield
    if old is None:
        os.environ.pop("QSERV_AUTH_KEY", None)
    else:
        os.environ["QSERV_AUTH_KEY"] = old


@pytest.fixture(scope="module")
def plain_case01(mariadb, shared_data, tmp_path_factory):
    """The case01 TSV files loaded by a plain client into a plain database, Qserv's own itest reference."""
    data = shared_data / "qserv-itest" / "case01" / "data"
    return load_plain(mariadb, data, tmp_path_factory.mktemp("plain"), "plain_case01", tables=ALL_TABLES)


@pytest.fixture(scope="module")
def ingested(qserv, auth_env, tmp_path_factory):
    config = case01_config(qserv, tmp_path_factory.mktemp("staging"), "qdask_case01")
    summary = Ingest(config).run()
    return config, summary


def _rows(mariadb, database: str, table: str, columns: list[str]) -> list[tuple]:
    return sorted(rows_of(mariadb, database, table, columns), key=repr)


def test_every_table_equals_a_plain_mariadb_load(ingested, plain_case01, mariadb):
    config, summary = ingested
    assert summary.verify is not None and summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    for table in ALL_TABLES:
        columns = columns_of(mariadb, plain_case01, table)
        expected = _rows(mariadb, plain_case01, table, columns)
        found = _rows(mariadb, config.database.name, table, columns)  # the czar's view of the catalog
        assert len(found) == len(expected) > 0, table
        assert found == expected, f"{table}: rows differ from the plain load"


def test_partitioned_rows_carry_the_partitioners_chunks(ingested, mariadb, shared_data):
    import json

    config, _ = ingested
    metadata = json.loads((shared_data / "qserv-itest/case01/data/ingest/metadata.json").read_text())
    conn = mariadb.connect(config.database.name)
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT chunkId FROM Object")
        chunks = sorted(r[0] for r in cur.fetchall())
    conn.close()
    listed = next(t for t in metadata["tables"] if t["schema"] == "Object.json")["data"][0]["chunks"]
    assert chunks == sorted(listed)


def test_second_ingest_changes_nothing_and_says_so(ingested, qserv):
    config, _ = ingested
    again = Ingest(config).run(verify_after=False)
    assert not again.changed_anything
    assert "already published" in " ".join(again.notes)


def test_verify_command_passes(ingested, qserv, tmp_path):
    config, _ = ingested
    path = tmp_path / "case01.yaml"
    raw = yaml.safe_load((CONFIGS / "case01.yaml").read_text())
    for table in raw["tables"]:  # make the relative paths absolute for a config written elsewhere
        table["input"]["files"]["glob"] = str((CONFIGS / table["input"]["files"]["glob"]).resolve())
        table["schema"]["qserv_json"] = str((CONFIGS / table["schema"]["qserv_json"]).resolve())
    raw["database"]["name"] = config.database.name
    raw["qserv"].update(controller=qserv.controller_url, czar=qserv.czar_dsn)
    raw["staging"] = {"directory": str(config.staging.directory)}
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "DIFFERS" not in result.output and "key checksum" in result.output


def test_stage_only_then_load_gives_the_same_database(qserv, auth_env, tmp_path, mariadb, caplog):
    caplog.set_level(logging.DEBUG, logger="qdask")
    config = case01_config(qserv, tmp_path / "staging", "qdask_case01_staged")
    staged = Ingest(config).run(stage_only=True)
    assert staged.chunks_collected > 0 and staged.loaded.stored == 0
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("qdask"))
    # each stage's start and end, with counts and time, and each unit / chunk file at debug level
    assert f"partition: {len(ALL_TABLES)} unit(s) to partition" in logged
    assert re.search(rf"partition: {len(ALL_TABLES)} unit\(s\) partitioned, 0 failed in [\d.]+ s", logged)
    assert re.search(r"keys: 1 famil\(ies\) checked, 1 table\(s\) with problems in [\d.]+ s", logged)
    assert re.search(rf"collect: {staged.chunks_collected} chunk file\(s\) written, 0 failed in", logged)
    assert logged.count("partition: unit ") == len(ALL_TABLES)  # "partition: unit <id> recorded: ..."
    assert logged.count(" recorded: ") == len(ALL_TABLES) + staged.chunks_collected
    assert qserv.czar_connect  # nothing is in Qserv yet
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'qdask_case01_staged'")
        assert cur.fetchall() == ()
    conn.close()
    caplog.clear()
    loaded = Ingest(config).run()
    assert loaded.units_partitioned == 0 and loaded.chunks_collected == 0 and loaded.loaded.catalog > 0
    assert loaded.verify.ok
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("qdask"))
    assert "partition:" not in logged and "collect:" not in logged  # staging was done: not started again
    rows = loaded.loaded
    counted = f"{rows.catalog} catalog row(s) (+ {rows.overlap} overlap copies, + {rows.replicas} replicas"
    assert f"load: {counted}" in logged
    assert f"in {loaded.transactions} transaction(s) committed" in logged
    assert "publish: done" in logged and "verify: passed" in logged
    for table in ("Object", "Source", "Logs"):
        columns = columns_of(mariadb, "qdask_case01_staged", table)
        assert _rows(mariadb, "qdask_case01_staged", table, columns) == _rows(
            mariadb, "qdask_case01", table, columns
        )

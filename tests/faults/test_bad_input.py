"""Bad input is never lost silently: duplicate director ids, child rows whose director is missing, invalid
positions and values that do not fit their column are counted, reported with examples, and quarantined
to files the user can inspect or stop the run, as each table's policies say."""

from __future__ import annotations

import gzip

import pyarrow.parquet as pq
import pytest
import yaml

from qdask.config import load_config
from qdask.ingest import Ingest, IngestError
from qdask.ledger import Ledger
from tests.faults.conftest import CONFIGS, write_case01

DATA = CONFIGS.parent.parent / "shared" / "data" / "qserv-itest" / "case01" / "data"
ORPHAN_ID = 999999999999


def _lines(table: str) -> list[bytes]:
    return gzip.decompress((DATA / f"{table}.tsv.gz").read_bytes()).rstrip(b"\n").split(b"\n")


def _bad_case01(qserv, tmp_path, database: str, policies: dict[str, dict], bad_value: bool = False):
    """case01 with one Object row twice, one Source row pointing at no Object, one Object with an invalid
    position and (optionally) a text in a BIGINT column; returns (config, duplicated id)."""
    objects, sources = _lines("Object"), _lines("Source")
    duplicated = int(objects[5].split(b"\t")[0])
    bad_position = objects[7].split(b"\t")
    bad_position[0], bad_position[4] = b"888888888888", b"95.5"  # decl_PS beyond the pole
    objects += [objects[5], b"\t".join(bad_position)]
    orphan = sources[0].split(b"\t")
    orphan[0], orphan[3] = b"777777777777", str(ORPHAN_ID).encode()  # sourceId, objectId
    sources.append(b"\t".join(orphan))
    if bad_value:
        row = objects[9].split(b"\t")
        row[7] = b"not-a-number"  # htmId20 BIGINT NOT NULL
        objects[9] = b"\t".join(row)
    for name, lines in (("Object", objects), ("Source", sources)):
        (tmp_path / f"{name}.tsv.gz").write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    path = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", database)
    raw = yaml.safe_load(path.read_text())
    for table in raw["tables"]:
        if table["name"] in ("Object", "Source"):
            table["input"]["files"]["glob"] = str(tmp_path / f"{table['name']}.tsv.gz")
        table["policies"] = policies.get(table["name"], {})
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path), duplicated


def test_bad_rows_are_quarantined_counted_and_reported(qserv, truth, tmp_path, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    config, duplicated = _bad_case01(
        qserv,
        tmp_path,
        "faults_bad_quarantine",
        {"Object": {"duplicate_ids": "quarantine"}, "Source": {"orphans": "quarantine"}},
    )
    summary = Ingest(config).run()
    assert summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    notes = " ".join(summary.notes)
    assert (
        f"table Object: 2 row(s) with duplicate ids (1 distinct objectId value(s), e.g. {duplicated})"
        in notes
    )
    objects = {r[0] for r in truth.rows["Object"]}
    children = sum(1 for r in truth.rows["Source"].elements() if r[3] == duplicated or r[3] not in objects)
    assert children > 0  # the children of the duplicated object, and case01's own 36 orphans
    assert f"table Source: {children + 1:,} row(s) with orphans" in notes and str(ORPHAN_ID) in notes, notes
    assert summary.quarantined["Object"][0] == 1  # the invalid position
    quarantine = config.staging.directory / "quarantine"
    excluded = {
        t: sum(pq.read_metadata(p).num_rows for p in (quarantine / t).glob("*.excluded.parquet"))
        for t in ("Object", "Source")
    }
    assert excluded == {"Object": 2, "Source": children + 1}
    with qserv.czar_connect(config.database.name) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), SUM(objectId = %s) FROM Object", (duplicated,))
        assert cur.fetchone() == (88 - 1, 0)
        cur.execute("SELECT COUNT(*), SUM(objectId = %s) FROM Source", (ORPHAN_ID,))
        assert cur.fetchone() == (3339 - children, 0)


def test_duplicate_ids_stop_the_run_before_anything_is_loaded(qserv, tmp_path, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    config, duplicated = _bad_case01(qserv, tmp_path, "faults_bad_stop", {"Source": {"orphans": "stop"}})
    with pytest.raises(IngestError) as stopped:
        Ingest(config).run()
    message = str(stopped.value)
    assert "policy says stop (nothing was loaded)" in message
    assert f"e.g. {duplicated}" in message and str(ORPHAN_ID) in message
    with Ledger(config.staging.directory / "ledger.sqlite") as ledger:
        assert ledger.transactions() == [] and ledger.chunk_files() == []


def test_orphans_are_reported_and_loaded_unless_a_policy_is_set(qserv, truth, tmp_path, monkeypatch):
    """Qserv itself loads child rows without a director (case01 has 36); qdask counts and reports them."""
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    config = load_config(
        write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "faults_orphans")
    )
    summary = Ingest(config).run()
    assert summary.verify.ok
    assert "table Source: 36 row(s) with orphans" in " ".join(summary.notes)
    assert truth.problems(qserv, config.database.name) == []


def test_a_value_that_does_not_fit_its_column_stops_with_the_unit_and_column(qserv, tmp_path, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    config, _ = _bad_case01(
        qserv, tmp_path, "faults_bad_value", {"Object": {"duplicate_ids": "quarantine"}}, bad_value=True
    )
    with pytest.raises(IngestError) as stopped:
        Ingest(config).run()
    message = str(stopped.value)
    assert "htmId20" in message and "not-a-number" in message, message
    with Ledger(config.staging.directory / "ledger.sqlite") as ledger:
        assert {u.table for u in ledger.units(status="failed")} == {"Object"}
        assert ledger.transactions() == []

"""The verify stage speaks Qserv's SQL only, and keeps its strength: rows per table and chunk, key
uniqueness, a checksum over every key, and full rows of a sample drawn from all units."""

from __future__ import annotations

import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from qdask.emulator.czar.proxy import proxy_text
from qdask.emulator.czar.rules import parse_select
from qdask.ingest import Ingest
from qdask.run_settings import czar_for
from qdask.stages.shards import CorruptShardError
from qdask.stages.staged_ids import loaded_ids
from qdask.stages.verify import (
    STATEMENTS,
    SourceSample,
    key_digest,
    sample_source,
    staged_key_digest,
    statement,
    verify,
)
from qdask.stages.verify_catalog import source_sample, table_to_verify
from tests.czar.conftest import CZAR_DB

EXAMPLE_NAMES = {
    "table": "db.Object",
    "key": "objectId",
    "columns": "`objectId`, `ra_PS`, `ra_PS_Sigma` + 0.0 AS `ra_PS_Sigma`",
    "values": "1, 2, 3",
}


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_every_statement_template_passes_qservs_parser(name):
    """Adding a template Qserv refuses (COUNT(DISTINCT …), BIT_XOR, CAST, …) fails here."""
    names = {k: v for k, v in EXAMPLE_NAMES.items() if "{" + k + "}" in STATEMENTS[name]}
    parse_select(proxy_text(statement(name, **names)))


def _run_verify(config, seed: int = 7, sample_size: int = 20):
    """The stage as `qdask verify` runs it, with a fixed seed."""
    ingest = Ingest(config)
    return ingest, ingest.verify(sample_size, seed=seed)


def test_verify_through_the_czar_sends_nothing_qserv_refuses(czar_case01, qserv):
    config, summary = czar_case01
    frontend = qserv.emulator.frontend
    refused_before, accepted_before = len(frontend.refused), len(frontend.accepted)
    report = Ingest(config).verify()
    assert report.ok, [c for c in report.checks if not c.ok]
    assert frontend.refused[refused_before:] == []
    sent = [sql for sql, _ in frontend.accepted[accepted_before:]]
    kinds = {"GROUP BY chunkId", "HAVING n > 1", "`objectId` IN(", "SUM(`objectId`)", "+ 0.0 AS"}
    assert all(any(kind in sql for sql in sent) for kind in kinds), sent
    names = {(c.table, c.name) for c in report.checks}
    for check in ("rows", "rows per chunk", "unique key", "key checksum", "sample rows"):
        assert ("Object", check) in names and ("Source", check) in names
    object_sample = next(c for c in report.checks if c.table == "Object" and c.name == "sample rows")
    assert (
        "20 source rows (from all units) equal in all 228 columns" in object_sample.detail
    )  # chunkId, subChunkId aside


def _worker_tables(qserv, table: str) -> list[tuple[str, str]]:
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE %s "
            "AND TABLE_NAME REGEXP %s ORDER BY TABLE_NAME",
            (f"%\\_\\_{CZAR_DB}", f"^{table}_[0-9]+$"),
        )
        return [r for r in cur.fetchall() if not r[1].endswith("_1234567890")]


def _check(report, table, name):
    return next(c for c in report.checks if c.table == table and c.name == name)


def test_verify_finds_a_float_off_by_one_float32_step(czar_case01, qserv):
    """A FLOAT read as text has 6 digits; `col + 0.0` brings the stored value, so one ulp shows."""
    config, _ = czar_case01
    ingest = Ingest(config)
    ingest.plan()
    table = next(t for t in [ingest.setups["Object"]])
    keys = sample_source(
        source_sample(table, ingest.ledger, ingest.keys_root),
        20,
        random.Random(7),
    )
    victim = keys["objectId"][0].as_py()
    changed = []
    for db, name in _worker_tables(qserv, "Object"):
        with qserv.czar_connect(db) as conn, conn.cursor() as cur:
            n = cur.execute(f"UPDATE `{name}` SET ra_PS_Sigma = ra_PS_Sigma * (1 + POW(2, -22)) "
                            "WHERE objectId = %s AND ra_PS_Sigma <> 0", (victim,))  # fmt: skip
            if n:
                changed.append((db, name))
    assert changed
    try:
        _, report = _run_verify(config)
        check = _check(report, "Object", "sample rows")
        assert not check.ok and f"objectId={victim} column ra_PS_Sigma" in check.detail
        assert _check(report, "Object", "key checksum").ok
    finally:
        for db, name in changed:
            with qserv.czar_connect(db) as conn, conn.cursor() as cur:
                cur.execute(f"UPDATE `{name}` SET ra_PS_Sigma = ra_PS_Sigma / (1 + POW(2, -22)) "
                            "WHERE objectId = %s", (victim,))  # fmt: skip
    assert _run_verify(config)[1].ok


def test_verify_finds_a_duplicate_and_a_changed_key(czar_case01, qserv):
    config, _ = czar_case01
    (db, first), (_, second) = _worker_tables(qserv, "Object")[:2]
    with qserv.czar_connect(db) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT objectId FROM `{first}` ORDER BY objectId LIMIT 1")
        (key,) = cur.fetchone()
    other_db = next(d for d, n in _worker_tables(qserv, "Object") if n == second)
    with qserv.czar_connect() as conn, conn.cursor() as cur:  # a copy of the row in another chunk
        cur.execute(
            f"INSERT INTO `{other_db}`.`{second}` SELECT * FROM `{db}`.`{first}` WHERE objectId=%s", (key,)
        )
    try:
        _, report = _run_verify(config)
        assert not _check(report, "Object", "rows").ok
        assert not _check(report, "Object", "rows per chunk").ok
        unique = _check(report, "Object", "unique key")
        assert not unique.ok and f"{key} (2×)" in unique.detail
    finally:
        with qserv.czar_connect() as conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM `{other_db}`.`{second}` WHERE objectId=%s", (key,))
    with qserv.czar_connect(db) as conn, conn.cursor() as cur:  # same rows, one key off by one
        cur.execute(f"UPDATE `{first}` SET objectId = objectId + 1 WHERE objectId=%s", (key,))
    try:
        _, report = _run_verify(config, sample_size=0)
        assert _check(report, "Object", "rows per chunk").ok and _check(report, "Object", "unique key").ok
        checksum = _check(report, "Object", "key checksum")
        assert not checksum.ok and "count 88" in checksum.detail
    finally:
        with qserv.czar_connect(db) as conn, conn.cursor() as cur:
            cur.execute(f"UPDATE `{first}` SET objectId = objectId - 1 WHERE objectId=%s", (key + 1,))


def test_staged_key_digest_reuses_the_key_files(czar_case01, tmp_path):
    """The director's digest comes from keys/Object/<unit>.npy (the shards may be gone); a child's id
    (sourceId) is not in its key files (they hold objectId), so its shards are read."""
    config, _ = czar_case01
    ingest = Ingest(config)
    files = ("objectId", ingest.keys_root)
    from_shards = staged_key_digest(ingest.ledger, "Object", "objectId")
    assert from_shards.count == 88
    shards = Path(config.staging.directory) / "shards"
    moved = tmp_path / "shards"
    shutil.move(shards, moved)
    try:
        assert staged_key_digest(ingest.ledger, "Object", "objectId", key_files=files) == from_shards
        with pytest.raises(CorruptShardError, match="is missing"):
            staged_key_digest(ingest.ledger, "Source", "sourceId", key_files=("objectId", ingest.keys_root))
    finally:
        shutil.move(moved, shards)
    assert staged_key_digest(ingest.ledger, "Source", "sourceId").count == 3339


def test_key_digest_is_exact_for_large_keys():
    values = np.array([2**62, 2**62, -(2**40), 7], dtype=np.int64)
    digest = key_digest(values)
    assert (digest.count, digest.total, digest.low, digest.high) == (4, 2**63 - 2**40 + 7, -(2**40), 2**62)
    unsigned = key_digest(np.array([2**64 - 1, 1], dtype=np.uint64))
    assert unsigned.total == 2**64 and unsigned.high == 2**64 - 1


def test_sample_is_drawn_from_all_units_one_batch_at_a_time():
    read = []

    def batches(unit):
        for start in range(0, 1000, 100):  # 10 batches of 100 rows, numbered in source order
            read.append((unit, start))
            rows = np.arange(start, start + 100)
            yield pa.table({"id": rows + unit * 10_000, "row": rows})

    units = [(u, 1000) for u in range(5)]
    sample = sample_source(SourceSample(units, batches), 40, random.Random(3))
    assert sample.num_rows == 40 and "row" not in sample.column_names
    assert len({int(i) // 10_000 for i in sample["id"].to_pylist()}) == 5  # every unit contributes
    deepest = {u: max(s for v, s in read if v == u) for u in range(5)}
    picked = {
        u: max(int(i) % 10_000 for i in sample["id"].to_pylist() if int(i) // 10_000 == u) for u in range(5)
    }
    assert all(deepest[u] == picked[u] // 100 * 100 for u in range(5))  # a unit is read up to its last pick


def test_above_unique_scan_rows_no_integer_key_is_grouped_through_the_czar(czar_case01, qserv):
    """Above `unique_scan_rows` a director's ids (proven unique by the key check) and a child's own ids
    (merged from the staged rows) are not brought to the czar by a GROUP BY; both keys' checksums still
    tie the staged ids to the czar's. Without the bound both are grouped."""
    config, _ = czar_case01
    frontend = qserv.emulator.frontend
    before = len(frontend.accepted)
    report = Ingest(config).verify(0, unique_scan_rows=10)
    assert not [sql for sql, _ in frontend.accepted[before:] if "HAVING n > 1" in sql]
    unique = _check(report, "Object", "unique key")
    assert unique.ok and "not scanned through the czar" in unique.detail and "> 10" in unique.detail
    child = _check(report, "Source", "unique key")
    assert child.ok and "no sourceId value appears twice in the 3,339 staged sourceId values" in child.detail
    assert _check(report, "Source", "key checksum").ok and report.ok
    before = len(frontend.accepted)
    report = Ingest(config).verify(0, unique_scan_rows=None)  # every unique key, whatever the size
    grouped = [sql for sql, _ in frontend.accepted[before:] if "HAVING n > 1" in sql]
    assert any("`Object`" in sql for sql in grouped) and any("`Source`" in sql for sql in grouped)
    assert "appears twice" in _check(report, "Object", "unique key").detail
    assert "staged" not in _check(report, "Source", "unique key").detail


def test_a_repeated_id_in_a_large_child_is_found_in_its_staged_rows(czar_case01, qserv, tmp_path):
    """Source's objectId (its director key) repeats: checked as if it were the child's own id, the merge of
    the staged rows finds every repeat, as the czar's GROUP BY does below the bound, and leaves no scratch
    file behind."""
    config, _ = czar_case01
    ingest = Ingest(config)
    ingest.plan()
    table = replace(table_to_verify(ingest.setups["Source"]), key="objectId")
    frontend = qserv.emulator.frontend
    before = len(frontend.accepted)
    report = verify(czar_for(config), ingest.ledger, CZAR_DB, [table], unique_scan_rows=10, scratch=tmp_path)
    assert not [sql for sql, _ in frontend.accepted[before:] if "HAVING n > 1" in sql]
    ids = np.concatenate([loaded_ids(s, "objectId", None) for s in ingest.ledger.shards(table="Source")])
    values, counts = np.unique(ids, return_counts=True)
    repeated = counts > 1
    assert repeated.sum() > 10
    unique = _check(report, "Source", "unique key")
    assert not unique.ok and not report.ok
    assert f"{counts[repeated].sum():,} rows share {repeated.sum():,} values" in unique.detail
    shown = ", ".join(
        f"{v} ({n}×)" for v, n in zip(values[repeated][:10], counts[repeated][:10], strict=True)
    )
    assert unique.detail.endswith(shown)
    assert _check(report, "Source", "key checksum").ok  # the merge's ids are the czar's
    assert list(tmp_path.iterdir()) == []
    by_czar = verify(czar_for(config), ingest.ledger, CZAR_DB, [table], unique_scan_rows=None)
    assert not _check(by_czar, "Source", "unique key").ok


def test_a_duplicate_in_a_large_director_still_fails_verify(czar_case01, qserv):
    """Without the GROUP BY, a repeated id still shows: the czar's rows per chunk and key checksum differ
    from the ledger's."""
    config, _ = czar_case01
    (db, first), (_, second) = _worker_tables(qserv, "Object")[:2]
    other_db = next(d for d, n in _worker_tables(qserv, "Object") if n == second)
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT objectId FROM `{db}`.`{first}` ORDER BY objectId LIMIT 1")
        (key,) = cur.fetchone()
        cur.execute(
            f"INSERT INTO `{other_db}`.`{second}` SELECT * FROM `{db}`.`{first}` WHERE objectId=%s", (key,)
        )
    try:
        report = Ingest(config).verify(0, unique_scan_rows=10)
        assert not report.ok and "not scanned" in _check(report, "Object", "unique key").detail
        assert (
            not _check(report, "Object", "rows per chunk").ok
            and not _check(report, "Object", "key checksum").ok
        )
    finally:
        with qserv.czar_connect() as conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM `{other_db}`.`{second}` WHERE objectId=%s", (key,))

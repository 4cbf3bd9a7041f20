"""The demo's DP0.2 table set through the czar: joins of directors, children (placed by position and by
their director's id), a match table and regular tables answer as the same SQL on a plain MariaDB load of
the same generated rows.

The demo repository is generated small, ingested with the demo's own config (`qdask/demo.yaml`) into the
session's stand-in, and its datasets are read again from the Butler and inserted by a plain client into a
plain database (only the columns the queries use). The queries keep to Qserv's rules (docs/czar.md): joins
on keys, no OUTER join, no subquery.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from qdask.demo import make_demo_repo
from qdask.demo_run import demo_config
from qdask.ingest import Ingest
from qdask.sources.butler import ButlerSource, read_unit

DB = "demo_joins"
PLAIN = "demo_joins_plain"

#: Per table: its dataset type and the columns the plain database holds (name -> MariaDB type).
PLAIN_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "Object": ("objectTable_tract", {"objectId": "BIGINT", "coord_ra": "DOUBLE", "coord_dec": "DOUBLE"}),
    "ForcedSource": (
        "forcedSourceTable",
        {"forcedSourceId": "BIGINT", "objectId": "BIGINT", "band": "CHAR(1)", "ccdVisitId": "BIGINT"},
    ),
    "CcdVisit": ("ccdVisitTable", {"ccdVisitId": "BIGINT", "visitId": "BIGINT", "band": "CHAR(1)"}),
    "Visit": ("visitTable", {"visit": "BIGINT", "band": "CHAR(1)"}),
    "DiaObject": ("diaObjectTable_tract", {"diaObjectId": "BIGINT", "nDiaSources": "BIGINT"}),
    "DiaSource": (
        "diaSourceTable_tract",
        {"diaSourceId": "BIGINT", "diaObjectId": "BIGINT", "filterName": "CHAR(1)", "ccdVisitId": "BIGINT"},
    ),
    "ForcedSourceOnDiaObject": (
        "forcedSourceOnDiaObjectTable",
        {"forcedSourceOnDiaObjectId": "BIGINT", "diaObjectId": "BIGINT", "band": "CHAR(1)"},
    ),
    "TruthSummary": ("truth_summary", {"id_truth_type": "CHAR(22)", "truth_type": "BIGINT"}),
    "MatchesTruth": (
        "match_ref_truth_summary_objectTable_tract",
        {"id_truth_type": "CHAR(18)", "match_objectId": "BIGINT", "match_count": "INT"},
    ),
}

QUERIES = {
    "Object ⋈ ForcedSource, count by band": (
        "SELECT f.band, COUNT(*) AS n FROM Object AS o JOIN ForcedSource AS f ON o.objectId = f.objectId "
        "GROUP BY f.band ORDER BY f.band"
    ),
    "DiaObject ⋈ DiaSource (placed by id), count per DiaObject": (
        "SELECT o.diaObjectId, o.nDiaSources, COUNT(*) AS n FROM DiaObject AS o JOIN DiaSource AS s "
        "ON o.diaObjectId = s.diaObjectId GROUP BY o.diaObjectId, o.nDiaSources ORDER BY o.diaObjectId"
    ),
    "DiaObject ⋈ ForcedSourceOnDiaObject (placed by id), count by band": (
        "SELECT f.band, COUNT(*) AS n FROM DiaObject AS o, ForcedSourceOnDiaObject AS f "
        "WHERE o.diaObjectId = f.diaObjectId GROUP BY f.band ORDER BY f.band"
    ),
    "TruthSummary ⋈ MatchesTruth ⋈ Object, every pair": (
        "SELECT t.id_truth_type, t.truth_type, o.objectId FROM TruthSummary AS t "
        "JOIN MatchesTruth AS m ON t.id_truth_type = m.id_truth_type "
        "JOIN Object AS o ON m.match_objectId = o.objectId ORDER BY t.id_truth_type"
    ),
    "MatchesTruth alone, each pair once": (
        "SELECT id_truth_type, match_objectId FROM MatchesTruth WHERE match_count = 1 ORDER BY id_truth_type"
    ),
    "DiaSource ⋈ CcdVisit ⋈ Visit (regular), count by band": (
        "SELECT v.band, COUNT(*) AS n FROM DiaSource AS s JOIN CcdVisit AS c ON s.ccdVisitId = c.ccdVisitId "
        "JOIN Visit AS v ON c.visitId = v.visit GROUP BY v.band ORDER BY v.band"
    ),
    "ForcedSource ⋈ Object, one object's rows": (
        "SELECT f.forcedSourceId, f.ccdVisitId FROM ForcedSource AS f JOIN Object AS o "
        "ON f.objectId = o.objectId WHERE o.objectId = {object_id} ORDER BY f.forcedSourceId"
    ),
}


@pytest.fixture(scope="module")
def demo_catalog(qserv, mariadb, tmp_path_factory, monkeypatch_module):
    """The demo repository ingested through the demo config (database DB) and loaded plainly (PLAIN)."""
    work = tmp_path_factory.mktemp("demo_joins")
    repo = make_demo_repo(work / "repo", tracts=1, rows_per_patch=100, seed=5)
    monkeypatch_module.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    config = demo_config(work, repo.root, qserv.controller_url, qserv.czar_dsn, workers=2)
    config = config.model_copy(update={"database": config.database.model_copy(update={"name": DB})})
    summary = Ingest(config).run()
    _load_plain(mariadb, repo)
    return repo, summary


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _load_plain(mariadb, repo) -> None:
    """Each dataset's columns of PLAIN_TABLES, read from the Butler and inserted as a plain client would."""
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {PLAIN}")
        cur.execute(f"CREATE DATABASE {PLAIN}")
        for table, (dataset, columns) in PLAIN_TABLES.items():
            cur.execute(
                f"CREATE TABLE {PLAIN}.{table} (" + ", ".join(f"{c} {t}" for c, t in columns.items()) + ")"
            )
            units = ButlerSource(str(repo.root), dataset, repo.collection).discover()
            for unit in units:
                for batch in read_unit(unit, list(columns)):
                    rows = pa.Table.from_batches([batch]).select(list(columns)).to_pylist()
                    cur.executemany(
                        f"INSERT INTO {PLAIN}.{table} VALUES ({', '.join(['%s'] * len(columns))})",
                        [tuple(r.values()) for r in rows],
                    )
    conn.commit()
    conn.close()


def _answer(conn, sql: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]


def test_the_whole_set_is_ingested_and_verified(demo_catalog):
    repo, summary = demo_catalog
    assert summary.verify is not None and summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    checked = {c.table for c in summary.verify.checks}
    assert checked == set(PLAIN_TABLES)
    assert repo.rows["diaSourceTable_tract"] > repo.rows["diaObjectTable_tract"] > 0


@pytest.mark.parametrize("name", list(QUERIES))
def test_joins_through_the_czar_answer_as_a_plain_database(demo_catalog, mariadb, czar_connect, name):
    plain = mariadb.connect(PLAIN)
    first = _answer(plain, "SELECT MIN(objectId) FROM Object")[0][0]
    sql = QUERIES[name].format(object_id=first)
    expected = _answer(plain, sql)
    plain.close()
    czar = czar_connect(DB)
    got = _answer(czar, sql)
    czar.close()
    assert expected, f"{name}: the plain database answers nothing, so the comparison proves nothing"
    assert got == expected, name

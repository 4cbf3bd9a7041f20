"""The czar front end over the wire (qdask.emulator.czar.frontend): where it listens and who it lets in,
what the proxy answers itself, rows exactly as MariaDB holds them, and Qserv's dispatch made visible
(director index, chunk-local joins, row counters, spatial restrictors)."""

from __future__ import annotations

import re
from pathlib import Path

import pymysql
import pytest
import yaml
from click.testing import CliRunner

from qdask.cli import main
from qdask.emulator.czar.proxy import proxy_text
from qdask.emulator.server import EmulatorConfig, EmulatorThread
from qdask.qserv.czar import parse_dsn
from tests.czar.conftest import CZAR_DB

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_agree_with_case01_and_qdask_query():
    """configs/case01.yaml and `qdask query` point where `qdask emulator serve` listens by default."""
    czar = parse_dsn(yaml.safe_load((CONFIGS / "case01.yaml").read_text())["qserv"]["czar"])
    serve = CliRunner().invoke(main, ["emulator", "serve", "--help"]).output
    assert re.search(r"--czar-port INTEGER[^-]*\[default:\s+4040\]", serve)
    assert re.search(r"--czar-user TEXT[^-]*\[default:\s+qsmaster\]", serve)
    assert (czar.user, czar.port, czar.password.get_secret_value()) == ("qsmaster", 4040, "")
    query = CliRunner().invoke(main, ["query", "--help"]).output
    assert "mysql://qsmaster@127.0.0.1:4040" in query
    assert EmulatorConfig(dsn="mysql://root@h:1").czar_user == "qsmaster"


def test_listens_on_a_free_port_as_qsmaster(qserv, czar_connect):
    dsn = parse_dsn(qserv.czar_dsn)
    assert (dsn.user, dsn.host) == ("qsmaster", "127.0.0.1") and dsn.port != 4040
    with czar_connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 6*7")  # no FROM: the proxy runs it on the czar's MariaDB
        assert cur.fetchall() == ((42,),)
    with pytest.raises(pymysql.MySQLError):
        pymysql.connect(host=dsn.host, port=dsn.port, user="root")


def test_user_and_password_are_configurable(mariadb):
    with EmulatorThread(
        mariadb.dsn, workers=1, instance="czarpw", czar_user="alice", czar_password="s3cret"
    ) as q:
        dsn = parse_dsn(q.czar_dsn)
        assert dsn.user == "alice" and dsn.password.get_secret_value() == "s3cret"
        with pymysql.connect(host=dsn.host, port=dsn.port, user="alice", password="s3cret") as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchall() == ((1,),)
        for user, password in (("alice", "wrong"), ("alice", ""), ("qsmaster", "")):
            with pytest.raises(pymysql.MySQLError):
                pymysql.connect(host=dsn.host, port=dsn.port, user=user, password=password)
        port = dsn.port
        q.restart()  # a restarted stand-in answers where its clients knew it
        assert parse_dsn(q.czar_dsn).port == port


def test_local_statements_run_on_the_czar_database(czar_case01, czar_connect):
    with czar_connect(CZAR_DB) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert {r[0] for r in cur.fetchall()} >= {"Object", "Source", "Filter", "LeapSeconds"}
        cur.execute("DESCRIBE Filter")
        assert [r[0] for r in cur.fetchall()] == [
            "qserv_trans_id",
            "filterId",
            "filterName",
            "photClam",
            "photBW",
        ]
        cur.execute("SELECT DATABASE(), scisql_angSep(0, 0, 0, 1)")  # scisql is there locally too
        assert cur.fetchall() == ((CZAR_DB, 1.0),)
        conn.select_db("czar_case01")  # COM_INIT_DB
        with pytest.raises(pymysql.MySQLError) as unknown:
            conn.select_db("no_such_db")
        assert unknown.value.args[0] == 1049


def test_writes_are_refused_and_change_nothing(czar_case01, czar_connect):
    with czar_connect(CZAR_DB) as conn, conn.cursor() as cur:
        for sql in ("INSERT INTO Filter VALUES (0, 99, 'q', 0, 0)", "UPDATE Filter SET photBW=1",
                    "CREATE TABLE x (a INT)", "ALTER TABLE Filter ADD c INT", "TRUNCATE Filter",
                    "LOAD DATA INFILE '/etc/passwd' INTO TABLE Filter"):  # fmt: skip
            with pytest.raises(pymysql.MySQLError) as refused:
                cur.execute(sql)
            assert refused.value.args == (4003, "Sorry, this type of queries is not supported.")
        for sql in (
            "DELETE FROM Filter",
            "DROP TABLE Filter",
            "REPLACE INTO Filter VALUES (0, 99, 'q', 0, 0)",
        ):
            with pytest.raises(pymysql.MySQLError) as refused:
                cur.execute(sql)
            assert refused.value.args[1].endswith("Invalid or unsupported query: " + proxy_text(sql))
        cur.execute("SELECT filterId FROM Filter ORDER BY filterId")
        assert [r[0] for r in cur.fetchall()] == [-99, *range(8)]


def test_rows_stream_exactly_as_mariadb_holds_them(czar_case01, czar_connect, qserv):
    """Every column type of case01's Source (BIGINT, DOUBLE, FLOAT, CHAR, BLOB, NULLs), 3,339 rows (more
    than a fetch batch), reads back through the front end as through a direct connection."""
    sql = "SELECT * FROM Source"
    with czar_connect(CZAR_DB) as conn, conn.cursor() as cur:
        cur.execute(sql)
        found = (cur.description, cur.fetchall())
    with qserv.czar_connect(CZAR_DB) as conn, conn.cursor() as cur:
        cur.execute(sql)
        direct = (cur.description, cur.fetchall())
    assert [d[:2] for d in found[0]] == [d[:2] for d in direct[0]]
    assert sorted(found[1], key=lambda r: r[1]) == sorted(direct[1], key=lambda r: r[1])
    columns = [d[0] for d in found[0]]
    assert columns[0] == "qserv_trans_id" and columns[-2:] == ["chunkId", "subChunkId"]  # SELECT * in Qserv
    assert len(found[1]) == 3339 and any(isinstance(v, bytes) for r in found[1] for v in r)


def _workers(qserv, db: str, table: str, chunk: int) -> list[str]:
    """The worker databases holding ``table``'s chunk table for ``chunk``."""
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_NAME=%s AND TABLE_SCHEMA LIKE %s",
            (f"{table}_{chunk}", f"%\\_\\_{db}"),
        )
        return [r[0] for r in cur.fetchall()]


def test_point_lookups_go_through_the_director_index(czar_case01, czar_connect, qserv):
    """Qserv sends `objectId = …` only to the chunks the director index names (also for a child's
    objectId): an object the index lacks is not found, though its rows are there."""
    meta = "qserv_qservMeta"
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT objectId, chunkId, subChunkId, qserv_trans_id FROM {meta}.{CZAR_DB}__Object LIMIT 1"
        )
        object_id, chunk, sub, trans = cur.fetchone()
        cur.execute(f"DELETE FROM {meta}.{CZAR_DB}__Object WHERE objectId=%s", (object_id,))
    try:
        with czar_connect(CZAR_DB) as conn, conn.cursor() as cur:
            cur.execute("SELECT objectId FROM Object WHERE objectId=%s", (object_id,))
            assert cur.fetchall() == ()
            cur.execute("SELECT COUNT(*) AS n FROM Source WHERE objectId IN (%s)", (object_id,))
            assert cur.fetchall() == ((0,),)
            cur.execute(
                "SELECT objectId FROM Object WHERE objectId BETWEEN %s AND %s", (object_id, object_id)
            )
            assert cur.fetchall() == ((object_id,),)  # BETWEEN does not use the index (a full scan)
    finally:
        with qserv.czar_connect() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO {meta}.{CZAR_DB}__Object VALUES (%s, %s, %s, %s)",
                        (trans, object_id, chunk, sub))  # fmt: skip
    with czar_connect(CZAR_DB) as conn, conn.cursor() as cur:
        cur.execute("SELECT objectId FROM Object WHERE objectId=%s", (object_id,))
        assert cur.fetchall() == ((object_id,),)


def test_joins_of_partitioned_tables_are_chunk_local(czar_case01, czar_connect, qserv):
    """A worker joins Object_C with Source_C: a Source row stored in another chunk than its object is
    invisible to the join (as in Qserv), though a scan of Source finds it."""
    with qserv.czar_connect(CZAR_DB) as conn, conn.cursor() as cur:
        cur.execute("SELECT o.objectId, o.chunkId FROM Object o ORDER BY o.objectId LIMIT 1")
        object_id, chunk = cur.fetchone()
        cur.execute("SELECT DISTINCT chunkId FROM Object WHERE chunkId <> %s LIMIT 1", (chunk,))
        (other,) = cur.fetchone()
    [worker_db, *_] = _workers(qserv, CZAR_DB, "Source", other)
    with qserv.czar_connect(worker_db) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM Source_{other} LIMIT 1")
        row = list(cur.fetchone())
        cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND "
                    "TABLE_NAME=%s ORDER BY ORDINAL_POSITION", (worker_db, f"Source_{other}"))  # fmt: skip
        names = [r[0] for r in cur.fetchall()]
        row[names.index("objectId")], row[names.index("sourceId")] = object_id, 1
        cur.execute(f"INSERT INTO Source_{other} VALUES ({', '.join(['%s'] * len(row))})", row)
    try:
        with czar_connect(CZAR_DB) as conn, conn.cursor() as cur:
            cur.execute("SELECT sourceId FROM Source WHERE sourceId=1")
            assert cur.fetchall() == ((1,),)
            cur.execute("SELECT s.sourceId FROM Object o JOIN Source s USING (objectId) WHERE s.sourceId=1")
            assert cur.fetchall() == ()
    finally:
        with qserv.czar_connect(worker_db) as conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM Source_{other} WHERE sourceId=1")
    ran = [sql for _, sql in qserv.emulator.frontend.accepted if "JOIN" in sql]
    assert any("`o`.`chunkId` = `s`.`chunkId`" in sql for sql in ran)


def test_count_star_alone_is_answered_from_the_row_counters(czar_case01, czar_connect, qserv):
    rows = f"qserv_qservMeta.{CZAR_DB}__Filter__rows"
    with qserv.czar_connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {rows} (chunk INT UNSIGNED NOT NULL, num_rows BIGINT UNSIGNED)")
        cur.execute(f"INSERT INTO {rows} VALUES (0, 40), (1, 2)")  # not what the table holds (9 rows)
    try:
        with czar_connect(CZAR_DB) as conn, conn.cursor() as cur:
            cur.execute("select count(*) AS n from Filter")
            assert [d[0] for d in cur.description] == ["count(*)"] and cur.fetchall() == ((42,),)
            cur.execute("SELECT COUNT(*) FROM Filter WHERE filterId >= 0")  # not a simple COUNT(*)
            assert cur.fetchall() == ((8,),)  # filterId -99 is left out
            cur.execute("SET GLOBAL QSERV_ROW_COUNTER_OPTIMIZATION = 0")
            cur.execute("SELECT COUNT(*) FROM Filter")
            assert cur.fetchall() == ((9,),)
            cur.execute("SET GLOBAL QSERV_ROW_COUNTER_OPTIMIZATION = 1")
    finally:
        with qserv.czar_connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE {rows}")


def test_spatial_restrictors_become_scisql_predicates_on_every_partitioned_table(
    czar_case01, czar_connect, qserv
):
    with czar_connect(CZAR_DB) as conn, conn.cursor() as cur:
        cur.execute("SELECT objectId, ra_PS, decl_PS FROM Object ORDER BY objectId LIMIT 1")
        _, ra, dec = cur.fetchone()
        cur.execute("SELECT o.objectId, s.sourceId FROM Object o JOIN Source s USING (objectId) "
                    f"WHERE qserv_areaspec_circle({ra!r}, {dec!r}, 1.5)")  # fmt: skip
        cone = set(cur.fetchall())
        cur.execute("SELECT o.objectId, s.sourceId FROM Object o JOIN Source s USING (objectId) "
                    f"WHERE scisql_s2PtInCircle(o.ra_PS, o.decl_PS, {ra!r}, {dec!r}, 1.5) = 1 "
                    f"AND scisql_s2PtInCircle(s.raObject, s.declObject, {ra!r}, {dec!r}, 1.5)=1")  # fmt: skip
        assert cone == set(cur.fetchall()) and cone
    [(_, ran)] = [a for a in qserv.emulator.frontend.accepted if "qserv_areaspec_circle" in a[0]][-1:]
    assert f"scisql_s2PtInCircle(`o`.`ra_PS`, `o`.`decl_PS`, {ra!r}, {dec!r}, 1.5) = 1" in ran
    assert "`s`.`raObject`, `s`.`declObject`" in ran and "`chunkId` IN (" in ran  # the region's chunks


def test_qdask_query_through_the_czar(czar_case01, qserv):
    ok = CliRunner().invoke(main, ["query", "--czar", qserv.czar_dsn, "--db", CZAR_DB, "--format", "tsv",
                                   "SELECT COUNT(*) AS n FROM Object"])  # fmt: skip
    assert ok.exit_code == 0 and ok.output.splitlines()[:2] == ["n", "88"]
    refused = CliRunner().invoke(
        main,
        ["query", "--czar", qserv.czar_dsn, "--db", CZAR_DB, "SELECT COUNT(DISTINCT objectId) FROM Object"],
    )
    assert refused.exit_code == 1
    assert (
        "query failed: ERROR 4110 (Proxy): Query processing error: QI=?: Failed to instantiate query: "
        in (refused.output)
    )


def test_binary_protocol_values_are_read_from_mariadbs_text():
    """Prepared statements get binary rows: the front end parses MariaDB's text and uses mysql-mimic's
    own encoders (the text protocol passes MariaDB's bytes through unchanged)."""
    from mysql_mimic import ResultColumn
    from mysql_mimic.results import _BINARY_ENCODERS
    from mysql_mimic.types import ColumnType

    from qdask.emulator.czar.frontend import _binary, _raw

    for kind, text, value in ((ColumnType.LONGLONG, b"-42", -42), (ColumnType.DOUBLE, b"0.1", 0.1),
                              (ColumnType.VAR_STRING, b"ab", "ab")):  # fmt: skip
        column = ResultColumn("c", kind, text_encoder=_raw, binary_encoder=_binary)
        assert column.binary_encode(text) == _BINARY_ENCODERS[kind](column, value)
        assert column.text_encode(text) == text

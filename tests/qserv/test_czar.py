"""SQL access through the czar (`qdask.qserv.czar`), against the session's private MariaDB."""

from __future__ import annotations

import pytest

from qdask.qserv.czar import Czar, parse_dsn, quote_identifier, quote_qualified


def test_parse_dsn_forms_and_secret_password():
    d = parse_dsn("mysql://qsmaster:p%40ss@qserv-czar:4040/dp02")
    assert (d.user, d.host, d.port, d.database) == ("qsmaster", "qserv-czar", 4040, "dp02")
    assert d.password.get_secret_value() == "p@ss"
    assert (
        "p@ss" not in repr(d) and "p@ss" not in str(d) and str(d) == "mysql://qsmaster@qserv-czar:4040/dp02"
    )
    bare = parse_dsn("mysql://root@127.0.0.1:3306")
    assert (bare.database, bare.password.get_secret_value()) == (None, "")
    assert "pw" not in repr(Czar("mysql://u:pw123@h:1"))
    for bad in ("postgres://u@h:1", "mysql://h:1", "mysql://u@h", "mysql://u@h:x", "mysql://u@h:1/a;b"):
        with pytest.raises(ValueError):
            parse_dsn(bad)


def test_quote_identifier_accepts_plain_names_only():
    assert quote_identifier("Object") == "`Object`"
    assert quote_qualified("dp02", "Source_57") == "`dp02`.`Source_57`"
    for bad in ("", "a`b", "x; DROP TABLE y", "a.b", "1234", "a" * 65, "name with space", None):
        with pytest.raises(ValueError):
            quote_identifier(bad)


@pytest.fixture
def czar_db(mariadb):
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS czar_test")
        cur.execute("CREATE DATABASE czar_test")
        cur.execute("CREATE TABLE czar_test.T (id BIGINT, name VARCHAR(20), x DOUBLE)")
        cur.executemany(
            "INSERT INTO czar_test.T VALUES (%s, %s, %s)",
            [(i, f"n{i}" if i % 7 else None, i / 3) for i in range(2500)],
        )
    yield Czar(mariadb.dsn + "/czar_test")
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE czar_test")


def test_query_streams_rows_with_column_names(czar_db):
    with czar_db.query("SELECT id, name, x FROM T WHERE id >= %s ORDER BY id", (2490,)) as rows:
        assert rows.columns == ["id", "name", "x"]
        got = list(rows)
    assert [r[0] for r in got] == list(range(2490, 2500))
    assert got[0] == (2490, "n2490", pytest.approx(2490 / 3)) and got[2][1] is None  # 2492 % 7 == 0
    assert czar_db.count("czar_test", "T") == 2500
    # many rows (more than one fetch batch), and a half-read result closes cleanly
    assert sum(1 for _ in czar_db.query("SELECT * FROM T")) == 2500
    with czar_db.query("SELECT * FROM T") as rows:
        next(iter(rows))
    with pytest.raises(ValueError):
        czar_db.count("czar_test", "T`; DROP DATABASE czar_test; --")
    assert czar_db.count("czar_test", "T") == 2500


def test_errors_are_described_as_the_mysql_client_prints_them(czar_db):
    import pymysql

    from qdask.qserv.czar import describe_error

    with pytest.raises(pymysql.MySQLError) as failed:
        czar_db.query("SELECT nope FROM T")
    assert describe_error(failed.value) == "ERROR 1054 (42S22): Unknown column 'nope' in 'SELECT'"
    assert describe_error(pymysql.err.InterfaceError("closed")) == "closed"

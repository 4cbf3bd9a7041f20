from qdask.mariadb import PrivateMariaDB


def test_private_server_is_isolated_and_loads_local_files(mariadb, tmp_path):
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS t_private")
        cur.execute("CREATE TABLE t_private.x (a INT, b VARCHAR(10))")
        path = tmp_path / "x.tsv"
        path.write_text("1\tone\n2\t\\N\n")
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE t_private.x")
        cur.execute("SELECT a, b FROM t_private.x ORDER BY a")
        assert cur.fetchall() == ((1, "one"), (2, None))
        cur.execute("DROP DATABASE t_private")
    conn.close()
    assert mariadb.port != 3306


def test_server_stops_and_removes_its_directory():
    server = PrivateMariaDB().start()
    base = server.base_dir
    assert (base / "data").is_dir()
    server.stop()
    assert not base.exists()

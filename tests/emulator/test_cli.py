"""`qdask emulator serve`: prints the controller URL and the czar DSN, serves, stops cleanly on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx
import pymysql


def test_serve_on_a_given_mariadb(mariadb):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qdask.cli",
            "emulator",
            "serve",
            "--workers",
            "2",
            "--mariadb",
            mariadb.dsn,
            "--port",
            "0",
            "--auth-key",
            "cli-key",
            "--instance",
            "cli",
            "--czar-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        found = dict(re.match(r"(\S+)\s+(\S+)", line).groups() for line in lines)
        assert set(found) == {"controller", "czar", "worker-1", "worker-2"}
        assert re.fullmatch(r"mysql://qsmaster@127\.0\.0\.1:\d+", found["czar"])  # the czar front end
        czar_port = int(found["czar"].rsplit(":", 1)[1])
        with pymysql.connect(host="127.0.0.1", port=czar_port, user="qsmaster") as conn, conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE 'cli_replica'")  # the proxy runs SHOW on the czar's MariaDB
            assert cur.fetchall() == (("cli_replica",),)
        version = httpx.get(found["controller"] + "/meta/version").json()
        assert version["kind"] == "replication-controller" and version["version"] == 55
        config = httpx.get(found["controller"] + "/replication/config", params={"version": 55}).json()
        ports = {w["name"]: w["http-loader-port"] for w in config["config"]["workers"]}
        assert found["worker-1"].endswith(f":{ports['worker-1']}")
        answer = httpx.post(
            found["controller"] + "/ingest/database",
            json={
                "database": "clidb",
                "num_stripes": 10,
                "num_sub_stripes": 3,
                "overlap": 0.1,
                "auth_key": "cli-key",
                "version": 55,
            },
        ).json()
        assert answer["success"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    # the controller's records are in MariaDB, under the instance's own database
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM cli_replica.records WHERE kind='database'")
        assert cur.fetchall() == (("clidb",),)
        cur.execute("DROP DATABASE cli_replica")
        for i in (1, 2):
            cur.execute(f"DROP DATABASE IF EXISTS cli_w{i}__clidb")
    try:
        httpx.get(found["controller"] + "/meta/version", timeout=2)
        stopped = False
    except httpx.TransportError:
        stopped = True
    assert stopped


def test_serve_with_a_private_mariadb():
    """Without --mariadb the command starts its own server and removes it when stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "qdask.cli", "emulator", "serve", "--workers", "1", "--port", "0"]
        + ["--czar-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        found = dict(re.match(r"(\S+)\s+(\S+)", proc.stdout.readline()).groups() for _ in range(3))
        port = int(found["czar"].rsplit(":", 1)[1])
        with pymysql.connect(host="127.0.0.1", port=port, user="qsmaster") as conn, conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE 'qserv_replica'")
            assert cur.fetchall() == (("qserv_replica",),)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    try:
        pymysql.connect(host="127.0.0.1", port=port, user="qsmaster", connect_timeout=2).close()
        server_gone = False
    except pymysql.err.OperationalError:
        server_gone = True
    assert server_gone

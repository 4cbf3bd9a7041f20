"""How the stand-in's workers run LOAD DATA: server-side ``LOAD DATA INFILE``, as a Qserv worker does
(``src/replica/ingest/IngestFileSvc.cc``, ``loadDataIntoTable``: the statement is built with
``local = false``), whenever the MariaDB server can read the stand-in's temporary files; ``LOCAL`` only
when it cannot (another host, another user, ``secure_file_priv`` elsewhere)."""

from __future__ import annotations

from qdask.emulator.storage import server_reads
from qdask.mariadb import PrivateMariaDB


def test_server_reads_its_own_files_with_no_restriction(mariadb, tmp_path):
    """The tests' servers run with ``--secure-file-priv=`` (MariaDB then reports NULL: no restriction)."""
    with mariadb.connect() as conn:
        cur = conn.cursor()
        cur.execute("SELECT @@secure_file_priv")
        assert cur.fetchone()[0] is None
        assert server_reads(conn, str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # the probe file is removed


def test_server_confined_elsewhere_does_not_read(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with PrivateMariaDB(extra_args=(f"--secure-file-priv={allowed}",)) as server, server.connect() as conn:
        assert server_reads(conn, str(allowed))
        assert not server_reads(conn, str(elsewhere))


def test_stand_in_workers_load_server_side(qserv):
    assert qserv.emulator is not None and qserv.emulator.nodes
    assert not any(node.storage.load_local for node in qserv.emulator.nodes.values())

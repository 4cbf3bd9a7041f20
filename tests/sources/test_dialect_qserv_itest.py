"""Qserv's own integration-test files (tests/data/qserv-itest, vendored unchanged): comma-separated
``LOAD DATA`` files with ``\\N``, backslash escapes (``patch=159\\,0``), enclosures and binary values.

Each is read in the dialect its ingest JSON declares and compared with MariaDB's ``LOAD DATA`` of it; then
some go through ``qdask ingest`` into the Qserv stand-in as given and read back equal to that load.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from dialect_referee import Referee, qdask_rows, same_rows

from qdask.cli import main
from qdask.text_dialect import TextDialect

ITEST = Path(__file__).resolve().parents[1] / "data" / "qserv-itest"
FILES = [
    ("case02", "Object"),
    ("case02", "Source"),
    ("case03", "DeepCoadd"),
    ("case03", "DeepCoadd_Metadata"),
    ("case04", "DeepCoadd"),
    ("case04", "DeepSource"),
    ("case04", "DeepSourceDupKeys"),
]


def declared_dialect(case: str, table: str) -> dict:
    """The dialect options an ingest JSON declares (Qserv's notation is LOAD DATA's), latin1 like its DDL."""
    body = json.loads((ITEST / case / "data" / "ingest" / f"{table}.json").read_text())
    keys = ("fields_terminated_by", "fields_enclosed_by", "fields_escaped_by", "lines_terminated_by")
    return {"preset": "mysql", "charset": "latin1", **{k: body[k] for k in keys if k in body}}


def _columns_ddl(case: str, table: str) -> str:
    """The column definitions of the table's DDL file (the referee creates its own table around them)."""
    ddl = (ITEST / case / "data" / "schema" / f"{table}.schema").read_text()
    body = ddl[ddl.index("(") + 1 : ddl.rindex(")")]
    lines = [ln.strip().rstrip(",") for ln in body.splitlines() if ln.strip().startswith("`")]
    return ", ".join(lines)


@pytest.mark.parametrize(("case", "table"), FILES)
def test_an_itest_file_reads_as_mariadb_loads_it(referee: Referee, case, table):
    options = declared_dialect(case, table)
    dialect = TextDialect.resolve(options, "csv")
    path = ITEST / case / "data" / f"{table}.csv.gz"
    columns = _columns_ddl(case, table)
    loaded = referee.load(path, columns, dialect, table=f"{case}_{table}")
    assert loaded.warnings == () and loaded.rows
    ours = qdask_rows(path, columns, dialect)
    assert same_rows(ours, loaded.rows, referee.schema(columns))


def test_the_issue_examples_are_in_the_files():
    """The files hold what the dialect must get right (so the comparison above is not vacuous)."""
    import gzip

    case03 = gzip.decompress((ITEST / "case03/data/DeepCoadd.csv.gz").read_bytes())
    case04 = gzip.decompress((ITEST / "case04/data/DeepCoadd.csv.gz").read_bytes())
    assert b"159\\,0" in case03 and b"\\N" in case03 and b"\\0" in case03
    assert b'\\"' in case04 and b',"' in case04 and b"\\\n" in case04


def _table(case: str, name: str, **keys) -> dict:
    data = ITEST / case / "data"
    return {
        "name": name,
        **keys,
        "input": {"files": {"glob": str(data / f"{name}.csv.gz"), "dialect": declared_dialect(case, name)}},
        "schema": {"qserv_json": str(data / "ingest" / f"{name}.json")},
    }


def test_itest_files_ingest_as_given_and_read_back_as_mariadb_loads_them(
    qserv, referee: Referee, mariadb, tmp_path, monkeypatch
):
    """``qdask ingest`` of case02 Object/Source (a director and its child) and case04 DeepCoadd (enclosed,
    escaped, binary), straight from the gzipped files, equals MariaDB's LOAD DATA of the same files."""
    layout = json.loads((ITEST / "case02/data/ingest/database.json").read_text())
    config = {
        "database": {
            "name": "qdask_itest_dialect",
            "partitioning": {k: layout[k] for k in ("num_stripes", "num_sub_stripes", "overlap")},
            "charset_name": "latin1",
            "collation_name": "latin1_swedish_ci",
        },
        "tables": [
            _table("case02", "Object", kind="director", id="objectId", ra="ra_PS", dec="decl_PS"),
            _table(
                "case02",
                "Source",
                kind="child",
                director="Object",
                director_key="objectId",
                id="sourceId",
                ra="ra",
                dec="decl",
            ),
            _table("case04", "DeepCoadd", kind="regular"),
        ],
        "qserv": {"controller": qserv.controller_url, "czar": qserv.czar_dsn},
        "staging": {"directory": str(tmp_path / "staging")},
        "cluster": {"kind": "local", "workers": 2, "memory_per_worker": "2GiB"},
    }
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    path = tmp_path / "itest.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = CliRunner().invoke(main, ["ingest", str(path)])
    assert result.exit_code == 0, result.output
    conn = mariadb.connect("qdask_itest_dialect")
    for case, table in (("case02", "Object"), ("case02", "Source"), ("case04", "DeepCoadd")):
        columns = _columns_ddl(case, table)
        schema = referee.schema(columns)
        expected = referee.load(
            ITEST / case / "data" / f"{table}.csv.gz",
            columns,
            TextDialect.resolve(declared_dialect(case, table), "csv"),
            table=table,
        )
        names = ", ".join(f"`{n}`" for n in schema.names)
        with conn.cursor() as cur:
            cur.execute(f"SELECT {names} FROM `{table}`")  # the czar's view of the catalog
            found = sorted((tuple(r) for r in cur.fetchall()), key=repr)
        with referee.conn.cursor() as cur:
            cur.execute(f"SELECT {names} FROM `{table}`")
            plain = sorted((tuple(r) for r in cur.fetchall()), key=repr)
        assert expected.warnings == () and len(found) == len(plain) > 0, table
        assert found == plain, f"{table}: rows differ from MariaDB's LOAD DATA of the same file"
    conn.close()

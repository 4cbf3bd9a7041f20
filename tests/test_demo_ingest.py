"""`qdask demo` end to end on a real Butler repository: every Object and ForcedSource row lands once."""

from __future__ import annotations

import pyarrow.parquet as pq
from click.testing import CliRunner

from qdask.cli import main
from qdask.demo_run import run_demo


def test_demo_ingests_the_butler_repository_exactly(tmp_path, mariadb):
    result = run_demo(tmp_path / "demo", tracts=1, rows_per_patch=150, workers=2, mariadb=mariadb.dsn)
    summary = result.summary
    assert summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    checks = {(c.table, c.name) for c in summary.verify.checks}
    assert {
        ("Object", "key checksum"),
        ("ForcedSource", "rows per chunk"),
        ("CcdVisit", "sample rows"),
    } <= checks
    objects = sum(
        pq.ParquetFile(p).metadata.num_rows
        for p in (tmp_path / "demo" / "repo").rglob("objectTable_tract*.parq*")
    )
    assert objects == 4 * 150
    assert result.query_columns[0] == "objects" and result.query_rows[0][0] == objects
    staged = tmp_path / "demo" / "staging" / "contributions" / "Object"
    assert any(p.name.endswith("_overlap.txt") for p in staged.iterdir())  # the director got overlap files


def test_demo_command_help_names_its_steps():
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    assert "ingest" in result.output and "--mariadb" in result.output

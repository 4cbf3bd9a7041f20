"""`qdask demo` end to end on a real Butler repository: every Object and ForcedSource row lands once."""

from __future__ import annotations

import lsst.sphgeom as sg
import pyarrow.parquet as pq
from click.testing import CliRunner

from qdask.cli import main
from qdask.demo_run import CONE_RADIUS, run_demo


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
    # it ends with a cone search through the czar (qserv_areaspec_circle, scisql_nanojanskyToAbMag)
    assert "qserv_areaspec_circle(" in result.spatial_sql
    assert result.spatial_columns == ["objectId", "coord_ra", "coord_dec", "r_mag"] and result.spatial_rows
    center = sg.LonLat.fromDegrees(result.spatial_rows[0][1], result.spatial_rows[0][2])  # the first object
    for _, ra, dec, _mag in result.spatial_rows:
        assert sg.NormalizedAngle(center, sg.LonLat.fromDegrees(ra, dec)).asDegrees() <= CONE_RADIUS
    staged = tmp_path / "demo" / "staging" / "contributions" / "Object"
    assert any(p.name.endswith("_overlap.txt") for p in staged.iterdir())  # the director got overlap files


def test_demo_command_help_names_its_steps():
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    assert "ingest" in result.output and "--mariadb" in result.output

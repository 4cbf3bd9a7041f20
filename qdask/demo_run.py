"""`qdask demo`: the whole job on a local default, from nothing to a verified, queryable catalog.

It builds (or reuses) a DP0.2-shaped Butler repository (built whole or not at all, see `make_demo_repo`),
starts the Qserv stand-in on a private MariaDB server (or on one given by DSN), ingests `configs/demo.yaml`
(shipped as `qdask/demo.yaml`) with a local Dask cluster, verifies the result, and queries the catalog
through the stand-in's czar front end (Qserv's SQL): a summary, then a cone search
(``qserv_areaspec_circle``) around the first object, with magnitudes from ``scisql_nanojanskyToAbMag``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console

from qdask.api import prepare
from qdask.config import IngestConfig, config_from_dict
from qdask.demo import make_demo_repo
from qdask.ingest import IngestSummary
from qdask.mariadb import PrivateMariaDB
from qdask.qserv.czar import Czar

#: The demo's config, shipped in the package (configs/demo.yaml in a source tree links to it).
DEMO_CONFIG = Path(__file__).resolve().parent / "demo.yaml"
DEMO_AUTH_KEY = "demo-key"


CONE_RADIUS = 0.05  # degrees


@dataclass(frozen=True)
class DemoResult:
    config: IngestConfig
    summary: IngestSummary
    query_columns: list[str]
    query_rows: list[tuple]
    spatial_sql: str = ""
    spatial_columns: list[str] = field(default_factory=list)
    spatial_rows: list[tuple] = field(default_factory=list)


@contextlib.contextmanager
def _mariadb(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    with PrivateMariaDB() as server:
        yield server.dsn


def demo_config(workdir: Path, repo: Path, controller: str, czar: str, workers: int) -> IngestConfig:
    """configs/demo.yaml with the demo's repository, stand-in endpoints, staging and cluster size."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    for table in raw["tables"]:
        table["input"]["butler"]["repo"] = str(repo)
    raw["qserv"].update(controller=controller, czar=czar)
    raw["staging"] = {"directory": str(workdir / "staging")}
    raw["cluster"]["workers"] = workers
    return config_from_dict(raw, DEMO_CONFIG.parent)


def run_demo(
    workdir: Path,
    *,
    tracts: int = 2,
    rows_per_patch: int = 500,
    workers: int = 2,
    mariadb: str | None = None,
    console: Console | None = None,
) -> DemoResult:
    """Build, serve, ingest, verify and query; the stand-in and a private server stop at the end."""
    from qdask.emulator.server import EmulatorThread

    console = console or Console(stderr=True)
    workdir = Path(workdir).resolve()
    repo = workdir / "repo"
    for stale in workdir.glob("qdask-demo-repo-building-*"):  # a build killed before it could clean up
        shutil.rmtree(stale, ignore_errors=True)
    if not (repo / "butler.yaml").exists():
        console.print(f"[bold]1/4[/] building the demo Butler repository in {repo} ({tracts} tract(s))")
        shutil.rmtree(repo, ignore_errors=True)
        make_demo_repo(repo, tracts=tracts, rows_per_patch=rows_per_patch)
    else:
        console.print(f"[bold]1/4[/] reusing the demo Butler repository in {repo}")
    if mariadb is None:  # a fresh private server knows nothing of an earlier run's staging
        shutil.rmtree(workdir / "staging", ignore_errors=True)
    with (
        _mariadb(mariadb) as dsn,
        EmulatorThread(
            dsn, workers=3, auth_key=DEMO_AUTH_KEY, admin_auth_key="demo-admin-key", instance="qdask_demo"
        ) as qserv,
    ):
        console.print(
            f"[bold]2/4[/] Qserv stand-in: controller {qserv.controller_url}, czar {qserv.czar_dsn}"
        )
        os.environ["QSERV_AUTH_KEY"] = DEMO_AUTH_KEY
        config = demo_config(workdir, repo, qserv.controller_url, qserv.czar_dsn, workers)
        console.print(f"[bold]3/4[/] qdask ingest {DEMO_CONFIG.name} (database {config.database.name})")
        ingest, _ = prepare(config, console=console)
        ingest.show_plan()
        summary = ingest.run()
        sql = (
            "SELECT COUNT(*) AS objects, MIN(coord_ra) AS ra_min, MAX(coord_ra) AS ra_max, "
            "MIN(coord_dec) AS dec_min, MAX(coord_dec) AS dec_max FROM Object"
        )
        czar = Czar(qserv.czar_dsn)
        console.print(f'[bold]4/4[/] qdask query --db {config.database.name} "{sql}"')
        with czar.query(sql, database=config.database.name) as rows:
            columns, data = rows.columns, list(rows)
        spatial = cone_search_sql(czar, config.database.name)
        console.print(f'      qdask query --db {config.database.name} "{spatial}"')
        with czar.query(spatial, database=config.database.name) as rows:
            spatial_columns, spatial_rows = rows.columns, list(rows)
    return DemoResult(config, summary, columns, data, spatial, spatial_columns, spatial_rows)


def cone_search_sql(czar: Czar, database: str) -> str:
    """A cone search of radius CONE_RADIUS around the catalog's first object, in Qserv's SQL."""
    first = "SELECT objectId, coord_ra, coord_dec FROM Object ORDER BY objectId LIMIT 1"
    with czar.query(first, database=database) as rows:
        _, ra, dec = next(iter(rows))
    return (
        "SELECT objectId, coord_ra, coord_dec, scisql_nanojanskyToAbMag(r_psfFlux) AS r_mag FROM Object "
        f"WHERE qserv_areaspec_circle({ra!r}, {dec!r}, {CONE_RADIUS}) ORDER BY objectId"
    )

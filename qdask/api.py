"""qdask's Python API: what the `qdask` command does, as functions of a config.

A config is a path to a YAML file, an `IngestConfig` (`qdask.config.load_config`), or a mapping of the
file's content (relative paths then start at the current directory).

    import qdask
    from distributed import Client

    with Client(n_workers=8) as client:                  # your own Dask cluster
        summary = qdask.ingest("run1.2.yaml", client=client)
    print(summary.loaded.catalog, summary.verify.ok)

* `plan(config)` — the tables, their input units, the memory plan and the estimate (chunks, staging
  disk, time); reads the input, writes nothing.
* `ingest(config, client=None)` — every stage not yet done (resuming from the ledger); with `client`,
  the tasks run on that Dask client (left open), else on the cluster of the config's ``cluster:``.
  Returns the `IngestSummary`; `ingest` raises `QdaskError` subclasses for what a user can cause or meet.
* `verify(config)` — the czar against the ledger and the source; returns the `VerifyReport`.
* `status(config)` — what the staging directory records, or None when nothing was ingested there.
* `reset(config)` — remove what qdask wrote to the staging directory; returns the paths removed.
* `drop(config, published=False)` — delete the database in Qserv (`qdask drop`); the staging directory's
  files are then loaded again by the next `ingest`.

The `to_dict()` of each result is what the command prints with ``--json`` (docs/json.md).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qdask.config import IngestConfig, config_from_dict, load_config
from qdask.staging_lock import StagingLock, lock_path

if TYPE_CHECKING:
    from distributed import Client
    from rich.console import Console

    from qdask.estimate import Estimate
    from qdask.ingest import Ingest, IngestSummary
    from qdask.kube.memory import MemoryPlan
    from qdask.lifecycle import Dropped
    from qdask.stages.plan import TableSetup
    from qdask.stages.verify import VerifyReport

__all__ = [
    "Plan",
    "Status",
    "drop",
    "ingest",
    "load",
    "plan",
    "prepare",
    "reset",
    "staging_paths",
    "status",
    "verify",
]

ConfigLike = str | os.PathLike[str] | IngestConfig | Mapping[str, Any]


def load(config: ConfigLike) -> IngestConfig:
    """An `IngestConfig` from a path, a mapping, or itself (`ConfigError` lists every problem)."""
    if isinstance(config, IngestConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(dict(config), Path.cwd())
    return load_config(config)


# -- plan ---------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What an ingest of `config` would do: tables and units, memory per task, and the estimate."""

    config: IngestConfig
    setups: list[TableSetup]
    memory: MemoryPlan
    estimate: Estimate | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": str(self.config.source) if self.config.source else None,
            "database": self.config.database.name,
            "tables": [
                {
                    "name": s.name,
                    "kind": s.config.kind,
                    "columns": len(s.qserv_schema.columns),
                    "est_rows": s.est_rows,
                    "est_bytes": s.est_bytes,
                    "units": [
                        {"id": u.unit_id, "uri": u.uri, "est_rows": u.est_rows, "est_bytes": u.est_bytes}
                        for u in s.units
                    ],
                }
                for s in self.setups
            ],
            "memory": {
                "worker_limit": self.memory.worker_limit,
                "pod_limit": self.memory.pod_limit,
                "threads": self.memory.nthreads,
                "fits": self.memory.fits,
                "stages": [
                    {
                        "table": r.table,
                        "stage": r.stage,
                        "tasks": r.tasks,
                        "peak": r.peak,
                        "budget": r.budget,
                        "fits": r.fits,
                        "over": list(r.over),
                    }
                    for r in self.memory.rows
                ],
            },
            "estimate": None if self.estimate is None else self.estimate.to_dict(),
        }


def prepare(
    config: ConfigLike,
    *,
    client: Client | None = None,
    console: Console | None = None,
    progress_every: float | None = None,
) -> tuple[Ingest, MemoryPlan]:
    """The ingest driver of `config` with its plan made (units discovered, schemas resolved) and its
    units cut to fit the workers' memory, and that memory plan. Writes nothing."""
    from qdask.ingest import Ingest
    from qdask.kube.memory import fit_setups

    cfg = load(config)
    driver = Ingest(cfg, console=console, client=client, progress_every=progress_every)
    driver.plan()
    fitted, memory = fit_setups(list(driver.setups.values()), cfg)
    driver.setups = {s.name: s for s in fitted}
    return driver, memory


def plan(config: ConfigLike, *, estimate: bool = True) -> Plan:
    """Plan an ingest: discover units, resolve schemas, fit units to the workers' memory and (with
    `estimate`) measure chunks, staging disk and time. Reads the input; writes nothing."""
    from qdask.estimate import estimate as measure

    driver, memory = prepare(config)
    setups = list(driver.setups.values())
    return Plan(
        driver.config, setups, memory, measure(driver.config, setups, driver.record) if estimate else None
    )


# -- ingest, verify -------------------------------------------------------------------------------------


def ingest(
    config: ConfigLike,
    client: Client | None = None,
    *,
    stage_only: bool = False,
    verify: bool = True,
    console: Console | None = None,
    progress_every: float | None = None,
    take_over: bool = False,
    published: bool = False,
) -> IngestSummary:
    """Ingest `config`'s catalog (resuming whatever an earlier run left), as `qdask ingest` does.

    `client`: run the Dask tasks on this client (yours, left open; as hats-import's
    `pipeline_with_client`), instead of the cluster the config's ``cluster:`` describes. `console`: where
    progress goes (default: stderr). `take_over`, `published`: as `qdask ingest --take-over`,
    `--published` (add the config's new tables to the published catalog). Returns the summary
    (`summary.verify` holds the verify report).
    """
    driver, _ = prepare(config, client=client, console=console, progress_every=progress_every)
    driver.take_over, driver.published = take_over, published
    return driver.run(stage_only=stage_only, verify_after=verify)


def verify(
    config: ConfigLike,
    *,
    sample_size: int = 20,
    seed: int | None = None,
    unique_scan_rows: int | None = 10_000_000,  # qdask.stages.verify.UNIQUE_SCAN_ROWS (kept equal by a test)
) -> VerifyReport:
    """Compare Qserv (through the czar) with the ledger and the source, as `qdask verify` does; a table of
    more than `unique_scan_rows` rows is not grouped by its unique integer key through the czar (None:
    always)."""
    from qdask.ingest import Ingest

    return Ingest(load(config)).verify(sample_size=sample_size, seed=seed, unique_scan_rows=unique_scan_rows)


# -- status and reset ------------------------------------------------------------------------------------


def _ledger_path(cfg: IngestConfig) -> Path:
    return Path(cfg.staging.ledger or Path(cfg.staging.directory) / "ledger.sqlite")


@dataclass
class Status:
    """What a staging directory records: the ledger's counts, rows per table, publish and verify."""

    ledger: Path
    database: str
    run_id: str | None
    counts: dict[str, Any]
    tables: dict[str, dict[str, int]]
    published: dict[str, Any] | None
    verified: dict[str, Any] | None
    report: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": str(self.ledger),
            "database": self.database,
            "run_id": self.run_id,
            **{k: v for k, v in self.counts.items() if k != "run_id"},
            "tables": self.tables,
            "published": self.published,
            "verified": self.verified,
            "report": None if self.report is None else str(self.report),
        }


def status(config: ConfigLike) -> Status | None:
    """The staging directory's record (opens the ledger read-only in effect), None when there is none."""
    from qdask.counts import RowCounts, loaded_rows
    from qdask.ledger import Ledger
    from qdask.report import REPORT_NAME
    from qdask.runrecord import RunRecord

    cfg = load(config)
    path = _ledger_path(cfg)
    if not path.exists():
        return None
    staging = Path(cfg.staging.directory)
    record = RunRecord.load(path)
    with Ledger(path) as ledger:
        counts = ledger.summary()
        rows = ledger.table_rows()
        loaded = loaded_rows(ledger)
    tables = {
        name: {**values, **loaded.get(name, RowCounts()).to_dict()} for name, values in sorted(rows.items())
    }
    report = staging / REPORT_NAME
    return Status(
        path,
        cfg.database.name,
        counts["run_id"],
        counts,
        tables,
        record.published,
        record.verified,
        report if report.is_file() else None,
    )


#: What qdask writes in a staging directory (and nothing else there is touched by `reset`).
STAGING_DIRECTORIES = ("shards", "quarantine", "contributions", "keys")
STAGING_FILES = ("report.html", "dask-performance.html")


def staging_paths(config: ConfigLike) -> list[Path]:
    """The paths qdask wrote for `config` that exist now: staged data, the ledger, run record, reports."""
    from qdask.runrecord import RunRecord

    cfg = load(config)
    staging = Path(cfg.staging.directory)
    ledger = _ledger_path(cfg)
    candidates = [staging / d for d in STAGING_DIRECTORIES] + [staging / f for f in STAGING_FILES]
    candidates += [
        ledger,
        *(ledger.with_name(ledger.name + suffix) for suffix in ("-wal", "-shm", "-journal")),
        RunRecord.path_for(ledger),
        lock_path(ledger),
    ]
    return [p for p in candidates if p.exists()]


def reset(config: ConfigLike) -> list[Path]:
    """Remove what qdask wrote to the staging directory (`staging_paths`), so the next ingest of this
    config (or of a changed one) starts from nothing; other files there are left alone, and the staging
    directory itself is removed when it is left empty. Rows already loaded into Qserv stay there."""
    cfg = load(config)
    removed = staging_paths(cfg)
    if not removed:
        return removed
    with StagingLock(_ledger_path(cfg), what="reset"):  # never under a run that is still going
        for path in removed:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    staging = Path(cfg.staging.directory)
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()
    return removed


def drop(config: ConfigLike, *, published: bool = False) -> Dropped:
    """Delete `config`'s database from Qserv, as `qdask drop` does (`qdask.lifecycle.drop`)."""
    from qdask.lifecycle import drop as drop_database

    return drop_database(load(config), published=published)

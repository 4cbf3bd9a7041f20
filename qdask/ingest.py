"""The ingest driver: plan → partition → keys → collect → register → load → publish → verify.

The driver only orchestrates: it submits each stage's tasks (their functions live in `qdask.stages`),
waits for them, records what they return in the ledger, and reports. The staging rounds (partition,
placement indexes, key checks, collect) are `qdask.staging_run`'s; the clients and settings the driver
builds from the config are `qdask.run_settings`'. Dask tasks read inputs and write
staged files, and return small metadata; the driver holds no data. Each stage starts from what the ledger
says is left to do, so the same command re-run after any stop skips what is done and redoes what was in
flight. Stage boundaries are logged (`logging`, logger ``qdask.ingest``): start and end with counts and
time, and each unit or chunk at debug level. Besides the ledger, each run keeps its own account beside it
(``ledger.run.json``, `qdask.runrecord`: stage times, workers' memory, publish and verify) and writes the
run report ``<staging>/report.html`` (`qdask.report`) when it ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import sqlite3
import sys
import time
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client
from rich.console import Console

from qdask import extend, faultpoints
from qdask.cluster import open_client
from qdask.config import IngestConfig
from qdask.counts import RowCounts, loaded_rows, total
from qdask.errors import IngestError
from qdask.ledger import (
    ChunkFile,
    FileStatus,
    Ledger,
    LedgerConflict,
    LedgerError,
    Unit,
    UnitStatus,
)
from qdask.monitor import MemorySeries
from qdask.progress import plan_table, stage_progress
from qdask.qserv import QservClient, QservError
from qdask.run_settings import (
    chunks_per_transaction,
    cluster_spec,
    czar_for,
    fingerprint,
    load_settings,
    qserv_client,
)
from qdask.runrecord import RunRecord, now
from qdask.schema import SchemaError
from qdask.sources.units import SourceError
from qdask.stages.counters import counter_problems
from qdask.stages.key_policy import table_policy
from qdask.stages.load import (
    Loader,
    LoadError,
    LoadSettings,
    LoadSummary,
    StagedFileCorrupt,
    recover,
    staged_file_problem,
)
from qdask.stages.ownership import Identity, Owners, check_race, refuse_foreign, take_over
from qdask.stages.plan import PlanError, TableSetup, plan_ingest
from qdask.stages.preflight import check_staging, preflight, work_left
from qdask.stages.publish import is_published, publish
from qdask.stages.register import register_catalog
from qdask.stages.staging_errors import as_staging_error
from qdask.stages.unit_splits import keep_recorded_splits
from qdask.stages.verify import UNIQUE_SCAN_ROWS, VerifyReport
from qdask.stages.verify_catalog import verify_catalog
from qdask.staging_lock import StagingLock
from qdask.staging_run import ROUNDS, StagingRun, keys_root

log = logging.getLogger(__name__)


@dataclass
class IngestSummary:
    """What one run did: units partitioned, chunk files staged, rows loaded (catalog rows, overlap copies
    and replicas of regular tables, per table), transactions committed, and what it noticed."""

    run_id: str = ""
    resumed: bool = False
    units_partitioned: int = 0
    chunks_collected: int = 0
    rows: dict[str, RowCounts] = field(default_factory=dict)  # table → rows this run loaded into Qserv
    transactions: int = 0
    quarantined: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    nan_to_null: dict[str, dict[str, int]] = field(default_factory=dict)  # table → column → values
    notes: list[str] = field(default_factory=list)
    verify: VerifyReport | None = None
    report: Path | None = None

    @property
    def loaded(self) -> RowCounts:
        """The rows this run loaded, over all tables."""
        return total(self.rows)

    @property
    def changed_anything(self) -> bool:
        done = (self.units_partitioned, self.chunks_collected, self.loaded.stored, self.transactions)
        return any(done)

    def to_dict(self) -> dict[str, Any]:
        """The summary as `qdask ingest --json` prints it (docs/json.md)."""
        return {
            "run_id": self.run_id,
            "resumed": self.resumed,
            "units_partitioned": self.units_partitioned,
            "chunk_files_staged": self.chunks_collected,
            "transactions_committed": self.transactions,
            "rows_loaded": self.loaded.to_dict(),
            "tables": {name: counts.to_dict() for name, counts in sorted(self.rows.items())},
            "quarantined": {
                name: {"rows": rows, "files": paths}
                for name, (rows, paths) in sorted(self.quarantined.items())
            },
            "nan_to_null": self.nan_to_null,
            "notes": self.notes,
            "verify": None if self.verify is None else verify_to_dict(self.verify),
            "report": None if self.report is None else str(self.report),
        }


def verify_to_dict(report: VerifyReport) -> dict[str, Any]:
    """A verify report as `qdask verify --json` prints it (docs/json.md)."""
    return {
        "ok": report.ok,
        "checks": [
            {"table": c.table, "check": c.name, "ok": c.ok, "detail": c.detail} for c in report.checks
        ],
    }


# -- the driver ---------------------------------------------------------------------------------------


class Ingest:
    """One ingest of one config; `run()` does every stage that is not yet done.

    `client`: a Dask client to run the tasks on (the caller's, left open), instead of the cluster of
    `cluster:`. `progress_every`: seconds between plain progress lines when the console is no terminal.
    Nothing is written before `run()` (or `verify()`): `plan()` only reads.
    """

    def __init__(
        self,
        config: IngestConfig,
        *,
        console: Console | None = None,
        client: Client | None = None,
        progress_every: float | None = None,
        take_over: bool = False,
        published: bool = False,
    ):
        """`take_over`: adopt the transactions of another qdask run whose staging directory is lost
        (`qdask ingest --take-over`, `stages.ownership.take_over`) instead of refusing to load beside them.
        `published`: add the config's new tables to the catalog this staging directory published
        (`qdask ingest --published`, `qdask.extend`; the administrator's key un-publishes it first)."""
        self.config = config
        self.take_over = take_over
        self.published = published
        self.console = console or Console(stderr=True)
        self.client = client
        self.progress_every = progress_every
        self.staging = staging = Path(config.staging.directory)
        self.keys_root = keys_root(staging)
        self.summary = IngestSummary()
        self.setups: dict[str, TableSetup] = {}
        self.ledger_path = Path(config.staging.ledger or staging / "ledger.sqlite")
        self.record = RunRecord.load(self.ledger_path)
        self.memory = MemorySeries()

    @functools.cached_property
    def ledger(self) -> Ledger:
        """The ledger, opened (and created) on first use."""
        return Ledger(self.ledger_path)

    # -- plan -------------------------------------------------------------------------------------

    def plan(self) -> list[TableSetup]:
        """Discover every table's units and resolve its schema; a problem is an `IngestError` naming it."""
        t0 = time.perf_counter()
        try:
            setups = plan_ingest(self.config)
        except (PlanError, SchemaError, SourceError, OSError) as exc:
            raise IngestError(f"planning failed: {exc}") from exc
        self.setups = {s.name: s for s in setups}
        log.info(
            "plan: %d table(s), %d unit(s) in %.1f s",
            len(setups),
            sum(len(s.units) for s in setups),
            time.perf_counter() - t0,
        )
        return setups

    def show_plan(self) -> None:
        self.console.print(plan_table(self.config.database.name, self.setups.values()))

    # -- the run ----------------------------------------------------------------------------------

    def run(self, *, stage_only: bool = False, verify_after: bool = True) -> IngestSummary:
        """Every stage not yet done; the run report is written to staging when it ends (but for Ctrl-C).
        The staging directory is locked for the run's life (`qdask.staging_lock`): a second run refuses. A
        disk refusing a write to staging (full, read-only) stops the run as a `StagingWriteError`."""
        for folder in dict.fromkeys([self.staging, self.ledger_path.parent]):
            check_staging(folder, 0)  # writable, before the ledger, its lock or the run record
        with StagingLock(self.ledger_path, what="ingest"):
            return self._run_locked(stage_only=stage_only, verify_after=verify_after)

    def _run_locked(self, *, stage_only: bool, verify_after: bool) -> IngestSummary:
        try:
            self._open_run(stage_only)
            self.record.begin(workers=self.config.cluster.worker_count if self.client is None else None)
        except (OSError, sqlite3.Error) as exc:
            if (error := as_staging_error(exc, self.staging)) is None:
                raise
            raise error from exc
        outcome = "failed"
        try:
            self._run(stage_only=stage_only, verify_after=verify_after)
            outcome = "staged" if stage_only else "finished"
            return self.summary
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        except Exception as exc:
            outcome = f"stopped: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            if (error := as_staging_error(exc, self.staging)) is None:
                raise
            raise error from exc
        finally:
            try:
                self.record.end(outcome, self.memory.samples)
            except OSError as exc:  # a full or read-only staging must not hide the run's own outcome
                log.warning("the run record could not be saved: %s", exc)
            if outcome != "interrupted":
                self._write_report()

    def _open_run(self, stage_only: bool = False) -> None:
        """Open (or resume) this config's run in the ledger (a config that gained tables is accepted:
        `qdask.extend`), record its units and apply changed policies. What a published catalog cannot take
        is refused before the ledger records anything of it."""
        resumed = self.ledger.run() is not None
        if not self.setups:
            self.plan()
        self._keep_recorded_splits()
        if not stage_only:
            extend.refuse_early(self.config, self.ledger, self.setups.values(), allowed=self.published)
        try:
            run = extend.open_run(self.ledger, self.config, fingerprint)
        except (LedgerError, sqlite3.Error) as exc:
            raise IngestError(
                f"{exc}; or `qdask reset CONFIG` to start over in this staging directory"
            ) from exc
        self.summary.run_id, self.summary.resumed = run.run_id, resumed
        log.info("run %s: staging in %s", run.run_id, self.config.staging.directory)
        self._forget_gone_units()
        self.ledger.plan_units(
            Unit(u.unit_id, u.table, u.to_dict(), UnitStatus.PLANNED, u.est_rows, u.est_bytes)
            for s in self.setups.values()
            for u in s.units
        )
        faultpoints.reached("plan.recorded")
        self._apply_policy_changes()
        if resumed:
            message = resume_message(self.ledger, run.created)
            log.info("run %s: %s", run.run_id, message)
            self.console.print(f"resuming run {run.run_id}: {message}", soft_wrap=True, highlight=False)

    def _keep_recorded_splits(self) -> None:
        """Files already partitioned keep the units the ledger recorded (`stages.unit_splits`)."""
        setups, notes = keep_recorded_splits(list(self.setups.values()), self.ledger.units())
        self.setups = {s.name: s for s in setups}
        for note in notes:
            log.info(note)

    def _forget_gone_units(self) -> None:
        """Staging follows the input as it is now: units recorded by an earlier run that the plan no longer
        has (a file removed from the glob, a file rewritten into other row groups) are forgotten with their
        shards and the chunk files they fed; refused if those rows are already in Qserv."""
        planned = [u.unit_id for s in self.setups.values() for u in s.units]
        try:
            gone = self.ledger.forget_units(self.setups, planned)
        except LedgerConflict as exc:
            raise IngestError(
                f"{exc}. Qserv cannot delete loaded rows: put the input back as it was, or drop the "
                "database (`qdask drop CONFIG`) and `qdask reset CONFIG` to load the input as it is now"
            ) from exc
        for unit in gone:
            note = f"{unit.table}: {unit.unit_id} is no longer in the input; its staged rows were dropped"
            log.warning(note)
            self.summary.notes.append(note)

    @property
    def identity(self) -> Identity:
        """This run as its transactions' contexts name it (`stages.ownership`)."""
        return Identity.here(self.summary.run_id, self.staging, self.ledger_path)

    def _check_database(self) -> None:
        """Before any staging work, refuse what loading would refuse later: a database already published
        that this run did not load, or one another run is loading (`stages.ownership`). A Qserv that
        cannot be asked now is asked again before loading."""
        db = self.config.database.name
        try:
            with qserv_client(self.config) as qserv:
                info = qserv.database_info(db)
                if info is None:
                    return
                if info.get("is_published"):
                    if not self.ledger.chunk_files(status=FileStatus.LOADED) and not self.record.published:
                        raise IngestError(
                            f"database {db} is already published in Qserv, and this staging directory did "
                            "not load it: Qserv takes no transaction into a published database (it would "
                            "have to be un-published by an administrator first). Ingest under another "
                            "database name, or delete it with `qdask drop CONFIG --published` (admin key)."
                        )
                    return
                refuse_foreign(Owners(qserv, self.ledger, db, self.identity), take_over=self.take_over)
        except QservError as exc:
            log.warning("database %s not checked before staging (%s); it is before loading", db, exc)

    def _check_counters(self, qserv: QservClient) -> None:
        """Verify before publish (`stages.counters`): Qserv's row counters must match the ledger."""
        db = self.config.database.name
        if is_published(qserv, db):
            return
        t0 = time.perf_counter()
        tables = extend.unpublished(qserv, db, [t.name for t in self.config.tables])  # what this run loads
        problems = counter_problems(qserv, self.ledger, db, tables)
        self.record.stage("counters", time.perf_counter() - t0)
        if problems:
            more = f"\n  … {len(problems) - 20} more" if len(problems) > 20 else ""
            lines = "\n  ".join(problems[:20]) + more
            raise IngestError(
                f"verification before publish failed: Qserv's row counters of database {db} differ from "
                f"the ledger:\n  {lines}\nThe database is left unpublished. Qserv cannot remove rows of a "
                "committed transaction, so `qdask drop CONFIG` deletes the database, then the same "
                "`qdask ingest` loads it again (the staged files are kept)."
            )

    def _preflight(self, stage_only: bool) -> None:
        """Staging, controller, auth key, database state and czar, before any work (`stages.preflight`)."""
        t0 = time.perf_counter()
        work = work_left(self.config, self.ledger, list(self.setups.values()), self.record)
        with qserv_client(self.config) as qserv:
            passed = preflight(
                self.config,
                qserv,
                czar_for(self.config),
                work,
                stage_only=stage_only,
                published=self.published,
            )
        for line in passed:
            log.info("preflight: %s", line)
        log.info("preflight: %d check(s) passed in %.1f s", len(passed), time.perf_counter() - t0)

    def _run(self, *, stage_only: bool, verify_after: bool) -> None:
        self._preflight(stage_only)
        if not stage_only:
            self._check_database()
        if self.ledger.units_to_partition() or self.ledger.chunks_to_collect():
            from qdask.report import PERFORMANCE_NAME, dask_performance_report

            with self._dask() as client:
                self.console.print(f"Dask dashboard: {client.dashboard_link}")
                with dask_performance_report(client, self.staging / PERFORMANCE_NAME):
                    self._stage_files(client)
        if stage_only:
            self.summary.notes.append("stage-only: every contribution file is staged with its checksum")
            return
        try:
            with qserv_client(self.config) as qserv:
                qserv.check_version()
                if self.published:  # tables added to a published catalog: un-publish it first
                    self.summary.notes += extend.reopen(qserv, self.config, self.ledger)
                self._load(qserv)
                self._check_counters(qserv)
                t0 = time.perf_counter()
                self.summary.notes += publish(
                    qserv,
                    self.config.database.name,
                    directors=extend.directors_to_index(self.config, self.record),
                    auto_build_director_index=self.config.database.auto_build_director_index,
                )
                log.info("publish: done in %.1f s", time.perf_counter() - t0)
                self.record.published = extend.published_record(self.config, self.record)
                self.record.stage("publish", time.perf_counter() - t0)
        except (LoadError, QservError) as exc:  # the ledger is consistent: say so instead of a traceback
            raise IngestError(
                f"{exc}\nEvery row loaded so far is committed and recorded; transactions left open are "
                "aborted by the next run. Re-run the same command to resume."
            ) from exc
        if verify_after:
            faultpoints.reached("verify.started")
            t0 = time.perf_counter()
            self.summary.verify = self.verify()
            log.info(
                "verify: %s in %.1f s",
                "passed" if self.summary.verify.ok else "FAILED",
                time.perf_counter() - t0,
            )
            self.record.stage("verify", time.perf_counter() - t0, items=len(self.summary.verify.checks))

    @contextlib.contextmanager
    def _dask(self) -> Iterator[Client]:
        """The caller's Dask client, or one of a cluster started from `cluster:` (shut down on exit)."""
        if self.client is not None:
            yield self.client
            return
        with open_client(cluster_spec(self.config)) as client:
            yield client

    def _apply_policy_changes(self) -> None:
        """A key policy (`duplicate_ids`, `orphans`) changed since the staged files were collected is applied
        by collecting its family's staged files again; a change that cannot be applied stops the run."""
        problems = []
        for t in self.config.tables:  # positions quarantined earlier, which `stop` would have stopped at
            if t.is_partitioned and t.policies.invalid_positions == "stop":
                done = self.ledger.units(table=t.name, status=UnitStatus.PARTITIONED)
                if quarantined := sum(u.rows_invalid or 0 for u in done):
                    problems.append(
                        f"table {t.name}: {quarantined:,} row(s) with invalid positions were quarantined by "
                        "an earlier run, which policies.invalid_positions: stop would have stopped"
                    )
        policies: dict[str, str] = {
            t.name: p for t in self.config.tables if (p := table_policy(t)) is not None
        }
        before = self.record.key_policies
        changed = {name for name, p in policies.items() if before.get(name, p) != p}
        directors = {getattr(self.config.table(name), "director", name) for name in changed}
        family = [t.name for t in self.config.tables if {t.name, getattr(t, "director", None)} & directors]
        for name in family:
            files = self.ledger.chunk_files(table=name)
            loaded = [f for f in files if f.status == FileStatus.LOADED]
            if loaded:
                problems.append(
                    f"table {name}: key policies changed ({describe_change(before, policies, changed)}), but "
                    f"{len(loaded)} of its chunk files are loaded in Qserv under the old ones"
                )
                continue
            try:
                for f in files:
                    self.ledger.drop_chunk_file(f.key)
            except LedgerError as exc:
                problems.append(f"table {name}: {exc}")
                continue
            if files:
                note = (
                    f"{name}: key policies changed ({describe_change(before, policies, changed)}): its "
                    f"{len(files)} staged chunk file(s) are collected again under the new ones"
                )
                log.info(note)
                self.console.print(note, soft_wrap=True, highlight=False)
                self.summary.notes.append(note)
        if problems:
            raise IngestError(
                "the config's policies changed in a way the staged data cannot follow:\n  "
                + "\n  ".join(problems)
                + "\nSet them back, or (after dropping the database in Qserv, if anything was loaded) "
                "`qdask reset CONFIG` to stage again."
            )
        if policies != before:
            self.record.key_policies = policies
            self.record.save()

    def _write_report(self) -> None:
        """The run report, `<staging>/report.html`; a failure to write it is logged, never raised."""
        from qdask.report import write_run_report

        try:
            self.summary.report = write_run_report(self.config, self.ledger, self.record)
        except Exception as exc:  # noqa: BLE001 - the report must never hide the run's own outcome
            log.warning("the run report could not be written: %s: %s", type(exc).__name__, exc)

    def staging_run(self) -> StagingRun:
        """The staging orchestration over this run's config, ledger, plan and records (a subclass may return
        its own, e.g. the benchmark suite's, which times each stage)."""
        parts = (self.config, self.ledger, self.setups, self.summary, self.record, self.console, self.memory)
        return StagingRun(*parts, progress_every=self.progress_every)

    def _stage_files(self, client: Client) -> None:
        """Partition, check keys and collect until every chunk is staged (`qdask.staging_run`)."""
        self.staging_run().run(client)

    # -- load -------------------------------------------------------------------------------------

    def _load(self, qserv: QservClient) -> None:
        db = self.config.database.name
        if is_published(qserv, db):
            if self.ledger.files_to_load():
                raise IngestError(
                    f"database {db} is already published, but this run still has files to load; "
                    "Qserv cannot append to a published catalog"
                )
            return
        register_catalog(qserv, self.config, {n: s.qserv_schema for n, s in self.setups.items()})
        faultpoints.reached("load.registered")
        self.summary.notes += recover(qserv, self.ledger, db, self.summary.run_id)
        faultpoints.reached("load.recovered")
        owners = Owners(qserv, self.ledger, db, self.identity)
        if self.take_over:
            self.summary.notes += take_over(owners)
        refuse_foreign(owners)
        faultpoints.reached("load.owner_checked", db)
        chunks = chunks_per_transaction(self.config, self.ledger, self.ledger.files_to_load())
        settings = dataclasses.replace(
            load_settings(self.config, self.summary.run_id, chunks), owner=self.identity.to_context()
        )
        for _ in range(ROUNDS):
            files = self.ledger.files_to_load()
            if not files:
                return
            t0 = time.perf_counter()
            log.info("load: %d contribution file(s) to load", len(files))
            try:
                result = self._load_files(qserv, settings, files, owners)
            except StagedFileCorrupt as exc:
                self.summary.notes.append(str(exc))
                self._restage(exc)
                continue
            loaded = loaded_rows(self.ledger, only={f.key for f in files})
            counts = total(loaded)
            log.info(
                "load: %d catalog row(s) (+ %d overlap copies, + %d replicas of regular tables) in %d "
                "transaction(s) committed in %.1f s",
                counts.catalog,
                counts.overlap,
                counts.replicas,
                result.transactions_committed,
                time.perf_counter() - t0,
            )
            for table, table_counts in loaded.items():
                self.summary.rows[table] = self.summary.rows.get(table, RowCounts()) + table_counts
            self.summary.transactions += result.transactions_committed
            self.summary.notes += result.notes
            self.record.stage(
                "load",
                time.perf_counter() - t0,
                items=len(files),
                rows=counts.stored,
                bytes=sum(f.bytes for f in files),
            )
        if self.ledger.files_to_load():
            raise IngestError(
                "some contribution files could not be loaded; re-run the same command to resume"
            )

    def _load_files(
        self, qserv: QservClient, settings: LoadSettings, files: list[ChunkFile], owners: Owners
    ) -> LoadSummary:
        with stage_progress(
            self.console, "load", len(files), "chunk file(s)", every=self.progress_every
        ) as progress:
            loader = Loader(
                qserv,
                self.ledger,
                settings,
                on_file=lambda f: progress.advance(1, rows=f.rows),
                on_begun=lambda tid: check_race(owners, tid),
            )
            return loader.run(files)

    def _restage(self, found: StagedFileCorrupt) -> None:
        """One damaged contribution file found: check every file still to load, once, and collect the
        damaged ones again."""
        for file in self.ledger.files_to_load():
            problem = staged_file_problem(file)
            if problem is not None or file.key == found.file.key:
                self.ledger.drop_chunk_file(file.key)
                if file.key != found.file.key:
                    self.summary.notes.append(f"{file.path} {problem}; collected again")
        with self._dask() as client:
            self._stage_files(client)

    # -- verify -----------------------------------------------------------------------------------

    def verify(
        self,
        sample_size: int = 20,
        *,
        seed: int | None = None,
        unique_scan_rows: int | None = UNIQUE_SCAN_ROWS,
    ) -> VerifyReport:
        """The verify stage over this config's tables (planned first when needed); `unique_scan_rows`: a
        table with more rows is not grouped by its unique integer key through the czar
        (`qdask.stages.verify`)."""
        if not self.setups:
            self.plan()
        report = verify_catalog(
            czar_for(self.config),
            self.ledger,
            self.config.database.name,
            list(self.setups.values()),
            self.keys_root,
            sample_size=sample_size,
            seed=seed,
            unique_scan_rows=unique_scan_rows,
        )
        failed = [f"{c.table}: {c.name}: {c.detail}" for c in report.checks if not c.ok]
        self.record.verified = {"at": now(), "ok": report.ok, "checks": len(report.checks), "failed": failed}
        self.record.save()
        return report


def resume_message(ledger: Ledger, created: str) -> str:
    """What a resumed run reuses from the ledger, and what is left to do."""
    s = ledger.summary()
    units, files, transactions = s["units"], s["chunk_files"], s["transactions"]
    reused = (
        f"reusing {units.get('partitioned', 0)} partitioned unit(s), {files.get('staged', 0)} staged and "
        f"{files.get('loaded', 0)} loaded chunk file(s) ({transactions.get('committed', 0)} committed "
        f"transaction(s)), recorded since {created}"
    )
    todo = [
        f"{n} unit(s) to partition" if (n := units.get("planned", 0) + units.get("failed", 0)) else "",
        f"{n} chunk file(s) to collect" if (n := s["chunks_to_collect"]) else "",
        f"{n} transaction(s) left open to settle" if (n := transactions.get("started", 0)) else "",
    ]
    todo = [t for t in todo if t]
    return reused + ("; to do: " + ", ".join(todo) if todo else "")


def describe_change(before: Mapping[str, str], after: Mapping[str, str], tables: set[str]) -> str:
    """`Object: stop → quarantine, …` for the tables whose key policy changed."""
    return ", ".join(f"{t}: {before.get(t)} → {after.get(t)}" for t in sorted(tables))


class _CallableModule(types.ModuleType):
    """This module, callable: ``qdask.ingest(config, client=...)`` runs `qdask.api.ingest` (a package
    attribute cannot be both the driver module, which Python binds on import, and the API function)."""

    def __call__(self, config: Any, client: Client | None = None, **options: Any) -> IngestSummary:
        from qdask.api import ingest

        return ingest(config, client, **options)


sys.modules[__name__].__class__ = _CallableModule

"""The ingest driver: plan → partition → keys → collect → register → load → publish → verify.

The driver only orchestrates: it submits each stage's tasks (their functions live in `qdask.stages`),
waits for them, records what they return in the ledger, and reports. Dask tasks read inputs and write
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

from distributed import Client, Future, as_completed
from pydantic import SecretStr
from rich.console import Console

from qdask import extend, faultpoints
from qdask.cluster import ClusterSpec, open_client
from qdask.config import ChildTable, IngestConfig
from qdask.counts import RowCounts, loaded_rows, total
from qdask.errors import QdaskError
from qdask.kube import oom
from qdask.ledger import (
    ChunkFile,
    FileStatus,
    Ledger,
    LedgerError,
    TransactionState,
    Unit,
    UnitStatus,
    config_fingerprint,
)
from qdask.monitor import MemorySeries, MemoryWatch
from qdask.progress import plan_table, stage_progress
from qdask.qserv import QservClient, QservError
from qdask.qserv.czar import DSN as CzarDSN
from qdask.qserv.czar import Czar
from qdask.runrecord import RunRecord, now
from qdask.schema import SchemaError
from qdask.sources.units import InputUnit, SourceError
from qdask.stages import placement
from qdask.stages.collect import (
    Collected,
    CorruptShardError,
    collect_task,
    collect_task_for,
    key_text,
    plan_collect,
)
from qdask.stages.counters import counter_problems
from qdask.stages.keys import (
    CorruptKeyFile,
    KeyProblems,
    UnitKeyFile,
    check_family_task,
    exclusion_path,
    family_checks,
    key_column,
    outcome,
    table_policy,
    unit_key_files,
    unit_keys_task,
)
from qdask.stages.load import (
    Loader,
    LoadError,
    LoadSettings,
    LoadSummary,
    StagedFileCorrupt,
    plan_transactions,
    recover,
    staged_file_problem,
)
from qdask.stages.ownership import Identity, Owners, check_race, refuse_foreign, take_over
from qdask.stages.partition import PartitionResult, partition_task
from qdask.stages.placement import (
    PlacementIndex,
    bucket_task,
    index_directory,
    placement_path,
    plan_buckets_task,
)
from qdask.stages.plan import PlanError, TableSetup, plan_ingest
from qdask.stages.preflight import check_staging, preflight, work_left
from qdask.stages.publish import is_published, publish
from qdask.stages.register import register_catalog
from qdask.stages.staging_errors import as_staging_error
from qdask.stages.verify import VerifyReport
from qdask.stages.verify_catalog import verify_catalog
from qdask.staging_lock import StagingLock

log = logging.getLogger(__name__)

T = TypeVar("T")
ROUNDS = 3
"""Rounds of staging (and of loading) before giving up: a corrupt shard or file found costs one."""


class IngestError(QdaskError, RuntimeError):
    """The ingest stopped; the message says why, and the ledger lets the same command resume."""


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


# -- what the driver builds from the config -----------------------------------------------------------

#: Table settings that act only after staging (registration in Qserv): they may change between runs.
AFTER_STAGING = ("collation_name", "unique_primary_key", "policies")


def fingerprint(config: IngestConfig) -> str:
    """What determines the staged data, and so must not change while a staging directory is reused: the
    database name and layout, and each table's kind, keys, input, schema, columns, overlap and charset.

    The Qserv endpoints, the cluster, the staging options and the settings that act after staging may
    change between runs (e.g. `--controller` to reach the same Qserv another way). Key policies are not
    part of it either: a changed `duplicate_ids`/`orphans` is applied by collecting the affected chunk
    files again (`Ingest` checks what a changed policy touches).
    """
    shown = config.display_dict()
    tables = [{k: v for k, v in t.items() if k not in AFTER_STAGING} for t in shown["tables"]]
    database = {k: shown["database"][k] for k in ("name", "partitioning")}
    return config_fingerprint({"database": database, "tables": tables})


def cluster_spec(config: IngestConfig) -> ClusterSpec:
    c = config.cluster
    return ClusterSpec(
        kind=c.kind,
        workers=c.workers,
        threads_per_worker=c.threads_per_worker,
        memory_per_worker=c.worker_memory_limit,  # on Kubernetes: 0.9 x the pod limit unless set
        scheduler_address=c.scheduler_address,
        kubernetes=c.kubernetes if c.kind == "kubernetes" else None,
        staging_directory=str(config.staging.directory) if c.kind == "kubernetes" else None,
    )


def qserv_client(config: IngestConfig) -> QservClient:
    """The Replication/Ingest client `qserv:` describes: controller, auth key, API version, timeouts and
    retries (`retries.attempts` counts the first try; the transport counts the tries after it)."""
    q = config.qserv
    return QservClient(
        q.controller,
        q.auth_key,
        version=q.api_version,
        timeout=q.timeouts.request,
        load_timeout=q.timeouts.load,
        connect_timeout=q.timeouts.connect,
        retries=q.retries.attempts - 1,
        backoff=q.retries.backoff,
        backoff_max=q.retries.backoff_max,
    )


def czar_for(config: IngestConfig) -> Czar:
    """SQL through the czar of `qserv.czar`, with the password of `$qserv.czar_password_env` when set
    (else the DSN's), passed as it is (never through a URL), and `timeouts.connect`."""
    q = config.qserv
    c = q.czar
    password = q.czar_password or SecretStr("")
    return Czar(CzarDSN(c.host, c.port, c.user, password, c.database), connect_timeout=q.timeouts.connect)


def load_settings(config: IngestConfig, run_id: str) -> LoadSettings:
    """What the load stage takes from `qserv:`: transaction sizes, concurrency, retries of a contribution
    Qserv allows to retry (`retries.attempts` counts the first try) and their backoff."""
    q = config.qserv
    return LoadSettings(
        database=config.database.name,
        run_id=run_id,
        charsets={t.name: config.table_charset(t)[0] for t in config.tables},
        max_chunks_per_transaction=q.max_chunks_per_transaction,
        max_bytes_per_transaction=q.max_bytes_per_transaction,
        concurrency_total=q.concurrency.total,
        concurrency_per_worker=q.concurrency.per_worker,
        redo_attempts=3,
        retries_in_transaction=q.retries.attempts - 1,
        retry_backoff=q.retries.backoff,
    )


def check_transaction_budget(config: IngestConfig, ledger: Ledger, files: list[ChunkFile]) -> None:
    """Refuse a load that would take more transactions than `qserv.max_transactions`: until publish, each
    transaction is a MariaDB partition of every table of the database (committed ones count)."""
    q = config.qserv
    planned = len(plan_transactions(files, q.max_chunks_per_transaction, q.max_bytes_per_transaction))
    committed = len(ledger.transactions(state=TransactionState.COMMITTED))
    if committed + planned > q.max_transactions:
        raise IngestError(
            f"loading {len(files)} chunk file(s) takes {planned} transaction(s) of at most "
            f"{q.max_chunks_per_transaction} chunks and {q.max_bytes_per_transaction:,} bytes, and "
            f"{committed} are committed already: more than qserv.max_transactions = {q.max_transactions} "
            "(each is a MariaDB partition of every table until publish). Raise "
            "qserv.max_chunks_per_transaction or max_bytes_per_transaction (fewer, larger transactions), "
            "or max_transactions (at most 8192)."
        )


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
        self.shard_root = staging / "shards"
        self.quarantine_root = staging / "quarantine"
        self.contrib_root = staging / "contributions"
        self.keys_root = staging / "keys"
        self.summary = IngestSummary()
        self.setups: dict[str, TableSetup] = {}
        self.ledger_path = Path(config.staging.ledger or staging / "ledger.sqlite")
        self.record = RunRecord.load(self.ledger_path)
        self.memory = MemorySeries()
        self._item_rows = 0  # rows of the item a stage loop body just recorded (for the progress display)
        self._item_count = 1  # items (chunk files) the future a stage loop body just handled stands for

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

    def _as_completed(
        self,
        client: Client,
        futures: Mapping[Future, T],
        stage: str,
        what: str = "task(s)",
        total: int | None = None,
    ) -> Iterator[tuple[T, Future, MemoryWatch]]:
        """Each submitted item with its future as it completes, the progress advancing (by the items and
        rows the loop body recorded in `_item_count` and `_item_rows`; `total` items, by default one per
        future) and worker memory sampled meanwhile (the `MemoryWatch` explains a task that killed its
        workers, and feeds the run report's memory plot)."""
        total = len(futures) if total is None else total
        with (
            stage_progress(self.console, stage, total, what, every=self.progress_every) as progress,
            MemoryWatch(client, series=self.memory) as memory,
        ):
            for future in as_completed(futures):
                self._item_rows, self._item_count = 0, 1
                yield futures[future], future, memory
                progress.advance(self._item_count, rows=self._item_rows)

    # -- staging: partition, key checks, collect ---------------------------------------------------

    def _stage_files(self, client: Client) -> None:
        """Partition and collect until every chunk is staged (corrupt shards send units back)."""
        for _ in range(ROUNDS):
            if self.ledger.units_to_partition():
                self._partition(client)
            if not self.ledger.chunks_to_collect():
                return
            if self._check_keys(client):  # a shard the key check needed is damaged: its unit is redone
                continue
            if not self._collect(client):
                return
        raise IngestError(f"staging did not settle after {ROUNDS} rounds of rebuilding corrupt shards")

    def _partition(self, client: Client) -> None:
        """Partition every unit to do: children placed by their director's id last, once the index of their
        director's placements is built (`qdask.stages.placement`)."""
        by_id = {
            t.name: t.director for t in self.config.tables if isinstance(t, ChildTable) and t.placed_by_id
        }
        todo = self.ledger.units_to_partition()
        first = [u for u in todo if u.table not in by_id]
        if first:
            self._partition_units(client, first, {})
        later = [u for u in self.ledger.units_to_partition() if u.table in by_id]
        if later:
            directors = sorted({by_id[u.table] for u in later})
            indexes = {d: self._placement_index(client, d) for d in directors}
            self._partition_units(client, later, {t: indexes[d] for t, d in by_id.items() if d in indexes})

    def _placement_index(self, client: Client, director: str) -> PlacementIndex:
        """Build (or reuse) the index of `director`'s row placements that its id-placed children read."""
        column = self.setups[director].plan.key_column
        assert column is not None

        def unit_files() -> list[UnitKeyFile]:
            return unit_key_files(self.ledger.shards(table=director), {director: column}, self.keys_root)[
                director
            ]

        files = unit_files()
        lost = [f for f in files if not (f.path.is_file() and placement_path(f.path).is_file())]
        for f in lost:  # partitioned again, which writes both
            self.ledger.unit_failed(f.unit_id, f"placement file of unit {f.unit_id} is missing")
        if lost:
            again = [u for u in self.ledger.units_to_partition() if u.table == director]
            self._partition_units(client, again, {})
            files = unit_files()
        paths = [str(f.path) for f in files]
        t0 = time.perf_counter()
        directory = index_directory(self.staging, director, paths)
        index = PlacementIndex.open(directory)
        if index is None:
            key = f"placement-plan-{director}-{uuid4().hex[:8]}"
            starts = client.submit(plan_buckets_task, paths, placement.BUCKET_ROWS, key=key).result()
            index = PlacementIndex(str(directory), tuple(starts))
            futures = {
                client.submit(
                    bucket_task,
                    b,
                    starts,
                    paths,
                    index.directory,
                    key=f"placement-{director}-{b}-{uuid4().hex[:8]}",
                ): b
                for b in range(len(starts) + 1)
            }
            for _, future, memory in self._as_completed(client, futures, f"index of {director}", "bucket(s)"):
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001
                    raise IngestError(memory.explain(exc, f"placement index of {director}")) from exc
            index.save_starts()
        log.info(
            "placement index of %s: %d bucket(s) in %.1f s",
            director,
            len(index.starts) + 1,
            time.perf_counter() - t0,
        )
        return index

    def _partition_units(
        self, client: Client, todo: list[Unit], placements: dict[str, PlacementIndex]
    ) -> None:
        t0 = time.perf_counter()
        log.info("partition: %d unit(s) to partition", len(todo))
        roots = str(self.shard_root), str(self.quarantine_root), str(self.keys_root)
        futures: dict[Future, Unit] = {}
        for unit in todo:
            setup = self.setups[unit.table]
            attempt = self.ledger.unit_started(unit.unit_id)
            plan = (
                setup.plan
                if unit.table not in placements
                else replace(setup.plan, placement=placements[unit.table])
            )
            future = client.submit(
                partition_task,
                InputUnit.from_dict(unit.spec),
                plan,
                setup.input_schema,
                *roots,
                # a key per attempt: with a reused key Dask may hand back the previous attempt's result
                key=f"partition-{unit.unit_id}-{attempt}",
                pure=False,
            )
            futures[future] = unit
        faultpoints.reached("partition.submitted")
        failed = []
        rows = 0
        for unit, future, memory in self._as_completed(client, futures, "partition", "unit(s)"):
            try:
                result: PartitionResult = future.result()
            except Exception as exc:  # noqa: BLE001 - recorded and reported per unit below
                text = memory.explain(exc, f"unit {unit.unit_id} (table {unit.table})")
                # on Kubernetes: the pod's last termination (OOMKilled), its limit and the estimate
                text += oom.kill_cause(
                    exc, client, self.config, InputUnit.from_dict(unit.spec), self.setups[unit.table].plan
                )
                self.ledger.unit_failed(unit.unit_id, text)
                log.debug("partition: unit %s failed: %s", unit.unit_id, text)
                failed.append((unit.unit_id, text))
            else:
                faultpoints.reached("partition.result", unit.unit_id)
                self._record_partition(result)
                faultpoints.reached("partition.recorded", unit.unit_id)
                rows += result.rows_read
                self._item_rows = result.rows_read
        log.info(
            "partition: %d unit(s) partitioned, %d failed in %.1f s",
            len(todo) - len(failed),
            len(failed),
            time.perf_counter() - t0,
        )
        self.record.stage("partition", time.perf_counter() - t0, items=len(todo) - len(failed), rows=rows)
        if failed:
            lines = "\n".join(f"  {uid}: {_short(text)}" for uid, text in failed[:10])
            raise IngestError(
                f"{len(failed)} unit(s) failed to partition:\n{lines}\n"
                "Fix the cause and re-run the same command; finished units are kept."
            )

    def _record_partition(self, result: PartitionResult) -> None:
        self.ledger.unit_partitioned(
            result.unit_id,
            result.shards,
            rows_read=result.rows_read,
            rows_invalid=result.rows_invalid,
            rows_quarantined=result.rows_invalid,
        )
        log.debug(
            "partition: unit %s recorded: %d row(s) read, %d invalid, %d shard(s)",
            result.unit_id,
            result.rows_read,
            result.rows_invalid,
            len(result.shards),
        )
        self.summary.units_partitioned += 1
        if result.rows_invalid and result.quarantine_path is not None:
            count, paths = self.summary.quarantined.get(result.table, (0, []))
            self.summary.quarantined[result.table] = (
                count + result.rows_invalid,
                [*paths, result.quarantine_path],
            )

    def _check_keys(self, client: Client) -> bool:
        """Duplicate director ids and orphan child rows, before chunk files are written; by each table's
        policy the run stops (nothing loaded) or the rows are quarantined by the collect stage. Returns
        True when a damaged shard or key file sent work back (the staging round starts again)."""
        pending = {k.table for k in self.ledger.chunks_to_collect()}
        columns = {name: s.plan.key_column for name, s in self.setups.items() if s.plan.key_column}
        files = unit_key_files(self.ledger.shards(), columns, self.keys_root)
        checks, notes = family_checks(self.config, files, pending)
        self.summary.notes += notes
        if not checks:
            return False
        t0 = time.perf_counter()
        missing = [f for c in checks for t in c.tables for f in files[t.name] if not f.path.is_file()]
        log.info("keys: %d famil(ies) to check, %d unit key file(s) to rebuild", len(checks), len(missing))
        if missing and self._rebuild_unit_keys(client, missing):
            return True
        redo = False
        submitted = {
            client.submit(
                check_family_task, c, str(self.keys_root), key=f"keycheck-{c.director.name}-{uuid4().hex[:8]}"
            ): c
            for c in checks
        }
        problems: list[KeyProblems] = []
        for family, future, memory in self._as_completed(client, submitted, "key check", "famil(ies)"):
            try:
                problems += future.result()
            except CorruptKeyFile as exc:  # removed by the task: rebuilt from its shards next round
                self.summary.notes.append(str(exc))
                redo = True
            except Exception as exc:  # noqa: BLE001
                raise IngestError(memory.explain(exc, f"key check of {family.director.name}")) from exc
        if redo:
            return True
        policies = {t.name: t.policy for c in checks for t in c.tables}
        result = outcome(problems, policies, self.quarantine_root)
        self.summary.notes += result.notes
        log.info(
            "keys: %d famil(ies) checked, %d table(s) with problems in %.1f s",
            len(checks),
            len(problems),
            time.perf_counter() - t0,
        )
        self.record.stage("keys", time.perf_counter() - t0, items=len(checks))
        if result.stops:
            raise IngestError(
                "bad input, and the policy says stop (nothing was loaded):\n  "
                + "\n  ".join(result.stops)
                + "\nFix the input (or set the table's policies to quarantine) and re-run the same command."
            )
        return False

    def _rebuild_unit_keys(self, client: Client, missing: list[UnitKeyFile]) -> bool:
        """Rebuild unit key files found missing from their units' home shards (lost, or staged by an older
        qdask); returns True when a damaged shard sent its unit back to partition."""
        redo = False
        rebuilds = {
            client.submit(
                unit_keys_task, f.shards, f.column, str(f.path), key=f"keys-{f.path.stem}-{uuid4().hex[:8]}"
            ): f
            for f in missing
        }
        for unit, future, memory in self._as_completed(client, rebuilds, "keys", "key file(s)"):
            try:
                future.result()
                log.debug("keys: unit %s key file rebuilt", unit.unit_id)
            except CorruptShardError as exc:
                self.ledger.unit_failed(exc.shard.unit_id, str(exc))  # failed units are partitioned again
                self.summary.notes.append(str(exc))
                redo = True
            except Exception as exc:  # noqa: BLE001 - a task error is the user's to see, by unit
                raise IngestError(memory.explain(exc, f"keys of unit {unit.unit_id}")) from exc
        return redo

    def _collect(self, client: Client) -> bool:
        """Collect every collectable chunk; returns True when corrupt shards sent units back to partition."""
        keys = self.ledger.chunks_to_collect()
        t0 = time.perf_counter()
        shards = [s for table in sorted({k.table for k in keys}) for s in self.ledger.shards(table=table)]
        groups = plan_collect(keys, shards)
        log.info("collect: %d chunk file(s) to write in %d task(s)", len(keys), len(groups))
        futures = {}
        for group_keys, group_shards in groups:
            setup = self.setups[group_keys[0].table]
            charset, _ = self.config.table_charset(setup.config)
            task = collect_task_for(
                group_keys,
                group_shards,
                setup.plan.schema.names,
                charset,
                exclusion_keys=exclusion_path(self.keys_root, setup.plan.name),
                exclusion_column=key_column(setup.config),
                quarantine_root=self.quarantine_root,
            )
            name = f"collect-{task.name}-{uuid4().hex[:8]}"  # never a previous round's cached result
            futures[client.submit(collect_task, task, str(self.contrib_root), key=name, pure=False)] = task
        faultpoints.reached("collect.submitted")
        redo, failed = False, []
        rows = size = 0
        completed = self._as_completed(client, futures, "collect", "chunk file(s)", len(keys))
        for task, future, memory in completed:
            self._item_count = len(task.keys)
            try:
                results: list[Collected] = future.result()
                for collected in results:
                    faultpoints.reached("collect.result", key_text(collected.file.key))
                self.ledger.record_chunk_files([c.file for c in results])  # the task's files, at once
                for collected in results:
                    file = collected.file
                    if not file.overlap:  # overlap copies repeat home rows' values
                        counts = self.summary.nan_to_null.setdefault(file.table, {})
                        for column, n in collected.nan_to_null.items():
                            counts[column] = counts.get(column, 0) + n
                    faultpoints.reached("collect.recorded", key_text(file.key))
                    what = key_text(file.key)
                    log.debug("collect: %s recorded: %d row(s), %d byte(s)", what, file.rows, file.bytes)
                    self.summary.chunks_collected += 1
                    rows, size = rows + file.rows, size + file.bytes
                    self._item_rows += file.rows
            except CorruptShardError as exc:
                self.ledger.unit_failed(exc.shard.unit_id, str(exc))  # failed units are partitioned again
                self.summary.notes.append(str(exc))
                redo = True
            except Exception as exc:  # noqa: BLE001 - reported per task below; nothing of it is recorded
                failed += [(key, memory.explain(exc, f"chunk file {key_text(key)}")) for key in task.keys]
        log.info(
            "collect: %d chunk file(s) written, %d failed in %.1f s",
            len(keys) - len(failed),
            len(failed),
            time.perf_counter() - t0,
        )
        self.record.stage(
            "collect", time.perf_counter() - t0, items=len(keys) - len(failed), rows=rows, bytes=size
        )
        if failed:
            lines = "\n".join(f"  {key_text(key)}: {_short(text)}" for key, text in failed[:10])
            raise IngestError(
                f"{len(failed)} chunk file(s) could not be written:\n{lines}\n"
                "Nothing of them was sent to Qserv; fix the cause and re-run the same command."
            )
        return redo

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
        check_transaction_budget(self.config, self.ledger, self.ledger.files_to_load())
        settings = dataclasses.replace(
            load_settings(self.config, self.summary.run_id), owner=self.identity.to_context()
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

    def verify(self, sample_size: int = 20, *, seed: int | None = None) -> VerifyReport:
        """The verify stage over this config's tables (planned first when needed)."""
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


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + f" … ({len(text) - limit} more characters)"


class _CallableModule(types.ModuleType):
    """This module, callable: ``qdask.ingest(config, client=...)`` runs `qdask.api.ingest` (a package
    attribute cannot be both the driver module, which Python binds on import, and the API function)."""

    def __call__(self, config: Any, client: Client | None = None, **options: Any) -> IngestSummary:
        from qdask.api import ingest

        return ingest(config, client, **options)


sys.modules[__name__].__class__ = _CallableModule

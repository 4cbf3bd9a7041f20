"""The ingest driver: plan → partition → keys → collect → register → load → publish → verify.

The driver only orchestrates: it submits each stage's tasks (their functions live in `qdask.stages`),
waits for them, records what they return in the ledger, and reports. Dask tasks read inputs and write
staged files, and return small metadata; the driver holds no data. Each stage starts from what the ledger
says is left to do, so the same command re-run after any stop skips what is done and redoes what was in
flight. Stage boundaries are logged (`logging`, logger ``qdask.ingest``): start and end with counts and
time, and each unit or chunk at debug level.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from uuid import uuid4

from distributed import Client, Future, as_completed
from rich.console import Console

from qdask import faultpoints
from qdask.cluster import ClusterSpec, open_client
from qdask.config import IngestConfig
from qdask.errors import QdaskError
from qdask.kube import oom
from qdask.ledger import ChunkFile, Ledger, LedgerError, Unit, UnitStatus, config_fingerprint
from qdask.monitor import MemoryWatch
from qdask.progress import plan_table, stage_bars
from qdask.qserv import QservClient, QservError
from qdask.qserv.czar import Czar
from qdask.schema import SchemaError
from qdask.sources.units import InputUnit, SourceError
from qdask.stages.collect import Collected, CorruptShardError, collect_task, collect_task_for, key_text
from qdask.stages.keys import (
    CorruptKeyFile,
    KeyProblems,
    UnitKeyFile,
    check_family_task,
    exclusion_path,
    family_checks,
    key_column,
    outcome,
    unit_key_files,
    unit_keys_task,
)
from qdask.stages.load import (
    Loader,
    LoadError,
    LoadSettings,
    LoadSummary,
    StagedFileCorrupt,
    recover,
    staged_file_problem,
)
from qdask.stages.partition import PartitionResult, partition_task
from qdask.stages.plan import PlanError, TableSetup, plan_ingest
from qdask.stages.publish import is_published, publish
from qdask.stages.register import register_catalog
from qdask.stages.verify import VerifyReport
from qdask.stages.verify_catalog import verify_catalog

log = logging.getLogger(__name__)

T = TypeVar("T")
ROUNDS = 3
"""Rounds of staging (and of loading) before giving up: a corrupt shard or file found costs one."""


class IngestError(QdaskError, RuntimeError):
    """The ingest stopped; the message says why, and the ledger lets the same command resume."""


@dataclass
class IngestSummary:
    run_id: str = ""
    units_partitioned: int = 0
    chunks_collected: int = 0
    rows_loaded: int = 0
    transactions: int = 0
    quarantined: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    nan_to_null: dict[str, dict[str, int]] = field(default_factory=dict)  # table → column → values
    notes: list[str] = field(default_factory=list)
    verify: VerifyReport | None = None

    @property
    def changed_anything(self) -> bool:
        return bool(self.units_partitioned or self.chunks_collected or self.rows_loaded or self.transactions)


# -- what the driver builds from the config -----------------------------------------------------------


def fingerprint(config: IngestConfig) -> str:
    """What identifies the data an ingest produces: target, tables, schemas and the Qserv instance."""
    shown = config.display_dict()
    return config_fingerprint(
        {"database": shown["database"], "tables": shown["tables"], "controller": shown["qserv"]["controller"]}
    )


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
    q = config.qserv
    return QservClient(
        q.controller,
        q.auth_key,
        version=q.api_version,
        timeout=q.timeouts.request,
        connect_timeout=q.timeouts.connect,
        retries=q.retries.attempts,
        backoff=q.retries.backoff,
        backoff_max=q.retries.backoff_max,
    )


def czar_for(config: IngestConfig) -> Czar:
    return Czar(config.qserv.czar.url(reveal=True))


# -- the driver ---------------------------------------------------------------------------------------


class Ingest:
    """One ingest of one config; `run()` does every stage that is not yet done."""

    def __init__(self, config: IngestConfig, *, console: Console | None = None):
        self.config = config
        self.console = console or Console(stderr=True)
        staging = Path(config.staging.directory)
        self.shard_root = staging / "shards"
        self.quarantine_root = staging / "quarantine"
        self.contrib_root = staging / "contributions"
        self.keys_root = staging / "keys"
        self.ledger = Ledger(config.staging.ledger or staging / "ledger.sqlite")
        self.summary = IngestSummary()
        self.setups: dict[str, TableSetup] = {}

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
            len(setups), sum(len(s.units) for s in setups), time.perf_counter() - t0,
        )
        return setups

    def show_plan(self) -> None:
        self.console.print(plan_table(self.config.database.name, self.setups.values()))

    # -- the run ----------------------------------------------------------------------------------

    def run(self, *, stage_only: bool = False, verify_after: bool = True) -> IngestSummary:
        try:
            run = self.ledger.open_run(fingerprint(self.config))
        except (LedgerError, sqlite3.Error) as exc:
            raise IngestError(f"{exc}. Use another staging directory for a different configuration.") from exc
        self.summary.run_id = run.run_id
        log.info("run %s: staging in %s", run.run_id, self.config.staging.directory)
        if not self.setups:
            self.plan()
        self.ledger.plan_units(
            Unit(u.unit_id, u.table, u.to_dict(), UnitStatus.PLANNED, u.est_rows, u.est_bytes)
            for s in self.setups.values()
            for u in s.units
        )
        faultpoints.reached("plan.recorded")
        if self.ledger.units_to_partition() or self.ledger.chunks_to_collect():
            with open_client(cluster_spec(self.config)) as client:
                self.console.print(f"Dask dashboard: {client.dashboard_link}")
                self._stage_files(client)
        if stage_only:
            self.summary.notes.append("stage-only: every contribution file is staged with its checksum")
            return self.summary
        try:
            with qserv_client(self.config) as qserv:
                qserv.check_version()
                self._load(qserv)
                t0 = time.perf_counter()
                self.summary.notes += publish(
                    qserv,
                    self.config.database.name,
                    directors=[d.name for d in self.config.directors],
                    auto_build_director_index=self.config.database.auto_build_director_index,
                )
                log.info("publish: done in %.1f s", time.perf_counter() - t0)
        except (LoadError, QservError) as exc:  # the ledger is consistent: say so instead of a traceback
            raise IngestError(
                f"{exc}\nEvery row loaded so far is committed and recorded; transactions left open are "
                "aborted by the next run. Re-run the same command to resume."
            ) from exc
        if verify_after:
            faultpoints.reached("verify.started")
            t0 = time.perf_counter()
            self.summary.verify = self.verify()
            log.info("verify: %s in %.1f s", "passed" if self.summary.verify.ok else "FAILED",
                     time.perf_counter() - t0)
        return self.summary

    def _as_completed(
        self, client: Client, futures: Mapping[Future, T], stage: str
    ) -> Iterator[tuple[T, Future, MemoryWatch]]:
        """Each submitted item with its future as it completes, a bar advancing and worker memory
        sampled meanwhile (the `MemoryWatch` explains a task that killed its workers)."""
        with stage_bars(self.console) as progress, MemoryWatch(client) as memory:
            bar = progress.add_task(stage, total=len(futures))
            for future in as_completed(futures):
                yield futures[future], future, memory
                progress.advance(bar)

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
        todo = self.ledger.units_to_partition()
        t0 = time.perf_counter()
        log.info("partition: %d unit(s) to partition", len(todo))
        roots = str(self.shard_root), str(self.quarantine_root), str(self.keys_root)
        futures: dict[Future, Unit] = {}
        for unit in todo:
            setup = self.setups[unit.table]
            attempt = self.ledger.unit_started(unit.unit_id)
            future = client.submit(
                partition_task,
                InputUnit.from_dict(unit.spec),
                setup.plan,
                setup.input_schema,
                *roots,
                # a key per attempt: with a reused key Dask may hand back the previous attempt's result
                key=f"partition-{unit.unit_id}-{attempt}",
                pure=False,
            )
            futures[future] = unit
        faultpoints.reached("partition.submitted")
        failed = []
        for unit, future, memory in self._as_completed(client, futures, "partition"):
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
        log.info(
            "partition: %d unit(s) partitioned, %d failed in %.1f s",
            len(todo) - len(failed), len(failed), time.perf_counter() - t0,
        )
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
            result.unit_id, result.rows_read, result.rows_invalid, len(result.shards),
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
        for family, future, memory in self._as_completed(client, submitted, "key check"):
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
            len(checks), len(problems), time.perf_counter() - t0,
        )
        if result.stops:
            raise IngestError(
                "bad input, and the policy says stop (nothing was loaded):\n  " + "\n  ".join(result.stops)
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
        for unit, future, memory in self._as_completed(client, rebuilds, "keys"):
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
        log.info("collect: %d chunk file(s) to write", len(keys))
        futures = {}
        for key in keys:
            setup = self.setups[key.table]
            charset, _ = self.config.table_charset(setup.config)
            task = collect_task_for(
                key,
                self.ledger.shards(key),
                setup.plan.schema.names,
                charset,
                exclusion_keys=exclusion_path(self.keys_root, key.table),
                exclusion_column=key_column(setup.config),
                quarantine_root=self.quarantine_root,
            )
            name = f"collect-{key_text(key)}-{uuid4().hex[:8]}"  # never a previous round's cached result
            futures[client.submit(collect_task, task, str(self.contrib_root), key=name, pure=False)] = key
        faultpoints.reached("collect.submitted")
        redo, failed = False, []
        for key, future, memory in self._as_completed(client, futures, "collect"):
            try:
                collected: Collected = future.result()
                file = collected.file
                faultpoints.reached("collect.result", key_text(file.key))
                if not file.overlap:  # overlap copies repeat home rows' values
                    counts = self.summary.nan_to_null.setdefault(file.table, {})
                    for column, n in collected.nan_to_null.items():
                        counts[column] = counts.get(column, 0) + n
                self.ledger.record_chunk_file(file)
                faultpoints.reached("collect.recorded", key_text(file.key))
                log.debug("collect: %s recorded: %d row(s), %d byte(s)", key_text(key), file.rows, file.bytes)
                self.summary.chunks_collected += 1
            except CorruptShardError as exc:
                self.ledger.unit_failed(exc.shard.unit_id, str(exc))  # failed units are partitioned again
                self.summary.notes.append(str(exc))
                redo = True
            except Exception as exc:  # noqa: BLE001 - reported per chunk below; nothing is recorded
                failed.append((key, memory.explain(exc, f"chunk file {key_text(key)}")))
        log.info(
            "collect: %d chunk file(s) written, %d failed in %.1f s",
            len(keys) - len(failed), len(failed), time.perf_counter() - t0,
        )
        if failed:
            lines = "\n".join(f"  {key_text(key)}: {_short(text)}" for key, text in failed[:10])
            raise IngestError(f"{len(failed)} chunk file(s) could not be written:\n{lines}\n"
                              "Nothing of them was sent to Qserv; fix the cause and re-run the same command.")
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
        q = self.config.qserv
        settings = LoadSettings(
            database=db,
            run_id=self.summary.run_id,
            charsets={t.name: self.config.table_charset(t)[0] for t in self.config.tables},
            max_chunks_per_transaction=q.max_chunks_per_transaction,
            max_bytes_per_transaction=q.max_bytes_per_transaction,
            concurrency_total=q.concurrency.total,
            concurrency_per_worker=q.concurrency.per_worker,
            redo_attempts=3,
            retries_in_transaction=3,
            retry_backoff=q.retries.backoff,
        )
        for _ in range(ROUNDS):
            files = self.ledger.files_to_load()
            if not files:
                return
            t0 = time.perf_counter()
            log.info("load: %d contribution file(s) to load", len(files))
            try:
                result = self._load_files(qserv, settings, files)
            except StagedFileCorrupt as exc:
                self.summary.notes.append(str(exc))
                self._restage(exc)
                continue
            log.info(
                "load: %d row(s) in %d transaction(s) committed in %.1f s",
                result.rows, result.transactions_committed, time.perf_counter() - t0,
            )
            self.summary.rows_loaded += result.rows
            self.summary.transactions += result.transactions_committed
            self.summary.notes += result.notes
        if self.ledger.files_to_load():
            raise IngestError(
                "some contribution files could not be loaded; re-run the same command to resume"
            )

    def _load_files(self, qserv: QservClient, settings: LoadSettings, files: list[ChunkFile]) -> LoadSummary:
        with stage_bars(self.console) as progress:
            bar = progress.add_task("load", total=len(files))
            loader = Loader(qserv, self.ledger, settings, on_file=lambda _file: progress.advance(bar))
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
        with open_client(cluster_spec(self.config)) as client:
            self._stage_files(client)

    # -- verify -----------------------------------------------------------------------------------

    def verify(self, sample_size: int = 20, *, seed: int | None = None) -> VerifyReport:
        """The verify stage over this config's tables (planned first when needed)."""
        if not self.setups:
            self.plan()
        return verify_catalog(
            czar_for(self.config),
            self.ledger,
            self.config.database.name,
            list(self.setups.values()),
            self.keys_root,
            sample_size=sample_size,
            seed=seed,
        )


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + f" … ({len(text) - limit} more characters)"

"""The ingest driver: plan → partition → collect → load → publish → verify, resumable from the ledger.

The driver holds no data: Dask tasks read inputs and write staged files, and return small metadata that
the driver records in the ledger. Each stage starts from what the ledger says is left to do, so the same
command re-run after any stop skips what is done and redoes what was in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from uuid import uuid4

import numpy as np
import pyarrow as pa
from distributed import Client, KilledWorker, as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from qdask import faultpoints
from qdask.cluster import ClusterSpec, open_client
from qdask.config import IngestConfig
from qdask.kube import oom
from qdask.ledger import ChunkKey, Ledger, Shard, Unit, config_fingerprint
from qdask.qserv import QservClient, QservError
from qdask.qserv.czar import Czar
from qdask.schema import SchemaError, TableSchema
from qdask.sources import butler as butler_source
from qdask.sources import files as file_source
from qdask.sources.units import InputUnit, SourceError
from qdask.stages.collect import CollectTask, CorruptShardError, collect_chunk
from qdask.stages.keys import check_keys, exclusion_path, load_exclusion, save_exclusion
from qdask.stages.load import Loader, LoadError, LoadSettings, StagedFileCorrupt, recover, staged_file_problem
from qdask.stages.partition import PartitionResult, TablePlan, conform_batch, partition_batches
from qdask.stages.plan import PlanError, TableSetup, plan_ingest
from qdask.stages.publish import is_published, publish
from qdask.stages.verify import SourceSample, TableToVerify, VerifyReport, verify


class IngestError(RuntimeError):
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


# -- worker-side functions (plain arguments in, metadata out: they test without a cluster) ----------------


def read_input(unit: InputUnit, input_schema: TableSchema, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Stream the `columns` of a unit, from a Butler dataset or a plain file."""
    if unit.dataset_type is not None or unit.format == "butler":
        return butler_source.read_unit(unit, columns)
    return file_source.read_unit(unit, input_schema, select=[(c, c) for c in columns])


def partition_task(
    unit: InputUnit, plan: TablePlan, input_schema: TableSchema, shard_root: str, quarantine_root: str
) -> PartitionResult:
    """The partition stage for one unit (runs on a Dask worker)."""
    batches = _each(read_input(unit, input_schema, plan.source_columns), "partition.batch", unit.unit_id)
    return partition_batches(batches, plan, unit.unit_id, Path(shard_root), Path(quarantine_root))


def collect_task(task: CollectTask, contrib_root: str):
    """The collect stage for one (table, chunk, overlap) (runs on a Dask worker)."""
    faultpoints.reached("collect.task", _key_text(task.key))
    return collect_chunk(task, Path(contrib_root))


def _each(items, point: str, detail: str):
    """`items`, passing fault point `point` before each one (a kill mid-stream in the recovery tests)."""
    for item in items:
        faultpoints.reached(point, detail)
        yield item


# -- the driver ---------------------------------------------------------------------------------------


class MemoryWatch:
    """Samples the Dask workers while a stage runs, to say how much memory a task's worker was using.

    A worker killed for memory (by its nanny at the `terminate` fraction, by the kernel, or by
    Kubernetes) takes its task with it; after `allowed-failures` such deaths Dask gives up with
    `KilledWorker`. The sampler records, for every running task, the most memory its worker was seen
    using (heartbeats, ~0.5 s apart) and the worker's limit, so the report can name both.
    """

    def __init__(self, client: Client, interval: float = 0.2):
        self.client, self.interval = client, interval
        self.peak: dict[str, tuple[int, int | None]] = {}  # task key → (bytes seen, worker limit)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qdask-memory-watch", daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
                processing = self.client.processing()
            except Exception:  # noqa: BLE001 - sampling is best effort; the stage goes on without it
                continue
            for address, keys in processing.items():
                info = workers.get(address, {})
                used = int((info.get("metrics") or {}).get("memory") or 0)
                for key in keys:
                    seen, _ = self.peak.get(str(key), (0, None))
                    self.peak[str(key)] = (max(seen, used), info.get("memory_limit"))

    def explain(self, exc: BaseException, what: str) -> str:
        """A failed task's error as one line; for `KilledWorker`, with the memory seen and the limit."""
        if not isinstance(exc, KilledWorker):
            return f"{what}: {type(exc).__name__}: {exc}"
        used, limit = self.peak.get(str(exc.task), (0, None))
        limit = limit or getattr(exc.last_worker, "memory_limit", None)
        tries = exc.allowed_failures + 1
        memory = f"at least {_size(used)} of its {_size(limit)} memory limit" if limit else f"{_size(used)}"
        cause = (
            "most likely it needs more memory than a worker has: give workers more memory "
            "(cluster.memory_per_worker) or split the input into smaller units"
            if limit and used >= 0.6 * limit
            else "the workers died for another reason (killed by the system?); see the worker logs"
        )
        return (
            f"{what}: its task killed its Dask worker {tries} times (the last time using {memory}); "
            f"{cause}. Nothing of it was recorded"
        )


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
        q.admin_auth_key,
        version=q.api_version,
        timeout=q.timeouts.request,
        connect_timeout=q.timeouts.connect,
        retries=q.retries.attempts,
        backoff=q.retries.backoff,
        backoff_max=q.retries.backoff_max,
    )


def czar_for(config: IngestConfig) -> Czar:
    return Czar(config.qserv.czar.url(reveal=True))


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
        try:
            setups = plan_ingest(self.config)
        except (PlanError, SchemaError, SourceError, OSError) as exc:
            raise IngestError(f"planning failed: {exc}") from exc
        self.setups = {s.name: s for s in setups}
        return setups

    def show_plan(self) -> None:
        table = RichTable(title=f"qdask plan: database {self.config.database.name}")
        for name in ("table", "kind", "units", "columns", "est. rows", "est. input"):
            table.add_column(name, justify="right" if name.startswith(("units", "col", "est")) else "left")
        for s in self.setups.values():
            rows, size = s.est_rows, s.est_bytes
            table.add_row(
                s.name,
                s.config.kind,
                str(len(s.units)),
                str(len(s.qserv_schema.columns)),
                f"{rows:,}" if rows is not None else "?",
                _size(size) if size is not None else "?",
            )
        self.console.print(table)

    # -- stages -----------------------------------------------------------------------------------

    def run(self, *, stage_only: bool = False, verify_after: bool = True) -> IngestSummary:
        try:
            run = self.ledger.open_run(fingerprint(self.config))
        except Exception as exc:
            raise IngestError(f"{exc}. Use another staging directory for a different configuration.") from exc
        self.summary.run_id = run.run_id
        if not self.setups:
            self.plan()
        self.ledger.plan_units(
            Unit(u.unit_id, u.table, u.to_dict(), "planned", u.est_rows, u.est_bytes)
            for s in self.setups.values()
            for u in s.units
        )
        faultpoints.reached("plan.recorded")
        if self.ledger.units_to_partition() or self.ledger.chunks_to_collect():
            with open_client(cluster_spec(self.config)) as client:
                self.console.print(f"Dask dashboard: {client.dashboard_link}")
                self._stage_files(client)
        else:
            self._stage_files(None)
        if stage_only:
            self.summary.notes.append("stage-only: every contribution file is staged with its checksum")
            return self.summary
        try:
            with qserv_client(self.config) as qserv:
                qserv.check_version()
                self._load(qserv)
                self.summary.notes += publish(
                    qserv,
                    self.config.database.name,
                    directors=[d.name for d in self.config.directors],
                    auto_build_director_index=self.config.database.auto_build_director_index,
                )
        except (LoadError, QservError) as exc:  # the ledger is consistent: say so instead of a traceback
            raise IngestError(
                f"{exc}\nEvery row loaded so far is committed and recorded; transactions left open are "
                "aborted by the next run. Re-run the same command to resume."
            ) from exc
        if verify_after:
            faultpoints.reached("verify.started")
            self.summary.verify = self.verify()
        return self.summary

    def _stage_files(self, client: Client | None) -> None:
        """Partition and collect until every chunk is staged (corrupt shards send units back)."""
        for _ in range(3):
            if self.ledger.units_to_partition():
                self._partition(client)
            if not self.ledger.chunks_to_collect():
                return
            try:
                self._check_keys()
            except CorruptShardError as exc:  # a shard the key check needs is damaged: redo its unit
                self.ledger.unit_failed(exc.shard.unit_id, str(exc))
                self.summary.notes.append(str(exc))
                continue
            if not self._collect(client):
                return
        raise IngestError("staging did not settle after 3 rounds of rebuilding corrupt shards")

    def _exclusion_column(self, table: str) -> str | None:
        """The column whose values the key check may exclude from `table` (director id, child's key)."""
        cfg = self.setups[table].config
        return cfg.id if cfg.kind == "director" else cfg.director_key if cfg.kind == "child" else None

    def _check_keys(self) -> None:
        """Duplicate director ids and orphan child rows, before chunk files are written; by each table's
        policy the run stops (nothing loaded) or the rows are quarantined by the collect stage."""
        pending = {k.table for k in self.ledger.chunks_to_collect()}
        shards: dict[str, dict[str, list[Shard]]] = {}
        for shard in self.ledger.shards():
            shards.setdefault(shard.table, {}).setdefault(shard.unit_id, []).append(shard)
        stops = []
        for director in self.config.directors:
            children = [
                t for t in self.config.tables if t.kind == "child" and t.director == director.name
            ]
            names = [director.name, *(c.name for c in children)]
            if not pending & set(names):
                continue
            if not all(
                pa.types.is_integer(self.setups[n].plan.schema.field(self._exclusion_column(n)).type)
                for n in names
            ):
                self.summary.notes.append(f"keys of {director.name} are not integers: not checked")
                continue
            problems = check_keys(
                director.name,
                director.id,
                shards.get(director.name, {}),
                {c.name: (c.director_key, shards.get(c.name, {})) for c in children},
                self.keys_root,
                quarantine_duplicates=director.policies.duplicate_ids == "quarantine",
            )
            found = {p.table: p for p in problems}
            for name in names:
                problem = found.get(name)
                cfg = self.setups[name].config
                policy = None
                if problem is not None and cfg.kind == "director":
                    policy = cfg.policies.duplicate_ids
                elif problem is not None:  # Qserv loads orphans; qdask acts on them only when told to
                    explicit = "orphans" in cfg.policies.model_fields_set
                    policy = cfg.policies.orphans if explicit else "report"
                if policy == "report":
                    self.summary.notes.append(
                        f"{problem.describe()}: loaded as they are (set policies.orphans to act on them)"
                    )
                if policy == "stop":
                    stops.append(problem.describe())
                save_exclusion(self.keys_root, name, problem.excluded if policy == "quarantine" else None)
                if policy == "quarantine":
                    where = self.quarantine_root / name / "*.excluded.parquet"
                    self.summary.notes.append(f"{problem.describe()}: quarantined to {where}")
        if stops:
            raise IngestError(
                "bad input, and the policy says stop (nothing was loaded):\n  " + "\n  ".join(stops) + "\n"
                "Fix the input (or set the table's policies to quarantine) and re-run the same command."
            )

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )

    def _partition(self, client: Client) -> None:
        todo = self.ledger.units_to_partition()
        shard_root, quarantine_root = str(self.shard_root), str(self.quarantine_root)
        futures = {}
        for unit in todo:
            setup = self.setups[unit.table]
            attempt = self.ledger.unit_started(unit.unit_id)
            future = client.submit(
                partition_task,
                InputUnit.from_dict(unit.spec),
                setup.plan,
                setup.input_schema,
                shard_root,
                quarantine_root,
                # a key per attempt: with a reused key Dask may hand back the previous attempt's result
                key=f"partition-{unit.unit_id}-{attempt}",
                pure=False,
            )
            futures[future] = unit
        faultpoints.reached("partition.submitted")
        failed = []
        with self._progress() as progress, MemoryWatch(client) as memory:
            bar = progress.add_task("partition", total=len(todo))
            for future in as_completed(futures):
                unit = futures[future]
                try:
                    result: PartitionResult = future.result()
                except Exception as exc:  # noqa: BLE001 - recorded and reported per unit below
                    text = memory.explain(exc, f"unit {unit.unit_id} (table {unit.table})")
                    # on Kubernetes: the pod's last termination (OOMKilled), its limit and the estimate
                    text += oom.kill_cause(exc, client, self.config, InputUnit.from_dict(unit.spec),
                                           self.setups[unit.table].plan)
                    self.ledger.unit_failed(unit.unit_id, text)
                    failed.append((unit.unit_id, text))
                else:
                    faultpoints.reached("partition.result", unit.unit_id)
                    self._record_partition(result)
                    faultpoints.reached("partition.recorded", unit.unit_id)
                progress.advance(bar)
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
        self.summary.units_partitioned += 1
        if result.rows_invalid:
            count, paths = self.summary.quarantined.get(result.table, (0, []))
            self.summary.quarantined[result.table] = (
                count + result.rows_invalid,
                [*paths, result.quarantine_path],
            )

    def _collect(self, client: Client) -> bool:
        """Collect every collectable chunk; returns True when corrupt shards sent units back to partition."""
        keys = self.ledger.chunks_to_collect()
        contrib_root = str(self.contrib_root)
        futures = {}
        for key in keys:
            setup = self.setups[key.table]
            charset, _ = self.config.table_charset(setup.config)
            task = CollectTask(key, tuple(self.ledger.shards(key)), tuple(setup.plan.schema.names), charset)
            excluded = exclusion_path(self.keys_root, key.table)
            if excluded.is_file():
                overlap = "_overlap" if key.overlap else ""
                task = replace(
                    task,
                    exclude_column=self._exclusion_column(key.table),
                    exclude_path=str(excluded),
                    quarantine_path=str(
                        self.quarantine_root / key.table / f"chunk_{key.chunk_id}{overlap}.excluded.parquet"
                    ),
                )
            name = f"collect-{_key_text(key)}-{uuid4().hex[:8]}"  # never a previous round's cached result
            futures[client.submit(collect_task, task, contrib_root, key=name, pure=False)] = key
        faultpoints.reached("collect.submitted")
        redo, failed = False, []
        with self._progress() as progress, MemoryWatch(client) as memory:
            bar = progress.add_task("collect", total=len(keys))
            for future in as_completed(futures):
                try:
                    file, nan_to_null = future.result()
                    faultpoints.reached("collect.result", _key_text(file.key))
                    if not file.overlap:  # overlap copies repeat home rows' values
                        counts = self.summary.nan_to_null.setdefault(file.table, {})
                        for column, n in nan_to_null.items():
                            counts[column] = counts.get(column, 0) + n
                    self.ledger.record_chunk_file(file)
                    faultpoints.reached("collect.recorded", _key_text(file.key))
                    self.summary.chunks_collected += 1
                except CorruptShardError as exc:
                    self.ledger.unit_failed(exc.shard.unit_id, str(exc))  # failed units are partitioned again
                    self.summary.notes.append(str(exc))
                    redo = True
                except Exception as exc:  # noqa: BLE001 - reported per chunk below; nothing is recorded
                    what = f"chunk file {_key_text(futures[future])}"
                    failed.append((futures[future], memory.explain(exc, what)))
                progress.advance(bar)
        if failed:
            lines = "\n".join(f"  {_key_text(key)}: {_short(text)}" for key, text in failed[:10])
            raise IngestError(f"{len(failed)} chunk file(s) could not be written:\n{lines}\n"
                              "Nothing of them was sent to Qserv; fix the cause and re-run the same command.")
        return redo

    def _register(self, qserv: QservClient) -> None:
        db = self.config.database
        info = qserv.database_info(db.name)
        if info is None:
            p = db.partitioning
            qserv.register_database(
                db.name,
                p.num_stripes,
                p.num_sub_stripes,
                p.overlap,
                auto_build_secondary_index=db.auto_build_director_index,
            )
        registered = {t["name"] for t in qserv.list_tables(db.name)}
        for table in self.config.load_order():
            if table.name in registered:
                continue
            setup = self.setups[table.name]
            charset, collation = self.config.table_charset(table)
            keys = {}
            if table.kind == "director":
                keys = dict(director_key=table.id, latitude_key=table.dec, longitude_key=table.ra)
            elif table.kind == "child":
                keys = dict(
                    director_table=table.director,
                    director_key=table.director_key,
                    latitude_key=table.dec,
                    longitude_key=table.ra,
                )
            qserv.register_table(
                db.name,
                table.name,
                setup.qserv_schema.ingest_columns(),
                is_partitioned=table.is_partitioned,
                charset_name=charset,
                collation_name=collation,
                unique_primary_key=table.unique_primary_key,
                **keys,
            )

    def _load(self, qserv: QservClient) -> None:
        db = self.config.database.name
        if is_published(qserv, db):
            if self.ledger.files_to_load():
                raise IngestError(
                    f"database {db} is already published, but this run still has files to load; "
                    "Qserv cannot append to a published catalog"
                )
            return
        self._register(qserv)
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
        for _ in range(3):
            files = self.ledger.files_to_load()
            if not files:
                return
            with self._progress() as progress:
                bar = progress.add_task("load", total=len(files))
                loader = Loader(qserv, self.ledger, settings, on_file=lambda f, b=bar: progress.advance(b))
                try:
                    result = loader.run(files)
                except StagedFileCorrupt as exc:
                    self.summary.notes.append(str(exc))
                    for file in self.ledger.files_to_load():  # one bad file found: check them all, once
                        problem = staged_file_problem(file)
                        if problem is not None or file.key == exc.file.key:
                            self.ledger.drop_chunk_file(file.key)
                            if file.key != exc.file.key:
                                self.summary.notes.append(f"{file.path} {problem}; collected again")
                    with open_client(cluster_spec(self.config)) as client:
                        self._stage_files(client)
                    continue
            self.summary.rows_loaded += result.rows
            self.summary.transactions += result.transactions_committed
            self.summary.notes += result.notes
        if self.ledger.files_to_load():
            raise IngestError(
                "some contribution files could not be loaded; re-run the same command to resume"
            )

    # -- verify -----------------------------------------------------------------------------------

    def verify(self, sample_size: int = 20) -> VerifyReport:
        if not self.setups:
            self.plan()
        tables = [
            TableToVerify(s.name, s.config.kind, getattr(s.config, "id", None), s.plan.schema)
            for s in self.setups.values()
        ]
        key_files = {n: (c, self.keys_root / n) for n in self.setups if (c := self._exclusion_column(n))}
        return verify(
            czar_for(self.config),
            self.ledger,
            self.config.database.name,
            tables,
            sample=self._sample_source,
            sample_size=sample_size,
            exclusions=self._exclusions(),
            key_files=key_files,
        )

    def _exclusions(self) -> dict[str, tuple[str, np.ndarray]]:
        """Per table, the (column, keys) whose rows the key check quarantined."""
        out = {}
        for name in self.setups:
            keys, column = load_exclusion(self.keys_root, name), self._exclusion_column(name)
            if keys is not None and column is not None:
                out[name] = (column, keys)
        return out

    def _sample_source(self, table: TableToVerify) -> SourceSample:
        """The table's units (with the rows read from each) and a reader of a unit's rows as Qserv holds
        them: conformed, Qserv-named, without the rows rightly quarantined, numbered in source order."""
        setup = self.setups[table.name]
        recorded = self.ledger.units(table=table.name)
        rows = {u.unit_id: u.rows_read or 0 for u in recorded}
        placeable = setup.plan.partitioned and any(u.rows_invalid for u in recorded)
        excluded = self._exclusions().get(table.name)

        def read(unit) -> Iterator[pa.Table]:
            start = 0
            for batch in read_input(unit, setup.input_schema, setup.plan.source_columns):
                data = conform_batch(batch, setup.plan, unit.unit_id)
                data = data.append_column("row", pa.array(np.arange(start, start + data.num_rows)))
                start += data.num_rows
                if placeable:
                    data = _placeable(data, setup.plan)
                if excluded is not None:  # rows the key check quarantined are, rightly, not in Qserv
                    column, keys = excluded
                    data = data.filter(pa.array(~np.isin(data[column].to_numpy(zero_copy_only=False), keys)))
                yield data

        return SourceSample([(u, rows.get(u.unit_id, 0)) for u in setup.units], read)


def _placeable(data: pa.Table, plan: TablePlan) -> pa.Table:
    """Only the rows with a valid position (quarantined rows are, rightly, not in Qserv)."""
    _, _, invalid = plan.chunker().locate(
        data[plan.ra].to_numpy(zero_copy_only=False),
        data[plan.dec].to_numpy(zero_copy_only=False),
        invalid="mask",
    )
    return data.filter(pa.array(~invalid))


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + f" … ({len(text) - limit} more characters)"


def _key_text(key: ChunkKey) -> str:
    return f"{key.table}-{key.chunk_id}{'-overlap' if key.overlap else ''}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)

"""The staging run: partition, placement indexes, key checks and collect, round after round, until every
chunk is staged.

Driver-side orchestration only, as `qdask.ingest` is for the whole ingest: it submits each stage's Dask
tasks (their functions live in `qdask.stages`), waits for them, records what they return in the ledger
and reports progress. A damaged shard or key file found on the way sends its unit back to partition and
the round starts again, at most ``ROUNDS`` times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from uuid import uuid4

from distributed import Client, Future, as_completed
from rich.console import Console

from qdask import faultpoints
from qdask.config import ChildTable, IngestConfig
from qdask.errors import IngestError
from qdask.kube import oom
from qdask.ledger import Ledger, Unit
from qdask.monitor import MemorySeries, MemoryWatch
from qdask.progress import stage_progress
from qdask.runrecord import RunRecord
from qdask.sources.units import InputUnit
from qdask.stages import placement
from qdask.stages.collect import (
    Collected,
    CorruptShardError,
    collect_task,
    collect_task_for,
    key_text,
    plan_collect,
)
from qdask.stages.key_policy import family_checks, key_column
from qdask.stages.keys import (
    CorruptKeyFile,
    KeyProblems,
    UnitKeyFile,
    check_family_task,
    exclusion_path,
    outcome,
    unit_key_files,
    unit_keys_task,
)
from qdask.stages.partition import PartitionResult, partition_task
from qdask.stages.placement import (
    PlacementIndex,
    bucket_task,
    index_directory,
    placement_path,
    plan_buckets_task,
)
from qdask.stages.plan import TableSetup

if TYPE_CHECKING:
    from qdask.ingest import IngestSummary

log = logging.getLogger("qdask.ingest")  # the driver's logger: stage boundaries read as one account

T = TypeVar("T")
ROUNDS = 3
"""Rounds of staging (and of loading) before giving up: a corrupt shard or file found costs one."""


def keys_root(staging: Path) -> Path:
    """Where a staging directory keeps the unit key files, the key check's exclusions and verify's scratch
    ids: one place, for staging and for `Ingest` (which verifies without staging)."""
    return staging / "keys"


@dataclass
class StagingRun:
    """Stage every unit and chunk the ledger says is left, on `client` (`run`), for the driver's `Ingest`:
    its config, ledger, planned tables, summary and run record (both updated here), console, worker memory
    series and seconds between plain progress lines."""

    config: IngestConfig
    ledger: Ledger
    setups: Mapping[str, TableSetup]
    summary: IngestSummary
    record: RunRecord
    console: Console
    memory: MemorySeries
    progress_every: float | None = None
    _item_rows: int = field(default=0, init=False)  # rows of the item a stage loop body just recorded
    _item_count: int = field(default=1, init=False)  # items the future a loop body just handled stands for

    def __post_init__(self) -> None:
        self.staging = staging = Path(self.config.staging.directory)
        self.shard_root = staging / "shards"
        self.quarantine_root = staging / "quarantine"
        self.contrib_root = staging / "contributions"
        self.keys_root = keys_root(staging)

    def _shard_damaged(self, exc: CorruptShardError) -> None:
        """A damaged shard found by a task: its unit is partitioned again next round, and the user told."""
        self.ledger.unit_failed(exc.shard.unit_id, str(exc))
        self.summary.notes.append(str(exc))

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

    def run(self, client: Client) -> None:
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
            raise _failures(
                failed,
                "unit(s) failed to partition",
                "Fix the cause and re-run the same command; finished units are kept.",
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
                self._shard_damaged(exc)
                redo = True
            except Exception as exc:  # noqa: BLE001 - a task error is the user's to see, by unit
                raise IngestError(memory.explain(exc, f"keys of unit {unit.unit_id}")) from exc
        return redo

    def _collect(self, client: Client) -> bool:
        """Collect every collectable chunk; returns True when corrupt shards sent units back to partition."""
        keys = self.ledger.chunks_to_collect()
        t0 = time.perf_counter()
        shards = [s for table in sorted({k.table for k in keys}) for s in self.ledger.shards(table=table)]
        groups = plan_collect(keys, shards, spread=2 * max(sum(client.nthreads().values()), 1))
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
                direct_io=self.config.staging.direct_io,
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
                armed = faultpoints.armed()  # per-file fault points, only when a test asks for them
                for collected in results if armed else ():
                    faultpoints.reached("collect.result", key_text(collected.file.key))
                self.ledger.record_chunk_files([c.file for c in results])  # the task's files, at once
                debug = log.isEnabledFor(logging.DEBUG)
                for collected in results:
                    file = collected.file
                    if collected.nan_to_null and not file.overlap:  # overlap copies repeat home rows' values
                        counts = self.summary.nan_to_null.setdefault(file.table, {})
                        for column, n in collected.nan_to_null.items():
                            counts[column] = counts.get(column, 0) + n
                    if armed:
                        faultpoints.reached("collect.recorded", key_text(file.key))
                    if debug:
                        what = key_text(file.key)
                        log.debug("collect: %s recorded: %d row(s), %d byte(s)", what, file.rows, file.bytes)
                    rows, size = rows + file.rows, size + file.bytes
                    self._item_rows += file.rows
                self.summary.chunks_collected += len(results)
            except CorruptShardError as exc:
                self._shard_damaged(exc)
                redo = True
            except Exception as exc:  # noqa: BLE001 - reported per task below; nothing of it is recorded
                failed += [(key_text(k), memory.explain(exc, f"chunk file {key_text(k)}")) for k in task.keys]
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
            raise _failures(
                failed,
                "chunk file(s) could not be written",
                "Nothing of them was sent to Qserv; fix the cause and re-run the same command.",
            )
        return redo


def _failures(failed: list[tuple[str, str]], what: str, advice: str) -> IngestError:
    """The error of a stage whose tasks failed: how many, the first ten with their causes, what to do."""
    lines = "\n".join(f"  {name}: {_short(text)}" for name, text in failed[:10])
    return IngestError(f"{len(failed)} {what}:\n{lines}\n{advice}")


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + f" … ({len(text) - limit} more characters)"

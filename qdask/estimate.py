"""What an ingest will need, estimated by `qdask plan` without writing anything to staging or Qserv: the
chunks the catalog touches, the staging disk and the time, from rates measured on this machine.

* **Rows and chunks.** The position columns of every director unit (only those two columns are read)
  are placed with Qserv's chunker, up to `scan_rows` rows per table; children follow their director's
  rows, so the directors' chunks are the catalog's. Units whose row count their source does not say
  (text files) are counted the same way. When the budget stops the scan, the chunk count and the rows
  are extrapolated from the units scanned, and marked so.
* **Staging disk and time.** A sample of each table (its first `sample_rows` rows) runs through the real
  partition and collect code (`qdask.stages`) in a temporary directory, removed after: bytes of shards
  and contribution files per row, overlap copies per row, and seconds per row on one thread (collect
  writes the files of the sample's first `CALIBRATION_FILES` destinations, scaled by their share of its
  rows). Disk is per-row bytes times rows; time is per-row seconds times rows over the cluster's worker
  threads. When an earlier run with the same ledger measured its stages (its run record,
  `qdask.runrecord`), those rates are used instead, and the load time too; without them the load time is
  unknown (it depends on the Qserv instance), and said so.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from qdask import faultpoints
from qdask.config import IngestConfig
from qdask.runrecord import RunRecord
from qdask.sky import Chunker
from qdask.sources.units import InputUnit
from qdask.stages.collect import collect_chunks, collect_task_for, plan_collect
from qdask.stages.partition import partition_batches, read_input
from qdask.stages.placement import PlacementIndex
from qdask.stages.plan import TableSetup

__all__ = ["Estimate", "TableEstimate", "estimate"]

SAMPLE_ROWS = 20_000
SCAN_ROWS = 5_000_000
#: Contribution files the sample writes at most. A sample spread over the sky puts about one row in each
#: file (20,000 rows: ~20,000 files, 2-3 s of the driver's time before every all-sky run); the files it
#: does write measure bytes and seconds per row as well, scaled by the share of the rows they hold.
CALIBRATION_FILES = 1_000


@dataclass
class TableEstimate:
    """One table: rows (exact, or extrapolated), and what its sample measured per row."""

    name: str
    kind: str
    units: int
    input_bytes: int
    rows: int = 0
    rows_exact: bool = True
    sample_rows: int = 0
    sample_seconds: float = 0.0
    shard_bytes_per_row: float = 0.0
    contribution_bytes_per_row: float = 0.0
    overlap_per_row: float = 0.0

    @property
    def staging_bytes(self) -> int:
        return round(self.rows * (self.shard_bytes_per_row + self.contribution_bytes_per_row))

    @property
    def contribution_bytes(self) -> int:
        return round(self.rows * self.contribution_bytes_per_row)


@dataclass
class Estimate:
    """The plan's estimate: chunks, staging disk, times, and where each number comes from."""

    tables: list[TableEstimate]
    chunks: int
    chunks_exact: bool
    staging_seconds: float | None
    load_seconds: float | None
    sources: list[str] = field(default_factory=list)

    @property
    def input_bytes(self) -> int:
        return sum(t.input_bytes for t in self.tables)

    @property
    def staging_bytes(self) -> int:
        return sum(t.staging_bytes for t in self.tables)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rows_exact": all(t.rows_exact for t in self.tables),
            "chunks": self.chunks,
            "chunks_exact": self.chunks_exact,
            "input_bytes": self.input_bytes,
            "staging_bytes": self.staging_bytes,
            "staging_seconds": self.staging_seconds,
            "load_seconds": self.load_seconds,
            "sources": self.sources,
        }


def _spread(units: Sequence[InputUnit]) -> list[InputUnit]:
    """The units in an order that samples the whole list early (first, last, middle, quarters, ...)."""
    order: list[InputUnit] = []
    seen: set[int] = set()
    step = len(units)
    while step >= 1 and len(order) < len(units):
        for i in range(0, len(units), step):
            if i not in seen:
                seen.add(i)
                order.append(units[i])
        step //= 2
    return order


def _scan(setup: TableSetup, chunker: Chunker | None, budget: int) -> tuple[dict[str, int], set[int], int]:
    """Rows per scanned unit, the chunks their positions fall in (directors), and rows scanned."""
    table = setup.config
    if chunker is not None:
        columns = [table.columns.source_name(name) for name in setup.plan.position()]
    elif any(u.est_rows is None for u in setup.units):
        columns = setup.plan.source_columns[:1]
    else:
        return {}, set(), 0
    rows: dict[str, int] = {}
    chunks: set[int] = set()
    scanned = 0
    for unit in _spread(setup.units):
        if scanned >= budget:
            break
        n = 0
        for batch in read_input(unit, setup.input_schema, columns):
            n += batch.num_rows
            if chunker is not None:
                ra = batch.column(0).to_numpy(zero_copy_only=False).astype(np.float64)
                dec = batch.column(1).to_numpy(zero_copy_only=False).astype(np.float64)
                located = chunker.locate_all(ra, dec, invalid="mask")
                keep = ~located.invalid if located.invalid is not None else slice(None)
                chunks.update(np.unique(located.chunk_id[keep]).tolist())
                chunks.update(np.unique(located.overlap_chunk_id).tolist())
        rows[unit.unit_id] = n
        scanned += n
    return rows, chunks, scanned


def _sample_batches(setup: TableSetup, limit: int) -> Iterator[pa.RecordBatch]:
    taken = 0
    for unit in setup.units:
        for batch in read_input(unit, setup.input_schema, setup.plan.source_columns):
            if taken >= limit:
                return
            batch = batch.slice(0, limit - taken)
            taken += batch.num_rows
            yield batch


class _SampleInOneChunk(PlacementIndex):
    """Where the sample of a child placed by its director's id goes: planning builds no director index,
    and where the rows go changes neither their bytes nor the time to stage them, so all go to chunk 0."""

    def locate(self, keys: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), np.int64), present.copy()


def _calibrate(config: IngestConfig, setup: TableSetup, estimate: TableEstimate, limit: int) -> None:
    """Run the sample through partition and collect in a temporary directory; per-row bytes and time."""
    charset, _ = config.table_charset(setup.config)
    plan = setup.plan
    if getattr(setup.config, "placed_by_id", False) and plan.placement is None:
        plan = dataclasses.replace(plan, placement=_SampleInOneChunk("", ()))
    with tempfile.TemporaryDirectory(prefix="qdask-plan-") as tmp, faultpoints.quiet():
        root = Path(tmp)
        t0 = time.perf_counter()
        result = partition_batches(
            _sample_batches(setup, limit), plan, "plan-sample", root / "shards", root / "quarantine"
        )
        partition_seconds = time.perf_counter() - t0
        contribution = collected = 0
        keys = sorted({k for s in result.shards for k in s.keys()}, key=lambda k: (k.chunk_id, k.overlap))
        for group, shards in plan_collect(keys[:CALIBRATION_FILES], result.shards):
            task = collect_task_for(
                group, shards, setup.plan.schema.names, charset, direct_io=config.staging.direct_io
            )
            written = [c.file for c in collect_chunks(task, root / "contributions")]
            contribution += sum(f.bytes for f in written)
            collected += sum(f.rows for f in written)
        share = collected / max(sum(s.rows for s in result.shards), 1) or 1.0  # of the rows and copies
        seconds = partition_seconds + (time.perf_counter() - t0 - partition_seconds) / share
    rows = max(result.rows_read, 1)
    estimate.sample_rows = result.rows_read
    estimate.sample_seconds = seconds
    estimate.shard_bytes_per_row = sum(s.bytes for s in result.shards) / rows
    estimate.contribution_bytes_per_row = contribution / share / rows
    estimate.overlap_per_row = result.overlap_rows / rows


def estimate(
    config: IngestConfig,
    setups: Sequence[TableSetup],
    record: RunRecord | None = None,
    *,
    sample_rows: int = SAMPLE_ROWS,
    scan_rows: int = SCAN_ROWS,
) -> Estimate:
    """Rows, chunks, staging disk and time for `setups` (the planned tables), as the module doc says."""
    p = config.database.partitioning
    chunks: set[int] = set()
    scale = 1.0  # how far the chunks found must be extrapolated (units of a director / units scanned)
    tables = []
    for setup in setups:
        kind = setup.config.kind
        director = kind == "director"
        overlap = config.table_overlap(setup.config)
        chunker = Chunker(p.num_stripes, p.num_sub_stripes, overlap) if director else None
        rows_of, found, _ = _scan(setup, chunker, scan_rows)
        chunks |= found
        scanned = [u for u in setup.units if u.unit_id in rows_of]
        if director:
            scale = max(scale, len(setup.units) / max(len(scanned), 1))
        t = TableEstimate(setup.name, kind, len(setup.units), sum(u.est_bytes or 0 for u in setup.units))
        per_byte = sum(rows_of.values()) / max(sum(u.est_bytes or 0 for u in scanned), 1)
        for unit in setup.units:
            if unit.unit_id in rows_of:
                t.rows += rows_of[unit.unit_id]
            elif unit.est_rows is not None:
                t.rows += unit.est_rows
            else:
                t.rows += round((unit.est_bytes or 0) * per_byte)
                t.rows_exact = False
        _calibrate(config, setup, t, sample_rows)
        tables.append(t)
    chunks_exact = scale == 1.0
    sources = [
        f"rows: {'counted' if all(t.rows_exact for t in tables) else 'partly extrapolated'} from the input "
        f"({'all' if chunks_exact else 'some'} director units' positions read for the chunks)"
    ]
    threads = config.cluster.worker_count * config.cluster.threads_per_worker
    staging_seconds: float | None = None
    rates = record and (record.rate("partition"), record.rate("collect"))
    if rates and rates[0] and rates[1]:
        (partition, run), (collect, _) = rates[0], rates[1]
        rows = sum(t.rows for t in tables)
        staging_seconds = rows / partition + sum(t.rows * (1 + t.overlap_per_row) for t in tables) / collect
        sources.append(
            f"staging time: the partition and collect rates ({partition:,.0f} and {collect:,.0f} rows/s) "
            f"the run of {run.started} measured with {run.workers or '?'} worker(s)"
        )
    elif tables:
        per_thread = sum(t.rows * t.sample_seconds / max(t.sample_rows, 1) for t in tables)
        staging_seconds = per_thread / max(threads, 1)
        sampled = sum(t.sample_rows for t in tables)
        sources.append(
            f"staging time: partition and collect of a {sampled:,}-row sample timed by this plan on one "
            f"thread of this machine, over {threads} worker thread(s) (Dask's own overhead not included)"
        )
    load_seconds: float | None = None
    load = record.rate("load", "bytes") if record else None
    if load:
        rate, run = load
        load_seconds = sum(t.contribution_bytes for t in tables) / rate
        sources.append(f"load time: {rate / 2**20:,.1f} MiB/s, as the run of {run.started} loaded")
    else:
        sources.append(
            "load time: unknown until a run with this staging directory has loaded (it depends on Qserv)"
        )
    count = round(len(chunks) * scale)
    return Estimate(tables, count, chunks_exact, staging_seconds, load_seconds, sources)

"""How much memory a task needs, estimated from the input's Parquet footers, and units sized to fit.

A partition task streams its unit in record batches, but its peak still grows with the unit: Arrow's
allocator keeps what a fast read freed, and the shard writer's buffer (64 MiB) and its sorted copy add up
to ~128 MiB. Since the shard writer keeps one file per unit (`qdask.stages.shards`), nothing grows with
the number of chunks a unit touches; the table below predates that (a file per chunk, each holding
per-column state, the removed `4 KiB x columns x shard files` term) and is an upper bound of the model
until ``python -m qdask.kube.calibrate`` is run again. Measured on this project's partition task (director
table, 780 shard files for 390 chunks with overlap, zstd Parquet, float64 columns; peak RSS over the
process baseline; re-measured after the shard writer's byte-bounded buffers, commit cd13ba1):

    selected columns  unit (selected, uncompressed)  measured peak  this model
          63                497 MiB                   1137 MiB      1371 MiB
          63                546 MiB                   1208 MiB      1449 MiB
          13                103 MiB                    418 MiB       434 MiB
         203                386 MiB                   1541 MiB      1619 MiB
          23                 44 MiB                    206 MiB       311 MiB
          23                562 MiB                    991 MiB      1353 MiB
         991                438 MiB                    597 MiB      1305 MiB   (*)

    (*) the demo's DP0.2-shaped Object tract (qdask.demo, 96 000 rows in 12 row groups, 57 shard files):
    with many row groups and half the columns boolean the model is about twice the measured peak.

    peak ≈ 1.6 x selected bytes + min(selected bytes, 256 MiB) + 128 MiB

where *selected bytes* is the uncompressed size of the selected columns of the unit's row groups (from
the footer: no data is read); the home and overlap chunks the unit touches (from the footer's ra/dec
statistics and the layout; 100 when the file has no statistics) are still estimated, for the plan's
report, but no longer cost memory. Reproduce a row of the
table with ``python -m qdask.kube.calibrate 60 1000000 1000000 10`` (run twice: it writes, then measures).
A worker runs `nthreads` tasks at once and itself takes ~200 MiB, so a task's budget is
``(0.8 x memory_limit - 200 MiB) / nthreads``: below Dask's pause threshold (80%), well below the nanny's
restart (95%) and the pod limit (111% of it).

`fit_units` splits a unit over budget into row-group ranges that fit; a single row group over budget
cannot be split, and `qdask plan` reports it. A collect task holds at most a group's rows (64 MiB of
shard data, `qdask.stages.collect.GROUP_BYTES`) and streams a larger chunk segment by segment into TSV,
so its peak does not grow with the data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from qdask.sources.units import InputUnit, row_group_suffix

__all__ = [
    "MemoryPlan",
    "StageEstimate",
    "UnitFootprint",
    "collect_peak",
    "fit_setups",
    "fit_units",
    "partition_peak",
    "task_budget",
    "unit_footprint",
]

MiB = 2**20
READ_FACTOR = 1.6
SHARD_BUFFER = 256 * MiB  # the shard writer's buffer and its sorted copy (2 x 64 MiB), with margin
TASK_BASE = 128 * MiB
WORKER_BASE = 200 * MiB  # an idle Dask worker process with qdask imported
PAUSE_FRACTION = 0.8
DEFAULT_CHUNKS = 100
COLLECT_PEAK = 300 * MiB  # a group's rows (64 MiB of shards) through the TSV encoder, plus the task base


@dataclass(frozen=True)
class UnitFootprint:
    """What a unit's footer says about its size: per row group, selected uncompressed bytes and rows."""

    row_groups: tuple[int, ...]  # the row-group indices of the unit
    selected_bytes: tuple[int, ...]  # per row group
    rows: tuple[int, ...]
    columns: int
    chunks: int  # chunks (home + overlap) the unit touches, estimated

    def peak(self, start: int = 0, stop: int | None = None) -> int:
        """Estimated peak of partitioning the row groups ``[start, stop)`` of this footprint."""
        return partition_peak(sum(self.selected_bytes[start:stop]), self.columns, self.chunks)


def partition_peak(selected_bytes: int, columns: int, chunks: int = DEFAULT_CHUNKS) -> int:
    """Estimated peak memory (bytes over the worker's baseline) of one partition task; neither the
    columns nor the chunks touched add to it (one shard file per unit)."""
    del columns, chunks
    return int(READ_FACTOR * selected_bytes + min(selected_bytes, SHARD_BUFFER) + TASK_BASE)


def collect_peak() -> int:
    """Estimated peak memory of one collect task (streams 32 MiB batches; independent of chunk size)."""
    return COLLECT_PEAK


def task_budget(memory_limit: int, nthreads: int = 1) -> int:
    """Bytes one task may use on a worker with this Dask memory limit running `nthreads` tasks at once."""
    return max(int((PAUSE_FRACTION * memory_limit - WORKER_BASE) / max(nthreads, 1)), 0)


def _chunks_touched(layout, box) -> int:
    """Shard files a sky box makes (home chunks + overlap chunks), by locating a grid of points over it."""
    if layout is None or box is None:
        return DEFAULT_CHUNKS
    from qdask.sky import Chunker

    ra0, ra1, dec0, dec1 = box
    stripes, sub, overlap = layout
    chunker = Chunker(stripes, sub, overlap)
    step = 180.0 / (stripes * sub) / 2
    n_dec = min(int((dec1 - dec0) / step) + 2, 400)
    cos = max(math.cos(math.radians(max(abs(dec0), abs(dec1)))), 1e-3)
    n_ra = min(int((ra1 - ra0) * cos / step) + 2, 400)
    ra, dec = np.meshgrid(np.linspace(ra0, ra1, n_ra), np.linspace(dec0, dec1, n_dec))
    located = chunker.locate_all(ra.ravel() % 360.0, np.clip(dec.ravel(), -90, 90), invalid="mask")
    assert located.invalid is not None  # invalid="mask" always returns the mask
    home = set(located.chunk_id[~located.invalid].tolist())
    return max(len(home) + len(set(located.overlap_chunk_id.tolist())), 1)  # one shard file each


def unit_footprint(
    unit: InputUnit,
    columns: Sequence[str],
    *,
    layout: tuple[int, int, float] | None = None,
    ra: str | None = None,
    dec: str | None = None,
) -> UnitFootprint | None:
    """The footprint of a Parquet unit from its footer (None for inputs without one: CSV/TSV, butler.get).

    `columns` are the input's column names to read; `layout`, `ra`, `dec` (input names) let the footer's
    min/max statistics tell how many chunks the unit touches.
    """
    if unit.format != "parquet":
        return None
    from qdask.sources.butler import _open_parquet, parquet_layout

    with _open_parquet(unit.uri, unit.label) as pf:
        meta = pf.metadata
        physical = parquet_layout(pf.schema_arrow).physical
    index = {meta.schema.column(j).path.split(".")[0]: j for j in range(meta.num_columns)}
    wanted = [index[physical.get(c, c)] for c in columns if physical.get(c, c) in index]
    start, stop = unit.row_groups or (0, meta.num_row_groups)
    groups = tuple(range(start, stop))
    sizes = tuple(sum(meta.row_group(g).column(j).total_uncompressed_size for j in wanted) for g in groups)
    rows = tuple(meta.row_group(g).num_rows for g in groups)
    box = None
    if layout is not None and ra in index and dec in index:
        lo_hi = []
        for name in (ra, dec):
            stats = [meta.row_group(g).column(index[name]).statistics for g in groups]
            if not stats or any(s is None or not s.has_min_max for s in stats):
                break
            lo_hi.append((min(float(s.min) for s in stats), max(float(s.max) for s in stats)))
        if len(lo_hi) == 2 and all(map(math.isfinite, (*lo_hi[0], *lo_hi[1]))):
            box = (*lo_hi[0], *lo_hi[1])
    return UnitFootprint(groups, sizes, rows, len(columns), _chunks_touched(layout, box))


def _share(total: int | None, sizes: Sequence[int], i: int, j: int) -> int | None:
    """The part of a unit's file bytes that row groups ``[i, j)`` hold (by their selected sizes)."""
    if total is None:
        return None
    return int(total * sum(sizes[i:j]) / max(sum(sizes), 1))


def fit_units(
    units: Iterable[InputUnit],
    columns: Sequence[str],
    budget: int,
    *,
    layout: tuple[int, int, float] | None = None,
    ra: str | None = None,
    dec: str | None = None,
) -> list[tuple[InputUnit, int]]:
    """Units re-cut so each partition task's estimated peak fits `budget`, each with its estimated peak.

    A Parquet unit over budget is split into consecutive row-group ranges, each as large as fits; a unit
    within budget is returned unchanged (same id, so a resumed run finds it in the ledger). A unit may stay
    over budget: a single row group too large, or an input without a footer (estimated from its bytes).
    """
    out: list[tuple[InputUnit, int]] = []
    for unit in units:
        fp = unit_footprint(unit, columns, layout=layout, ra=ra, dec=dec)
        if fp is None:
            out.append((unit, partition_peak(int(unit.est_bytes or 0) * 2, len(columns))))  # text → Arrow
            continue
        if fp.peak() <= budget or len(fp.row_groups) <= 1:
            out.append((unit, fp.peak()))
            continue
        i, n = 0, len(fp.row_groups)
        while i < n:
            j = i + 1
            while j < n and fp.peak(i, j + 1) <= budget:
                j += 1
            a, b = fp.row_groups[i], fp.row_groups[j - 1] + 1
            piece = dataclasses.replace(
                unit,
                unit_id=unit.whole_id + row_group_suffix(a, b),
                row_groups=(a, b),
                est_rows=sum(fp.rows[i:j]),
                est_bytes=_share(unit.est_bytes, fp.selected_bytes, i, j),
            )
            out.append((piece, fp.peak(i, j)))
            i = j
    return out


# -- the plan, per table and stage ------------------------------------------------------------------------


@dataclass(frozen=True)
class StageEstimate:
    """One row of `qdask plan`'s memory table."""

    table: str
    stage: str  # "partition" | "collect"
    tasks: int
    peak: int  # the largest task's estimated peak (bytes)
    budget: int  # what one task may use
    worker_limit: int  # Dask's memory limit per worker
    over: tuple[str, ...] = ()  # unit ids over budget

    @property
    def fits(self) -> bool:
        return self.peak <= self.budget


@dataclass(frozen=True)
class MemoryPlan:
    rows: tuple[StageEstimate, ...]
    nthreads: int
    worker_limit: int
    pod_limit: int | None

    @property
    def fits(self) -> bool:
        return all(r.fits for r in self.rows)


def cluster_memory(config) -> tuple[int, int, int | None]:
    """(Dask memory limit per worker, threads per worker, pod memory limit or None) of a config."""
    c = config.cluster
    if c.kind == "kubernetes" and c.kubernetes is not None:
        from qdask.kube.spec import nthreads_for

        return (
            c.worker_memory_limit,
            nthreads_for(c.kubernetes.worker.cores),
            c.kubernetes.worker.memory_bytes,
        )
    return c.memory_per_worker, c.threads_per_worker, None


def fit_setups(setups, config) -> tuple[list, MemoryPlan]:
    """Each table's units re-cut to fit the cluster's per-task budget, and the memory plan to show."""
    limit, nthreads, pod = cluster_memory(config)
    budget = task_budget(limit, nthreads)
    fitted, rows = [], []
    for s in setups:
        plan = s.plan
        back = {dst: src for src, dst in plan.rename.items()}
        ra = back.get(plan.ra, plan.ra) if plan.partitioned else None
        dec = back.get(plan.dec, plan.dec) if plan.partitioned else None
        layout = plan.layout if plan.partitioned else None
        units = fit_units(s.units, plan.source_columns, budget, layout=layout, ra=ra, dec=dec)
        fitted.append(dataclasses.replace(s, units=tuple(u for u, _ in units)))
        over = tuple(u.unit_id for u, peak in units if peak > budget)
        peak = max((p for _, p in units), default=0)
        rows.append(StageEstimate(s.name, "partition", len(units), peak, budget, limit, over))
        rows.append(StageEstimate(s.name, "collect", 0, collect_peak(), budget, limit))
    return fitted, MemoryPlan(tuple(rows), nthreads, limit, pod)

"""Memory-aware planning, and an oversized unit killing LocalCluster workers with the pod's memory limit.

The partition task runs unchanged (the driver's own `partition_task`, submitted under the driver's key)
on a LocalCluster whose workers have the Dask memory limit a 778 MiB pod would get (0.9 x). The unit the
planner flags as over budget is the one that kills its workers, and the report names it as the cause.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from dask.utils import format_bytes
from distributed import as_completed
from distributed.scheduler import KilledWorker

from qdask.cluster import ClusterSpec, open_client
from qdask.kube import memory, oom
from qdask.kube.spec import memory_limit_for
from qdask.schema import CHUNK_COLUMNS, from_arrow
from qdask.sources.units import InputUnit
from qdask.stages.partition import TablePlan, partition_task

MiB = 2**20
LAYOUT = (340, 3, 0.01667)


def write_catalog(path, rows: int, columns: int, row_group: int, seed: int = 0):
    """A director-table Parquet file: id, ra, dec in a 1x1 degree box, and random float64 columns."""
    rng = np.random.default_rng(seed)
    data = {"id": np.arange(rows, dtype=np.int64) + seed * 10**9, "ra": rng.uniform(10, 11, rows),
            "dec": rng.uniform(-1, 0, rows)}  # fmt: skip
    data.update({f"c{i}": rng.random(rows) for i in range(columns)})
    pq.write_table(pa.table(data), path, row_group_size=row_group, compression="zstd")
    return path


def table_plan(path):
    schema = from_arrow(pq.read_schema(path), "Object")
    fields = [pa.field(c.name, c.arrow_type) for c in schema.columns]
    fields += [pa.field(c.name, c.arrow_type, nullable=False) for c in CHUNK_COLUMNS]
    plan = TablePlan(
        name="Object", kind="director", schema=pa.schema(fields), ra="ra", dec="dec", layout=LAYOUT
    )
    return plan, schema


def unit(path, uid=None):
    return InputUnit(unit_id=uid or f"file:{path}", table="Object", uri=str(path), format="parquet")


def test_footprint_comes_from_the_footer(tmp_path):
    path = write_catalog(tmp_path / "a.parquet", rows=40_000, columns=20, row_group=10_000)
    plan, _ = table_plan(path)
    fp = memory.unit_footprint(unit(path), plan.source_columns, layout=LAYOUT, ra="ra", dec="dec")
    meta = pq.ParquetFile(path).metadata
    assert fp.row_groups == (0, 1, 2, 3) and fp.rows == (10_000,) * 4
    assert fp.selected_bytes[0] == sum(meta.row_group(0).column(j).total_uncompressed_size for j in range(23))
    # a 1x1 degree box at the equator, stripes of 180/340 degrees: a few chunks, and their overlaps
    assert 4 <= fp.chunks <= 16
    narrow = memory.unit_footprint(unit(path), ["id", "ra", "dec"], layout=LAYOUT, ra="ra", dec="dec")
    assert sum(narrow.selected_bytes) < sum(fp.selected_bytes) / 5
    assert narrow.peak() < fp.peak()


def test_units_are_cut_to_fit_the_budget(tmp_path):
    path = write_catalog(tmp_path / "b.parquet", rows=80_000, columns=40, row_group=10_000)
    plan, _ = table_plan(path)
    fp = memory.unit_footprint(unit(path), plan.source_columns, layout=LAYOUT, ra="ra", dec="dec")
    budget = fp.peak(0, 3)  # three row groups fit, four do not
    assert fp.peak(0, 4) > budget
    fitted = memory.fit_units([unit(path, "file:b")], plan.source_columns, budget, layout=LAYOUT, ra="ra",
                              dec="dec")  # fmt: skip
    assert [u.row_groups for u, _ in fitted] == [(0, 3), (3, 6), (6, 8)]
    assert [u.unit_id for u, _ in fitted] == ["file:b#rg=0:3", "file:b#rg=3:6", "file:b#rg=6:8"]
    assert all(peak <= budget for _, peak in fitted) and sum(u.est_rows for u, _ in fitted) == 80_000
    # a unit that fits keeps its id (a resumed run finds it in the ledger)
    kw = dict(layout=LAYOUT, ra="ra", dec="dec")
    ((same, _),) = memory.fit_units([unit(path, "file:b")], plan.source_columns, fp.peak() + 1, **kw)
    assert same.unit_id == "file:b" and same.row_groups is None
    # one row group cannot be cut: it stays, over budget, for the plan to report
    single = write_catalog(tmp_path / "c.parquet", rows=30_000, columns=40, row_group=30_000)
    ((kept, peak),) = memory.fit_units([unit(single)], plan.source_columns, 1)
    assert kept.row_groups is None and peak > 1


def test_budget_leaves_headroom_under_the_limits():
    limit = memory_limit_for(16 * 2**30)
    assert memory.task_budget(limit, 4) == int((0.8 * limit - memory.WORKER_BASE) / 4)
    assert memory.task_budget(limit, 1) < 0.8 * limit < 0.95 * limit < 16 * 2**30


def test_oversized_unit_kills_its_workers_and_is_reported(tmp_path):
    pod_limit = 778 * MiB
    limit = memory_limit_for(pod_limit)  # what `dask worker --memory-limit` gets in the pod
    files = [write_catalog(tmp_path / f"small{i}.parquet", 20_000, 60, 10_000, seed=i) for i in range(2)]
    big = write_catalog(tmp_path / "big.parquet", 1_200_000, 60, 1_200_000, seed=9)  # one 550 MiB row group
    plan, schema = table_plan(big)
    budget = memory.task_budget(limit, 1)
    fitted = memory.fit_units([unit(p) for p in [*files, big]], plan.source_columns, budget, layout=LAYOUT,
                              ra="ra", dec="dec")  # fmt: skip
    estimates = {u.unit_id: peak for u, peak in fitted}
    over = [u.unit_id for u, peak in fitted if peak > budget]
    assert over == [f"file:{big}"]  # the plan flags exactly the oversized unit
    spec = ClusterSpec(kind="local", workers=1, threads_per_worker=1, memory_per_worker=limit)
    done, killed = [], {}
    with open_client(spec) as client:
        futures = {
            client.submit(partition_task, u, plan, schema, str(tmp_path / "shards"), str(tmp_path / "q"),
                          key=f"partition-{u.unit_id}-1", pure=False): u  # the driver's call, unchanged
            for u, _ in fitted
        }  # fmt: skip
        for future in as_completed(futures):
            u = futures[future]
            try:
                done.append(future.result().unit_id)
            except KilledWorker as exc:
                killed[u.unit_id] = oom.describe_killed(
                    exc, client, unit=u.unit_id, memory_limit=limit, estimate=estimates[u.unit_id]
                )
                hook = oom.kill_cause(exc, client, None, u, plan)  # the driver's one-line hook
        restarts = oom.memory_restarts(client)
        assert oom.kill_cause(ValueError("x"), client) == ""
    assert sorted(done) == sorted(f"file:{p}" for p in files)
    assert list(killed) == [f"file:{big}"]
    text = killed[f"file:{big}"]
    assert text.startswith("memory limit: Dask worker")
    assert f"running unit file:{big}" in text
    assert f"memory limit {format_bytes(limit)} (Dask --memory-limit)" in text
    assert "estimated peak for the unit" in text and "re-run the same command" in text
    assert hook == f"; {text}"  # same report: the limit is the dead worker's own, the estimate the planner's
    assert len(restarts) >= 3  # allowed-failures = 2: three workers died on it before Dask gave up
    assert all(r.rss > 0.95 * limit for r in restarts)


def test_more_threads_mean_smaller_units(tmp_path):
    path = write_catalog(tmp_path / "d.parquet", rows=750_000, columns=30, row_group=50_000)  # ~200 MiB
    plan, _ = table_plan(path)
    limit = memory_limit_for(2 * 2**30)
    kw = dict(layout=LAYOUT, ra="ra", dec="dec")
    one = memory.fit_units([unit(path)], plan.source_columns, memory.task_budget(limit, 1), **kw)
    four = memory.fit_units([unit(path)], plan.source_columns, memory.task_budget(limit, 4), **kw)
    assert len(one) == 1 and one[0][0].row_groups is None
    assert len(four) > 1 and all(peak <= memory.task_budget(limit, 4) for _, peak in four)
    assert [u.row_groups for u, _ in four][-1][1] == 15

"""Worker memory seen while a stage runs (`qdask.monitor`), on a real local cluster."""

from __future__ import annotations

from qdask.cluster import ClusterSpec, open_client
from qdask.monitor import MemorySeries, MemoryWatch


def test_a_stage_shorter_than_the_interval_still_has_its_workers_memory():
    """The run report plots the series: a quick stage (here, none at all) must still leave a sample of
    each worker, with its memory and its limit."""
    series = MemorySeries()
    with open_client(ClusterSpec(kind="local", workers=2, memory_per_worker=1 << 30)) as client:
        with MemoryWatch(client, interval=60.0, series=series):
            pass
        names = {str(info["name"]) for info in client.scheduler_info(n_workers=-1)["workers"].values()}
    assert {worker for _, worker, _, _ in series.samples} == names
    assert all(used > 10 << 20 and limit == 1 << 30 for _, _, used, limit in series.samples)

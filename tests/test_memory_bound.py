"""A 991-column Object table ingests with every Dask worker's peak memory far below the data's size.

The workers run with a memory limit (enforced by Dask's nanny, as a pod limit would be); their peak RSS
is read from the kernel (ru_maxrss) after the run and compared with the limit and with the table's size
in memory, a bound that reading a unit whole would break.
"""

from __future__ import annotations

import resource

import pyarrow.parquet as pq
import pytest
import yaml
from distributed import Client, LocalCluster

from qdask.config import config_from_dict
from qdask.demo import make_demo_repo
from qdask.demo_run import DEMO_CONFIG
from qdask.ingest import Ingest

LIMIT = 1536 << 20


def _peak_rss(dask_worker=None) -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _warm_up() -> None:
    import lsst.daf.butler  # noqa: F401 - the imports a partition task pays, so the baseline includes them

    import qdask.stages.partition  # noqa: F401


@pytest.fixture(scope="module")
def wide_repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("wide") / "repo"
    make_demo_repo(path, tracts=1, rows_per_patch=24_000, patches_per_tract=4)
    return path


def test_991_column_object_ingests_within_the_worker_memory_limit(wide_repo, qserv, tmp_path, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    files = sorted(wide_repo.rglob("objectTable_tract*.parq*"))
    in_memory = sum(pq.read_metadata(f).num_rows * 991 * 8 for f in files)  # ≥ the Arrow size of the data
    assert in_memory > 700 << 20

    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["tables"] = [t for t in raw["tables"] if t["name"] == "Object"]
    raw["tables"][0]["input"]["butler"]["repo"] = str(wide_repo)
    raw["database"]["name"] = "qdask_wide"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit=LIMIT, dashboard_address=":0", processes=True
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm_up)
        baseline = client.run(_peak_rss)
        raw["qserv"].update(controller=qserv.controller_url, czar=qserv.czar_dsn)
        raw["staging"] = {"directory": str(tmp_path / "staging")}
        raw["cluster"] = {"kind": "scheduler", "scheduler_address": cluster.scheduler_address}
        summary = Ingest(config_from_dict(raw, DEMO_CONFIG.parent)).run()
        peaks = client.run(_peak_rss)
    assert summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    growth = {w: peaks[w] - baseline[w] for w in peaks}
    print(
        f"data in memory {in_memory / 2**20:.0f} MiB; worker peak RSS (MiB): "
        f"{ {w[-5:]: round(p / 2**20) for w, p in peaks.items()} }; growth over warm baseline (MiB): "
        f"{ {w[-5:]: round(g / 2**20) for w, g in growth.items()} }; limit {LIMIT / 2**20:.0f} MiB"
    )
    assert max(peaks.values()) < LIMIT
    assert max(growth.values()) < 0.8 * in_memory, "a worker held (nearly) the whole table at once"

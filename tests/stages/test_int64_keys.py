"""Keys are exact as int64 from source to czar: ids near 2^63 never merge (2^53+1 is not 2^53, 2^62+100 is
not 2^62+101), a NULL director key stays NULL (loaded as NULL, never excluded, never INT64_MIN), and a row
the key check quarantined is not loaded. Each case runs a real ingest into the stand-in and reads the loaded
rows back from MariaDB exactly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster
from rich.console import Console

from qdask.config import config_from_dict
from qdask.ingest import Ingest
from qdask.stages.keys import load_exclusion

TOP = 2**63 - 1
#: Director ids: pairs that are one float64 apart from each other or from a child's orphan key.
IDS = [1, 2**53, 2**53 + 2, 2**62 + 101, 2**62 + 4096, TOP - 1, TOP, 1_600_000_000_000_000_001]
#: Child director keys: None is NULL (loaded as NULL); the orphans differ from an id by less than a float ulp.
ORPHANS = [2**53 + 1, 2**62 + 100, TOP - 2]
CHILD_KEYS = [*IDS, None, *ORPHANS, None, IDS[-1]]


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c


def _config(root: Path, qserv, database: str, policy: str) -> dict:
    data = root / "in"
    data.mkdir(parents=True)
    n = len(IDS)
    ra = np.linspace(10.0, 10.5, n)
    pq.write_table(
        pa.table({"id": pa.array(IDS, pa.int64()), "ra": ra, "dec": np.zeros(n)}), data / "d.parquet"
    )
    m = len(CHILD_KEYS)
    pq.write_table(
        pa.table(
            {
                "cid": pa.array([TOP - i for i in range(m)], pa.int64()),
                "did": pa.array(CHILD_KEYS, pa.int64()),
                "ra": np.full(m, 10.2),
                "dec": np.zeros(m),
            }
        ),
        data / "c.parquet",
    )
    return {
        "database": {
            "name": database,
            "partitioning": {"num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.01},
        },
        "tables": [
            {
                "name": "D",
                "kind": "director",
                "id": "id",
                "ra": "ra",
                "dec": "dec",
                "input": {"files": {"glob": str(data / "d.parquet")}},
                "schema": {"infer": True},
            },
            {
                "name": "C",
                "kind": "child",
                "director": "D",
                "director_key": "did",
                "ra": "ra",
                "dec": "dec",
                "id": "cid",
                "input": {"files": {"glob": str(data / "c.parquet")}},
                "schema": {"infer": True},
                "policies": {"orphans": policy},
            },
        ],
        "qserv": {"controller": qserv.controller_url, "czar": qserv.czar_dsn},
        "staging": {"directory": str(root / "staging")},
    }


def _loaded(qserv, database: str, table: str, columns: str) -> list[tuple]:
    with qserv.czar_connect(database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM {table}")
        return sorted(cur.fetchall(), key=repr)


@pytest.mark.parametrize("policy", ["quarantine", "report"])
def test_ids_near_2_63_and_null_keys_load_exactly(qserv, client, tmp_path, monkeypatch, policy):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    database = f"int64_keys_{policy}"
    config = config_from_dict(_config(tmp_path, qserv, database, policy), tmp_path)
    summary = Ingest(config, client=client, console=Console(file=io.StringIO())).run()
    assert summary.verify is not None and summary.verify.ok, [c for c in summary.verify.checks if not c.ok]

    assert _loaded(qserv, database, "D", "id") == sorted(((i,) for i in IDS), key=repr)
    child = [(TOP - i, k) for i, k in enumerate(CHILD_KEYS)]
    if policy == "quarantine":
        child = [(c, k) for c, k in child if k not in ORPHANS]
    assert _loaded(qserv, database, "C", "cid, did") == sorted(child, key=repr)
    nulls = [r for r in _loaded(qserv, database, "C", "cid, did") if r[1] is None]
    assert len(nulls) == 2  # NULL stays NULL: neither excluded nor turned into a number

    notes = " ".join(summary.notes)
    assert f"table C: {len(ORPHANS)} row(s) with orphans" in notes, notes
    for key in ORPHANS:
        assert str(key) in notes
    excluded = load_exclusion(config.staging.directory / "keys", "C")
    if policy == "quarantine":
        assert excluded is not None and excluded.dtype == np.int64
        assert excluded.tolist() == sorted(ORPHANS)  # exactly the orphans: no INT64_MIN for a NULL
        quarantined = pq.read_table(
            next((config.staging.directory / "quarantine" / "C").glob("*.excluded.parquet"))
        )
        assert sorted(quarantined["did"].to_pylist()) == sorted(ORPHANS)
    else:
        assert excluded is None

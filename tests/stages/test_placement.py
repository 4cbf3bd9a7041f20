"""Children placed by their director's id (Qserv's ``--part.id-url``): the bucketed placement index
against a plain dictionary, and a real ingest whose id-placed child rows land exactly where placing them by
their director's position puts them, orphans quarantined, with the index cut into many small buckets."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from qdask.config import ConfigError, config_from_dict
from qdask.ingest import Ingest
from qdask.sky import Chunker
from qdask.stages import placement
from qdask.stages.placement import PlacementIndex, bucket_task, plan_buckets_task, save_unit_placement

LAYOUT = {"num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.01667}


def test_the_bucketed_index_answers_as_a_dictionary(tmp_path):
    rng = np.random.default_rng(5)
    truth: dict[int, tuple[int, int]] = {}
    files = []
    for u in range(4):  # four director units with interleaved, near-2^63 ids
        ids = rng.choice(np.arange(2**62, 2**62 + 5000, dtype=np.int64), 600, replace=False) + u * 10**18
        chunk, sub = rng.integers(0, 10_000, 600), rng.integers(0, 400, 600)
        truth.update({int(i): (int(c), int(s)) for i, c, s in zip(ids, chunk, sub, strict=True)})
        path = tmp_path / "keys" / "D" / f"u{u}.abc.npy"
        save_unit_placement(ids, chunk, sub, path)
        files.append(str(path))
    starts = plan_buckets_task(files, bucket_rows=300)
    assert len(starts) >= 5  # 2,400 ids: several buckets
    for b in range(len(starts) + 1):
        assert bucket_task(b, starts, files, str(tmp_path / "index"))[1] <= 600
    index = PlacementIndex(str(tmp_path / "index"), tuple(starts))
    assert index.complete()
    known = np.array(list(truth), np.int64)
    keys = np.concatenate([known, known[:50] + 1, [0, -1, 2**63 - 1]]).astype(np.int64)
    present = np.ones(len(keys), bool)
    present[-1] = False  # a NULL key
    chunk, sub, found = index.locate(keys, present)
    for k, c, s, f, p in zip(
        keys.tolist(), chunk.tolist(), sub.tolist(), found.tolist(), present, strict=True
    ):
        if p and k in truth:
            assert f and (c, s) == truth[k]
        else:
            assert not f and (c, s) == (-1, -1)


def _inputs(root, n_dir=400, n_child=1500, orphans=20):
    """Director units d0..d3 (ids, positions) and a child whose rows carry their own position (far from
    the director's), the director's id and, for the test only, the director's position (dra, ddec)."""
    rng = np.random.default_rng(9)
    data = root / "in"
    data.mkdir(parents=True)
    ids = rng.choice(np.arange(10**15, 10**15 + 10**6, dtype=np.int64), n_dir, replace=False)
    ra, dec = rng.uniform(0, 40, n_dir), rng.uniform(-20, 20, n_dir)
    for u, part in enumerate(np.array_split(np.arange(n_dir), 4)):
        pq.write_table(pa.table({"id": ids[part], "ra": ra[part], "dec": dec[part]}), data / f"d{u}.parquet")
    owner = rng.integers(0, n_dir, n_child)
    did = ids[owner].copy()
    did[:orphans] = 7 + np.arange(orphans)  # no such director
    child = pa.table(
        {
            "kid": np.arange(n_child, dtype=np.int64),
            "did": did,
            "own_ra": (ra[owner] + 180) % 360,  # far away: placing by it would be wrong
            "own_dec": -dec[owner],
            "dra": ra[owner],
            "ddec": dec[owner],
        }
    )
    pq.write_table(child, data / "k.parquet")
    return data


def _config(root, data, qserv) -> dict:
    return {
        "database": {"name": "by_id", "partitioning": dict(LAYOUT)},
        "tables": [
            {"name": "D", "kind": "director", "id": "id", "ra": "ra", "dec": "dec",
             "input": {"files": {"glob": str(data / "d*.parquet")}}, "schema": {"infer": True}},
            {"name": "K", "kind": "child", "director": "D", "director_key": "did", "id": "kid",
             "input": {"files": {"glob": str(data / "k.parquet")}}, "schema": {"infer": True}},
        ],
        "qserv": {"controller": qserv.controller_url, "czar": qserv.czar_dsn},
        "staging": {"directory": str(root / "staging")},
        "cluster": {"kind": "local", "workers": 2, "memory_per_worker": "1GiB"},
    }  # fmt: skip


def test_children_placed_by_id_land_where_their_directors_position_puts_them(
    qserv, mariadb, tmp_path, monkeypatch
):
    data = _inputs(tmp_path)
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    monkeypatch.setattr(placement, "BUCKET_ROWS", 64)  # the index cut into ~7 buckets
    summary = Ingest(
        config_from_dict(_config(tmp_path, data, qserv), tmp_path), console=Console(file=io.StringIO())
    ).run()
    assert summary.verify is not None and summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    assert summary.quarantined["K"][0] == 20  # the orphans: no director row, no chunk
    buckets = list((tmp_path / "staging" / "placement" / "D").glob("*/*.ids.npy"))
    assert len(buckets) >= 6
    conn = mariadb.connect("by_id")
    with conn.cursor() as cur:
        cur.execute("SELECT kid, chunkId, subChunkId FROM K")
        loaded = {k: (c, s) for k, c, s in cur.fetchall()}
    conn.close()
    child = pq.read_table(data / "k.parquet").to_pydict()
    chunk, sub = Chunker(LAYOUT["num_stripes"], LAYOUT["num_sub_stripes"], 0.0).locate(
        child["dra"], child["ddec"]
    )
    expected = {k: (int(c), int(s)) for k, c, s in zip(child["kid"][20:], chunk[20:], sub[20:], strict=True)}
    assert loaded == expected  # every placed row, and only those, in its director's chunk and sub-chunk


def test_a_child_without_positions_of_a_director_with_repeated_ids_is_refused(tmp_path, qserv):
    data = _inputs(tmp_path)
    raw = _config(tmp_path, data, qserv)
    raw["tables"][0]["unique_primary_key"] = False
    with pytest.raises(ConfigError, match="chunk would be ambiguous"):
        config_from_dict(raw, tmp_path)
    raw["tables"][0].pop("unique_primary_key")
    raw["tables"][1]["policies"] = {"orphans": "report"}
    with pytest.raises(ConfigError, match="no chunk to go to"):
        config_from_dict(raw, tmp_path)

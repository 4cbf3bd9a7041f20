"""A match table through the whole pipeline and the czar: pairs split between two chunks are stored in
both (Qserv's sph-partition-matches), yet a query on the match table alone returns each pair once, as
Qserv's MatchTablePlugin makes it (``dirCol1 IS NULL OR flag <> 2``), and verify counts pairs."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
from rich.console import Console

from qdask.ingest import Ingest
from tests.config.test_keys_honoured import config, tiny, with_match


def test_each_pair_once_through_the_czar_though_stored_twice(
    qserv, mariadb, czar_connect, tmp_path, monkeypatch
):
    separations = np.random.default_rng(11).uniform(0, 0.015, 300)
    raw = with_match(tmp_path, tiny(tmp_path), separations)
    raw["database"]["name"] = "match_pairs"
    raw["qserv"] = {"controller": qserv.controller_url, "czar": qserv.czar_dsn}
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    summary = Ingest(config(raw, tmp_path), console=Console(file=io.StringIO())).run()
    assert summary.verify is not None and summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    pairs_check = next(c for c in summary.verify.checks if c.table == "M" and c.name == "rows")
    assert "czar 300 pairs" in pairs_check.detail

    m = pq.read_table(tmp_path / "in" / "m.parquet")
    expected = sorted(zip(m["did"].to_pylist(), m["eid"].to_pylist(), strict=True))
    conn = czar_connect("match_pairs")
    with conn.cursor() as cur:
        cur.execute("SELECT did, eid FROM M")
        through_czar = sorted(tuple(r) for r in cur.fetchall())
        cur.execute("SELECT COUNT(*) AS n FROM M WHERE pflag = 3")
        once = int(cur.fetchone()[0])
    conn.close()
    assert through_czar == expected  # each pair exactly once
    stored = mariadb.connect("match_pairs")
    with stored.cursor() as cur:  # the workers' chunk tables as they are, both copies of a split pair
        cur.execute("SELECT pflag, COUNT(*) FROM M GROUP BY pflag")
        flags = dict(cur.fetchall())
    stored.close()
    assert flags[1] == flags[2] > 0 and flags[3] == once and flags[1] + flags[3] == 300

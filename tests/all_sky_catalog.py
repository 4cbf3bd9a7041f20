"""A director catalog spread over the whole sky, for tests: one Parquet file of rows uniform over the
sphere (id, ra, dec) and the config (plain data) that stages it at DP0.2's layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def all_sky_director(root: Path, database: str, rows: int, seed: int) -> dict:
    """Write `rows` rows under `root`/in and return the config of one director, Object, over them (Qserv's
    addresses unreachable: for `--stage-only` and planning), staging under `root`/staging."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, rows)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, rows)))
    (root / "in").mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": np.arange(rows, dtype=np.int64), "ra": ra, "dec": dec})
    pq.write_table(table, root / "in" / "allsky.parquet")
    return {
        "database": {
            "name": database,
            "partitioning": {"num_stripes": 340, "num_sub_stripes": 3, "overlap": 0.01667},
        },
        "tables": [
            {
                "name": "Object",
                "kind": "director",
                "id": "id",
                "ra": "ra",
                "dec": "dec",
                "input": {"files": {"glob": str(root / "in" / "*.parquet")}},
                "schema": {"infer": True},
            }
        ],
        "qserv": {"controller": "http://127.0.0.1:9", "czar": f"mysql://qsmaster@127.0.0.1:9/{database}"},
        "staging": {"directory": str(root / "staging")},
    }

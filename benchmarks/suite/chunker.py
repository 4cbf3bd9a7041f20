"""Section 2 — the chunker, by bench_chunker's own functions (same method, a size-dependent row count)."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_chunker import LAYOUT, _best, _numpy_floor, _sphgeom_rate
from qdask.sky import Chunker

TARGETS = {"locate": 10e6, "locate_all": 3e6}  # rows/s on one core (the foundation issue's targets)


def chunker_section(rows: int, repeat: int = 3, sphgeom_rows: int = 20_000) -> dict:
    rng = np.random.default_rng(42)
    ra = rng.uniform(0.0, 360.0, rows)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, rows)))
    ch = Chunker(*LAYOUT)
    ch.locate(ra[:1000], dec[:1000])
    out = {"rows": rows, "layout": list(LAYOUT), "results": {}}
    for name, fn in (
        ("numpy floor", lambda: _numpy_floor(ra, dec)),
        ("locate", lambda: ch.locate(ra, dec)),
        ("locate_all", lambda: ch.locate_all(ra, dec)),
    ):
        wall, cpu = _best(fn, repeat)
        out["results"][name] = {
            "wall": wall,
            "cpu": cpu,
            "rows_per_s_wall": rows / wall,
            "rows_per_s_cpu": rows / cpu,
        }
    floor = out["results"]["numpy floor"]["rows_per_s_cpu"]
    for name, r in out["results"].items():
        r["cpu_vs_floor"] = r["rows_per_s_cpu"] / floor
        if name in TARGETS:
            r["target"] = TARGETS[name]
    out["sphgeom_rows_per_s"] = _sphgeom_rate(ra[:sphgeom_rows], dec[:sphgeom_rows])
    return out

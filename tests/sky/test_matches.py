"""Match-table placement against an independent row-by-row model of Qserv's ``sph-partition-matches``
(``PartitionMatchesTool.cc``, ``_mapByRaDec``): every flag case, pairs across chunk edges and the RA wrap,
a NULL side, and the two errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qdask.sky import Chunker
from qdask.sky.matches import MatchError, place_matches

LAYOUT = (85, 12, 0.01667)


def _ang_sep_deg(p1: tuple[float, float], p2: tuple[float, float]) -> float:
    """Qserv's angSep(cartesian(p1), cartesian(p2)), one pair at a time in plain floats."""

    def vec(p):
        lon, lat = math.radians(p[0]), math.radians(p[1])
        return (math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat))

    a, b = vec(p1), vec(p2)
    cs = sum(x * y for x, y in zip(a, b, strict=True))
    n = (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])
    ss = math.sqrt(sum(x * x for x in n))
    return 0.0 if cs == 0.0 and ss == 0.0 else math.degrees(math.atan2(ss, cs))


def model(chunker: Chunker, pairs) -> list[tuple[int, int, int, int]]:
    """(input row, chunk, sub-chunk, flag) per output row, transcribed from the C++ loop."""
    out = []
    for i, (p1, p2) in enumerate(pairs):
        null1, null2 = p1 is None, p2 is None
        if null1 and null2:
            raise MatchError("both NULL")
        loc1 = loc2 = None
        if not null1:
            c, s = chunker.locate(p1[0], p1[1])
            loc1 = (int(c), int(s))
        if not null2:
            c, s = chunker.locate(p2[0], p2[1])
            loc2 = (int(c), int(s))
        if loc1 is not None:
            if loc2 is not None:
                if _ang_sep_deg(p1, p2) > chunker.overlap - 0.001 / 3600:
                    raise MatchError("too far")
                if loc1[0] == loc2[0]:
                    out.append((i, *loc1, 3))
                    continue
            out.append((i, *loc1, 1))
        if loc2 is not None:
            out.append((i, *loc2, 2))
    return out


def _arrays(pairs):
    def side(k, j):
        return [np.nan if p[k] is None else p[k][j] for p in pairs]

    return side(0, 0), side(0, 1), side(1, 0), side(1, 1)


def _placed(chunker, pairs):
    got = place_matches(chunker, *_arrays(pairs))
    columns = (got.row, got.chunk_id, got.sub_chunk_id, got.flag)
    return list(zip(*(c.tolist() for c in columns), strict=True))


def _edge_pairs(chunker: Chunker, rng: np.random.Generator, n: int):
    """Pairs straddling chunk edges: side 2 a small step (< overlap) from side 1 placed near an edge."""
    pairs = []
    for chunk in rng.choice(chunker.all_chunks(), n):
        lon_min, lon_max, lat_min, lat_max = chunker.chunk_bounds(int(chunk))
        p1 = (float(rng.choice([lon_min + 1e-4, lon_max - 1e-4])), float(rng.uniform(lat_min, lat_max)))
        p1 = (p1[0] % 360.0, max(-89.99, min(89.99, p1[1])))
        step = chunker.overlap * 0.6
        angle = rng.uniform(0, 2 * math.pi)
        p2 = ((p1[0] + step * math.cos(angle) / max(math.cos(math.radians(p1[1])), 0.05)) % 360.0, p1[1])
        p2 = (p2[0], max(-90.0, min(90.0, p1[1] + step * math.sin(angle) * 0.5)))
        if _ang_sep_deg(p1, p2) < chunker.overlap - 0.001 / 3600:
            pairs.append((p1, p2))
    return pairs


def test_random_pairs_near_chunk_edges_place_as_the_partitioner_does():
    chunker = Chunker(*LAYOUT)
    rng = np.random.default_rng(7)
    pairs = _edge_pairs(chunker, rng, 3000)
    n_edge = len(pairs)
    # and some with one side NULL
    pairs += [(p1, None) for p1, _ in pairs[:200]] + [(None, p2) for _, p2 in pairs[200:400]]
    expected = model(chunker, pairs)
    assert _placed(chunker, pairs) == expected
    flags = {f for *_, f in expected}
    assert flags == {1, 2, 3}  # every case is exercised
    split = sum(1 for r, *_, f in expected if f == 1 and r < n_edge)
    assert split > 100  # many pairs with both sides do straddle an edge


def test_the_ra_wrap_and_the_poles():
    chunker = Chunker(*LAYOUT)
    pairs = [
        ((359.999, 0.0), (0.001, 0.0)),  # across RA 0: two chunks, flags 1 and 2
        ((0.0, 89.999), (180.0, 89.995)),  # across the pole: within the overlap
        ((10.0, -89.999), (10.0, -89.995)),
        ((45.0, 10.0), (45.0, 10.0)),  # the same point
    ]
    assert _placed(chunker, pairs) == model(chunker, pairs)
    assert [f for *_, f in _placed(chunker, pairs[:1])] == [1, 2]


def test_both_sides_null_is_refused_as_qserv_refuses_it():
    chunker = Chunker(*LAYOUT)
    with pytest.raises(MatchError, match="match row 1: both partitioning positions are NULL"):
        place_matches(chunker, [1.0, np.nan], [1.0, np.nan], [1.0, np.nan], [1.0, np.nan])


def test_a_pair_farther_apart_than_the_overlap_is_refused_naming_the_row():
    chunker = Chunker(*LAYOUT)
    d = LAYOUT[2]
    ok = place_matches(chunker, [10.0], [0.0], [10.0], [d - 2e-6])  # under overlap − 1 mas
    assert ok.flag.size >= 1
    with pytest.raises(MatchError, match=r"match row 0: .* more than the overlap radius"):
        place_matches(chunker, [10.0], [0.0], [10.0], [d])

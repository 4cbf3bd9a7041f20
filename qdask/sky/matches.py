"""Placement of match-table rows, as Qserv's ``sph-partition-matches`` places them.

A match row links two directors' rows (e.g. a reference object and a source). Each side present is
located by its position (home chunk only; match tables have no overlap). Qserv's rules
(``src/partition/PartitionMatchesTool.cc``, ``Worker::_mapByRaDec``):

- both sides present and in the same chunk: **one** row, at side 1's chunk and sub-chunk, flag 3;
- otherwise each present side gives a row in its own chunk and sub-chunk: flag 1 for side 1, 2 for side 2;
- both sides NULL: an error; both present but farther apart than ``overlap - 1 mas``: an error (the czar
  joins a match row to both directors within one chunk and its overlap, so a wider pair cannot be found).

`place_matches` does this for arrays at once and returns, per output row, the input row it copies.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from qdask.errors import QdaskError
from qdask.sky.chunker import Chunker

__all__ = ["FLAG_BOTH", "FLAG_LEFT", "FLAG_RIGHT", "MatchError", "MatchPlacement", "place_matches"]

FLAG_LEFT, FLAG_RIGHT, FLAG_BOTH = 1, 2, 3
#: Qserv's tolerance on the separation limit (``src/partition/Constants.h``: EPSILON_DEG, 1 mas).
EPSILON_DEG = 0.001 / 3600


class MatchError(QdaskError, ValueError):
    """A match row Qserv's partitioner refuses (both sides NULL, or the sides too far apart)."""


class MatchPlacement(NamedTuple):
    """Output rows: the input row each copies, its chunk, sub-chunk and partitioning flag."""

    row: np.ndarray
    chunk_id: np.ndarray
    sub_chunk_id: np.ndarray
    flag: np.ndarray


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Angular separation in degrees, computed as Qserv's ``angSep`` (atan2 of |v1×v2| and v1·v2)."""
    v1 = _unit_vectors(np.asarray(ra1, np.float64), np.asarray(dec1, np.float64))
    v2 = _unit_vectors(np.asarray(ra2, np.float64), np.asarray(dec2, np.float64))
    cs = np.einsum("ij,ij->i", v1, v2)
    ss = np.linalg.norm(np.cross(v1, v2), axis=-1)
    return np.degrees(np.arctan2(ss, cs))


def place_matches(
    chunker: Chunker,
    ra1,
    dec1,
    ra2,
    dec2,
    *,
    max_separation: float | None = None,
    what: str = "match row",
    first_row: int = 0,
) -> MatchPlacement:
    """Place match rows by both sides' positions (NaN marks a NULL side); raise `MatchError` as Qserv does.

    Pairs farther apart than `max_separation` (default: the chunker's overlap, as Qserv's partitioner)
    less 1 mas are refused. Output rows are ordered by input row, side 1 before side 2, like the
    partitioner's map step; errors name the row as `what` and its number counted from `first_row`.
    """
    limit = chunker.overlap if max_separation is None else max_separation
    ra1, dec1, ra2, dec2 = (np.asarray(a, np.float64) for a in (ra1, dec1, ra2, dec2))
    present1 = ~(np.isnan(ra1) | np.isnan(dec1))
    present2 = ~(np.isnan(ra2) | np.isnan(dec2))
    neither = np.flatnonzero(~present1 & ~present2)
    if neither.size:
        raise MatchError(f"{what} {first_row + int(neither[0])}: both partitioning positions are NULL")
    n = ra1.size
    chunk1 = np.full(n, -1, np.int64)
    sub1 = np.full(n, -1, np.int64)
    chunk2 = np.full(n, -1, np.int64)
    sub2 = np.full(n, -1, np.int64)
    if present1.any():
        c, s = chunker.locate(ra1[present1], dec1[present1])
        chunk1[present1], sub1[present1] = c, s
    if present2.any():
        c, s = chunker.locate(ra2[present2], dec2[present2])
        chunk2[present2], sub2[present2] = c, s
    both = present1 & present2
    if both.any():
        idx = np.flatnonzero(both)
        sep = separation_deg(ra1[idx], dec1[idx], ra2[idx], dec2[idx])
        far = sep > limit - EPSILON_DEG
        if far.any():
            i = int(idx[np.argmax(far)])
            raise MatchError(
                f"{what} {first_row + i}: positions ({ra1[i]}, {dec1[i]}) and ({ra2[i]}, {dec2[i]}) are "
                f"{float(sep[np.argmax(far)]):.6g} deg apart, more than the overlap radius {limit} "
                "(Qserv's partitioner refuses such a pair; a larger overlap is needed)"
            )
    same = both & (chunk1 == chunk2)
    left = present1 & ~same
    right = present2 & ~same
    # Per input row: side 1's copy (flag 3 or 1) first, then side 2's (flag 2).
    side1 = same | left
    rows = np.concatenate([np.flatnonzero(side1), np.flatnonzero(right)])
    side = np.concatenate([np.zeros(int(side1.sum()), np.int8), np.ones(int(right.sum()), np.int8)])
    order = np.lexsort((side, rows))
    rows, side = rows[order], side[order]
    chunk = np.where(side == 0, chunk1[rows], chunk2[rows])
    sub = np.where(side == 0, sub1[rows], sub2[rows])
    flag = np.where(side == 1, FLAG_RIGHT, np.where(same[rows], FLAG_BOTH, FLAG_LEFT)).astype(np.int8)
    return MatchPlacement(rows, chunk, sub, flag)

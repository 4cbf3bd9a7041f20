"""Valid chunk numbers of a partitioning layout, from lsst.sphgeom's Chunker (as Qserv validates them)."""

from __future__ import annotations

from functools import lru_cache

import lsst.sphgeom

from qdask.emulator.storage import DUMMY_CHUNK


@lru_cache(maxsize=16)
def _valid_chunks(num_stripes: int, num_sub_stripes: int) -> frozenset[int]:
    return frozenset(lsst.sphgeom.Chunker(num_stripes, num_sub_stripes).getAllChunks())


def is_valid_chunk(chunk: int, num_stripes: int, num_sub_stripes: int) -> bool:
    """True for a chunk of the layout and for the dummy chunk 1234567890 (always valid)."""
    return chunk == DUMMY_CHUNK or chunk in _valid_chunks(num_stripes, num_sub_stripes)


def all_chunks(num_stripes: int, num_sub_stripes: int) -> frozenset[int]:
    return _valid_chunks(num_stripes, num_sub_stripes)

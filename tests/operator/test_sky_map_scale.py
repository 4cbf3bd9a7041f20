"""The report's sky map at all-sky scale: every chunk of a layout on the map, drawn as at most about
`MAP_BOXES` boxes of neighbouring chunks, with every row, chunk and state still accounted for."""

from __future__ import annotations

import re

import numpy as np

from qdask.report import MAP_BOXES, STATES, ChunkCell, sky_map_svg
from qdask.sky.chunker import Chunker


def test_an_all_sky_map_merges_neighbours_and_keeps_every_row_chunk_and_state():
    chunker = Chunker(200, 3, 0.01667)
    ids = chunker.all_chunks().tolist()
    assert len(ids) > 2 * MAP_BOXES
    rng = np.random.default_rng(4)
    states = rng.choice(list(STATES), len(ids), p=[0.8, 0.15, 0.05]).tolist()
    rows = rng.integers(1, 5000, len(ids)).tolist()
    cells = [
        ChunkCell(c, chunker.chunk_bounds(c), {"Object": n, "Source": 2 * n}, state)
        for c, n, state in zip(ids, rows, states, strict=True)
    ]
    svg = sky_map_svg(cells)
    boxes = re.findall(
        r'<rect class="chunk state-(\w+)" data-chunk="(\d+)" data-rows="(\d+)"'
        r'(?: data-last-chunk="(\d+)" data-count="(\d+)")?',
        svg,
    )
    assert len(boxes) <= MAP_BOXES * 1.1 and len(svg) < 8_000_000
    assert sum(int(n) for _, _, n, _, _ in boxes) == 3 * sum(rows)
    position = {c: i for i, c in enumerate(ids)}
    covered = []
    for state, first, _, last, count in boxes:
        members = ids[position[int(first)] : position[int(last or first)] + 1]
        assert len(members) == int(count or 1)
        assert len({chunker.chunk_bounds(c)[2:] for c in members}) == 1  # one stripe
        worst = max((states[position[c]] for c in members), key=list(STATES).index)
        assert state == worst  # the least advanced of its chunks
        covered += members
    assert covered == ids  # each chunk in exactly one box, in order
    for state in STATES:  # the legend counts chunks, not boxes
        assert f">{state} ({states.count(state)})</text>" in svg
    assert f'aria-label="sky map of {len(ids)} chunks"' in svg


def test_a_map_under_the_limit_draws_one_box_per_chunk():
    chunker = Chunker(20, 3, 0.0)
    ids = chunker.all_chunks().tolist()
    cells = [ChunkCell(c, chunker.chunk_bounds(c), {"Object": 7}, "loaded") for c in ids]
    svg = sky_map_svg(cells)
    assert re.findall(r'data-chunk="(\d+)"', svg) == [str(c) for c in ids]
    assert "data-count" not in svg

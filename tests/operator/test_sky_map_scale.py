"""The report's sky map at all-sky scale: every chunk of a layout on the map, drawn as at most about
`MAP_BOXES` boxes of neighbouring chunks, with every row, chunk and state still accounted for."""

from __future__ import annotations

import re

import numpy as np

from qdask.report import MAP_BOXES, STATES, ChunkCell, merge_neighbours, sky_map_svg
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


def test_a_sparse_map_breaks_runs_at_missing_chunks_and_keeps_every_row():
    """Half the chunks of a layout, at random: a box never spans a chunk the catalog lacks (its members
    touch end to end in one stripe), and rows, tables and chunks all add up."""
    chunker = Chunker(340, 3, 0.01667)
    every = chunker.all_chunks()
    rng = np.random.default_rng(7)
    ids = np.sort(rng.choice(every, len(every) // 2, replace=False)).tolist()
    rows = rng.integers(0, 900, len(ids)).tolist()
    cells = []
    for c, n in zip(ids, rows, strict=True):
        tables = {"Object": n} if c % 3 else {"Object": n, "ForcedSource": 5 * n}
        cells.append(ChunkCell(c, chunker.chunk_bounds(c), tables, "staged" if c % 7 else "partitioned"))
    merged = merge_neighbours(cells)
    assert len(merged) < len(cells)
    position = {c: i for i, c in enumerate(ids)}
    covered = []
    for box in merged:
        members = ids[position[box.chunk_id] : position[box.last_chunk or box.chunk_id] + 1]
        assert len(members) == box.count
        bounds = [chunker.chunk_bounds(c) for c in members]
        assert all(
            a[2:] == b[2:] and abs(a[1] - b[0]) < 1e-9 for a, b in zip(bounds, bounds[1:], strict=False)
        )
        assert box.box == (bounds[0][0], bounds[-1][1], *bounds[0][2:])
        member_rows = [cells[position[c]].rows for c in members]
        assert box.rows == {
            t: sum(r.get(t, 0) for r in member_rows)
            for t in ("Object", "ForcedSource")
            if any(t in r for r in member_rows)
        }
        assert box.state == ("partitioned" if any(c % 7 == 0 for c in members) else "staged")
        covered += members
    assert covered == ids

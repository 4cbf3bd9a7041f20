"""The staged-id merge finds exactly the ids repeated within or across unit files, whatever its budget."""

from __future__ import annotations

import numpy as np
import pytest

from qdask.stages.staged_ids import repeated_ids


def _save(tmp_path, arrays):
    paths = []
    for i, values in enumerate(arrays):
        path = tmp_path / f"unit{i}.npy"
        np.save(path, np.sort(np.asarray(values, np.int64)))
        paths.append(path)
    return paths


@pytest.mark.parametrize("budget", [3, 100, 1 << 21])
def test_every_repeat_is_found_whatever_the_budget(tmp_path, budget):
    """Repeats inside one file, across files and on the edges of passes (ties) all count once per id."""
    rng = np.random.default_rng(5)
    arrays = [rng.integers(-(2**62), 2**62, size=n) for n in (2_000, 0, 700, 1_300)]
    arrays[0][:30] = 17  # one id many times in one file
    arrays[2][:50] = arrays[3][:50]  # ids shared by two files
    arrays[3][50:60] = 2**63 - 1  # the largest int64, repeated
    paths = _save(tmp_path, arrays)
    values, counts = np.unique(np.concatenate(arrays), return_counts=True)
    twice = counts > 1
    found = repeated_ids(paths, shown=4, budget=budget)
    assert (found.rows, found.ids) == (int(counts[twice].sum()), int(twice.sum()))
    assert found.examples == [
        (int(v), int(n)) for v, n in zip(values[twice][:4], counts[twice][:4], strict=True)
    ]


def test_no_files_and_distinct_ids_find_nothing(tmp_path):
    assert repeated_ids([], shown=3).ids == 0
    paths = _save(tmp_path, [np.arange(0, 10_000, 2), np.arange(1, 10_000, 2), []])
    found = repeated_ids(paths, shown=3, budget=64)
    assert (found.rows, found.ids, found.examples) == (0, 0, [])

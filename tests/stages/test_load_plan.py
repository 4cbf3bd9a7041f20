"""Load planning: contribution files grouped into transactions of whole chunks within the limits, regular
tables on their own, and what each transaction's context records."""

from __future__ import annotations

import random

import pytest

from qdask.ledger import REGULAR_CHUNK, ChunkFile
from qdask.stages.load import chunks_to_fit, plan_transactions, transaction_context


def _file(table: str, chunk: int, overlap: bool = False, size: int = 100) -> ChunkFile:
    return ChunkFile(table, chunk, overlap, f"/s/{table}/{chunk}{'o' if overlap else ''}", 1, size, "c", "s")


def _random_files(rng: random.Random) -> list[ChunkFile]:
    files = []
    for chunk in rng.sample(range(1, 10_000), rng.randint(0, 40)):
        for table, overlap in (("Object", False), ("Object", True), ("Source", False)):
            if rng.random() < 0.8:
                files.append(_file(table, chunk, overlap, rng.randint(1, 500)))
    regular = ("Filter", "Leap", "Logs")[: rng.randint(0, 3)]
    files += [_file(t, REGULAR_CHUNK, size=rng.randint(1, 500)) for t in regular]
    rng.shuffle(files)
    return files


@pytest.mark.parametrize("seed", range(30))
def test_transactions_hold_whole_chunks_within_the_limits(seed):
    rng = random.Random(seed)
    files = _random_files(rng)
    max_chunks, max_bytes = rng.randint(1, 6), rng.randint(200, 3_000)
    groups = plan_transactions(files, max_chunks, max_bytes)

    assert sorted(f.key for g in groups for f in g) == sorted(f.key for f in files)  # each file once
    chunk_of = {}
    for i, group in enumerate(groups):
        assert group
        regular = [f for f in group if f.chunk_id == REGULAR_CHUNK]
        assert not regular or len(regular) == len(group)  # regular tables never share a chunked one
        chunks = {f.chunk_id for f in group}
        for chunk in chunks:
            assert chunk_of.setdefault(chunk, i) == i or chunk == REGULAR_CHUNK  # a chunk is never split
        size = sum(f.bytes for f in group)
        if regular:
            assert size <= max_bytes or len(group) == 1  # one file bigger than the limit goes alone
        else:
            assert len(chunks) <= max_chunks
            assert size <= max_bytes or len(chunks) == 1  # one chunk bigger than the limit goes alone
    chunked = [g for g in groups if g[0].chunk_id != REGULAR_CHUNK]
    firsts = [min(f.chunk_id for f in g) for g in chunked]
    assert firsts == sorted(firsts)  # in chunk order: the same files give the same transactions


def test_chunks_fill_a_transaction_up_to_each_limit():
    files = [_file("Object", c, size=100) for c in (5, 1, 3, 2, 4)] + [_file("Object", 3, True, 100)]
    by_chunks = plan_transactions(files, max_chunks=2, max_bytes=10_000)
    assert [sorted({f.chunk_id for f in g}) for g in by_chunks] == [[1, 2], [3, 4], [5]]
    by_bytes = plan_transactions(files, max_chunks=100, max_bytes=250)  # chunk 3: home and overlap
    assert [sorted({f.chunk_id for f in g}) for g in by_bytes] == [[1, 2], [3], [4, 5]]
    huge = plan_transactions([_file("Object", 1, size=10_000), _file("Object", 2)], 100, max_bytes=300)
    assert [[f.chunk_id for f in g] for g in huge] == [[1], [2]]


def test_regular_tables_share_transactions_up_to_the_byte_limit():
    regular = [_file(t, REGULAR_CHUNK, size=100) for t in ("A", "B", "C")]
    groups = plan_transactions([_file("Object", 1), *regular], max_chunks=10, max_bytes=250)
    assert [[f.table for f in g] for g in groups] == [["Object"], ["A", "B"], ["C"]]
    assert plan_transactions([], 10, 100) == []


@pytest.mark.parametrize("seed", range(30))
def test_chunks_to_fit_is_the_fewest_chunks_per_transaction_within_the_budget(seed):
    rng = random.Random(seed)
    files = _random_files(rng)
    start, max_bytes, budget = rng.randint(1, 4), rng.randint(200, 3_000), rng.randint(1, 12)
    chunks = len({f.chunk_id for f in files})
    fitting = [
        n
        for n in range(start, max(start, chunks) + 1)
        if len(plan_transactions(files, n, max_bytes)) <= budget
    ]
    assert chunks_to_fit(files, start, max_bytes, budget) == (fitting[0] if fitting else None)  # brute force


def test_chunks_to_fit_spreads_a_whole_sky_catalog_over_the_budget():
    """DP0.2 on the whole sky at 340 stripes: 146,332 chunks of Object, home and overlap."""
    files = [_file("Object", c, overlap) for c in range(146_332) for overlap in (False, True)]
    assert len(plan_transactions(files, 100, 10 << 30)) == 1_464  # over the default budget of 1000
    chunks = chunks_to_fit(files, 100, 10 << 30, 1_000)
    assert chunks == 147 and len(plan_transactions(files, chunks, 10 << 30)) == 996
    assert chunks_to_fit(files, 100, 200 * 100, 1_000) is None  # the byte limit allows 100 chunks at most


def test_the_context_names_the_run_and_each_files_rows_and_checksum():
    files = [_file("Object", 7, True), _file("Filter", REGULAR_CHUNK)]
    assert transaction_context("run-1", files) == {
        "qdask_run": "run-1",
        "files": [
            {"table": "Object", "chunk": 7, "overlap": 1, "rows": 1, "checksum": "c"},
            {"table": "Filter", "chunk": REGULAR_CHUNK, "overlap": 0, "rows": 1, "checksum": "c"},
        ],
    }

"""`DirectWriter` writes exactly the bytes given, past the page cache once a file outgrows its buffer;
`DirectReader` reads them back the same way.

Whether a file's pages are in the page cache is read from the kernel (mincore(2), `page_cache`). Each test
that finds a file mostly uncached has a control: the same bytes written with ``direct=False`` are all
cached, so the measure does catch the page cache.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import time

import pytest
from page_cache import cached_bytes

from qdask import direct_io
from qdask.direct_io import DIRECT_READ_BYTES, DirectReader, DirectWriter

BUFFER = 64 * 1024


def write_file(path, pieces: list[bytes], writer: DirectWriter) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        writer.begin(fd)
        for piece in pieces:
            writer.write(piece)
        writer.end()
    finally:
        os.close(fd)


def pieces_of(total: int, seed: int) -> list[bytes]:
    """`total` random bytes in pieces of uneven sizes, some larger than the buffer."""
    rng = random.Random(seed)
    out, left = [], total
    while left:
        n = min(left, rng.choice([1, 17, 4093, 10_007, BUFFER - 1, BUFFER + 3, 3 * BUFFER]))
        out.append(rng.randbytes(n))
        left -= n
    return out


def test_a_large_file_is_written_whole_and_past_the_page_cache(tmp_path):
    pieces = pieces_of(8 * BUFFER + 12_345, seed=1)
    writer = DirectWriter(True, BUFFER)
    write_file(tmp_path / "direct", pieces, writer)
    writer.close()
    assert (tmp_path / "direct").read_bytes() == b"".join(pieces)
    # read_bytes above may have cached what it read: write again, then measure before anything reads it
    write_file(tmp_path / "again", pieces, DirectWriter(True, BUFFER))
    write_file(tmp_path / "buffered", pieces, DirectWriter(False, BUFFER))
    size = len(b"".join(pieces))
    # only the first buffer-full and the tail, written through the page cache
    assert cached_bytes(tmp_path / "again") <= 2 * BUFFER
    assert cached_bytes(tmp_path / "buffered") >= size  # the control: every page cached
    assert (tmp_path / "again").read_bytes() == (tmp_path / "buffered").read_bytes() == b"".join(pieces)


def test_files_one_after_another_share_the_buffer(tmp_path):
    writer = DirectWriter(True, BUFFER)
    contents = {name: pieces_of(size, seed) for seed, (name, size) in enumerate(
        [("a", 3 * BUFFER), ("b", 100), ("c", 2 * BUFFER + 1), ("d", 0)]
    )}  # fmt: skip
    for name, pieces in contents.items():
        write_file(tmp_path / name, pieces, writer)
    writer.close()
    for name, pieces in contents.items():
        assert (tmp_path / name).read_bytes() == b"".join(pieces), name


def test_a_file_smaller_than_the_buffer_stays_in_the_page_cache(tmp_path):
    pieces = pieces_of(BUFFER - 1, seed=2)
    write_file(tmp_path / "small", pieces, DirectWriter(True, BUFFER))
    assert cached_bytes(tmp_path / "small") >= BUFFER - 1  # never O_DIRECT: nothing to align
    assert (tmp_path / "small").read_bytes() == b"".join(pieces)


def test_a_file_system_refusing_o_direct_gets_the_page_cache(tmp_path, monkeypatch):
    """Linux answers EINVAL when a file system has no O_DIRECT (at fcntl, or at the first write)."""
    real_fcntl, refused = fcntl.fcntl, []

    def refusing(fd, command, arg=0):
        if command == fcntl.F_SETFL and arg & os.O_DIRECT:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, command, arg)

    monkeypatch.setattr(direct_io.fcntl, "fcntl", refusing)
    pieces = pieces_of(4 * BUFFER + 5, seed=3)
    writer = DirectWriter(True, BUFFER)
    write_file(tmp_path / "one", pieces, writer)
    write_file(tmp_path / "two", pieces, writer)
    assert len(refused) == 1  # asked once; the writer remembers the refusal for its later files
    for name in ("one", "two"):
        assert (tmp_path / name).read_bytes() == b"".join(pieces)
        assert cached_bytes(tmp_path / name) >= 4 * BUFFER + 5


def test_a_refusal_at_the_first_write_is_retried_through_the_page_cache(tmp_path, monkeypatch):
    real_pwrite, refusals = os.pwrite, []

    def refusing(fd, data, offset):
        if real_fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refusals.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    real_fcntl = fcntl.fcntl
    monkeypatch.setattr(direct_io.os, "pwrite", refusing)
    pieces = pieces_of(3 * BUFFER + 77, seed=4)
    write_file(tmp_path / "f", pieces, DirectWriter(True, BUFFER))
    monkeypatch.undo()
    assert refusals  # O_DIRECT was tried
    assert (tmp_path / "f").read_bytes() == b"".join(pieces)


def test_the_buffer_must_suit_o_direct():
    with pytest.raises(ValueError, match="multiple of"):
        DirectWriter(True, 1000)


def test_an_error_of_a_write_in_flight_is_raised_once_every_write_has_ended(tmp_path, monkeypatch):
    """A background write that fails (a full disk) stops the file: its error reaches the caller, and no
    other write of the file is still running then (the descriptor may be closed)."""
    real_pwrite, running, ended = os.pwrite, [0], []

    def failing(fd, data, offset):
        running[0] += 1
        try:
            if offset >= 3 * BUFFER:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_pwrite(fd, data, offset)
        finally:
            running[0] -= 1
            ended.append(offset)

    monkeypatch.setattr(direct_io.os, "pwrite", failing)
    writer = DirectWriter(True, BUFFER)
    with pytest.raises(OSError) as raised:
        write_file(tmp_path / "full", pieces_of(12 * BUFFER, seed=5), writer)
    assert raised.value.errno == errno.ENOSPC
    assert running[0] == 0 and not writer.pending
    assert any(offset >= 3 * BUFFER for offset in ended)
    monkeypatch.undo()
    pieces = pieces_of(5 * BUFFER + 9, seed=6)  # the same writer goes on with the next file
    write_file(tmp_path / "next", pieces, writer)
    assert (tmp_path / "next").read_bytes() == b"".join(pieces)


def test_abort_returns_once_the_writes_in_flight_have_ended(tmp_path, monkeypatch):
    real_pwrite, started, ended = os.pwrite, [], []

    def slow(fd, data, offset):
        started.append(offset)
        if offset >= BUFFER:  # the background writes
            time.sleep(0.05)
        out = real_pwrite(fd, data, offset)
        ended.append(offset)
        return out

    monkeypatch.setattr(direct_io.os, "pwrite", slow)
    writer = DirectWriter(True, BUFFER)
    fd = os.open(tmp_path / "thrown", os.O_WRONLY | os.O_CREAT, 0o644)
    writer.begin(fd)
    writer.write(b"x" * (4 * BUFFER))  # the head, then three buffers in flight
    assert writer.pending
    writer.abort()
    os.close(fd)
    assert sorted(started) == sorted(ended) and len(ended) == 4
    assert not writer.pending


def test_direct_reads_return_the_bytes_and_leave_the_page_cache_alone(tmp_path):
    """Ranges of every alignment, the file's end included, read past the page cache; the control reads
    the same ranges through it."""
    pieces = pieces_of(6 * BUFFER + 4321, seed=7)
    data = b"".join(pieces)
    for name in ("direct", "cached"):
        write_file(tmp_path / name, pieces, DirectWriter(True, BUFFER))
    rng = random.Random(8)
    ranges = [(0, len(data)), (1, BUFFER - 1), (len(data) - 70_001, 70_001), (len(data) - 5, 100_000)]
    ranges += [(rng.randrange(len(data)), rng.randrange(DIRECT_READ_BYTES, 3 * BUFFER)) for _ in range(40)]

    def direct_part(offset: int, length: int) -> int:  # the writer's buffers went to [BUFFER, 6 * BUFFER)
        return max(0, min(offset + length, 6 * BUFFER) - max(offset, BUFFER))

    # a range with a little of the direct part is read through the page cache as a whole: left out here
    ranges = [r for r in ranges if direct_part(*r) == 0 or direct_part(*r) >= DIRECT_READ_BYTES]
    for name, direct in (("direct", True), ("cached", False)):
        reader = DirectReader(tmp_path / name, direct, BUFFER)
        try:
            for offset, length in ranges:
                assert reader.read(offset, length).to_pybytes() == data[offset : offset + length]
        finally:
            reader.close()
    assert cached_bytes(tmp_path / "direct") <= 2 * BUFFER  # what the writer put there, no more
    assert cached_bytes(tmp_path / "cached") >= len(data)  # the control: a plain read caches it all


def test_a_file_system_refusing_o_direct_reads_through_the_page_cache(tmp_path, monkeypatch):
    real_open = os.open

    def refusing(path, flags, *args, **kwargs):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)

    data = random.Random(9).randbytes(3 * BUFFER)
    (tmp_path / "f").write_bytes(data)
    monkeypatch.setattr(direct_io.os, "open", refusing)
    reader = DirectReader(tmp_path / "f", True, BUFFER)
    monkeypatch.undo()
    try:
        assert reader.direct_fd == -1
        assert reader.read(4097, 2 * BUFFER).to_pybytes() == data[4097 : 4097 + 2 * BUFFER]
    finally:
        reader.close()


def test_only_what_went_past_the_page_cache_is_read_directly(tmp_path, monkeypatch):
    """The first buffer and the tail were written through the page cache (and may be dirty there): they
    are read from it, whatever range is asked; the whole buffers between, directly."""
    pieces = pieces_of(5 * BUFFER + 999, seed=10)
    data = b"".join(pieces)
    write_file(tmp_path / "f", pieces, DirectWriter(True, BUFFER))
    real_preadv, direct_reads = os.preadv, []
    reader = DirectReader(tmp_path / "f", True, BUFFER)

    def recording(fd, buffers, offset):
        n = real_preadv(fd, buffers, offset)
        if fd == reader.direct_fd:
            direct_reads.append((offset, offset + n))
        return n

    monkeypatch.setattr(direct_io.os, "preadv", recording)
    try:
        for offset, length in [(0, len(data)), (100, 2 * BUFFER), (3 * BUFFER + 5, 2 * BUFFER + 994)]:
            assert reader.read(offset, length).to_pybytes() == data[offset : offset + length]
    finally:
        reader.close()
    assert (reader.direct_from, reader.direct_to) == (BUFFER, 5 * BUFFER)
    assert direct_reads and all(BUFFER <= a and b <= 5 * BUFFER for a, b in direct_reads), direct_reads

"""`DirectWriter` writes exactly the bytes given, past the page cache once a file outgrows its buffer.

Whether a file's pages are in the page cache is read from the kernel (mincore(2), `page_cache`). Each test
that finds a file mostly uncached has a control: the same bytes written with ``direct=False`` are all
cached, so the measure does catch the page cache.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random

import pytest
from page_cache import cached_bytes

from qdask import direct_io
from qdask.direct_io import DirectWriter

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
    real_write, refusals = os.write, []

    def refusing(fd, data):
        if real_fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refusals.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    real_fcntl = fcntl.fcntl
    monkeypatch.setattr(direct_io.os, "write", refusing)
    pieces = pieces_of(3 * BUFFER + 77, seed=4)
    write_file(tmp_path / "f", pieces, DirectWriter(True, BUFFER))
    monkeypatch.undo()
    assert refusals  # O_DIRECT was tried
    assert (tmp_path / "f").read_bytes() == b"".join(pieces)


def test_the_buffer_must_suit_o_direct():
    with pytest.raises(ValueError, match="multiple of"):
        DirectWriter(True, 1000)

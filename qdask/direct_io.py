"""Contribution files written past the page cache: O_DIRECT once a file outgrows its first buffer.

A contribution file is written once and read again only by the load, often much later. Written through
the page cache, each byte costs the kernel a freshly allocated page and a copy: 0.9-3.9 s of system time
per 1.3 GB on this project's machines, against 0.08 s with O_DIRECT, where the device reads the writer's
own buffer (`benchmarks/results/hats.md`). The dirty pages also count against the writer's memory cgroup,
which is a pod's limit, until they are written back.

`DirectWriter` writes a file's first buffer-full straight through the page cache, as any writer would, so
a file smaller than one buffer is written exactly as without it. From the end of that first buffer on, it
gathers what it is given in a page-aligned buffer and writes whole buffers with O_DIRECT: their length and
the file offset are multiples of the buffer, as O_DIRECT requires. The rest, less than a buffer, goes
through the page cache when the file ends (O_DIRECT off again), so no file needs truncating. A file system
that refuses O_DIRECT (EINVAL) gets the page cache, as with ``direct=False``.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os

__all__ = ["BUFFER_BYTES", "DirectWriter"]

#: The aligned buffer's size: the unit of every O_DIRECT write (a multiple of any device's block size).
BUFFER_BYTES = 1 << 20

_O_DIRECT = getattr(os, "O_DIRECT", 0)


class DirectWriter:
    """Writes files one after another (`begin`, `write`…, `end`) through one aligned buffer, with O_DIRECT
    where `direct` and the file system allow it; with ``direct=False`` every write goes straight to the
    file. The caller opens and closes each file; `close` releases the buffer."""

    def __init__(self, direct: bool = True, buffer_bytes: int | None = None):
        self.size = BUFFER_BYTES if buffer_bytes is None else buffer_bytes
        if self.size <= 0 or self.size % mmap.PAGESIZE:
            raise ValueError(
                f"the buffer must be a positive multiple of {mmap.PAGESIZE} bytes, not {self.size}"
            )
        self.allowed = direct and bool(_O_DIRECT)  # False once the file system has refused O_DIRECT
        self.buffer: mmap.mmap | None = None  # made when a file first outgrows `size`
        self.fd = -1
        self.head = 0  # bytes of the current file written straight (at most `size`)
        self.fill = 0  # bytes waiting in the buffer
        self.direct = False  # O_DIRECT is on for the current file

    def begin(self, fd: int) -> None:
        """Start writing the file open (for writing, at offset 0) on `fd`."""
        self.fd, self.head, self.fill, self.direct = fd, 0, 0, False

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        if not self.allowed:  # never allowed, or refused by the file system (what is buffered goes first)
            self._drain()
            _write_all(self.fd, view)
            return
        if self.head < self.size:  # the first buffer-full: straight through the page cache
            head = view[: self.size - self.head]
            _write_all(self.fd, head)
            self.head += len(head)
            view = view[len(head) :]
        if not view:
            return
        if self.buffer is None:
            self.buffer = mmap.mmap(-1, self.size)
        while view:
            n = min(len(view), self.size - self.fill)
            self.buffer[self.fill : self.fill + n] = view[:n]
            self.fill += n
            view = view[n:]
            if self.fill == self.size:
                self._write_buffer()

    def end(self) -> None:
        """Write what is left in the buffer, through the page cache; the file stays open."""
        self._drain()
        self.fd = -1

    def close(self) -> None:
        """Let the buffer go. Not `mmap.close`: a view of it may still live in a frame some sampler holds
        (Dask's profiler walks the worker threads' stacks), and the map is unmapped with its last view."""
        self.buffer = None

    def _drain(self) -> None:
        """Write what waits in the buffer, through the page cache."""
        if self.fill:
            self._set_direct(False)
            assert self.buffer is not None
            _write_all(self.fd, memoryview(self.buffer)[: self.fill])
            self.fill = 0

    def _write_buffer(self) -> None:
        assert self.buffer is not None
        if self.allowed and not self.direct:
            self._set_direct(True)
        view = memoryview(self.buffer)
        while view:
            try:
                written = os.write(self.fd, view)
            except OSError as exc:  # refused at the first write by some file systems: the page cache then
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                self.allowed = False
                self._set_direct(False)
                continue
            view = view[written:]
            if view and self.direct:  # a short write leaves the offset unaligned: the rest goes buffered
                self._set_direct(False)
        self.fill = 0

    def _set_direct(self, on: bool) -> None:
        if on == self.direct:
            return
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
        except OSError as exc:
            if not on or exc.errno != errno.EINVAL:
                raise
            self.allowed = False  # this file system has no O_DIRECT: the page cache for every file
            return
        self.direct = on


def _write_all(fd: int, view: memoryview) -> None:
    while view:  # a write may take less than it was given
        view = view[os.write(fd, view) :]

"""Files written once and read once, past the page cache: O_DIRECT once a file outgrows its first buffer.

A contribution file is written once and read again only by the load, often much later; a shard is written
once by the partition stage and read once by the collect stage. Written through the page cache, each byte
costs the kernel a freshly allocated page and a copy: 0.9-3.9 s of system time per 1.3 GB on this
project's machines, against 0.08 s with O_DIRECT, where the device reads the writer's own buffer
(`benchmarks/results/hats.md`). The dirty pages also count against the writer's memory cgroup, which is a
pod's limit, until they are written back.

`DirectWriter` writes a file's first buffer-full straight through the page cache, as any writer would, so
a file smaller than one buffer is written exactly as without it. From the end of that first buffer on, it
gathers what it is given in page-aligned buffers and writes whole buffers with O_DIRECT, in background
threads, each at its own offset: their length and offset are multiples of the buffer, as O_DIRECT
requires. The rest, less than a buffer, goes through the page cache when the file ends (O_DIRECT off
again), so no file needs truncating. A file system that refuses O_DIRECT (EINVAL) gets the page cache, as
with ``direct=False``.

`DirectReader` reads a range of such a file into a new Arrow buffer: what went past the page cache with
O_DIRECT, so the device fills the buffer the batches are then sliced from, and the first buffer and the
tail from the page cache, where they were left. Read through the page cache instead, each page of a file
not cached is first allocated and filled there, then copied."""

from __future__ import annotations

import collections
import ctypes
import errno
import fcntl
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor, wait

import pyarrow as pa

__all__ = ["BUFFER_BYTES", "DirectReader", "DirectWriter", "background"]

#: The aligned buffer's size: the unit of every O_DIRECT write (a multiple of any device's block size).
BUFFER_BYTES = 1 << 20
#: Full buffers a writer may have in flight (written in the background) before it waits for the oldest.
IN_FLIGHT = 4

#: Offsets, lengths and buffers of O_DIRECT reads are aligned to this (the page: a multiple of any
#: device's logical block).
ALIGNMENT = mmap.PAGESIZE
#: A read shorter than this goes through the page cache (a header, a small segment).
DIRECT_READ_BYTES = 64 << 10

_O_DIRECT = getattr(os, "O_DIRECT", 0)


def background() -> ThreadPoolExecutor:
    """The threads that write full buffers while their writers fill the next ones, and read a shard's
    next segment while its reader decodes this one."""
    global _BACKGROUND
    if _BACKGROUND is None:
        _BACKGROUND = ThreadPoolExecutor(max_workers=8, thread_name_prefix="qdask-direct-io")
    return _BACKGROUND


_BACKGROUND: ThreadPoolExecutor | None = None


class DirectWriter:
    """Writes files one after another (`begin`, `write`…, `end`) through aligned buffers, with O_DIRECT
    where `direct` and the file system allow it; with ``direct=False`` every write goes straight to the
    file. Full buffers are written in the background (`background`), up to `IN_FLIGHT` at a time, each
    at its own offset, while the caller fills the next: an O_DIRECT write waits for the device, and text
    comes from the encoder in bursts of several buffers. The caller opens and closes each file, after
    `end` (or `abort`, when the file is thrown away); `close` releases the buffers."""

    def __init__(self, direct: bool = True, buffer_bytes: int | None = None):
        self.size = BUFFER_BYTES if buffer_bytes is None else buffer_bytes
        if self.size <= 0 or self.size % mmap.PAGESIZE:
            raise ValueError(
                f"the buffer must be a positive multiple of {mmap.PAGESIZE} bytes, not {self.size}"
            )
        self.allowed = direct and bool(_O_DIRECT)  # False once the file system has refused O_DIRECT
        self.buffer: mmap.mmap | None = None  # being filled; made when a file first outgrows `size`
        self.free: list[mmap.mmap] = []  # buffers whose writes are done
        self.pending: collections.deque[tuple[Future[None], mmap.mmap]] = collections.deque()
        self.fd = -1
        self.offset = 0  # where the current file's next byte goes
        self.fill = 0  # bytes waiting in the buffer
        self.direct = False  # O_DIRECT is on for the current file

    def begin(self, fd: int) -> None:
        """Start writing the file open (for writing, at offset 0) on `fd`."""
        self.abort()  # the previous file's writes, if it was not ended
        self.fd, self.offset, self.fill, self.direct = fd, 0, 0, False

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        if not self.allowed:  # never allowed, or refused by the file system (what is buffered goes first)
            self._drain()
            self.offset += _pwrite_all(self.fd, view, self.offset)
            return
        if self.offset < self.size:  # the first buffer-full: straight through the page cache
            head = view[: self.size - self.offset]
            self.offset += _pwrite_all(self.fd, head, self.offset)
            view = view[len(head) :]
        while view:
            if self.buffer is None:
                self.buffer = self.free.pop() if self.free else mmap.mmap(-1, self.size)
            n = min(len(view), self.size - self.fill)
            self.buffer[self.fill : self.fill + n] = view[:n]
            self.fill += n
            view = view[n:]
            if self.fill == self.size:
                self._write_buffer()

    def end(self) -> None:
        """Write what is left in the buffer, through the page cache, once every write in flight is done
        (raising what one raised); the file stays open."""
        self._drain()
        self.fd = -1

    def abort(self) -> None:
        """Let every write in flight end, ignoring their errors (the file is being thrown away): its
        descriptor may then be closed. What waits in the buffer is dropped."""
        while self.pending:
            future, buffer = self.pending.popleft()
            wait([future])
            self.free.append(buffer)
        self.fill = 0

    def close(self) -> None:
        """Let the buffers go (after any write in flight). Not `mmap.close`: a view of one may still live
        in a frame some sampler holds (Dask's profiler walks the worker threads' stacks), and a map is
        unmapped with its last view."""
        self.abort()
        self.buffer, self.free = None, []

    def _wait(self, keep: int = 0) -> None:
        """Wait for the oldest writes in flight until at most `keep` are left; every one ends before
        the first error, if any, is raised."""
        error: BaseException | None = None
        while len(self.pending) > keep:
            future, buffer = self.pending.popleft()
            self.free.append(buffer)
            try:
                future.result()
            except BaseException as exc:  # noqa: BLE001 - raised below, once the rest are done
                if error is None:
                    error, keep = exc, 0
        if error is not None:
            raise error

    def _drain(self) -> None:
        """Write what waits in the buffer, through the page cache, after the writes in flight."""
        self._wait()
        if self.fill:
            self._set_direct(False)
            assert self.buffer is not None
            self.offset += _pwrite_all(self.fd, memoryview(self.buffer)[: self.fill], self.offset)
            self.fill = 0

    def _write_buffer(self) -> None:
        """Hand the full buffer to the background, to be written at the file's current end."""
        self._wait(keep=IN_FLIGHT - 1)
        full = self.buffer
        assert full is not None
        if self.allowed and not self.direct:
            self._set_direct(True)
        self.pending.append((background().submit(self._write_out, full, self.offset), full))
        self.offset += self.size
        self.buffer, self.fill = None, 0

    def _write_out(self, buffer: mmap.mmap, offset: int) -> None:
        """Write a whole buffer at `offset` (a multiple of its size); through the page cache if the file
        system refuses O_DIRECT."""
        view = memoryview(buffer)
        while view:
            try:
                written = os.pwrite(self.fd, view, offset)
            except OSError as exc:  # refused at the first write by some file systems: the page cache then
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                self.allowed = False
                self._set_direct(False)
                continue
            view, offset = view[written:], offset + written

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


def _pwrite_all(fd: int, view: memoryview, offset: int) -> int:
    """Write all of `view` at `offset` (a write may take less than it was given); how many bytes."""
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
    return len(view)


class DirectReader:
    """Reads byte ranges of one file (`read`) into Arrow buffers, the way `DirectWriter` wrote it: the
    whole buffers after the first with O_DIRECT (where `direct` and the file system allow it, for at least
    `DIRECT_READ_BYTES` of them), the first buffer and the tail through the page cache, where the writer
    left them (reading them directly would first make the kernel write them back). A file written some
    other way reads the same bytes, only slower."""

    def __init__(self, path: str | os.PathLike, direct: bool = True, buffer_bytes: int | None = None):
        self.fd = os.open(path, os.O_RDONLY)  # the first buffer, the tail, and what O_DIRECT cannot do
        self.direct_fd = -1
        if direct and _O_DIRECT:
            try:
                self.direct_fd = os.open(path, os.O_RDONLY | _O_DIRECT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: this file system has no O_DIRECT
                    os.close(self.fd)
                    raise
        size = BUFFER_BYTES if buffer_bytes is None else buffer_bytes
        # [direct_from, direct_to): where the writer's whole buffers went past the page cache
        self.direct_from = size
        self.direct_to = size + max(0, self.size() - size) // size * size

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def pread(self, length: int, offset: int) -> bytes:
        """`length` bytes at `offset` (fewer at the end of the file), through the page cache."""
        return os.pread(self.fd, length, offset)

    def read(self, offset: int, length: int) -> pa.Buffer:
        """The file's bytes [offset, offset + length), fewer if the file ends sooner."""
        end = offset + length
        lo, hi = max(offset, self.direct_from), min(end, self.direct_to)
        if self.direct_fd < 0 or hi - lo < DIRECT_READ_BYTES:
            return pa.py_buffer(os.pread(self.fd, length, offset))
        a, z = lo - lo % ALIGNMENT, -(-hi // ALIGNMENT) * ALIGNMENT  # the direct part, aligned
        first = min(offset, a)  # the file offset of the buffer's first byte
        raw = pa.allocate_buffer(max(end, z) - first + ALIGNMENT)  # Arrow's allocator: no page zeroed
        skew = -(raw.address + a - first) % ALIGNMENT  # so that offset `a` lands on an aligned address
        view = memoryview((ctypes.c_char * (max(end, z) - first)).from_address(raw.address + skew)).cast("B")
        at = offset
        if offset < a:  # the part in the first buffer
            at += self._read_cached(view[offset - first : a - first], offset)
        if at >= a:
            at = max(at, a + self._read_direct(view[a - first : z - first], a))
            if at < end:  # the tail, or what O_DIRECT did not read
                at += self._read_cached(view[at - first : end - first], at)
        return raw.slice(skew + offset - first, max(0, min(at, end) - offset))

    def _read_cached(self, view: memoryview, start: int) -> int:
        """Fill `view` from file offset `start` through the page cache; how many bytes there were."""
        got = 0
        while got < len(view):
            n = os.preadv(self.fd, [view[got:]], start + got)
            if n == 0:
                break
            got += n
        return got

    def _read_direct(self, view: memoryview, start: int) -> int:
        """Fill `view` from `start` with O_DIRECT reads; how many bytes were read before the end of the
        file, a short read or a refusal (after which this file is read through the page cache)."""
        got = 0
        while got < len(view):
            try:
                n = os.preadv(self.direct_fd, [view[got:]], start + got)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._no_direct()
                break
            got += n
            if n == 0 or got % ALIGNMENT:  # O_DIRECT cannot go on from an unaligned offset
                break
        return got

    def _no_direct(self) -> None:
        os.close(self.direct_fd)
        self.direct_fd = -1

    def close(self) -> None:
        if self.direct_fd >= 0:
            self._no_direct()
        os.close(self.fd)

"""A unit's shard file: its rows sorted by destination, in one Arrow IPC stream, read back by slices.

The partition stage writes **one file per unit** whatever the number of chunks the unit touches (one file
open, bounded memory): record batches are buffered up to a byte budget, each buffer is sorted by
destination (``dest = chunk id * 2 + overlap``, a hidden ``_dest`` column) and spilled as a *sorted run*,
cut into *segments* of about a MiB. The file is a sequence of sorted runs. The ledger records the file with
its destinations (rows per destination, for planning the collect stage) and its segments (byte range,
first and last destination, XXH3-128 digest of the bytes), so ledger rows scale with units, not chunks x
units.

Every byte is hashed once, as it is written (no re-read); a reader fetches only the segments holding the
destinations it wants, checks each one's hash as it reads it, and slices it: a shard altered, truncated or
gone raises `CorruptShardError`, and its unit is partitioned again. The file is written under a temporary
name and renamed when complete, so a killed task never leaves a partial shard at a final path. Shards are
local intermediates: no codec by default (`staging.shard_compression`), or lz4 (``snappy`` in the config,
which IPC lacks), or zstd. They go past the page cache after their first MiB, and collect reads them back
the same way, the next segment read while this one is sliced (`staging.direct_io`, `qdask.direct_io`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import xxhash

from qdask.direct_io import DirectReader, DirectWriter, background
from qdask.ledger import DESTINATIONS, Shard, dest_of

DEST = "_dest"
SEGMENTS = np.dtype(
    [("first", "<i8"), ("last", "<i8"), ("offset", "<i8"), ("length", "<i8"), ("digest", "V16")]
)
BUFFER_BYTES = 64 << 20  # rows buffered before a sorted run is spilled (and the sort's copy of them)
SEGMENT_BYTES = 1 << 20  # a segment's target size: what a reader fetches to get one destination
SEGMENT_BYTES_PER_COLUMN = 8 << 10  # ... at least this per column
SINK_BUFFER_BYTES = 1 << 20  # the writes the IPC writer makes are gathered up to this before hashing
#: A shard's checksum names how its segments are hashed: XXH3-128, ~15x the speed of SHA-256 here
#: (23.6 against 1.6 GB/s, SHA extensions in use) on bytes every shard writes and reads once; shards are
#: local intermediates checked against accidental change, where a cryptographic hash buys nothing. A
#: ledger staged before (``sha256:``, the first 16 bytes of SHA-256) is still read as it was written.
CHECKSUM_PREFIX = "xxh3-128:"
END = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # the IPC end-of-stream marker after the last segment
CODECS = {"snappy": "lz4", "lz4": "lz4", "zstd": "zstd", "none": None}


class CorruptShardError(RuntimeError):
    """A shard on disk no longer matches what the ledger recorded (or is gone); its unit must be redone."""

    def __init__(self, shard: Shard, found: str):
        self.shard, self.found = shard, found
        super().__init__(
            f"shard {shard.path} of unit {shard.unit_id} is {found}; its unit will be partitioned again"
        )

    def __reduce__(self):  # raised on a Dask worker, re-raised in the driver: keep the shard
        return (type(self), (self.shard, self.found))


def unit_file_key(unit_id: str) -> str:
    """A file-name-safe, stable key for a unit id: a readable prefix plus a short hash."""
    readable = re.sub(r"[^A-Za-z0-9_.=-]+", "_", unit_id)[:80].strip("_.")
    return f"{readable}-{hashlib.blake2b(unit_id.encode(), digest_size=6).hexdigest()}"


def shard_path(root: Path, table: str, unit_key: str) -> Path:
    """Fixed, idempotent location of a unit's shard file of one table."""
    return Path(root) / table / f"{unit_key}.arrows"


def shard_schema(schema: pa.Schema) -> pa.Schema:
    """The schema of a shard file: the staged columns plus the destination column they are sorted by."""
    return schema.append(pa.field(DEST, pa.int64(), nullable=False))


def reordered(table: pa.Table, order: np.ndarray) -> pa.Table:
    """`table`'s rows in `order`, one contiguous array per column (made contiguous one column at a time),
    so that slices of the result are single batches: the encoder then gets them as large as they are, not
    as they were read. As fast as pyarrow's take over the chunked table (0.3-0.6 s per million 43-column
    rows either way on this machine, measured interleaved)."""
    indices = pa.array(order)
    columns = [column.combine_chunks().take(indices) for column in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)


class _HashingSink:
    """A write-only file object that hashes what passes through, segment by segment; past the page cache
    after the file's first MiB where `direct` (`qdask.direct_io`: a shard is read back once, by collect)."""

    def __init__(self, path: Path, direct: bool):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.writer = DirectWriter(direct)
        self.writer.begin(self.fd)
        self.closed = False
        self.position = self.start = 0
        self.digest = xxhash.xxh3_128()

    def write(self, data) -> int:
        view = memoryview(data)
        self.writer.write(view)
        self.digest.update(view)
        self.position += view.nbytes
        return view.nbytes

    def segment(self) -> tuple[int, int, bytes]:
        """(offset, length, digest) of the bytes written since the previous segment."""
        out = (self.start, self.position - self.start, self.digest.digest()[:16])
        self.start, self.digest = self.position, xxhash.xxh3_128()
        return out

    def flush(self) -> None:
        """Nothing to do: what the writer holds back is a part of a block, written at `close`."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.writer.end()
        finally:
            self.writer.close()  # after any write in flight
            os.close(self.fd)

    def abandon(self) -> None:
        """Close without finishing the file (it is being removed): errors of writes in flight ignored."""
        if not self.closed:
            self.writer.abort()
            self.closed = True
            self.writer.close()
            os.close(self.fd)

    def writable(self) -> bool:
        return True


def _merge_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two sorted (dest, rows) arrays as one, rows added where a destination is in both."""
    both = np.concatenate((a, b))
    dests, inverse = np.unique(both["dest"], return_inverse=True)
    out = np.empty(len(dests), DESTINATIONS)
    out["dest"], out["rows"] = dests, np.bincount(inverse, weights=both["rows"], minlength=len(dests))
    return out


class ShardWriter:
    """Writes a unit's rows of one table into one shard file of sorted runs.

    `add(table, chunk_ids, overlap)` takes rows with their destination chunk; `close()` finishes the file
    and returns what was written (as the ledger records it); `discard()` removes the temporary file.
    """

    def __init__(
        self,
        root: Path,
        table: str,
        unit_key: str,
        schema: pa.Schema,
        *,
        compression: str = "none",
        compression_level: int | None = None,
        buffer_budget_bytes: int | None = None,
        direct_io: bool = True,
    ) -> None:
        self.root, self.table, self.unit_key = Path(root), table, unit_key
        self.direct_io = direct_io  # `staging.direct_io`: past the page cache after the first MiB
        self.schema, self.file_schema = schema, shard_schema(schema)
        codec = CODECS[compression]
        self.file_schema = self.file_schema.with_metadata({"qdask.codec": codec or "none"})
        self.options = ipc.IpcWriteOptions(
            compression=None
            if codec is None
            else pa.Codec(codec, compression_level if codec == "zstd" else None)
        )
        self.buffer_budget_bytes = BUFFER_BYTES if buffer_budget_bytes is None else buffer_budget_bytes
        # Writing and reading a segment costs per column (a buffer each, compressed and checked): segments
        # grow with the width so that this stays small per row (991 columns: 8 MiB, ~1,900 rows).
        self.segment_bytes = max(SEGMENT_BYTES, SEGMENT_BYTES_PER_COLUMN * len(self.file_schema))
        self._pieces: list[pa.Table] = []
        self._dests: list[np.ndarray] = []
        self._buffered = 0
        self._sink: _HashingSink | None = None
        self._writer: ipc.RecordBatchStreamWriter | None = None
        self._buffered_sink: pa.BufferedOutputStream | None = None
        self._segments: list[tuple] = []
        self._destinations = np.empty(0, DESTINATIONS)  # rows per destination so far, merged at each run
        self._rows = 0

    @property
    def final_path(self) -> Path:
        return shard_path(self.root, self.table, self.unit_key)

    @property
    def tmp_path(self) -> Path:
        return self.final_path.with_name(self.final_path.name + f".tmp{os.getpid()}")

    def add(self, table: pa.Table, chunk_ids: np.ndarray, overlap: bool) -> None:
        """Buffer rows with their destination; spill a sorted run once the buffer passes its budget."""
        if table.num_rows == 0:
            return
        self._pieces.append(table)
        self._dests.append(dest_of(np.asarray(chunk_ids, np.int64), overlap))
        self._buffered += table.nbytes
        if self._buffered >= self.buffer_budget_bytes:
            self._spill()

    def _open(self) -> None:
        self.tmp_path.parent.mkdir(parents=True, exist_ok=True)
        self._sink = _HashingSink(self.tmp_path, self.direct_io)
        # The IPC writer writes each buffer of a batch on its own (a thousand columns: thousands of small
        # writes); a C++ buffer in front of the Python sink turns them into a few large ones, and is
        # flushed at every segment's end so that each segment is hashed on its own.
        self._buffered_sink = pa.BufferedOutputStream(
            pa.PythonFile(self._sink, mode="w"), buffer_size=SINK_BUFFER_BYTES
        )
        self._writer = ipc.new_stream(self._buffered_sink, self.file_schema, options=self.options)
        # the header (schema) is its own segment, read and checked before any other
        self._writer.write_batch(pa.RecordBatch.from_pylist([], schema=self.file_schema))
        self._segments.append((1, 0, *self._segment()))

    def _segment(self) -> tuple[int, int, bytes]:
        """End the current segment: flush the buffer into the sink, which hashes it."""
        assert self._buffered_sink is not None and self._sink is not None
        self._buffered_sink.flush()
        return self._sink.segment()

    def _spill(self) -> None:
        """Sort the buffer by destination (stable: input order within a destination) and write it."""
        if not self._pieces:
            return
        dests = np.concatenate(self._dests)
        order = np.argsort(dests, kind="stable")
        dests = dests[order]
        data = pa.concat_tables(self._pieces).cast(self.schema)
        self._pieces, self._dests, self._buffered = [], [], 0
        data = reordered(data, order)
        data = data.append_column(self.file_schema.field(DEST), pa.array(dests, pa.int64()))
        del order
        if self._writer is None:
            self._open()
        assert self._writer is not None and self._sink is not None
        step = max(256, int(self.segment_bytes * data.num_rows / max(data.nbytes, 1)))
        for start in range(0, data.num_rows, step):
            piece = data.slice(start, step)
            for batch in piece.to_batches():
                self._writer.write_batch(batch)
            self._segments.append(
                (int(dests[start]), int(dests[min(start + step, len(dests)) - 1]), *self._segment())
            )
        starts = np.concatenate(([0], np.flatnonzero(np.diff(dests)) + 1))
        counts = np.empty(len(starts), DESTINATIONS)
        counts["dest"], counts["rows"] = dests[starts], np.diff(np.append(starts, len(dests)))
        self._destinations = _merge_counts(self._destinations, counts)
        self._rows += data.num_rows

    def close(self, unit_id: str) -> list[Shard]:
        """Spill what is buffered, close the file, move it to its final path, and describe it (as the
        ledger records it, for unit `unit_id`); no rows, no file."""
        self._spill()
        if self._writer is None or self._sink is None:
            return []
        self._writer.close()  # writes the end-of-stream marker (into the buffer)
        assert self._buffered_sink is not None
        self._buffered_sink.flush()
        self._sink.close()
        os.replace(self.tmp_path, self.final_path)
        segments = np.array(self._segments, SEGMENTS)
        destinations = self._destinations
        checksum = CHECKSUM_PREFIX + xxhash.xxh3_128_hexdigest(segments["digest"].tobytes())
        self._writer = self._sink = self._buffered_sink = None
        return [
            Shard(
                unit_id=unit_id,
                table=self.table,
                path=str(self.final_path),
                rows=self._rows,
                bytes=self.final_path.stat().st_size,
                checksum=checksum,
                destinations=destinations.tobytes(),
                segments=segments.tobytes(),
            )
        ]

    def discard(self) -> None:
        """Drop buffers and remove the temporary file (used when the unit fails)."""
        self._pieces, self._dests, self._buffered = [], [], 0
        try:
            if self._writer is not None:
                self._writer.close()
        except (OSError, pa.ArrowException):
            pass
        finally:
            if self._sink is not None:
                self._sink.abandon()
            self.tmp_path.unlink(missing_ok=True)
            self._writer = self._sink = self._buffered_sink = None


def restricted(shard: Shard, wanted: np.ndarray) -> Shard | None:
    """The shard as a task writing destinations `wanted` (sorted) needs it: its identity, size and checksum
    unchanged (the integrity checks and `shards_digest` use them), its destinations only those of `wanted`
    it holds, its segment index only the segments that may hold them, plus the header (segment 0) and the
    last segment (where the reader checks the file's end). What a collect task carries then grows with its
    own destinations, not with every destination of the shard. None when it holds none of them."""
    held = shard.dests()
    at = np.minimum(np.searchsorted(held["dest"], wanted), max(len(held) - 1, 0))
    hit = held["dest"][at] == wanted if len(held) else np.zeros(len(wanted), bool)
    if not hit.any():
        return None
    segments = np.frombuffer(shard.segments, SEGMENTS)
    lo = np.searchsorted(wanted, segments["first"], side="left")
    hi = np.searchsorted(wanted, segments["last"], side="right")
    keep = lo < hi  # some wanted destination lies in [first, last]
    if len(keep):
        keep[0] = keep[-1] = True
    return replace(shard, destinations=held[at[hit]].tobytes(), segments=segments[keep].tobytes())


def segment_digest(shard: Shard) -> Callable[[bytes], bytes]:
    """How the segments of `shard` were hashed, by its checksum's prefix (16 bytes each)."""
    if shard.checksum.startswith("sha256:"):
        return lambda data: hashlib.sha256(data).digest()[:16]
    return xxhash.xxh3_128_digest


class ShardReader:
    """Reads slices of one shard file, checking each segment against the ledger as it is read.

    Opened once per task and shard, closed after: a collect task holds one shard open at a time, whatever
    the number of shards or chunks. With `direct`, large segments are read past the page cache, as
    `ShardWriter` wrote them (`qdask.direct_io`).
    """

    def __init__(self, shard: Shard, direct: bool = False):
        self.shard = shard
        self.segments = np.frombuffer(shard.segments, SEGMENTS)
        self._digest = segment_digest(shard)
        self._ahead: tuple[int, Future[pa.Buffer]] | None = None  # a segment read in the background
        try:
            self.file = DirectReader(shard.path, direct)
        except FileNotFoundError:
            raise CorruptShardError(shard, "missing") from None
        try:
            if self.file.size() != shard.bytes:
                raise CorruptShardError(shard, "altered (its size differs from the ledger)")
            end = int(self.segments["offset"][-1] + self.segments["length"][-1]) if len(self.segments) else 0
            if self.file.pread(len(END), end) != END or end + len(END) != shard.bytes:
                raise CorruptShardError(shard, "altered (its end differs from the ledger)")
            header = self._messages(0)
            self.schema = ipc.read_schema(next(header))
        except BaseException:
            self.file.close()
            raise

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self._ahead is not None:  # a read in flight uses the file: let it end first
                wait([self._ahead[1]])
        finally:
            self._ahead = None
            self.file.close()

    def _read(self, index: int) -> pa.Buffer:
        """A segment's bytes, checked against the ledger."""
        entry = self.segments[index]
        data = self.file.read(int(entry["offset"]), int(entry["length"]))
        if data.size != entry["length"] or self._digest(data) != bytes(entry["digest"]):
            raise CorruptShardError(self.shard, "altered (a segment's checksum differs from the ledger)")
        return data

    def _messages(self, index: int, data: pa.Buffer | None = None) -> Iterator[ipc.Message]:
        try:
            yield from ipc.MessageReader.open_stream(self._read(index) if data is None else data)
        except pa.ArrowException as exc:
            raise CorruptShardError(self.shard, f"unreadable ({exc})") from exc

    def _read_ahead(self, indices: list[int]) -> Iterator[tuple[int, pa.Buffer]]:
        """The segments `indices`, in order, each read (in the background) while the caller works on the
        one before: a read past the page cache waits for the device."""
        for k, index in enumerate(indices):
            ahead, self._ahead = self._ahead, None
            if ahead is not None and ahead[0] == index:
                data = ahead[1].result()
            else:  # none in flight, or one an abandoned pass asked for
                if ahead is not None:
                    wait([ahead[1]])
                data = self._read(index)
            if k + 1 < len(indices):
                self._ahead = (indices[k + 1], background().submit(self._read, indices[k + 1]))
            yield index, data

    def batches(self, first: int, last: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The rows whose destination is in [first, last], in file order (run by run), with `_dest`."""
        segments = self.segments
        wanted = np.flatnonzero((segments["first"] <= last) & (segments["last"] >= first))
        wanted = wanted[wanted > 0]  # segment 0 is the header
        for index, data in self._read_ahead(wanted.tolist()):
            for message in self._messages(index, data):
                if message.type != "record batch":
                    continue
                try:
                    batch = ipc.read_record_batch(message, self.schema)
                except pa.ArrowException as exc:
                    raise CorruptShardError(self.shard, f"unreadable ({exc})") from exc
                dests = batch.column(DEST).to_numpy()
                lo, hi = np.searchsorted(dests, [first, last + 1])
                if hi > lo:
                    piece = batch.slice(int(lo), int(hi - lo))
                    yield piece.select([*columns, DEST]) if columns is not None else piece


def all_rows(shard: Shard, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Every row of a shard (with `_dest`), segment by segment, each checked as it is read."""
    with ShardReader(shard) as reader:
        yield from reader.batches(np.iinfo(np.int64).min, np.iinfo(np.int64).max, columns)


def home_rows(shard: Shard, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """A shard's home rows (overlap copies left out), segment by segment, checked as they are read."""
    for batch in all_rows(shard, columns):
        dests = batch.column(DEST).to_numpy()
        yield batch if not (dests & 1).any() else batch.filter(pa.array((dests & 1) == 0))

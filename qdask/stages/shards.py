"""Per-chunk Parquet shard files written by the partition stage, with bounded memory.

A unit's rows arrive in record batches; each batch is sorted once by chunk id and sliced (never one
filter per chunk). Slices are buffered per destination and flushed as row groups once large enough,
or when the total buffered size passes a budget, so memory stays bounded whatever the number of chunks
a unit touches. Files are written under a temporary name and renamed when complete, so a killed task
never leaves a partial shard at a final path. Shards are not fsynced one by one: their checksums are in
the ledger and the collect stage re-checks them, so a shard lost to a power cut is rebuilt, not trusted.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qdask.ledger import Shard
from qdask.tsv import file_checksum


def unit_file_key(unit_id: str) -> str:
    """A file-name-safe, stable key for a unit id: a readable prefix plus a short hash."""
    readable = re.sub(r"[^A-Za-z0-9_.=-]+", "_", unit_id)[:80].strip("_.")
    return f"{readable}-{hashlib.blake2b(unit_id.encode(), digest_size=6).hexdigest()}"


def shard_path(root: Path, table: str, chunk_id: int, overlap: bool, unit_key: str) -> Path:
    """Fixed, idempotent location of a unit's shard for one chunk."""
    suffix = "_overlap" if overlap else ""
    return root / table / f"chunk_{chunk_id}{suffix}" / f"{unit_key}.parquet"


class ShardWriter:
    """Writes a unit's rows into one Parquet file per (chunk, overlap) destination.

    `add(table, chunk_ids, overlap)` takes rows with their destination chunk; `close()` finishes every
    file and returns what was written; `discard()` removes the temporary files after a failure.
    """

    def __init__(
        self,
        root: Path,
        table: str,
        unit_key: str,
        schema: pa.Schema,
        *,
        compression: str = "zstd",
        compression_level: int | None = 3,
        row_group_bytes: int = 32 << 20,
        buffer_budget_bytes: int = 64 << 20,
    ) -> None:
        self.root, self.table, self.unit_key, self.schema = Path(root), table, unit_key, schema
        self.compression, self.compression_level = compression, compression_level
        self.row_group_bytes, self.buffer_budget_bytes = row_group_bytes, buffer_budget_bytes
        self._buffers: dict[tuple[int, bool], list[pa.Table]] = {}
        self._buffered: dict[tuple[int, bool], int] = {}  # bytes per destination
        self._buffered_bytes = 0
        self._writers: dict[tuple[int, bool], pq.ParquetWriter] = {}
        self._rows: dict[tuple[int, bool], int] = {}

    def _tmp_path(self, key: tuple[int, bool]) -> Path:
        final = shard_path(self.root, self.table, key[0], key[1], self.unit_key)
        return final.with_name(final.name + f".tmp{os.getpid()}")

    def add(self, table: pa.Table, chunk_ids: np.ndarray, overlap: bool) -> None:
        """Route each row of `table` to the shard of its chunk (sort the chunk ids once, then gather)."""
        if table.num_rows == 0:
            return
        order = np.argsort(chunk_ids, kind="stable")
        sorted_ids = chunk_ids[order]
        starts = np.concatenate(([0], np.flatnonzero(np.diff(sorted_ids)) + 1))
        ends = np.concatenate((starts[1:], [len(sorted_ids)]))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            key = (int(sorted_ids[start]), overlap)
            # one gather per destination: each row is copied once, and no buffered piece pins the batch
            piece = table if end - start == table.num_rows else table.take(pa.array(order[start:end]))
            self._buffers.setdefault(key, []).append(piece)
            self._buffered[key] = self._buffered.get(key, 0) + piece.nbytes
            self._buffered_bytes += piece.nbytes
            if self._buffered[key] >= self.row_group_bytes:
                self._flush(key)
        while self._buffered_bytes > self.buffer_budget_bytes and self._buffers:
            self._flush(max(self._buffers, key=lambda k: self._buffered[k]))

    def _flush(self, key: tuple[int, bool]) -> None:
        pieces = self._buffers.pop(key)
        self._buffered.pop(key)
        data = pa.concat_tables(pieces).combine_chunks().cast(self.schema)
        self._buffered_bytes -= sum(p.nbytes for p in pieces)
        writer = self._writers.get(key)
        if writer is None:
            path = self._tmp_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = pq.ParquetWriter(
                path, self.schema, compression=self.compression, compression_level=self.compression_level
            )
            self._writers[key] = writer
        writer.write_table(data, row_group_size=max(data.num_rows, 1))
        self._rows[key] = self._rows.get(key, 0) + data.num_rows

    def close(self, unit_id: str) -> list[Shard]:
        """Flush everything, close the files, move them to their final paths, and describe them (as the
        ledger records them, for unit `unit_id`)."""
        for key in list(self._buffers):
            self._flush(key)
        shards = []
        for key, writer in sorted(self._writers.items()):
            writer.close()
            tmp = self._tmp_path(key)
            final = shard_path(self.root, self.table, key[0], key[1], self.unit_key)
            os.replace(tmp, final)
            shards.append(
                Shard(
                    unit_id=unit_id,
                    table=self.table,
                    chunk_id=key[0],
                    overlap=key[1],
                    path=str(final),
                    rows=self._rows[key],
                    bytes=final.stat().st_size,
                    checksum=file_checksum(final),
                )
            )
        self._writers.clear()
        return shards

    def discard(self) -> None:
        """Drop buffers and remove temporary files (used when the unit fails)."""
        self._buffers.clear()
        self._buffered.clear()
        self._buffered_bytes = 0
        for key, writer in self._writers.items():
            try:
                writer.close()
            finally:
                self._tmp_path(key).unlink(missing_ok=True)
        self._writers.clear()

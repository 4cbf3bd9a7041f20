"""The staging side of the ledger: input units (planned, partitioned, failed), their shards, and the chunk
files collected from them, with the invalidation rule that keeps them consistent (`qdask.ledger`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np

from qdask import faultpoints
from qdask.checksums import same_content
from qdask.ledger.base import LedgerBase, now
from qdask.ledger.records import (
    ChunkFile,
    ChunkKey,
    FileStatus,
    LedgerConflict,
    LedgerError,
    Shard,
    TransactionState,
    Unit,
    UnitStatus,
    dest_of,
    shards_digest,
)

_INSERT_CHUNK_FILE = (
    "INSERT INTO chunk_files (table_name, chunk_id, overlap, path, rows, bytes, checksum, sources, status, "
    "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)  # the values: `_chunk_file_row`


class StagingRecords(LedgerBase):
    """Units, shards and chunk files, as the partition and collect stages record them."""

    def plan_units(self, units: Iterable[Unit]) -> int:
        """Record planned units in one transaction; returns how many were new or changed.

        A unit already recorded with the same table and spec is left as it is (whatever its status); one
        whose table or spec changed is reset to planned and its shards are removed (see the module rule).
        """
        changed = 0
        with self._write() as db:
            for unit in units:
                spec = json.dumps(unit.spec, sort_keys=True)
                row = db.execute(
                    "SELECT table_name, spec FROM units WHERE unit_id = ?", (unit.unit_id,)
                ).fetchone()
                if row is not None and (row["table_name"], row["spec"]) == (unit.table, spec):
                    continue
                if row is not None:
                    self._replace_shards(db, unit.unit_id, [])
                db.execute(
                    "INSERT INTO units (unit_id, table_name, spec, est_rows, est_bytes, status, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (unit_id) DO UPDATE SET "
                    "table_name = excluded.table_name, spec = excluded.spec, est_rows = excluded.est_rows, "
                    "est_bytes = excluded.est_bytes, status = excluded.status, rows_read = NULL, "
                    "rows_invalid = NULL, rows_quarantined = NULL, error = NULL, updated = excluded.updated",
                    (
                        unit.unit_id,
                        unit.table,
                        spec,
                        unit.est_rows,
                        unit.est_bytes,
                        UnitStatus.PLANNED,
                        now(),
                    ),
                )
                changed += 1
        return changed

    def unit_started(self, unit_id: str) -> int:
        """Count an attempt at partitioning a unit (before it runs, so a task that kills its worker shows)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE units SET attempts = attempts + 1, updated = ? WHERE unit_id = ? RETURNING attempts",
                (now(), unit_id),
            )
            row = cur.fetchone()
            if row is None:
                raise LedgerError(f"unit {unit_id!r} is not planned in {self.path}")
            return row[0]

    def unit_partitioned(
        self,
        unit_id: str,
        shards: Iterable[Shard],
        *,
        rows_read: int,
        rows_invalid: int = 0,
        rows_quarantined: int = 0,
    ) -> list[ChunkKey]:
        """Record a unit's complete set of shards and mark it partitioned, atomically.

        The given shards replace the unit's previous ones. Returns the keys whose staged chunk file
        was invalidated (to be collected again); raises ``LedgerConflict`` if a loaded one would be.
        """
        shards = list(shards)
        for shard in shards:
            if shard.unit_id != unit_id:
                raise LedgerError(f"shard {shard.path} belongs to unit {shard.unit_id!r}, not {unit_id!r}")
        with self._write() as db:
            if db.execute("SELECT 1 FROM units WHERE unit_id = ?", (unit_id,)).fetchone() is None:
                raise LedgerError(f"unit {unit_id!r} is not planned in {self.path}")
            invalidated = self._replace_shards(db, unit_id, shards)
            db.execute(
                "UPDATE units SET status = ?, rows_read = ?, rows_invalid = ?, "
                "rows_quarantined = ?, error = NULL, updated = ? WHERE unit_id = ?",
                (UnitStatus.PARTITIONED, rows_read, rows_invalid, rows_quarantined, now(), unit_id),
            )
        return invalidated

    def forget_units(self, tables: Iterable[str], planned: Iterable[str]) -> list[Unit]:
        """Forget the recorded units of `tables` the plan no longer has (an input file gone from the glob, or
        split into other row-group units), atomically: their shards go and the chunk files they fed are
        invalidated, so none of their rows is collected. ``LedgerConflict`` (nothing forgotten) if one of
        those files is loaded or in an open transaction. Returns the units forgotten."""
        tables, planned = set(tables), set(planned)
        with self._write() as db:
            stale = [
                _unit(r)
                for r in db.execute("SELECT * FROM units ORDER BY unit_id")
                if r["table_name"] in tables and r["unit_id"] not in planned
            ]
            for unit in stale:
                try:
                    self._replace_shards(db, unit.unit_id, [])
                except LedgerConflict as exc:
                    raise LedgerConflict(f"{unit.unit_id} is no longer in the input: {exc}") from exc
                db.execute("DELETE FROM units WHERE unit_id = ?", (unit.unit_id,))
        return stale

    def unit_failed(self, unit_id: str, error: str) -> None:
        """Mark a unit failed with its error text (its previous shards, if any, stay recorded)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE units SET status = ?, error = ?, updated = ? WHERE unit_id = ?",
                (UnitStatus.FAILED, error, now(), unit_id),
            )
            if cur.rowcount == 0:
                raise LedgerError(f"unit {unit_id!r} is not planned in {self.path}")

    def _replace_shards(self, db: sqlite3.Connection, unit_id: str, shards: list[Shard]) -> list[ChunkKey]:
        rows = db.execute("SELECT * FROM shards WHERE unit_id = ?", (unit_id,))
        old = {r["table_name"]: _shard(r) for r in rows}
        new = {s.table: s for s in shards}
        if len(new) != len(shards):
            raise LedgerError(f"unit {unit_id!r}: two shards for the same table")
        changed = {t for t in old.keys() | new.keys() if old.get(t) != new.get(t)}
        invalidated: list[ChunkKey] = []
        for table in sorted(changed):
            # every destination the unit held, before or after, may have other rows now
            dests = np.union1d(
                old[table].dests()["dest"] if table in old else np.empty(0, np.int64),
                new[table].dests()["dest"] if table in new else np.empty(0, np.int64),
            )
            staged = [
                ChunkKey(table, r[0], bool(r[1]))
                for r in db.execute(
                    "SELECT chunk_id, overlap FROM chunk_files WHERE table_name = ? "
                    "ORDER BY chunk_id, overlap",
                    (table,),
                )
            ]
            hit = np.isin(dest_of([k.chunk_id for k in staged], [k.overlap for k in staged]), dests)
            hits = [k for k, h in zip(staged, hit.tolist(), strict=True) if h]
            invalidated += [k for k in hits if self._invalidate(db, k)]
            if table not in new:
                db.execute("DELETE FROM shards WHERE unit_id = ? AND table_name = ?", (unit_id, table))
                continue
            shard = new[table]
            db.execute(
                "INSERT INTO shards VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (unit_id, table_name) DO UPDATE SET path = excluded.path, rows = excluded.rows, "
                "bytes = excluded.bytes, checksum = excluded.checksum, destinations = excluded.destinations, "
                "segments = excluded.segments",
                (
                    unit_id,
                    table,
                    shard.path,
                    shard.rows,
                    shard.bytes,
                    shard.checksum,
                    shard.destinations,
                    shard.segments,
                ),
            )
        return sorted(invalidated)

    def _invalidate(self, db: sqlite3.Connection, key: ChunkKey) -> bool:
        """Delete the staged chunk file of ``key``; refuse if it is loaded or in an open transaction."""
        row = db.execute(
            "SELECT f.file_id, f.status, f.path, ("
            "  SELECT MIN(t.transaction_id) FROM transaction_files tf"
            "  JOIN transactions t USING (transaction_id) WHERE tf.file_id = f.file_id"
            "  AND t.state = ?) AS open_tid "
            "FROM chunk_files f WHERE table_name = ? AND chunk_id = ? AND overlap = ?",
            (TransactionState.STARTED, key.table, key.chunk_id, int(key.overlap)),
        ).fetchone()
        if row is None:
            return False
        loaded = row["status"] == FileStatus.LOADED
        if loaded or row["open_tid"] is not None:
            where = "is loaded in Qserv" if loaded else f"is in open transaction {row['open_tid']}"
            raise LedgerConflict(
                f"the input of chunk file {row['path']} ({key.table}, chunk {key.chunk_id}, overlap "
                f"{int(key.overlap)}) changed, but that file {where}; its rows cannot be replaced silently"
            )
        db.execute("DELETE FROM chunk_files WHERE file_id = ?", (row["file_id"],))
        return True

    def units(self, *, table: str | None = None, status: UnitStatus | None = None) -> list[Unit]:
        return [_unit(r) for r in self._select("units", "unit_id", table_name=table, status=status)]

    def units_to_partition(self) -> list[Unit]:
        """Units not yet partitioned (planned or failed), in id order."""
        rows = self._rows("SELECT * FROM units WHERE status != ? ORDER BY unit_id", (UnitStatus.PARTITIONED,))
        return [_unit(r) for r in rows]

    # -- shards and chunk files -------------------------------------------------------------------

    def shards(
        self, key: ChunkKey | None = None, *, unit_id: str | None = None, table: str | None = None
    ) -> list[Shard]:
        """Shards holding rows of one destination, or of one unit, or of one table, or all; in (table, unit)
        order."""
        table = key.table if key is not None else table
        rows = self._select("shards", "table_name, unit_id", table_name=table, unit_id=unit_id)
        shards = [_shard(r) for r in rows]
        if key is not None:
            shards = [s for s in shards if s.rows_in(key)]
        return shards

    def destinations(self, table: str) -> dict[ChunkKey, int]:
        """Every destination of ``table``'s shards with its rows (home and overlap), in destination order."""
        parts = [s.dests() for s in self.shards(table=table)]
        if not parts:
            return {}
        merged = np.concatenate(parts)
        dests, inverse = np.unique(merged["dest"], return_inverse=True)
        rows = np.bincount(inverse, weights=merged["rows"], minlength=len(dests)).astype(np.int64)
        return {
            ChunkKey(table, d >> 1, bool(d & 1)): n
            for d, n in zip(dests.tolist(), rows.tolist(), strict=True)
        }

    def chunks_to_collect(self) -> list[ChunkKey]:
        """Destinations with shards, no chunk file yet, and every unit of their table partitioned."""
        ready = self._rows(
            "SELECT table_name FROM units GROUP BY table_name "
            "HAVING SUM(status != ?) = 0 ORDER BY table_name",
            (UnitStatus.PARTITIONED,),
        )
        keys: list[ChunkKey] = []
        for (table,) in ready:
            staged = {
                ChunkKey(table, r[0], bool(r[1]))
                for r in self._rows(
                    "SELECT chunk_id, overlap FROM chunk_files WHERE table_name = ?", (table,)
                )
            }
            keys += [k for k in self.destinations(table) if k not in staged]
        return keys

    def record_chunk_file(self, file: ChunkFile) -> bool:
        """Record a collected contribution file as staged; returns False when it was already recorded.

        ``file.sources`` must equal ``shards_digest`` of the shards now holding its destination, else the
        file was built from stale shards and ``LedgerConflict`` is raised. A different file for the same
        destination replaces a staged record, and is refused for a loaded or in-transaction one.
        """
        return self.record_chunk_files([file])[0]

    def record_chunk_files(self, files: Sequence[ChunkFile]) -> list[bool]:
        """`record_chunk_file` for several files in one transaction: a collect task's thousands of files
        cost a few statements per table (the shards read once, each file's sources checked by a vectorised
        look-up, the existing records of the files' chunk range read at once, the new ones inserted by one
        `executemany`), not a few per file. Nothing is recorded if any file is refused."""
        if len({f.key for f in files}) != len(files):  # the same destination twice: one after the other
            with self._write() as db:
                return [self._record_one(db, f, self._table_shards(db, f.table)) for f in files]
        out = [False] * len(files)
        with self._write() as db:
            stamp = now()
            for table in sorted({f.table for f in files}):
                mine = [i for i, f in enumerate(files) if f.table == table]
                self._check_sources(table, [files[i] for i in mine], self._table_shards(db, table))
                chunks = [files[i].chunk_id for i in mine]
                held = {
                    (r["chunk_id"], bool(r["overlap"])): (r["path"], r["rows"], r["bytes"], r["checksum"])
                    for r in db.execute(
                        "SELECT chunk_id, overlap, path, rows, bytes, checksum FROM chunk_files "
                        "WHERE table_name = ? AND chunk_id BETWEEN ? AND ?",
                        (table, min(chunks), max(chunks)),
                    )
                }
                new = []
                for i in mine:
                    file = files[i]
                    row = held.get((file.chunk_id, file.overlap))
                    if row is not None and _same_file(row, file):
                        continue
                    if row is not None:
                        self._invalidate(db, file.key)
                    new.append(_chunk_file_row(file, stamp))
                    out[i] = True
                db.executemany(_INSERT_CHUNK_FILE, new)
                faultpoints.reached("ledger.chunk_files", table)  # inserted, not committed: all or none
        return out

    @staticmethod
    def _table_shards(db: sqlite3.Connection, table: str) -> list[Shard]:
        return [_shard(r) for r in db.execute("SELECT * FROM shards WHERE table_name = ?", (table,))]

    @staticmethod
    def _check_sources(table: str, files: Sequence[ChunkFile], shards: Sequence[Shard]) -> None:
        """Refuse the files (`LedgerConflict`) unless each one's ``sources`` is the digest of the shards now
        holding its destination: one search per shard over the files' destinations, one digest per set
        of holding shards (most files of an all-sky input share theirs)."""
        wanted = dest_of([f.chunk_id for f in files], [f.overlap for f in files])
        holders: list[list[int]] = [[] for _ in files]
        for s, shard in enumerate(shards):
            dests = shard.dests()["dest"]
            if not len(dests):
                continue
            at = np.minimum(np.searchsorted(dests, wanted), len(dests) - 1)
            for i in np.flatnonzero(dests[at] == wanted).tolist():
                holders[i].append(s)
        digests: dict[tuple[int, ...], str] = {}
        for file, held in zip(files, holders, strict=True):
            key = tuple(held)
            if key not in digests:
                digests[key] = shards_digest(shards[s] for s in held)
            if file.sources != digests[key]:
                raise LedgerConflict(
                    f"chunk file {file.path} was built from shards that changed since ({table}, "
                    f"chunk {file.chunk_id}, overlap {int(file.overlap)}); collect it again"
                )

    def _record_one(self, db: sqlite3.Connection, file: ChunkFile, shards: list[Shard]) -> bool:
        self._check_sources(file.table, [file], shards)
        return self._record_chunk_file(db, file)

    def _record_chunk_file(self, db: sqlite3.Connection, file: ChunkFile) -> bool:
        key = file.key
        row = db.execute(
            "SELECT path, rows, bytes, checksum FROM chunk_files WHERE table_name = ? AND chunk_id = ? "
            "AND overlap = ?",
            (key.table, key.chunk_id, int(key.overlap)),
        ).fetchone()
        if row is not None and _same_file(tuple(row), file):
            return False
        if row is not None:
            self._invalidate(db, key)
        db.execute(_INSERT_CHUNK_FILE, _chunk_file_row(file, now()))
        return True

    def drop_chunk_file(self, key: ChunkKey) -> bool:
        """Forget a staged chunk file (e.g. found corrupt on disk) so it is collected again."""
        with self._write() as db:
            return self._invalidate(db, key)

    def chunk_files(self, *, status: FileStatus | None = None, table: str | None = None) -> list[ChunkFile]:
        order = "table_name, chunk_id, overlap"
        return [_chunk_file(r) for r in self._select("chunk_files", order, status=status, table_name=table)]

    def files_to_load(self) -> list[ChunkFile]:
        """Staged chunk files not carried by a started transaction (after aborting the open ones on
        resume, their files are here again)."""
        rows = self._rows(
            "SELECT * FROM chunk_files f WHERE status = ? AND NOT EXISTS ("
            "  SELECT 1 FROM transaction_files tf JOIN transactions t USING (transaction_id) "
            "  WHERE tf.file_id = f.file_id AND t.state = ?) "
            "ORDER BY table_name, chunk_id, overlap",
            (FileStatus.STAGED, TransactionState.STARTED),
        )
        return [_chunk_file(r) for r in rows]


def _unit(r: sqlite3.Row) -> Unit:
    return Unit(
        r["unit_id"],
        r["table_name"],
        json.loads(r["spec"]),
        UnitStatus(r["status"]),
        r["est_rows"],
        r["est_bytes"],
        r["rows_read"],
        r["rows_invalid"],
        r["rows_quarantined"],
        r["error"],
        r["attempts"],
    )


def _shard(r: sqlite3.Row) -> Shard:
    return Shard(
        r["unit_id"],
        r["table_name"],
        r["path"],
        r["rows"],
        r["bytes"],
        r["checksum"],
        bytes(r["destinations"]),
        bytes(r["segments"]),
    )


def _same_file(row: tuple, file: ChunkFile) -> bool:
    """Whether a recorded (path, rows, bytes, checksum) is `file`: collected again with the same content
    (a checksum an earlier qdask wrote in another algorithm is compared by hashing the file that way)."""
    return row[:3] == (file.path, file.rows, file.bytes) and same_content(file.path, file.checksum, row[3])


def _chunk_file_row(file: ChunkFile, stamp: str) -> tuple:
    """A staged chunk file's values, in the order of the INSERTs above."""
    return (
        file.table,
        file.chunk_id,
        int(file.overlap),
        file.path,
        file.rows,
        file.bytes,
        file.checksum,
        file.sources,
        FileStatus.STAGED.value,
        stamp,
    )


def _chunk_file(r: sqlite3.Row) -> ChunkFile:
    return ChunkFile(
        r["table_name"],
        r["chunk_id"],
        bool(r["overlap"]),
        r["path"],
        r["rows"],
        r["bytes"],
        r["checksum"],
        r["sources"],
        FileStatus(r["status"]),
    )

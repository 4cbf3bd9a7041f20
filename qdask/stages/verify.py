"""Verify stage: compare what the czar returns with what the ledger says was staged and loaded, and with the
source — in SQL a real Qserv accepts.

Qserv's czar refuses much of MySQL (``COUNT(DISTINCT …)``, ``BIT_XOR``, ``CAST``, aggregates over anything
but a plain column, …; :mod:`qdask.emulator.czar.rules` lists the rules with their Qserv source lines), so
every statement here is built from :data:`STATEMENTS`, which uses only what Qserv passes to its workers:

* rows per chunk and a checksum of the key: ``SELECT chunkId, COUNT(*), COUNT(key), SUM(key), MIN(key),
  MAX(key) … GROUP BY chunkId`` (one scan; a regular table has no chunks and no GROUP BY), against the
  ledger's rows per chunk and the (count, exact sum, min, max) of the staged keys;
* key uniqueness: ``SELECT key, COUNT(*) AS n … GROUP BY key HAVING n > 1 LIMIT 10`` (Qserv applies
  HAVING after merging the chunks' partial counts, so a key repeated in two chunks is found). That merge
  brings every key of the table to the czar (every chunk's partial groups), and without an index on the
  key each chunk groups all its rows: on the stand-in's MariaDB 39 s for 8.1M rows against 1.9 s for the
  per-chunk checksum scan. A director's ids were proven unique before loading (the key check, whose
  policies stop or quarantine on a repeat) and its per-chunk key checksum compares the czar's ids with
  those, so above ``unique_scan_rows`` rows (default `UNIQUE_SCAN_ROWS`) a director with an integer id is
  not scanned again and the report says so. Above it, another table's unique integer id (a child's own
  id, which the key check does not read) is checked in its staged rows instead, by a merge of per-unit
  sorted files in bounded memory (`qdask.stages.staged_ids`), and the key checksum ties those to the
  czar's. A key that is not an integer is always grouped through the czar;
* a full-row comparison of a sample of source rows drawn from all of the table's units (bounded memory:
  one batch at a time), fetched with ``key IN (…)``; FLOAT columns are read as ``col + 0.0`` so that the
  exact stored value travels (the text of a FLOAT has too few digits, and Qserv has no CAST).

The staged key digest reuses the sorted key files of the key check (``keys/<table>/<unit>.npy``) where
they hold the key, and reads the shards' key column only for the units without one.
The report names every difference; it passes only when everything agrees.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from qdask.ledger import FileStatus, Ledger
from qdask.qserv.czar import Czar, quote_identifier, quote_qualified
from qdask.stages.keys import unit_key_path
from qdask.stages.staged_ids import loaded_ids, repeated_ids, sorted_unit_ids

SHOWN = 10
CHUNK_COLUMNS = ("chunkId", "subChunkId")

#: Above this many rows a table's unique integer key is not grouped through the czar (see the module doc).
UNIQUE_SCAN_ROWS = 10_000_000

# Every statement verify sends, as a template (names are validated and quoted before substitution).

STATEMENTS = {
    "rows": "SELECT COUNT(*) AS n FROM {table}",
    "rows and key": (
        "SELECT COUNT(*) AS n, COUNT({key}) AS keys_, SUM({key}) AS sum_, MIN({key}) AS min_, "
        "MAX({key}) AS max_ FROM {table}"
    ),
    "rows per chunk": "SELECT chunkId, COUNT(*) AS n FROM {table} GROUP BY chunkId",
    "rows and key per chunk": (
        "SELECT chunkId, COUNT(*) AS n, COUNT({key}) AS keys_, SUM({key}) AS sum_, MIN({key}) AS min_, "
        "MAX({key}) AS max_ FROM {table} GROUP BY chunkId"
    ),
    "duplicate keys": (
        "SELECT {key}, COUNT(*) AS n FROM {table} GROUP BY {key} HAVING n > 1 LIMIT " + str(SHOWN)
    ),
    "sample rows": "SELECT {columns} FROM {table} WHERE {key} IN ({values})",
}


@dataclass(frozen=True)
class TableToVerify:
    """What verify needs to know of a table: its kind, key column and the Arrow types of its columns."""

    name: str
    kind: str
    key: str | None
    schema: pa.Schema  # staged columns (Qserv names), chunkId/subChunkId last when partitioned
    unique: bool = True  # the key is unique (not a director declared with unique_primary_key: false)


@dataclass(frozen=True)
class SourceSample:
    """How to draw source rows of a table: its units with their row counts, and a reader of a unit's rows
    (conformed to the staged columns, in source order) that leaves out the rows Qserv rightly lacks while
    keeping the source row numbers (``row`` column)."""

    units: Sequence[tuple[Any, int]]  # (input unit, rows read from it)
    read: Callable[[Any], Iterator[pa.Table]]


@dataclass(frozen=True)
class Check:
    table: str
    name: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, table: str, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(table, name, ok, detail))


# ------------------------------------------------------------------------------------------ key digests


@dataclass(frozen=True)
class KeyDigest:
    """(count, exact sum, min, max) of integer keys: what the czar computes with COUNT/SUM/MIN/MAX."""

    count: int = 0
    total: int = 0
    low: int | None = None
    high: int | None = None

    def __add__(self, other: KeyDigest) -> KeyDigest:
        lows = [v for v in (self.low, other.low) if v is not None]
        highs = [v for v in (self.high, other.high) if v is not None]
        return KeyDigest(
            self.count + other.count,
            self.total + other.total,
            min(lows) if lows else None,
            max(highs) if highs else None,
        )

    def __str__(self) -> str:
        return f"count {self.count:,}, sum {self.total}, min {self.low}, max {self.high}"


def key_digest(values: np.ndarray) -> KeyDigest:
    """The digest of an array of integer keys; the sum is exact (split into 32-bit halves, no overflow)."""
    if not len(values):
        return KeyDigest()
    values = values.astype(np.uint64 if values.dtype.kind == "u" else np.int64, copy=False)
    high, low = values >> 32, values & 0xFFFFFFFF
    total = int(high.sum(dtype=high.dtype)) * (1 << 32) + int(low.sum(dtype=low.dtype))
    return KeyDigest(len(values), total, int(values.min()), int(values.max()))


def _without(values: np.ndarray, excluded: np.ndarray | None) -> np.ndarray:
    return values if excluded is None else values[~np.isin(values, excluded)]


def staged_key_digest(
    ledger: Ledger,
    table: str,
    key: str,
    *,
    key_files: tuple[str, Path] | None = None,
    exclusion: tuple[str, np.ndarray] | None = None,
) -> KeyDigest:
    """The digest of every staged key of ``table`` as loaded (rows the key check quarantined left out).

    ``key_files`` = (column, keys root) of the partition stage's sorted per-unit key files: used for each
    unit whose file exists and holds ``key``; the other units' shards are read (their key column only)."""
    digest = KeyDigest()
    shards_by_unit: dict[str, list] = {}  # every shard of a unit names its key file; home ones hold keys
    for shard in ledger.shards():
        if shard.table == table:
            shards_by_unit.setdefault(shard.unit_id, []).append(shard)
    same_column = exclusion is not None and exclusion[0] == key
    for unit_id, shards in sorted(shards_by_unit.items()):
        path = (
            unit_key_path(key_files[1], table, unit_id, shards) if key_files and key_files[0] == key else None
        )
        if path is not None and path.is_file() and (exclusion is None or same_column):
            values = np.load(path, mmap_mode="r")
            digest = digest + key_digest(_without(np.asarray(values), exclusion[1] if exclusion else None))
            continue
        for shard in shards:
            digest = digest + key_digest(loaded_ids(shard, key, exclusion))
    return digest


def czar_key_digest(rows: Iterable[Sequence]) -> KeyDigest:
    """Fold (…, COUNT(key), SUM(key), MIN(key), MAX(key)) rows (one per chunk, or one) into a digest."""
    digest = KeyDigest()
    for keys, total, low, high in rows:
        if not keys:
            continue
        digest = digest + KeyDigest(int(keys), int(Decimal(total)), int(low), int(high))
    return digest


# ---------------------------------------------------------------------------------------- the samples


def sample_source(source: SourceSample, size: int, rng: random.Random) -> pa.Table | None:
    """Up to ``size`` source rows drawn uniformly from all the units (by source row number), read one batch
    at a time; rows Qserv rightly lacks are not drawn twice but may leave the sample a little smaller."""
    total = sum(rows for _, rows in source.units)
    if total == 0 or size <= 0:
        return None
    picks = sorted(rng.sample(range(total), min(size, total)))
    parts: list[pa.Table] = []
    start = 0
    for unit, rows in source.units:
        wanted = [p - start for p in picks if start <= p < start + rows]
        start += rows
        if not wanted:
            continue
        wanted_set, last = set(wanted), max(wanted)
        for batch in source.read(unit):
            numbers = batch["row"].to_numpy(zero_copy_only=False)
            mask = np.isin(numbers, list(wanted_set))
            if mask.any():
                parts.append(batch.filter(pa.array(mask)).drop(["row"]))
            if len(numbers) and numbers.max() >= last:
                break
    return pa.concat_tables(parts) if parts else None


def _normalise(value, arrow_type: pa.DataType):
    """A source value as the czar returns it: NaN/inf → None, bool → 0/1, float32 widened exactly."""
    if value is None:
        return None
    if pa.types.is_floating(arrow_type):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if pa.types.is_boolean(arrow_type):
        return int(value)
    if pa.types.is_decimal(arrow_type):
        return Decimal(value)
    return value


def _select_item(f: pa.Field) -> str:
    """A FLOAT reads as ``col + 0.0 AS col``: the stored value widened to DOUBLE travels with all its
    digits (a FLOAT's text has 6), with no CAST, which Qserv's parser lacks (ParseListener.cc:701)."""
    name = quote_identifier(f.name)
    return f"{name} + 0.0 AS {name}" if pa.types.is_float32(f.type) else name


def _comparable(schema: pa.Schema) -> tuple[pa.Schema, list[str]]:
    """The data columns a sample is compared on, and those Qserv cannot name (a leading underscore is
    refused, ParseAdapters.h:1827)."""
    kept: list[pa.Field] = []
    skipped: list[pa.Field] = []
    for f in schema:
        if f.name in CHUNK_COLUMNS:
            continue
        (skipped if f.name.startswith("_") else kept).append(f)
    return pa.schema(kept), [f.name for f in skipped]


# ------------------------------------------------------------------------------------------ the stage


def statement(name: str, **names: str) -> str:
    """One of :data:`STATEMENTS` with validated, quoted names (``table`` as db.table)."""
    quoted = {k: (v if k in ("columns", "values") else _quote(k, v)) for k, v in names.items()}
    return STATEMENTS[name].format(**quoted)


def _quote(kind: str, value: str) -> str:
    return quote_qualified(*value.split(".", 1)) if kind == "table" else quote_identifier(value)


def verify(
    czar: Czar,
    ledger: Ledger,
    database: str,
    tables: Sequence[TableToVerify],
    *,
    sample: Callable[[TableToVerify], SourceSample] | None = None,
    sample_size: int = 20,
    seed: int | None = None,
    exclusions: dict[str, tuple[str, np.ndarray]] | None = None,
    key_files: dict[str, tuple[str, Path]] | None = None,
    unique_scan_rows: int | None = UNIQUE_SCAN_ROWS,
    scratch: Path | None = None,
) -> VerifyReport:
    """Run every check for every table and return the report (`unique_scan_rows`: see the module doc;
    None scans every unique key through the czar; `scratch`: where the staged-id check keeps its files, a
    temporary directory of the system's by default)."""
    report = VerifyReport()
    rng = random.Random(seed)
    loaded = ledger.chunk_rows(status=FileStatus.LOADED)
    for table in tables:
        expected = {k.chunk_id: n for k, n in loaded.items() if k.table == table.name and not k.overlap}
        key = table.key if table.key and _integer(table.schema, table.key) else None
        found_chunks, found_digest = _counts(czar, database, table, key)
        found_total = sum(found_chunks.values())
        staged_total = sum(expected.values())
        if table.kind == "match":
            # Qserv returns each pair once (MatchTablePlugin.cc), though a pair split between two chunks is
            # stored in both: the czar's rows are the pairs read, and its rows per chunk are not the files'.
            pairs = sum(u.rows_read or 0 for u in ledger.units(table=table.name))
            report.add(
                table.name, "rows", found_total == pairs,
                f"czar {found_total:,} pairs, ledger {pairs:,} read ({staged_total:,} rows stored)",
            )  # fmt: skip
            continue
        report.add(
            table.name, "rows", found_total == staged_total,
            f"czar {found_total:,} rows, ledger {staged_total:,} loaded",
        )  # fmt: skip
        if table.kind != "regular":
            differ = sorted(
                c for c in set(found_chunks) | set(expected) if found_chunks.get(c, 0) != expected.get(c, 0)
            )
            detail = (
                f"{len(expected)} chunks agree"
                if not differ
                else "chunks differ (chunk: czar/ledger): "
                + ", ".join(f"{c}: {found_chunks.get(c, 0)}/{expected.get(c, 0)}" for c in differ[:SHOWN])
            )
            report.add(table.name, "rows per chunk", not differ, detail)
        if not table.key:
            continue
        staged: KeyDigest | None = None
        exclusion = (exclusions or {}).get(table.name)
        if table.unique:
            large = unique_scan_rows is not None and found_total > unique_scan_rows
            if large and key is not None and table.kind == "director":
                report.add(
                    table.name, "unique key", True,
                    f"not scanned through the czar ({found_total:,} rows > {unique_scan_rows:,}): the key "
                    f"check found each staged {table.key} once before loading, and the key checksum "
                    "compares the czar's with them chunk by chunk",
                )  # fmt: skip
            elif large and key is not None:
                staged = _check_unique_staged(ledger, table, key, exclusion, scratch, report)
            else:
                _check_unique(czar, database, table, report)
        if key is not None:
            if staged is None:
                staged = staged_key_digest(
                    ledger,
                    table.name,
                    key,
                    key_files=(key_files or {}).get(table.name),
                    exclusion=exclusion,
                )
            report.add(
                table.name, "key checksum", found_digest == staged,
                f"czar ({found_digest}) vs staged ({staged})",
            )  # fmt: skip
        if sample is not None and sample_size > 0:
            rows = sample_source(sample(table), sample_size, rng)
            _compare_sample(czar, database, table, rows, report)
    return report


def _integer(schema: pa.Schema, key: str) -> bool:
    return schema.get_field_index(key) >= 0 and pa.types.is_integer(schema.field(key).type)


def _counts(czar: Czar, database: str, table: TableToVerify, key: str | None) -> tuple[dict, KeyDigest]:
    """Rows per chunk (one pseudo-chunk 0 for a regular table) and the czar's key digest, in one scan."""
    qualified = f"{database}.{table.name}"
    partitioned = table.kind != "regular"
    name = (
        ("rows and key per chunk" if partitioned else "rows and key")
        if key
        else ("rows per chunk" if partitioned else "rows")
    )
    sql = statement(name, table=qualified, **({"key": key} if key else {}))
    chunks: dict[int, int] = {}
    digests = []
    with czar.query(sql) as rows:
        for row in rows:
            chunk, rest = (int(row[0]), row[1:]) if partitioned else (0, row)
            chunks[chunk] = chunks.get(chunk, 0) + int(rest[0])
            if key:
                digests.append(rest[1:])
    return chunks, czar_key_digest(digests)


def _check_unique_staged(
    ledger: Ledger,
    table: TableToVerify,
    key: str,
    exclusion: tuple[str, np.ndarray] | None,
    scratch: Path | None,
    report: VerifyReport,
) -> KeyDigest:
    """Check a table's unique integer key in its staged rows as loaded (`qdask.stages.staged_ids`), and
    return those ids' digest for the key checksum."""
    digest, paths = KeyDigest(), []
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".verify-{table.name}-", dir=scratch) as directory:
        for path, ids in sorted_unit_ids(ledger.shards(table=table.name), key, exclusion, Path(directory)):
            digest = digest + key_digest(ids)
            paths.append(path)
        repeats = repeated_ids(paths, SHOWN)
    where = f"the {digest.count:,} staged {key} values as loaded ({len(paths):,} unit files merged)"
    report.add(
        table.name, "unique key", not repeats.ids,
        f"no {key} value appears twice in {where}, not grouped through the czar; the key checksum compares "
        "the czar's with them chunk by chunk"
        if not repeats.ids
        else f"{key} values repeated in {where}: {repeats.rows:,} rows share {repeats.ids:,} values, e.g. "
        + ", ".join(f"{k} ({n}×)" for k, n in repeats.examples),
    )  # fmt: skip
    return digest


def _check_unique(czar: Czar, database: str, table: TableToVerify, report: VerifyReport) -> None:
    assert table.key is not None
    sql = statement("duplicate keys", table=f"{database}.{table.name}", key=table.key)
    with czar.query(sql) as rows:
        repeated = [(k, int(n)) for k, n in rows]
    report.add(
        table.name,
        "unique key",
        not repeated,
        f"no {table.key} value appears twice"
        if not repeated
        else f"{table.key} values repeated, e.g. " + ", ".join(f"{k} ({n}×)" for k, n in repeated),
    )


def _compare_sample(
    czar: Czar, database: str, table: TableToVerify, rows: pa.Table | None, report: VerifyReport
) -> None:
    assert table.key is not None
    if rows is None or rows.num_rows == 0:
        report.add(table.name, "sample rows", True, "no rows to sample")
        return
    schema, skipped = _comparable(table.schema)
    keys = rows[table.key].to_pylist()
    sql = statement(
        "sample rows",
        table=f"{database}.{table.name}",
        key=table.key,
        columns=", ".join(_select_item(f) for f in schema),
        values=", ".join(["%s"] * len(keys)),
    )
    found: dict[Any, list[Sequence]] = {}
    with czar.query(sql, keys) as result:
        for row in result:  # several rows per key only in a director declared with repeated ids
            found.setdefault(row[schema.get_field_index(table.key)], []).append(row)
    problems = []
    for i, key in enumerate(keys):
        candidates = found.get(key)
        if not candidates:
            problems.append(f"{table.key}={key} missing")
            continue
        want = [_normalise(rows[f.name][i].as_py(), f.type) for f in schema]
        if any(list(row) == want for row in candidates):
            continue
        first = candidates[0]
        problems += [
            f"{table.key}={key} column {f.name}: source {want[j]!r}, czar {first[j]!r}"
            for j, f in enumerate(schema)
            if want[j] != first[j]
        ]
    unchecked = f"; not compared (Qserv refuses their names): {', '.join(skipped)}" if skipped else ""
    more = f" (+{len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
    detail = (
        f"{len(keys)} source rows (from all units) equal in all {len(schema)} columns"
        if not problems
        else "; ".join(problems[:SHOWN]) + more
    )
    report.add(table.name, "sample rows", not problems, detail + unchecked)

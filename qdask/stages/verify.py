"""Verify stage: compare what the czar returns with what the ledger says was staged and loaded.

Per table: the row count; per chunk, the rows of each chunk; for tables with a key, that the key is
unique and that a checksum over it (count, sum, XOR of the key values) matches the staged rows; and a
full-row comparison of a random sample of source rows with the rows the czar returns for their keys.
The report names every difference; it passes only when everything agrees.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qdask.ledger import Ledger
from qdask.qserv.czar import Czar, quote_identifier, quote_qualified

SHOWN = 10


@dataclass(frozen=True)
class TableToVerify:
    """What verify needs to know of a table: its kind, key column and the Arrow types of its columns."""

    name: str
    kind: str
    key: str | None
    schema: pa.Schema  # staged columns (Qserv names), chunkId/subChunkId last when partitioned


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


def key_digest(values: np.ndarray) -> tuple[int, int, int]:
    """(count, exact sum, XOR) of integer keys — the same triple the czar computes in SQL."""
    values = values.astype(np.int64, copy=False)
    high, low = values >> 32, values & 0xFFFFFFFF
    total = int(high.sum(dtype=np.int64)) * (1 << 32) + int(low.sum(dtype=np.int64))
    xor = int(np.bitwise_xor.reduce(values)) if len(values) else 0
    return len(values), total, xor


def _staged_key_digest(
    ledger: Ledger, table: str, key: str, exclusion: tuple[str, np.ndarray] | None = None
) -> tuple[int, int, int]:
    count = total = xor = 0
    for shard in ledger.shards():
        if shard.table != table or shard.overlap:
            continue
        columns = [key] if exclusion is None else list(dict.fromkeys([key, exclusion[0]]))
        data = pq.read_table(shard.path, columns=columns)
        if exclusion is not None:  # rows the key check quarantined were never loaded
            column, keys = exclusion
            data = data.filter(pa.array(~np.isin(data[column].to_numpy(zero_copy_only=False), keys)))
        values = data[key].to_numpy(zero_copy_only=False)
        c, s, x = key_digest(values)
        count, total, xor = count + c, total + s, xor ^ x
    return count, total, xor


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
    if isinstance(value, bytes):
        return value
    return value


def _select_list(schema: pa.Schema) -> str:
    parts = []
    for f in schema:
        name = quote_identifier(f.name)
        # FLOAT travels as text with few digits; its exact double value is what was stored.
        parts.append(f"CAST({name} AS DOUBLE)" if pa.types.is_float32(f.type) else name)
    return ", ".join(parts)


def verify(
    czar: Czar,
    ledger: Ledger,
    database: str,
    tables: Sequence[TableToVerify],
    *,
    sample: Callable[[TableToVerify, int, random.Random], pa.Table] | None = None,
    sample_size: int = 20,
    seed: int | None = None,
    exclusions: dict[str, tuple[str, np.ndarray]] | None = None,
) -> VerifyReport:
    """Run every check for every table and return the report."""
    report = VerifyReport()
    rng = random.Random(seed)
    loaded = ledger.chunk_rows(status="loaded")
    for table in tables:
        qualified = quote_qualified(database, table.name)
        expected = {k.chunk_id: n for k, n in loaded.items() if k.table == table.name and not k.overlap}
        staged_total = sum(expected.values())
        with czar.query(f"SELECT COUNT(*) FROM {qualified}") as rows:
            found_total = int(next(iter(rows))[0])
        report.add(
            table.name,
            "rows",
            found_total == staged_total,
            f"czar {found_total:,} rows, ledger {staged_total:,} loaded",
        )
        if table.kind != "regular":
            with czar.query(f"SELECT chunkId, COUNT(*) FROM {qualified} GROUP BY chunkId") as rows:
                found = {int(c): int(n) for c, n in rows}
            differ = sorted(c for c in set(found) | set(expected) if found.get(c, 0) != expected.get(c, 0))
            detail = (
                f"{len(expected)} chunks agree"
                if not differ
                else "chunks differ (chunk: czar/ledger): "
                + ", ".join(f"{c}: {found.get(c, 0)}/{expected.get(c, 0)}" for c in differ[:SHOWN])
            )
            report.add(table.name, "rows per chunk", not differ, detail)
        if table.key:
            key = quote_identifier(table.key)
            with czar.query(
                f"SELECT COUNT(*), COUNT(DISTINCT {key}), SUM({key}), BIT_XOR({key}) FROM {qualified}"
            ) as rows:
                count, distinct, total, xor = next(iter(rows))
            report.add(
                table.name,
                "unique key",
                count == distinct,
                f"{count - distinct:,} duplicate {table.key} value(s)"
                if count != distinct
                else f"{distinct:,} distinct {table.key}",
            )
            found_digest = (int(count), int(total or 0), int(xor or 0))
            exclusion = (exclusions or {}).get(table.name)
            staged_digest = _staged_key_digest(ledger, table.name, table.key, exclusion)
            report.add(
                table.name,
                "key checksum",
                found_digest == staged_digest,
                f"(count, sum, xor) czar {found_digest} vs staged {staged_digest}",
            )
            if sample is not None and sample_size > 0:
                _compare_sample(czar, qualified, table, sample(table, sample_size, rng), report)
    return report


def _compare_sample(
    czar: Czar, qualified: str, table: TableToVerify, rows: pa.Table, report: VerifyReport
) -> None:
    data_schema = pa.schema([f for f in table.schema if f.name not in ("chunkId", "subChunkId")])
    keys = rows[table.key].to_pylist()
    if not keys:
        report.add(table.name, "sample rows", True, "no rows to sample")
        return
    marks = ", ".join(["%s"] * len(keys))
    with czar.query(
        f"SELECT {_select_list(data_schema)} FROM {qualified} "
        f"WHERE {quote_identifier(table.key)} IN ({marks})",
        keys,
    ) as result:
        found = {row[data_schema.get_field_index(table.key)]: row for row in result}
    problems = []
    for i, key in enumerate(keys):
        row = found.get(key)
        if row is None:
            problems.append(f"{table.key}={key} missing")
            continue
        for j, f in enumerate(data_schema):
            want = _normalise(rows[f.name][i].as_py(), f.type)
            got = row[j]
            if isinstance(want, float) and isinstance(got, float) and (want == got):
                continue
            if want != got:
                problems.append(f"{table.key}={key} column {f.name}: source {want!r}, czar {got!r}")
    report.add(
        table.name,
        "sample rows",
        not problems,
        f"{len(keys)} source rows equal in all {len(data_schema)} columns"
        if not problems
        else "; ".join(problems[:SHOWN])
        + (f" (+{len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""),
    )

"""Partition (map) stage: one input unit's rows → one shard file sorted by destination, plus small metadata.

For a director table each row gets its home chunk/sub-chunk and its overlap copies; a child table is
placed by the position columns it carries (its director's position, overlap 0); a regular table is not
partitioned and lands in one shard. Rows with invalid positions are counted and quarantined to a Parquet
file the user can inspect (or the unit fails, by policy) — never dropped silently. For the key checks,
the keys of the unit's home rows are saved sorted beside the shards (`qdask.stages.keys`), so nothing is
read back. The task returns only metadata; data never travels through Dask.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qdask import faultpoints
from qdask.errors import QdaskError
from qdask.kinds import TableKind
from qdask.ledger import REGULAR_CHUNK, Shard
from qdask.schema import TableSchema
from qdask.sky import Chunker
from qdask.sky.matches import place_matches
from qdask.sources import butler as butler_source
from qdask.sources import files as file_source
from qdask.sources.units import InputUnit
from qdask.stages.keys import key_values, save_unit_keys, unit_key_path
from qdask.stages.placement import PlacementIndex, save_unit_placement
from qdask.stages.shards import ShardWriter, unit_file_key
from qdask.stages.staging_errors import staging_writes

log = logging.getLogger(__name__)

INVALID_EXAMPLES = 5


class InvalidPositionsError(QdaskError, ValueError):
    """A unit holds rows whose position cannot be placed, and the table's policy is to stop."""


@dataclass(frozen=True)
class TablePlan:
    """Everything a partition task needs to know about its table; small and picklable."""

    name: str
    kind: TableKind
    schema: pa.Schema  # the staged columns in Qserv order (chunkId/subChunkId last when partitioned)
    rename: dict[str, str] = field(default_factory=dict)  # source column → Qserv column
    ra: str | None = None  # Qserv column names of the position used for placement
    dec: str | None = None
    layout: tuple[int, int, float] | None = None  # (num_stripes, num_sub_stripes, overlap)
    invalid_policy: str = "quarantine"  # or "stop"
    compression: str = "none"  # the shards' codec (`staging.shard_compression`, whose default this is)
    compression_level: int | None = None
    direct_io: bool = True  # shards written past the page cache after their first MiB (`staging.direct_io`)
    key_column: str | None = None  # an integer column whose sorted values the key checks need
    ra2: str | None = None  # a match table's second side: its position columns,
    dec2: str | None = None
    flag_column: str | None = None  # the column that gets the partitioning flag,
    max_separation: float | None = None  # and the largest separation of a pair (degrees)
    save_placement: bool = False  # a director whose children are placed by id: keep each id's placement
    placement: PlacementIndex | None = None  # a child placed by id: its director's index (set at submit)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TableKind(self.kind))

    @property
    def partitioned(self) -> bool:
        return self.kind.partitioned

    @property
    def data_columns(self) -> list[str]:
        """The staged columns that come from the input (all but chunkId/subChunkId)."""
        names = self.schema.names
        return names[:-2] if self.partitioned else names

    @property
    def source_columns(self) -> list[str]:
        """The input's column names to read, in Qserv order."""
        back = {target: source for source, target in self.rename.items()}
        return [back.get(name, name) for name in self.data_columns]

    def chunker(self) -> Chunker:
        if self.layout is None:
            raise ValueError(f"table {self.name} ({self.kind}) has no partitioning layout")
        num_stripes, num_sub_stripes, overlap = self.layout
        return Chunker(num_stripes, num_sub_stripes, overlap if self.kind == TableKind.DIRECTOR else 0.0)

    def position(self) -> tuple[str, str]:
        """The (ra, dec) columns rows are placed by."""
        if self.ra is None or self.dec is None:
            raise ValueError(f"table {self.name} ({self.kind}) has no position columns")
        return self.ra, self.dec


@dataclass(frozen=True)
class PartitionResult:
    """What one unit produced: row counts, the shards, and where invalid rows were quarantined."""

    unit_id: str
    table: str
    rows_read: int
    rows_staged: int  # home rows (excluding overlap copies and quarantined rows)
    rows_invalid: int
    overlap_rows: int
    shards: tuple[Shard, ...]
    quarantine_path: str | None = None
    invalid_examples: tuple[tuple, ...] = ()


def conform_batch(batch: pa.RecordBatch, plan: TablePlan, unit_id: str) -> pa.Table:
    """Select, rename and cast a source batch to the table's staged data columns.

    A value that does not fit its column type (overflow, unparsable) fails the unit with a message
    naming the unit and the column; nothing is truncated silently.
    """
    table = pa.Table.from_batches([batch])
    present = set(table.column_names)
    missing = [name for name in plan.source_columns if name not in present and name != plan.flag_column]
    if missing:
        raise KeyError(f"{unit_id}: input lacks column(s) {', '.join(missing)} needed by table {plan.name}")
    columns = []
    for source, target in zip(plan.source_columns, plan.data_columns, strict=True):
        wanted = plan.schema.field(target).type
        if source not in present:  # a match table's flag column: set when the rows are placed
            columns.append(pa.nulls(table.num_rows, wanted))
            continue
        column = table.column(source)
        if column.type != wanted:
            try:
                column = column.cast(wanted, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(
                    f"{unit_id}: column {source!r} of table {plan.name} does not fit {wanted}: {exc}"
                ) from exc
        columns.append(column)
    return pa.Table.from_arrays(columns, names=plan.data_columns)


def _positions(
    table: pa.Table, plan: TablePlan, columns: tuple[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    def as_float(name: str) -> np.ndarray:
        column = table.column(name).cast(pa.float64())
        return column.fill_null(float("nan")).to_numpy()

    ra, dec = columns or plan.position()
    return as_float(ra), as_float(dec)


def place_match_rows(
    data: pa.Table, plan: TablePlan, chunker: Chunker, unit_id: str, *, first_row: int
) -> pa.Table:
    """A match table's rows placed as ``sph-partition-matches`` places them (`qdask.sky.matches`): one
    row per side in its own chunk, or one when both sides share a chunk, each with its flag."""
    assert plan.ra2 is not None and plan.dec2 is not None and plan.flag_column is not None
    ra1, dec1 = _positions(data, plan)
    ra2, dec2 = _positions(data, plan, (plan.ra2, plan.dec2))
    placed = place_matches(
        chunker,
        ra1,
        dec1,
        ra2,
        dec2,
        max_separation=plan.max_separation,
        what=f"{unit_id}: row",
        first_row=first_row,
    )
    rows = data.take(pa.array(placed.row))
    index = rows.schema.get_field_index(plan.flag_column)
    flag_type = rows.schema.field(index).type
    rows = rows.set_column(index, plan.flag_column, pa.array(placed.flag, pa.int8()).cast(flag_type))
    return _with_location(rows, placed.chunk_id, placed.sub_chunk_id)


def _with_location(table: pa.Table, chunk_ids: np.ndarray, sub_chunk_ids: np.ndarray) -> pa.Table:
    return table.append_column("chunkId", pa.array(chunk_ids, pa.int32())).append_column(
        "subChunkId", pa.array(sub_chunk_ids, pa.int32())
    )


def partition_batches(
    batches: Iterable[pa.RecordBatch],
    plan: TablePlan,
    unit_id: str,
    shard_root: Path,
    quarantine_root: Path,
    keys_root: Path | None = None,
) -> PartitionResult:
    """Stream a unit's batches into shards; the pure worker function behind the partition task.

    With `keys_root` and a `plan.key_column`, the unit's home-row keys are saved sorted there too.
    """
    key = unit_file_key(unit_id)
    writer = ShardWriter(
        shard_root,
        plan.name,
        key,
        plan.schema,
        compression=plan.compression,
        compression_level=plan.compression_level,
        direct_io=plan.direct_io,
    )
    chunker = plan.chunker() if plan.partitioned else None
    quarantine_file = Path(quarantine_root) / plan.name / f"{key}.parquet"
    quarantine: pq.ParquetWriter | None = None
    rows_read = rows_invalid = overlap_rows = 0
    examples: list[tuple] = []
    keys: list[np.ndarray] | None = [] if keys_root is not None and plan.key_column else None
    places: list[tuple[np.ndarray, np.ndarray]] = []  # a director's (chunk, sub-chunk) of each key kept
    try:
        for batch in batches:
            data = conform_batch(batch, plan, unit_id)
            rows_read += data.num_rows
            if chunker is None:
                writer.add(data, np.full(data.num_rows, REGULAR_CHUNK, dtype=np.int64), overlap=False)
                if keys is not None:
                    keys.append(key_values(data.column(plan.key_column)))
                continue
            if plan.kind == TableKind.MATCH:
                placed = place_match_rows(data, plan, chunker, unit_id, first_row=rows_read - data.num_rows)
                writer.add(placed, placed.column("chunkId").to_numpy(), overlap=False)
                continue
            if plan.placement is not None:  # a child placed by its director's id
                assert plan.key_column is not None
                column = data.column(plan.key_column)
                chunk_ids, sub_chunk_ids, found = plan.placement.locate_column(column)
                invalid = ~found
                what, described = f"no {plan.key_column} in the director", "(row, key)"
                example: list[tuple] = [
                    (int(i), column[int(i)].as_py()) for i in np.flatnonzero(invalid)[:INVALID_EXAMPLES]
                ]
            else:
                ra, dec = _positions(data, plan)
                located = chunker.locate_all(ra, dec, invalid="mask")
                if plan.kind == TableKind.DIRECTOR and len(located.overlap_row):
                    overlap_rows += len(located.overlap_row)
                    copies = data.take(pa.array(located.overlap_row))
                    writer.add(
                        _with_location(copies, located.overlap_chunk_id, located.overlap_sub_chunk_id),
                        located.overlap_chunk_id,
                        overlap=True,
                    )
                chunk_ids, sub_chunk_ids = located.chunk_id, located.sub_chunk_id
                invalid = located.invalid if located.invalid is not None else np.zeros(len(chunk_ids), bool)
                what, described = f"invalid positions ({', '.join(plan.position())})", "(row, ra, dec)"
                example = [
                    (int(i), float(ra[i]), float(dec[i])) for i in np.flatnonzero(invalid)[:INVALID_EXAMPLES]
                ]
            if invalid.any():
                bad = data.filter(pa.array(invalid))
                rows_invalid += bad.num_rows
                first = rows_read - data.num_rows
                examples += [
                    (first + e[0], *e[1:]) for e in example[: max(INVALID_EXAMPLES - len(examples), 0)]
                ]
                if plan.invalid_policy == "stop":
                    raise InvalidPositionsError(
                        f"{unit_id}: {int(invalid.sum())} row(s) of table {plan.name} have {what}; "
                        f"first {described}: {examples}"
                    )
                if quarantine is None:
                    quarantine_file.parent.mkdir(parents=True, exist_ok=True)
                    quarantine = pq.ParquetWriter(str(quarantine_file) + ".tmp", bad.schema)
                quarantine.write_table(bad)
                keep = ~invalid
                data = data.filter(pa.array(keep))
                chunk_ids, sub_chunk_ids = chunk_ids[keep], sub_chunk_ids[keep]
            writer.add(_with_location(data, chunk_ids, sub_chunk_ids), chunk_ids, overlap=False)
            if keys is not None:
                column = data.column(plan.key_column)
                keys.append(key_values(column))
                if plan.save_placement:
                    valid = column.is_valid().to_numpy(zero_copy_only=False)
                    places.append((chunk_ids[valid], sub_chunk_ids[valid]))
        shards = writer.close(unit_id)
        if keys is not None and keys_root is not None:
            values = np.concatenate(keys) if keys else np.empty(0, np.int64)
            path = unit_key_path(keys_root, plan.name, unit_id, shards)
            if plan.save_placement:
                chunks = np.concatenate([c for c, _ in places]) if places else np.empty(0, np.int64)
                subs = np.concatenate([s for _, s in places]) if places else np.empty(0, np.int64)
                save_unit_placement(values, chunks, subs, path)
            else:
                save_unit_keys(values, path)
    except BaseException:
        writer.discard()
        if quarantine is not None:
            quarantine.close()
            Path(str(quarantine_file) + ".tmp").unlink(missing_ok=True)
        raise
    quarantine_path = None
    if quarantine is not None:
        quarantine.close()
        Path(str(quarantine_file) + ".tmp").replace(quarantine_file)
        quarantine_path = str(quarantine_file)
    return PartitionResult(
        unit_id=unit_id,
        table=plan.name,
        rows_read=rows_read,
        rows_staged=rows_read - rows_invalid,
        rows_invalid=rows_invalid,
        overlap_rows=overlap_rows,
        shards=tuple(shards),
        quarantine_path=quarantine_path,
        invalid_examples=tuple(examples),
    )


# -- the Dask task --------------------------------------------------------------------------------


def read_input(unit: InputUnit, input_schema: TableSchema, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Stream the `columns` of a unit, from a Butler dataset or a plain file."""
    if unit.dataset_type is not None or unit.format == "butler":
        return butler_source.read_unit(unit, columns)
    return file_source.read_unit(unit, input_schema, select=[(c, c) for c in columns])


def _each(items: Iterable[pa.RecordBatch], point: str, detail: str) -> Iterator[pa.RecordBatch]:
    """`items`, passing fault point `point` before each one (a kill mid-stream in the recovery tests)."""
    for item in items:
        faultpoints.reached(point, detail)
        yield item


def partition_task(
    unit: InputUnit,
    plan: TablePlan,
    input_schema: TableSchema,
    shard_root: str,
    quarantine_root: str,
    keys_root: str | None = None,
) -> PartitionResult:
    """The partition stage for one unit (runs on a Dask worker): paths in, files and metadata out."""
    t0 = time.perf_counter()
    batches = _each(read_input(unit, input_schema, plan.source_columns), "partition.batch", unit.unit_id)
    with staging_writes(Path(shard_root).parent):
        result = partition_batches(
            batches,
            plan,
            unit.unit_id,
            Path(shard_root),
            Path(quarantine_root),
            Path(keys_root) if keys_root is not None else None,
        )
    log.debug(
        "unit %s: %d row(s) into %d shard(s) in %.2f s",
        unit.unit_id,
        result.rows_read,
        len(result.shards),
        time.perf_counter() - t0,
    )
    return result

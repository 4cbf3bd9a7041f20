"""What the verify stage checks a catalog against, assembled from the plan and the staging directory.

For each planned table: its key column, the per-unit key files the partition stage wrote, the keys the
key check excluded (their rows are, rightly, not in Qserv), and a reader of its source rows as Qserv
holds them — conformed and Qserv-named, without rows quarantined for invalid positions or excluded
keys, numbered in source order — so `verify` can compare a sample drawn from every unit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pymysql

from qdask.config import ChildTable, DirectorTable
from qdask.errors import QdaskError
from qdask.ledger import Ledger
from qdask.qserv.czar import Czar, describe_error
from qdask.sources.units import InputUnit
from qdask.stages.key_match import without_keys
from qdask.stages.key_policy import key_column
from qdask.stages.keys import load_exclusion, unit_key_files
from qdask.stages.partition import TablePlan, conform_batch, read_input
from qdask.stages.placement import PlacementIndex, index_directory
from qdask.stages.plan import TableSetup
from qdask.stages.verify import UNIQUE_SCAN_ROWS, SourceSample, TableToVerify, VerifyReport, verify


class VerifyError(QdaskError):
    """Verify could not run its checks (the czar unreachable): no verdict either way."""


def table_to_verify(setup: TableSetup) -> TableToVerify:
    """What verify needs of a planned table: kind, unique key (a director's id, a child's own id)."""
    unique = not isinstance(setup.config, DirectorTable) or setup.config.unique_ids
    return TableToVerify(
        setup.name, setup.config.kind, getattr(setup.config, "id", None), setup.plan.schema, unique
    )


def exclusion(setup: TableSetup, keys_root: Path) -> tuple[str, np.ndarray] | None:
    """The (column, sorted keys) whose rows the key check left out of the table, if any."""
    column = key_column(setup.config)
    keys = load_exclusion(keys_root, setup.name) if column is not None else None
    return (column, keys) if column is not None and keys is not None else None


def source_sample(setup: TableSetup, ledger: Ledger, keys_root: Path) -> SourceSample:
    """The table's units with the rows read from each, and a reader of a unit's rows as Qserv holds them."""
    plan = setup.plan
    recorded = ledger.units(table=setup.name)
    rows = {u.unit_id: u.rows_read or 0 for u in recorded}
    placeable_only = plan.partitioned and any(u.rows_invalid for u in recorded)
    excluded = exclusion(setup, keys_root)
    by_id = _director_index(setup, ledger, keys_root) if placeable_only else None

    def read(unit: InputUnit) -> Iterator[pa.Table]:
        start = 0
        for batch in read_input(unit, setup.input_schema, plan.source_columns):
            data = conform_batch(batch, plan, unit.unit_id)
            data = data.append_column("row", pa.array(np.arange(start, start + data.num_rows)))
            start += data.num_rows
            if by_id is not None:
                data = _placed_by_id(data, plan, by_id)
            elif placeable_only:
                data = _placeable(data, plan)
            if excluded is not None:
                data = without_keys(data, *excluded)
            yield data

    return SourceSample([(u, rows.get(u.unit_id, 0)) for u in setup.units], read)


def _director_index(setup: TableSetup, ledger: Ledger, keys_root: Path) -> PlacementIndex | None:
    """The placement index a child placed by its director's id was placed with (None for other tables)."""
    table = setup.config
    if not (isinstance(table, ChildTable) and table.placed_by_id):
        return None
    column = setup.plan.key_column
    assert column is not None
    files = unit_key_files(ledger.shards(table=table.director), {table.director: column}, keys_root)
    paths = [str(f.path) for f in files[table.director]]
    index = PlacementIndex.open(index_directory(Path(keys_root).parent, table.director, paths))
    if index is None:
        raise ValueError(f"the placement index of {table.director} is gone: re-run the ingest to rebuild it")
    return index


def _placed_by_id(data: pa.Table, plan: TablePlan, index: PlacementIndex) -> pa.Table:
    """Only the rows whose director row exists (the others were, rightly, quarantined)."""
    assert plan.key_column is not None
    _, _, found = index.locate_column(data[plan.key_column])
    return data.filter(pa.array(found))


def _placeable(data: pa.Table, plan: TablePlan) -> pa.Table:
    """Only the rows with a valid position (quarantined rows are, rightly, not in Qserv)."""
    assert plan.ra is not None and plan.dec is not None
    _, _, invalid = plan.chunker().locate(
        data[plan.ra].to_numpy(zero_copy_only=False),
        data[plan.dec].to_numpy(zero_copy_only=False),
        invalid="mask",
    )
    return data.filter(pa.array(~invalid))


def verify_catalog(
    czar: Czar,
    ledger: Ledger,
    database: str,
    setups: Sequence[TableSetup],
    keys_root: Path,
    *,
    sample_size: int = 20,
    seed: int | None = None,
    unique_scan_rows: int | None = UNIQUE_SCAN_ROWS,
) -> VerifyReport:
    """Run the verify stage over every planned table of the catalog."""
    by_name = {s.name: s for s in setups}
    exclusions = {s.name: e for s in setups if (e := exclusion(s, keys_root)) is not None}
    key_files = {s.name: (c, Path(keys_root)) for s in setups if (c := key_column(s.config))}
    try:
        return verify(
            czar,
            ledger,
            database,
            [table_to_verify(s) for s in setups],
            sample=lambda table: source_sample(by_name[table.name], ledger, keys_root),
            sample_size=sample_size,
            seed=seed,
            exclusions=exclusions,
            key_files=key_files,
            unique_scan_rows=unique_scan_rows,
            scratch=Path(keys_root),
        )
    except pymysql.MySQLError as exc:  # unreachable, refused, or the database unknown to the czar
        raise VerifyError(
            f"verify could not query the czar at {czar.dsn} ({describe_error(exc)}); what is loaded is "
            "recorded: run `qdask verify CONFIG` (or the same ingest command) once the czar answers"
        ) from None

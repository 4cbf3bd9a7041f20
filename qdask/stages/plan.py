"""Plan stage: config → per-table schemas and the input units to partition; nothing is written to Qserv.

For each table it resolves the Qserv schema (felis, Qserv JSON, DDL, or inferred from the input), applies
the column selection, checks the input's columns against it, and discovers the input units (Butler
datasets or files). The result is what `qdask plan` prints and what the partition tasks carry.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import pyarrow as pa

from qdask.config import ChildTable, IngestConfig, MatchTable, Table
from qdask.errors import QdaskError
from qdask.kinds import TableKind
from qdask.schema import (
    CHUNK_COLUMNS,
    SchemaError,
    TableSchema,
    check_arrow_schema,
    felis_table,
    from_arrow,
    from_ddl,
    from_qserv_json,
    select_columns,
)
from qdask.sources import butler as butler_source
from qdask.sources import files as file_source
from qdask.sources.units import InputUnit
from qdask.stages.key_policy import key_column
from qdask.stages.partition import TablePlan
from qdask.stages.plan_checks import check_column_names, check_key_types

DEFAULT_MAX_UNIT_BYTES = 128 << 20  # a 200-500 MB file is 2-4 units: one per worker, not one in all


@dataclass(frozen=True)
class TableSetup:
    """A table ready to ingest: its config, input schema, Qserv schema, partition plan and input units."""

    config: Table
    input_schema: TableSchema  # the input's columns under their input names
    qserv_schema: TableSchema  # the Qserv table: selected, renamed, partitioned as declared
    plan: TablePlan
    units: tuple[InputUnit, ...] = field(repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def est_rows(self) -> int | None:
        rows = [u.est_rows for u in self.units]
        return sum(r for r in rows if r is not None) if None not in rows else None

    @property
    def est_bytes(self) -> int | None:
        sizes = [u.est_bytes for u in self.units]
        return sum(b for b in sizes if b is not None) if None not in sizes else None


class PlanError(QdaskError, ValueError):
    """A configuration the pipeline cannot honour yet (refused before anything is read or written)."""


def check_supported(table: Table) -> None:
    """Refuse settings the pipeline would otherwise silently not apply."""
    if table.policies.bad_values == "quarantine":
        raise PlanError(
            f"table {table.name}: policies.bad_values: quarantine is not supported yet; a value "
            "that does not fit its column stops the run naming it (set bad_values: stop)"
        )


def discover_units(table: Table, max_unit_bytes: int = DEFAULT_MAX_UNIT_BYTES) -> list[InputUnit]:
    """The input units of a table, from its Butler query or its file glob."""
    check_supported(table)
    source = table.input
    if source.butler is not None:
        b = source.butler
        data_id = {k: v for k, v in (("instrument", b.instrument), ("skymap", b.skymap)) if v}
        return butler_source.ButlerSource(
            b.repo,
            b.dataset_type,
            b.collections,
            where=b.where,
            bind=b.bind,
            data_id=data_id,
            table=table.name,
            max_unit_bytes=max_unit_bytes,
        ).discover()
    f = source.files
    if f is None:
        raise PlanError(f"table {table.name}: input names neither butler nor files")
    return file_source.discover_files(
        f.glob,
        table.name,
        format=f.format,
        compression=None if f.compression == "auto" else f.compression,
        dialect=f.text_dialect,
        max_unit_bytes=max_unit_bytes,
    )


def _input_schema(table: Table, units: list[InputUnit]) -> TableSchema:
    spec = table.schema_
    if spec.felis is not None:
        return felis_table(spec.felis.path(), spec.felis.table or table.name)
    if spec.qserv_json is not None:
        return from_qserv_json(spec.qserv_json)
    if spec.ddl is not None:
        return from_ddl(spec.ddl, table.name)
    if units[0].format in ("csv", "tsv"):
        raise PlanError(
            f"table {table.name}: schema: {{infer: true}} needs Parquet or Butler input, which carries its "
            f"column types; {units[0].label} is a {units[0].format} file: give the types with felis, "
            "qserv_json or ddl"
        )
    return from_arrow(_unit_arrow_schema(units[0]), table.name, source=units[0].label)


def _unit_arrow_schema(unit: InputUnit) -> pa.Schema:
    if unit.dataset_type is not None or unit.format == "butler":
        return butler_source.unit_schema(unit)
    import pyarrow.parquet as pq

    return pq.read_schema(file_source.local_path(unit.uri))


def plan_table(
    config: IngestConfig, table: Table, *, max_unit_bytes: int = DEFAULT_MAX_UNIT_BYTES
) -> TableSetup:
    """Resolve one table's schemas and units, and check the input's columns against the schema."""
    units = discover_units(table, max_unit_bytes)
    input_schema = _input_schema(table, units)
    selection = table.columns
    pairs = select_columns(
        input_schema.names,
        selection.include,
        selection.exclude,
        selection.rename,
        source=f"table {table.name}",
    )
    qserv_schema = input_schema.select(selection.include, selection.exclude, selection.rename)
    qserv_schema = TableSchema(
        qserv_schema.name if qserv_schema.name == table.name else table.name,
        qserv_schema.columns,
        partitioned=table.is_partitioned,
        source=input_schema.source,
    )
    check_column_names(table.name, qserv_schema)  # names from the data, held to the config's rules
    for role, column in table.key_columns().items():  # a misspelled ra/dec/id must fail here, not later
        if column not in qserv_schema.names:
            close = difflib.get_close_matches(column, qserv_schema.names, 1)
            raise PlanError(
                f"table {table.name}: the {role} column {column!r} is not among its columns"
                + (f"; did you mean {close[0]!r}?" if close else "")
                + f" (columns from {input_schema.source}: {', '.join(qserv_schema.names[:12])}"
                + (" …)" if len(qserv_schema.names) > 12 else ")")
            )
    if units[0].format == "parquet":  # Parquet and Butler inputs carry their own schema: check it up front
        found = _unit_arrow_schema(units[0])
        wanted = TableSchema(
            input_schema.name, tuple(input_schema.column(src) for src, _ in pairs), source=input_schema.source
        )
        check_arrow_schema(found, wanted, units[0].label, allow_extra=True)
    if table.kind == TableKind.DIRECTOR:  # Qserv refuses these in directors: say so before writing anything
        wide = [
            c.name
            for c in qserv_schema.columns
            if "TEXT" in c.sql_type.upper() or "BLOB" in c.sql_type.upper()
        ]
        if wide:
            raise SchemaError(
                f"director table {table.name}: Qserv does not allow TEXT/BLOB columns in a director "
                f"table: {', '.join(wide)} (exclude them, or use VARCHAR/VARBINARY in the schema)"
            )
    chunk_fields = [pa.field(c.name, c.arrow_type, nullable=False) for c in CHUNK_COLUMNS]
    arrow = pa.schema(
        [pa.field(c.name, c.arrow_type) for c in qserv_schema.columns]
        + (chunk_fields if table.is_partitioned else [])
    )
    layout = config.database.partitioning
    key = key_column(table)
    plan = TablePlan(
        name=table.name,
        kind=TableKind(table.kind),
        schema=arrow,
        rename={src: dst for src, dst in pairs if src != dst},
        ra=getattr(table, "ra", None),
        dec=getattr(table, "dec", None),
        layout=(layout.num_stripes, layout.num_sub_stripes, config.table_overlap(table)),
        invalid_policy=_unplaceable_policy(table),
        compression=config.staging.shard_compression,
        compression_level=config.staging.shard_compression_level,
        direct_io=config.staging.direct_io,
        key_column=key if key is not None and pa.types.is_integer(arrow.field(key).type) else None,
        save_placement=any(
            isinstance(t, ChildTable) and t.placed_by_id and t.director == table.name for t in config.tables
        ),
        **_match_plan(config, table, arrow),
    )
    if isinstance(table, ChildTable) and table.placed_by_id and plan.key_column is None:
        raise PlanError(
            f"table {table.name}: placed by its director's id, so its director_key {table.director_key!r} "
            f"must be an integer column, not {arrow.field(table.director_key).type}"
        )
    return TableSetup(table, input_schema, qserv_schema, plan, tuple(units))


def _unplaceable_policy(table: Table) -> str:
    """What to do with a row that cannot be placed: a bad position (policies.invalid_positions), or for a
    child placed by id a key without a director row (policies.orphans: stop, else quarantine)."""
    if isinstance(table, ChildTable) and table.placed_by_id:
        return "stop" if table.policies.orphans == "stop" else "quarantine"
    return table.policies.invalid_positions


def _match_plan(config: IngestConfig, table: Table, arrow: pa.Schema) -> dict:
    """A match table's second position, flag column (an integer column of the schema) and separation."""
    if not isinstance(table, MatchTable):
        return {}
    if not pa.types.is_integer(arrow.field(table.flag).type):
        raise PlanError(
            f"match table {table.name}: the flag column {table.flag!r} must be an integer column, not "
            f"{arrow.field(table.flag).type}"
        )
    return dict(
        ra2=table.ra2, dec2=table.dec2, flag_column=table.flag, max_separation=config.match_separation(table)
    )


def plan_ingest(config: IngestConfig, *, max_unit_bytes: int = DEFAULT_MAX_UNIT_BYTES) -> list[TableSetup]:
    """Every table of the config, in Qserv's registration order (directors, children, regular)."""
    setups = [plan_table(config, table, max_unit_bytes=max_unit_bytes) for table in config.load_order()]
    check_key_types(setups)
    return setups

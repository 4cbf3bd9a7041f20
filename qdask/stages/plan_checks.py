"""Plan-time checks of what comes from the data rather than the config, before anything is staged or sent.

* **Column names.** The config's names are validated when it loads (`qdask.config.names`); a schema
  inferred from the data or read from a felis/Qserv JSON/DDL file can still bring names Qserv cannot take
  (a dash, a space, non-ASCII, a leading digit, more than 64 characters) or could never query (a leading
  underscore). The final names are checked here, so nothing is registered in Qserv and then refused, and
  a source column named ``_x`` can still be renamed or excluded. (`TableSchema` itself refuses
  ``qserv_trans_id``, ``chunkId``/``subChunkId`` and two names equal but for case.)
* **Key columns.** A child's director key is compared with its director's id: both integers, or both
  not (a float cannot hold an id above 2^53 exactly, and pandas writes an integer column with missing
  values as float64). An unsigned 64-bit key above 2^63-1 fits no int64 key check: refused too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from qdask.config.names import check_queryable
from qdask.schema import SchemaError, TableSchema

if TYPE_CHECKING:
    from qdask.stages.plan import TableSetup

__all__ = ["check_column_names", "check_key_types"]

RENAME_HINT = "rename them with the table's columns.rename, or leave them out with columns.exclude"


def check_column_names(table: str, schema: TableSchema) -> None:
    """Raise one `SchemaError` naming every column of `schema` that Qserv cannot take, and why."""
    problems = []
    for name in schema.names:
        try:
            check_queryable(name, "column name")
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise SchemaError(
            f"table {table}: column name(s) from {schema.source or 'its schema'} that Qserv cannot take:\n"
            f"{lines}\n  ({RENAME_HINT})"
        )


def check_key_types(setups: Sequence[TableSetup]) -> None:
    """Raise a `SchemaError` for a key column (id, director key) that is unsigned 64-bit, or for a child
    whose director key is a float where its director's id is an integer (or the other way round): the two
    are compared as keys, and a float cannot hold them exactly."""
    arrow = {s.name: s.plan.schema for s in setups}
    for setup in setups:
        source = setup.input_schema.source or setup.units[0].label
        table = setup.config
        for role, name in table.key_columns().items():
            found = _type(arrow[setup.name], name)
            if role in ("id", "director_key") and found is not None and pa.types.is_uint64(found):
                raise SchemaError(
                    f"table {setup.name}: the {role} column {name!r} is uint64 in {source}: keys are checked "
                    "and indexed as signed 64-bit integers (BIGINT); write it as int64 (values up to 2^63-1)"
                )
        director, director_key = getattr(table, "director", None), getattr(table, "director_key", None)
        if director is None or director not in arrow:
            continue
        key = _type(arrow[setup.name], director_key)
        id_ = _type(arrow[director], setup_id(setups, director))
        if key is not None and id_ is not None and pa.types.is_floating(key) != pa.types.is_floating(id_):
            raise SchemaError(
                f"table {setup.name}: the director_key column {director_key!r} is {key} in {source} "
                f"but the id of its director {director} is {id_}: keys are compared exactly as integers, "
                "and a double holds integers exactly only up to 2^53 (pandas writes an integer column "
                "with missing values as float64: write it as Int64, or give the column types with "
                "schema: felis, qserv_json or ddl)"
            )


def setup_id(setups: Sequence[TableSetup], name: str) -> str | None:
    return next((getattr(s.config, "id", None) for s in setups if s.name == name), None)


def _type(schema: pa.Schema, name: str | None) -> pa.DataType | None:
    return schema.field(name).type if name is not None and schema.get_field_index(name) >= 0 else None

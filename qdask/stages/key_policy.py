"""The key check's policy, read from the config (driver side): which column of a table is its key, what to
do with its problems, and which families to check now. Apart from `qdask.stages.keys` so that the workers,
which write and read key files, do not import the config's models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qdask.config import ChildTable, DirectorTable, IngestConfig, RegularTable, TableConfig
from qdask.stages.keys import KeyFamily, KeyPolicy, KeyTable, UnitKeyFile


def key_column(table: TableConfig) -> str | None:
    """The column the key check reads and may exclude rows by: a director's id, a child's director key."""
    if isinstance(table, DirectorTable):
        return table.id
    if isinstance(table, ChildTable):
        return table.director_key
    return None


def table_policy(table: TableConfig) -> KeyPolicy | None:
    """What to do with a table's key problems.

    A director's duplicate ids follow `policies.duplicate_ids` (unless it declares repeated ids with
    ``unique_primary_key: false``: then they are no problem). A child's orphans follow
    `policies.orphans` only when the config sets it: Qserv itself loads child rows without a director
    (its own case01 has some), so by default they are reported and loaded as they are.
    """
    if isinstance(table, DirectorTable):
        return table.policies.duplicate_ids
    if isinstance(table, ChildTable):
        explicit = "orphans" in table.policies.model_fields_set
        return table.policies.orphans if explicit else "report"
    return None


def _key_table(table: DirectorTable | ChildTable | RegularTable, files: Sequence[UnitKeyFile]) -> KeyTable:
    column, policy = key_column(table), table_policy(table)
    if column is None or policy is None:
        raise ValueError(f"table {table.name} is a regular table: it has no keys to check")
    unique = not isinstance(table, DirectorTable) or table.unique_ids
    return KeyTable(table.name, column, policy, tuple(str(f.path) for f in files), unique)


def family_checks(
    config: IngestConfig, files: Mapping[str, Sequence[UnitKeyFile]], pending: set[str]
) -> tuple[list[KeyFamily], list[str]]:
    """The families (a director and its children) to check now: those with a table in `pending` (chunks
    still to collect). A family with a table missing from `files` (its key column is not an integer) is
    not checked, and noted so."""
    checks, notes = [], []
    for director in config.directors:
        children = [t for t in config.tables if isinstance(t, ChildTable) and t.director == director.name]
        tables: list[DirectorTable | ChildTable] = [director, *children]
        if not pending & {t.name for t in tables}:
            continue
        if not all(t.name in files for t in tables):
            notes.append(f"keys of {director.name} are not integers: not checked")
            continue
        members = [_key_table(t, files[t.name]) for t in tables]
        checks.append(KeyFamily(members[0], tuple(members[1:])))
    return checks, notes

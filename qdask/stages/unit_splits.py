"""A Parquet file's split into row-group units, kept as the ledger recorded it once it is partitioned.

A large Parquet file is read as several units of consecutive row groups, sized by the planner's unit
limit and the workers' memory (`qdask.sources`, `qdask.kube.memory`). Unit ids name their row-group range,
so a run planned with another limit (a new default, other memory settings) sees other units of the same
file: its staged rows would be forgotten and staged again, and for a table already loaded (or published)
the run would be refused, as if the input had changed. When every unit the ledger holds for a file is
partitioned (read, never read again) and those units cover the same rows of the same file as the plan's,
the run keeps the recorded split.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from qdask.ledger import Unit, UnitStatus
from qdask.sources.units import InputUnit

if TYPE_CHECKING:
    from qdask.stages.plan import TableSetup

__all__ = ["keep_recorded_splits"]

_PER_PART = ("unit_id", "row_groups", "est_rows", "est_bytes")


def _file_spec(unit: InputUnit) -> str:
    """What identifies the unit's file and how it is read, without what differs between its parts."""
    spec = {k: v for k, v in unit.to_dict().items() if k not in _PER_PART}
    return json.dumps(spec, sort_keys=True, default=str)


def _coverage(units: Sequence[InputUnit]) -> tuple[int | None, int] | None:
    """``(end, rows)`` if `units` tile one file's row groups ``[0, end)`` exactly (``end`` None: one unit of
    the whole file) and their row counts are known; None otherwise."""
    if any(u.est_rows is None for u in units) or len({_file_spec(u) for u in units}) != 1:
        return None
    rows = sum(int(u.est_rows or 0) for u in units)
    if len(units) == 1 and units[0].row_groups is None:
        return None, rows
    ranges = sorted(u.row_groups for u in units if u.row_groups is not None)
    if len(ranges) != len(units) or ranges[0][0] != 0:
        return None
    if any(prev[1] != cur[0] for prev, cur in zip(ranges, ranges[1:], strict=False)):
        return None
    return ranges[-1][1], rows


def _same_rows(planned: Sequence[InputUnit], recorded: Sequence[InputUnit]) -> bool:
    a, b = _coverage(planned), _coverage(recorded)
    if a is None or b is None or _file_spec(planned[0]) != _file_spec(recorded[0]) or a[1] != b[1]:
        return False
    return a[0] is None or b[0] is None or a[0] == b[0]


def _by_file(units: Iterable[InputUnit]) -> dict[tuple[str, str], list[InputUnit]]:
    out: dict[tuple[str, str], list[InputUnit]] = {}
    for unit in units:
        out.setdefault((unit.table, unit.whole_id), []).append(unit)
    return out


def keep_recorded_splits(
    setups: Sequence[TableSetup], recorded: Iterable[Unit]
) -> tuple[list[TableSetup], list[str]]:
    """`setups` with each file's planned units replaced by the ledger's, where those are all partitioned
    and cover the same rows of the same file; and a line for each file so kept."""
    ledger_units = list(recorded)
    done = {u.unit_id for u in ledger_units if u.status is UnitStatus.PARTITIONED}
    kept_files = {
        key: sorted(units, key=lambda u: u.row_groups or (0, 0))
        for key, units in _by_file(InputUnit.from_dict(u.spec) for u in ledger_units).items()
        if all(u.unit_id in done for u in units)
    }
    out, notes = [], []
    for setup in setups:
        planned = _by_file(setup.units)
        units: list[InputUnit] = []
        for key, parts in planned.items():
            kept = kept_files.get(key)
            resplit = kept is not None and {u.unit_id for u in kept} != {u.unit_id for u in parts}
            if kept is not None and resplit and _same_rows(parts, kept):
                units.extend(kept)
                notes.append(
                    f"{setup.name}: {key[1]} kept as the {len(kept)} unit(s) it was partitioned in "
                    f"(this plan would cut it in {len(parts)})"
                )
            else:
                units.extend(parts)
        out.append(dataclasses.replace(setup, units=tuple(units)))
    return out, notes

"""The errors of reading and checking schemas."""

from __future__ import annotations

from collections.abc import Sequence

from qdask.errors import QdaskError

__all__ = ["SchemaError", "SchemaMismatch"]


class SchemaError(QdaskError, ValueError):
    """A schema that cannot be read or resolved (unknown table, unparsable DDL or type)."""


class SchemaMismatch(QdaskError, ValueError):
    """An input whose columns do not match the table schema; names the input and every offending column."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        plural = "s" if count != 1 else ""
        head = f"{source}: columns do not match the table schema ({count} problem{plural})"
        super().__init__(f"{head}:\n{lines}")

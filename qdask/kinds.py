"""The kinds of Qserv table qdask loads, in one place (the config's `kind:` values name the same four)."""

from __future__ import annotations

from enum import StrEnum


class TableKind(StrEnum):
    """How Qserv stores a table: partitioned by its own position with a unique id (director), placed
    with its director's rows (child), pairs of two directors' rows placed with both (match, Qserv's
    ref-match tables), or replicated whole on every worker (regular)."""

    DIRECTOR = "director"
    CHILD = "child"
    MATCH = "match"
    REGULAR = "regular"

    @property
    def partitioned(self) -> bool:
        """Split into chunks (director, child) rather than copied whole to every worker (regular)."""
        return self is not TableKind.REGULAR

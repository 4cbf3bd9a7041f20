"""Qserv's own `test101` integration catalog as the stand-in tests use it (genuine partitioner output:
Object chunk 7480 and its overlaps, Source chunk 7480, the regular table Filter, and the REST bodies Qserv
ships to register them)."""

from __future__ import annotations

import json
from pathlib import Path


def lines(path: Path) -> int:
    """Rows of a contribution file (one per line)."""
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def table_args(path: Path) -> dict:
    """A `register_table` call from one of test101's `table_*.json` REST bodies."""
    body = json.loads(path.read_text())
    args = {"schema": body["schema"], "is_partitioned": bool(body["is_partitioned"])}
    if body["is_partitioned"]:
        args.update(
            director_table=body["director_table"],
            director_key=body["director_key"],
            latitude_key=body.get("latitude_key"),
            longitude_key=body.get("longitude_key"),
        )
    return args

"""Publish stage: make the catalog visible, with complete director indexes, once everything is loaded.

Publishing is idempotent here: a database Qserv already shows as published is left alone, and a publish
whose answer was lost is settled by asking Qserv again rather than by sending it blindly.

When Qserv does not build the director indexes at each commit (`auto_build_director_index: false`),
they are built here, after publishing, on every run that reaches this stage — also when an earlier run
already published (but for the directors a finished publish indexed, which the driver leaves out:
`qdask.extend.directors_to_index`). That run may have stopped before its build, during it, or seen it
fail on a worker, leaving no index, a partial one or a whole one; Qserv creates the index table before
filling it (src/replica/contr/HttpDirectorIndexModule.cc:146-176) and tells none of these apart, so the
build is always sent with `rebuild=1` (drop, create, fill): the one request that ends with a complete
index whatever came before.
"""

from __future__ import annotations

from qdask import faultpoints
from qdask.qserv import QservClient, QservError


def is_published(client: QservClient, database: str) -> bool:
    """True when Qserv lists `database` as published."""
    info = client.database_info(database)
    return bool(info and info.get("is_published"))


def publish(
    client: QservClient, database: str, *, directors: list[str], auto_build_director_index: bool
) -> list[str]:
    """Publish `database` unless it is; then (re)build each director's index when commits did not."""
    if is_published(client, database):
        notes = [f"database {database} was already published"]
    else:
        try:
            faultpoints.reached("publish.sending", database)
            client.publish_database(database)
            faultpoints.reached("publish.answered", database)
        except QservError:
            if not is_published(client, database):
                raise
        notes = [f"database {database} published"]
    if not auto_build_director_index:
        for director in directors:
            client.build_director_index(database, director, rebuild=True)
            notes.append(f"director index of {director} built")
    return notes

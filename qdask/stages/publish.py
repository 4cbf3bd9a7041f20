"""Publish stage: make the catalog visible (and its director index built) once everything is loaded.

Publishing is idempotent here: a database Qserv already shows as published is left alone, and a publish
whose answer was lost is settled by asking Qserv again rather than by sending it blindly.
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
    """Publish `database`; build each director's index afterwards when Qserv does not do it at commit."""
    if is_published(client, database):
        return [f"database {database} was already published"]
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
            client.build_director_index(database, director)
            notes.append(f"director index of {director} built")
    return notes

"""Register stage: declare the database and its tables to Qserv before anything is loaded.

Idempotent: a database or table Qserv already knows is left as it is, so a re-run after any stop
registers only what is missing. Tables are registered in Qserv's order (directors, then their children,
then regular tables), each with the keys its kind needs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from qdask.config import ChildTable, DirectorTable, IngestConfig, MatchTable, RegularTable
from qdask.qserv import QservClient
from qdask.schema import TableSchema

log = logging.getLogger(__name__)


def table_keys(
    config: IngestConfig, table: DirectorTable | ChildTable | MatchTable | RegularTable
) -> dict[str, Any]:
    """The keys Qserv needs to register `table`: a director's id and position, a child's director table,
    its key and the position it is placed by, a match table's two directors and keys, flag column and
    separation (Qserv refuses position keys on a match table); nothing for a regular table."""
    if isinstance(table, MatchTable):
        return dict(
            director_table=table.director,
            director_key=table.director_key,
            director_table2=table.director2,
            director_key2=table.director_key2,
            flag=table.flag,
            ang_sep=config.match_separation(table),
        )
    if isinstance(table, DirectorTable):
        return dict(director_key=table.id, latitude_key=table.dec, longitude_key=table.ra)
    if isinstance(table, ChildTable):
        positions = {} if table.placed_by_id else dict(latitude_key=table.dec, longitude_key=table.ra)
        return dict(director_table=table.director, director_key=table.director_key, **positions)
    return {}


def register_catalog(
    qserv: QservClient, config: IngestConfig, schemas: Mapping[str, TableSchema]
) -> list[str]:
    """Register the database (unless Qserv has it) and every table it does not have yet, with its
    Qserv schema from `schemas`; returns the names of the tables registered now."""
    db = config.database
    if qserv.database_info(db.name) is None:
        p = db.partitioning
        qserv.register_database(
            db.name,
            p.num_stripes,
            p.num_sub_stripes,
            p.overlap,
            auto_build_secondary_index=db.auto_build_director_index,
        )
        log.info(
            "database %s registered (%d stripes, %d sub-stripes)", db.name, p.num_stripes, p.num_sub_stripes
        )
    known = {t["name"] for t in qserv.list_tables(db.name)}
    registered = []
    for table in config.load_order():
        if table.name in known:
            continue
        charset, collation = config.table_charset(table)
        qserv.register_table(
            db.name,
            table.name,
            schemas[table.name].ingest_columns(),
            is_partitioned=table.is_partitioned,
            charset_name=charset,
            collation_name=collation,
            unique_primary_key=table.unique_primary_key,
            **table_keys(config, table),
        )
        log.info("table %s.%s registered (%s)", db.name, table.name, table.kind)
        registered.append(table.name)
    return registered

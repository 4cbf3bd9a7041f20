"""Qserv's rules for a table definition: the schema screening of ``HttpIngestModule::_addTable`` and the
``DatabaseInfo::sanitize``/``validate`` pass of the configuration (``ConfigDatabase.cc:198-422``).

Pure functions over :class:`~qdask.emulator.records.Table`; errors are raised as Qserv raises them (bare
``http::Error`` texts as :class:`ApiError`, ``std::invalid_argument`` as :class:`InvalidParam`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from qdask.emulator.contract import (
    MAX_DATABASE_TABLE_NAME_LENGTH,
    PARTITION_COLUMN,
    PARTITION_COLUMN_TYPE,
    SUB_CHUNK_COLUMN,
)
from qdask.emulator.protocol import ApiError, InvalidParam, json_type_error
from qdask.emulator.records import Column, DirectorRef, Table

TableLookup = Callable[[str, str], Table | None]


def schema_columns(schema: Any, director: bool) -> list[Column]:
    """The columns of a ``schema`` parameter, ``qserv_trans_id`` first (``HttpIngestModule.cc:562-602``).

    A director table may hold no BLOB or TEXT column at all (``:106-113``, ``:590-596``): sub-chunks of
    director tables are materialized as MEMORY tables."""
    if schema is None:
        raise ApiError("table schema is empty")
    if not isinstance(schema, list):
        raise ApiError("table schema is not defined as an array")
    columns = [Column(PARTITION_COLUMN, PARTITION_COLUMN_TYPE)]
    for spec in schema:
        if not isinstance(spec, dict):
            raise ApiError("columns definitions in table schema are not JSON objects")
        values = {}
        for attr in ("name", "type"):
            if attr not in spec:
                number = len(columns) + 1
                raise ApiError(
                    f"column attribute '{attr}' is missing in table schema for column number: {number}"
                )
            if not isinstance(spec[attr], str):
                raise json_type_error("string", spec[attr])
            values[attr] = spec[attr]
        name, ctype = values["name"], values["type"]
        if director:
            for prohibited in ("BLOB", "TEXT"):
                if prohibited in ctype.upper():
                    raise ApiError(
                        f"the prohibited type '{ctype}' detected in a definition of the column '{name}'"
                        " of the director table"
                    )
        if name == PARTITION_COLUMN:
            raise ApiError(f"reserved column '{PARTITION_COLUMN}' is not allowed")
        columns.append(Column(name, ctype))
    return columns


def sanitize(t: Table) -> Table:
    """``DatabaseInfo::sanitize`` (``ConfigDatabase.cc:367-422``): drop what the table's kind can't have."""
    if not t.is_partitioned:  # :413-419
        return replace(
            t,
            director=DirectorRef(),
            director2=DirectorRef(),
            flag="",
            ang_sep=0.0,
            latitude_key="",
            longitude_key="",
        )
    if t.is_director and t.is_ref_match:
        return t  # ambiguous: left for validate() to refuse
    if t.is_director:
        director = DirectorRef(primary_key=t.director.primary_key)
        return replace(t, director=director, director2=DirectorRef(), flag="", ang_sep=0.0)
    if t.is_ref_match:
        return replace(t, latitude_key="", longitude_key="")
    return replace(t, director2=DirectorRef(), flag="", ang_sep=0.0)  # a dependent table


def validate(t: Table, lookup: TableLookup, known_databases: Mapping[str, object]) -> Table:
    """``DatabaseInfo::validate`` of a sanitized table (``ConfigDatabase.cc:198-365``)."""
    return _Validation(t, lookup, known_databases).run()


class _Validation:
    """One pass of ``DatabaseInfo::validate``: every failure names the rule, the database and the table."""

    def __init__(self, t: Table, lookup: TableLookup, known_databases: Mapping[str, object]):
        self.t = t
        self.lookup = lookup
        self.known_databases = known_databases

    def fail(self, message: str) -> InvalidParam:
        """``throwIf`` (``ConfigDatabase.cc:201-205``): the message, the database, the table as JSON."""
        dump = json.dumps(self.t.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return InvalidParam(f"DatabaseInfo::validate {message} [database={self.t.database}] {dump}")

    def run(self) -> Table:
        t = self.t
        if not t.name:
            raise self.fail("table name is empty")
        if len(t.database) + len(t.name) > MAX_DATABASE_TABLE_NAME_LENGTH:
            raise self.fail(
                f"the combined size of the database and table names exceeds {MAX_DATABASE_TABLE_NAME_LENGTH}"
                " characters"
            )
        if t.is_partitioned and t.is_director and t.is_ref_match:
            raise self.fail("ambiguous table type definition")
        if not t.is_partitioned:
            return t
        if t.is_director:
            roles = self.director()
        elif t.is_ref_match:
            roles = self.ref_match()
        else:
            roles = self.dependent()
        names = {c.name for c in t.columns}
        for role, column in sorted(roles.items()):  # a std::map: in the order of the role names
            if not column:
                raise self.fail(f"a valid column name must be provided for parameter '{role}'")
            if column not in names:
                raise self.fail(f"no matching column '{column}' found in schema for parameter '{role}'")
        return t

    def require_director(self, ref: DirectorRef, missing: str, not_director: str) -> None:
        """The reference names an existing director table (in its own database, if it names one)."""
        if ref.database_name and ref.database_name not in self.known_databases:
            raise self.fail(
                f"non-existing database '{ref.database_name}' referenced in the spec of the director table"
                f" '{ref.table_name}'"
            )
        target = self.lookup(ref.database_name or self.t.database, ref.table_name)
        if target is None:
            raise self.fail(missing)
        if not target.is_director:
            raise self.fail(not_director)

    def director(self) -> dict[str, str]:
        t, d, d2 = self.t, self.t.director, self.t.director2
        if d.table_name or not d2.empty:
            raise self.fail("the director table can't be the dependant of other director(s)")
        if not d.primary_key:
            raise self.fail("the director table definition requires a valid director key")
        if d2.primary_key:
            raise self.fail("the director table definition can't have the second director's key")
        if not t.latitude_key or not t.longitude_key:
            raise self.fail("the director table requires both spatial coordinate columns")
        return {
            "directorTable.primaryKeyColumn()": d.primary_key,
            "latitudeColName": t.latitude_key,
            "longitudeColName": t.longitude_key,
            "subChunkIdColName": SUB_CHUNK_COLUMN,
        }

    def ref_match(self) -> dict[str, str]:
        t, d, d2 = self.t, self.t.director, self.t.director2
        if d.empty or d2.empty:
            raise self.fail("incomplete definition of the directors for the RefMatch table")
        if d == d2:
            raise self.fail("the director tables of the RefMatch table can't be the same")
        for ref in (d, d2):
            self.require_director(
                ref,
                f"non-existing director '{ref.table_name}' referenced in the RefMatch definition",
                f"table '{ref.table_name}' referenced in the RefMatch definition isn't the director",
            )
        if not d.primary_key or not d2.primary_key:
            raise self.fail("incomplete definition of the director table keys for the RefMatch table")
        if d.primary_key == d2.primary_key:
            raise self.fail("the director table keys of the RefMatch table can't be the same")
        if not t.flag:
            raise self.fail("the RefMatch table requires the special column to store flags")
        if not t.ang_sep > 0:
            raise self.fail("the RefMatch table requires the angular separation to be more than 0")
        if t.latitude_key or t.longitude_key:
            raise self.fail("the RefMatch table can't have spatial coordinate columns")
        return {
            "directorTable.primaryKeyColumn()": d.primary_key,
            "directorTable2.primaryKeyColumn()": d2.primary_key,
            "flagColName": t.flag,
        }

    def dependent(self) -> dict[str, str]:
        t, d, d2 = self.t, self.t.director, self.t.director2
        if d.empty:
            raise self.fail("the dependent table requires a valid director")
        where = f"database='{d.database_name}' table='{d.table_name}'"
        self.require_director(
            d,
            f"non-existing director table referenced {where} in the dependent table definition",
            f"a table referenced {where} in the dependent table definition isn't the director table",
        )
        if not d2.empty:
            raise self.fail("the dependent table can't have the second director")
        if not d.primary_key:
            raise self.fail("the director table definition requires a valid director key")
        if d2.primary_key:
            raise self.fail("the dependent table can't have the second director key")
        if bool(t.latitude_key) != bool(t.longitude_key):
            raise self.fail("inconsistent definition of the spatial coordinate columns")
        roles = {"directorTable.primaryKeyColumn()": d.primary_key}
        if t.latitude_key:
            roles.update(latitudeColName=t.latitude_key, longitudeColName=t.longitude_key)
        return roles

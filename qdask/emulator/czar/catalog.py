"""What the stand-in's czar knows of the published tables: Qserv's CSS view (kinds, keys, positions,
overlap, layout), read from the controller's records, and a table reference of a FROM list."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from qdask.emulator.records import Family, Table
from qdask.emulator.state import State

DUMMY_CHUNK = 1234567890  # every worker holds empty chunk tables for it (qproc/QuerySession.cc setDummy)
CSS_FILE = "src/css/CssAccess.cc"


@dataclass(frozen=True)
class TableInfo:
    """What Qserv's CSS knows of a published table (as registered with ``/ingest/table``)."""

    db: str
    name: str
    kind: str  # "director" | "child" | "match" | "regular"
    columns: tuple[str, ...]
    key: str = ""  # director: its id column; child: its director-key column
    lon: str = ""
    lat: str = ""
    director: tuple[str, str] | None = None  # child: its director (db, table)
    match: tuple[tuple[str, str, str], tuple[str, str, str]] | None = None  # ((db, table, fk), ...) x2
    overlap: float = 0.0
    ang_sep: float = 0.0  # match tables
    flag: str = ""  # match tables: the partitioning flag column
    layout: str = ""  # the partitioning (family) name

    @property
    def partitioned(self) -> bool:
        return self.kind != "regular"


@dataclass
class Catalog:
    """The published tables, the stand-in's database names, and its layouts (stripes, sub-stripes)."""

    tables: dict[tuple[str, str], TableInfo]
    czar_prefix: str
    meta_db: str
    scisql_db: str
    layouts: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: State, *, czar_prefix: str, meta_db: str, scisql_db: str) -> Catalog:
        """A snapshot of the controller's records (call it on the stand-in's event loop)."""
        tables: dict[tuple[str, str], TableInfo] = {}
        layouts = {name: (f.num_stripes, f.num_sub_stripes) for name, f in state.families.items()}
        for (db, name), t in list(state.tables.items()):
            database = state.databases.get(db)
            if database is None or not database.is_published or not t.is_published:
                continue
            tables[(db, name)] = _table_info(t, state.families.get(database.family_name))
        return cls(tables, czar_prefix, meta_db, scisql_db, layouts)

    def get(self, db: str, table: str) -> TableInfo | None:
        return self.tables.get((db, table))


def _table_info(t: Table, family: Family | None) -> TableInfo:
    """What the czar knows of a registered table; a director named without a database is in the table's
    own database (Qserv leaves ``director_database_name`` empty then, ``ConfigTable.cc:40-48``)."""
    first = (t.director.database_name or t.database, t.director.table_name, t.director.primary_key)
    second = (t.director2.database_name or t.database, t.director2.table_name, t.director2.primary_key)
    if not t.is_partitioned:
        kind = "regular"
    elif t.is_ref_match:
        kind = "match"
    else:
        kind = "director" if t.is_director else "child"
    return TableInfo(
        db=t.database,
        name=t.name,
        kind=kind,
        columns=tuple(c.name for c in t.columns),
        key=t.director_key if kind in ("director", "child") else "",
        lon=t.longitude_key,
        lat=t.latitude_key,
        director=first[:2] if kind == "child" else None,
        match=(first, second) if kind == "match" else None,
        overlap=family.overlap if family is not None else 0.0,
        ang_sep=t.ang_sep if kind == "match" else 0.0,
        flag=t.flag if kind == "match" else "",
        layout=family.name if family is not None else "",
    )


@dataclass
class TableRef:
    """One table reference of the FROM list: alias (or name) as written, and its table."""

    node: exp.Table
    alias: str
    info: TableInfo

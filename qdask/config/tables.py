"""A table of the config: kind (director, child, match, regular), input, schema, columns, policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from qdask.config.base import ConfigModel, base_dir, check_paths, resolve_path
from qdask.config.errors import MultiProblem
from qdask.config.felis import (
    felis_table_names,
    is_felis_path,
    missing_felis_schema,
    resolve_felis_schema,
)
from qdask.config.inputs import TableInput
from qdask.config.names import ColumnName, Identifier, QueryableName, check_charset
from qdask.kinds import TableKind

__all__ = [
    "TABLE_KINDS",
    "TABLE_MODELS",
    "ChildTable",
    "ColumnSelection",
    "MatchTable",
    "DirectorTable",
    "FelisSchema",
    "Policies",
    "OrphanPolicy",
    "Policy",
    "RegularTable",
    "SchemaSource",
    "Table",
    "TableConfig",
    "TableKind",
]


class FelisSchema(ConfigModel):
    """Column types from a felis schema: a file path, or a schema of lsst-sdm-schemas such as dp02_dc2."""

    schema_: str = Field(alias="schema", min_length=1)
    table: Identifier | None = Field(default=None, description="table in the felis schema")

    @field_validator("schema_")
    @classmethod
    def _resolve(cls, v: str, info: ValidationInfo) -> str:
        return str(resolve_felis_schema(v, base_dir(info))) if is_felis_path(v) else v

    @model_validator(mode="after")
    def _exists(self, info: ValidationInfo) -> FelisSchema:
        if not check_paths(info):
            return self
        path = self.path()
        if not path.is_file():
            raise ValueError(missing_felis_schema(self.schema_, path))
        if self.table is not None:
            tables = felis_table_names(path)
            if self.table not in tables:
                raise ValueError(
                    f"felis schema {self.schema_!r} has no table {self.table!r}; it has {', '.join(tables)}"
                )
        return self

    def path(self) -> Path:
        """The felis YAML file this refers to."""
        return resolve_felis_schema(self.schema_)


class SchemaSource(ConfigModel):
    """Where the table's Qserv column types come from: exactly one of felis, qserv_json, ddl or infer."""

    felis: FelisSchema | None = None
    qserv_json: Path | None = Field(default=None, description="an /ingest/table request body (JSON)")
    ddl: Path | None = Field(default=None, description="a MySQL CREATE TABLE statement")
    infer: bool = False

    @field_validator("qserv_json", "ddl")
    @classmethod
    def _resolve(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            return None
        p = resolve_path(v, info)
        if check_paths(info):
            if not p.is_file():
                raise ValueError(f"file not found: {p}")
            if info.field_name == "qserv_json":
                try:
                    body = json.loads(p.read_text())
                except (OSError, ValueError) as e:
                    raise ValueError(f"{p} is not readable JSON: {e}") from None
                if not isinstance(body, dict) or not isinstance(body.get("schema"), list):
                    raise ValueError(f"{p} is not an /ingest/table body: it has no 'schema' list of columns")
            elif "create table" not in p.read_text(errors="replace").lower():
                raise ValueError(f"{p} holds no CREATE TABLE statement")
        return p

    @model_validator(mode="after")
    def _exactly_one(self) -> SchemaSource:
        given = [k for k in ("felis", "qserv_json", "ddl") if getattr(self, k) is not None]
        if self.infer:
            given.append("infer")
        if len(given) != 1:
            raise ValueError(
                "give exactly one of felis, qserv_json, ddl or infer: true "
                f"(got {', '.join(given) or 'none'})"
            )
        return self


def _listed_twice(names: list[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})


class ColumnSelection(ConfigModel):
    """Which input columns go to Qserv and under which names (the prototype's reduced-parameter mode)."""

    include: list[ColumnName] | None = None
    exclude: list[ColumnName] | None = None
    rename: dict[ColumnName, ColumnName] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSelection:
        if self.include is not None and self.exclude is not None:
            raise ValueError(
                "include and exclude cannot be used together: list the columns to keep, or to drop"
            )
        for key, cols in (("include", self.include), ("exclude", self.exclude)):
            if cols is not None and (dups := _listed_twice(cols)):
                raise ValueError(f"{key} lists {', '.join(dups)} more than once")
        if self.include is not None and not self.include:
            raise ValueError("include is empty: no column would be loaded")
        for src in self.rename:
            if self.include is not None and src not in self.include:
                raise ValueError(f"rename of {src!r}, which is not in include (rename only selected columns)")
            if self.exclude is not None and src in self.exclude:
                raise ValueError(f"rename of {src!r}, which is excluded")
        if dups := _listed_twice(list(self.rename.values())):
            raise ValueError(f"rename maps several columns to {', '.join(dups)}")
        if self.include is not None and (clash := _listed_twice([self.final_name(c) for c in self.include])):
            raise ValueError(f"after rename, several selected columns are named {', '.join(clash)}")
        return self

    def final_name(self, source: str) -> str:
        """The Qserv name of input column `source`."""
        return self.rename.get(source, source)

    def source_name(self, final: str) -> str:
        """The input column that becomes Qserv column `final`."""
        for src, dst in self.rename.items():
            if dst == final:
                return src
        return final

    def keeps(self, final: str) -> bool:
        """Whether Qserv column `final` survives the selection (as far as the config alone can tell)."""
        src = self.source_name(final)
        if src == final and self.rename.get(final, final) != final:
            return False  # `final` is an input name that was renamed to something else
        if self.include is not None:
            return src in self.include
        if self.exclude is not None:
            return src not in self.exclude
        return True


Policy = Literal["quarantine", "stop"]
OrphanPolicy = Literal["report", "quarantine", "stop"]


class Policies(ConfigModel):
    """What to do with bad rows: quarantine them to a file the user can inspect, or stop the run.

    Either way they are counted and reported with examples; rows are never dropped silently. Orphans
    (child rows without a director row) are by default loaded as they are and reported, as Qserv itself
    loads them. A value that does not fit its column always stops the run: `bad_values: quarantine` is
    refused here rather than accepted and ignored.
    """

    invalid_positions: Policy = "quarantine"
    duplicate_ids: Policy = "stop"
    orphans: OrphanPolicy = "report"
    bad_values: Literal["quarantine", "stop"] = "stop"

    @field_validator("bad_values")
    @classmethod
    def _bad_values_stop_only(cls, v: str) -> str:
        if v != "stop":
            raise ValueError(
                "quarantine is not supported for bad_values yet: a value that does not fit its column "
                "stops the run naming the file, row and column; set bad_values: stop (the default)"
            )
        return v


class _TableBase(ConfigModel):
    name: QueryableName
    input: TableInput
    schema_: SchemaSource = Field(alias="schema")
    columns: ColumnSelection = Field(default_factory=ColumnSelection)
    policies: Policies = Field(default_factory=Policies)
    charset_name: str | None = None
    collation_name: str | None = None
    unique_primary_key: bool | None = None

    if TYPE_CHECKING:  # each kind declares its own Literal field (a TableKind value)
        kind: str

    @model_validator(mode="after")
    def _table_checks(self, info: ValidationInfo) -> _TableBase:
        check_charset(self.charset_name, self.collation_name)
        felis = self.schema_.felis
        if felis is not None and felis.table is None:
            object.__setattr__(felis, "table", self.name)  # the felis table defaults to the table's name
            path = felis.path()
            if check_paths(info) and path.is_file() and self.name not in (names := felis_table_names(path)):
                raise MultiProblem(
                    [
                        f"schema.felis.table: felis schema {felis.schema_!r} has no table {self.name!r} (the "
                        f"default, this table's name); set table to one of {', '.join(names)}"
                    ]
                )
        return self

    @property
    def is_partitioned(self) -> bool:
        """Partitioned into chunks (director and child) rather than fully replicated (regular)."""
        return self.kind != "regular"

    def key_columns(self) -> dict[str, str]:
        """Role → Qserv column name of every key column the table declares (id, ra, dec, director_key)."""
        return {
            role: getattr(self, role)
            for role in ("id", "director_key", "ra", "dec")
            if getattr(self, role, None) is not None
        }

    def _check_keys_selected(self) -> None:
        for role, col in self.key_columns().items():
            if not self.columns.keeps(col):
                raise ValueError(f"the {role} column {col!r} is removed by the column selection")
        if "orphans" in self.policies.model_fields_set and self.kind != "child":
            raise ValueError("policies.orphans applies only to child tables")


class DirectorTable(_TableBase):
    """A director table: partitioned by its own position, with a unique id other tables refer to."""

    kind: Literal["director"]
    id: ColumnName = Field(description="unique id column, Qserv's director_key")
    ra: ColumnName = Field(description="right ascension column in degrees, Qserv's longitude_key")
    dec: ColumnName = Field(description="declination column in degrees, Qserv's latitude_key")
    overlap: float | None = Field(
        default=None, description="overlap radius in degrees for this table; default: the database's"
    )

    @property
    def unique_ids(self) -> bool:
        """Its ids are unique (Qserv's default); False with ``unique_primary_key: false``: they repeat."""
        return self.unique_primary_key is not False

    @model_validator(mode="after")
    def _checks(self) -> DirectorTable:
        self._check_keys_selected()
        if not self.unique_ids and "duplicate_ids" in self.policies.model_fields_set:
            raise ValueError(
                "policies.duplicate_ids applies to a director with unique ids; with unique_primary_key: "
                "false "
                "repeated ids are the catalog's own (Qserv indexes them as such) and every row is loaded"
            )
        return self


class ChildTable(_TableBase):
    """A child (dependent) table: rows placed in the chunk of their director row, by position columns."""

    kind: Literal["child"]
    director: Identifier = Field(description="name of a director table declared in this config")
    director_key: ColumnName = Field(description="this table's column holding the director's id")
    ra: ColumnName | None = Field(
        default=None,
        description="column with the right ascension of the director row, e.g. raObject; omit ra and dec to "
        "place each row by its director's id",
    )
    dec: ColumnName | None = Field(
        default=None, description="column with the declination of the director row"
    )
    id: ColumnName | None = Field(default=None, description="this table's own unique id, if any")

    @property
    def placed_by_id(self) -> bool:
        """Rows placed in their director row's chunk by looking its id up (Qserv's --part.id-url), since they
        do not carry the director's position."""
        return self.ra is None

    @model_validator(mode="after")
    def _checks(self) -> ChildTable:
        self._check_keys_selected()
        if (self.ra is None) != (self.dec is None):
            raise ValueError("give both ra and dec (the director row's position), or neither (placed by id)")
        if (
            self.placed_by_id
            and self.policies.orphans == "report"
            and "orphans" in self.policies.model_fields_set
        ):
            raise ValueError(
                "policies.orphans: report cannot apply to a child placed by its director's id: a row without "
                "a director has no chunk to go to (use quarantine, the default here, or stop)"
            )
        return self


class MatchTable(_TableBase):
    """A match table (Qserv's ref-match): rows pairing a row of one director with a row of another,
    each stored in the chunk of both sides, as Qserv's ``sph-partition-matches`` places them."""

    kind: Literal["match"]
    director: Identifier = Field(description="the first director table (e.g. the reference catalog)")
    director_key: ColumnName = Field(description="this table's column holding the first director's id")
    ra: ColumnName = Field(description="column with the right ascension of the first side's row")
    dec: ColumnName = Field(description="column with the declination of the first side's row")
    director2: Identifier = Field(description="the second director table")
    director_key2: ColumnName = Field(description="this table's column holding the second director's id")
    ra2: ColumnName = Field(description="column with the right ascension of the second side's row")
    dec2: ColumnName = Field(description="column with the declination of the second side's row")
    flag: ColumnName = Field(
        default="flags", description="integer column qdask fills with the partitioning flag (1, 2 or 3)"
    )
    ang_sep: float | None = Field(
        default=None, gt=0, le=10, description="largest separation of a pair in degrees; default: the overlap"
    )

    def key_columns(self) -> dict[str, str]:
        return {
            role: getattr(self, role)
            for role in ("director_key", "ra", "dec", "director_key2", "ra2", "dec2", "flag")
        }

    @model_validator(mode="after")
    def _checks(self) -> MatchTable:
        self._check_keys_selected()
        if self.director == self.director2:
            raise ValueError("director and director2 must be two different director tables")
        if self.director_key == self.director_key2:
            raise ValueError("director_key and director_key2 must be two different columns")
        return self


class RegularTable(_TableBase):
    """A regular (fully replicated) table: no positions, a copy on every Qserv worker."""

    kind: Literal["regular"]
    id: ColumnName | None = Field(default=None, description="unique id column, if any")

    @model_validator(mode="after")
    def _checks(self) -> RegularTable:
        self._check_keys_selected()
        if "invalid_positions" in self.policies.model_fields_set:
            raise ValueError("policies.invalid_positions applies only to partitioned tables")
        return self


TABLE_KINDS: tuple[str, ...] = tuple(kind.value for kind in TableKind)

#: Kind → model, for error messages about the keys a kind allows.
TABLE_MODELS: dict[str, type[BaseModel]] = {
    "director": DirectorTable,
    "child": ChildTable,
    "match": MatchTable,
    "regular": RegularTable,
}

TableConfig = DirectorTable | ChildTable | MatchTable | RegularTable


def _table_kind(v: Any) -> str | None:
    kind = v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)
    return kind if kind in TABLE_KINDS else None


Table = Annotated[
    Annotated[DirectorTable, Tag("director")]
    | Annotated[ChildTable, Tag("child")]
    | Annotated[MatchTable, Tag("match")]
    | Annotated[RegularTable, Tag("regular")],
    Discriminator(
        _table_kind,
        custom_error_type="table_kind",
        custom_error_message="kind must be one of director, child, match, regular",
    ),
]

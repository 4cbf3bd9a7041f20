"""A whole ingest configuration (`IngestConfig`): its sections, checks across them, display, overrides."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from dask.utils import format_bytes
from pydantic import Field, PrivateAttr, model_validator

from qdask.config.base import ConfigModel
from qdask.config.cluster import ClusterConfig
from qdask.config.database import DatabaseConfig, check_overlap
from qdask.config.errors import MultiProblem
from qdask.config.names import MAX_DB_PLUS_TABLE, MAX_PARTITIONED_TABLE
from qdask.config.qserv import QservConfig
from qdask.config.staging import StagingConfig
from qdask.config.tables import ChildTable, DirectorTable, MatchTable, Table, TableConfig

__all__ = ["IngestConfig"]


class IngestConfig(ConfigModel):
    """A whole ingest configuration: target database, tables, Qserv, staging and cluster."""

    database: DatabaseConfig
    tables: list[Table] = Field(min_length=1)
    qserv: QservConfig
    staging: StagingConfig = Field(default_factory=StagingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    _source: Path | None = PrivateAttr(default=None)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)
    _base_dir: Path | None = PrivateAttr(default=None)
    _check_paths: bool = PrivateAttr(default=True)

    @model_validator(mode="after")
    def _tables_consistent(self) -> IngestConfig:
        problems: list[str] = []
        by_name: dict[str, TableConfig] = {}
        db = self.database.name
        for i, t in enumerate(self.tables):
            if t.name in by_name:
                problems.append(f"tables[{i}].name: table {t.name!r} is declared twice")
            by_name.setdefault(t.name, t)
            if len(db) + len(t.name) > MAX_DB_PLUS_TABLE:
                problems.append(
                    f"tables[{i}].name: database + table name are {len(db) + len(t.name)} characters; at "
                    f"most {MAX_DB_PLUS_TABLE} (Qserv's 'qservMeta.<db>__<table>__rows' must fit in 64)"
                )
            if t.is_partitioned and len(t.name) > MAX_PARTITIONED_TABLE:
                problems.append(
                    f"tables[{i}].name: a partitioned table name may have at most {MAX_PARTITIONED_TABLE} "
                    f"characters ('{t.name}FullOverlap_1234567890' must fit in 64)"
                )
            charset = t.charset_name or self.database.charset_name
            collation = t.collation_name or (
                self.database.collation_name if charset == self.database.charset_name else None
            )
            if collation is None:
                problems.append(
                    f"tables[{i}].collation_name: table {t.name!r} sets charset_name {charset!r}, different "
                    f"from the database's; set collation_name too (e.g. {charset}_general_ci)"
                )
            elif not collation.startswith(charset + "_"):
                problems.append(
                    f"tables[{i}].collation_name: {collation!r} does not belong to character set {charset!r}"
                )
            if isinstance(t, DirectorTable) and t.overlap is not None:
                try:
                    check_overlap(t.overlap, self.database.partitioning)
                except ValueError as e:
                    problems.append(f"tables[{i}].overlap: {e}")
        for i, t in enumerate(self.tables):
            refs = {"director": t.director} if isinstance(t, ChildTable) else {}
            if isinstance(t, MatchTable):
                refs = {"director": t.director, "director2": t.director2}
            for key, name in refs.items():
                d = by_name.get(name)
                if d is None:
                    declared = [x.name for x in self.tables if isinstance(x, DirectorTable)]
                    problems.append(
                        f"tables[{i}].{key}: {name!r} is not a table of this config "
                        f"(declared director tables: {', '.join(declared) or 'none'})"
                    )
                elif not isinstance(d, DirectorTable):
                    problems.append(f"tables[{i}].{key}: {name!r} is a {d.kind} table, not a director table")
                elif isinstance(t, ChildTable) and t.placed_by_id and not d.unique_ids:
                    problems.append(
                        f"tables[{i}]: placed by its director's id, but {name!r} has repeated ids "
                        "(unique_primary_key: false): a row's chunk would be ambiguous; give ra and dec"
                    )
        if problems:
            raise MultiProblem(problems)
        return self

    # -- access helpers ------------------------------------------------------------------------

    @property
    def source(self) -> Path | None:
        """The YAML file this config was loaded from (None when built in memory)."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """The directory relative paths were resolved against."""
        if self._base_dir is not None:
            return self._base_dir
        return self._source.parent if self._source else Path.cwd()

    def table(self, name: str) -> TableConfig:
        """The table called `name` (KeyError naming the known tables otherwise)."""
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"no table {name!r} in the config; tables: {', '.join(t.name for t in self.tables)}")

    @property
    def directors(self) -> list[DirectorTable]:
        """The director tables, in file order."""
        return [t for t in self.tables if isinstance(t, DirectorTable)]

    def table_charset(self, table: TableConfig) -> tuple[str, str]:
        """(charset_name, collation_name) that `table` is declared to Qserv with."""
        charset = table.charset_name or self.database.charset_name
        collation = table.collation_name or self.database.collation_name
        return charset, collation

    def table_overlap(self, table: TableConfig) -> float:
        """Overlap radius for `table`: its override, the database's for directors, 0 otherwise."""
        if isinstance(table, DirectorTable):
            return self.database.partitioning.overlap if table.overlap is None else table.overlap
        return 0.0

    def match_separation(self, table: MatchTable) -> float:
        """The largest separation of a match table's pair: its `ang_sep`, else the database's overlap
        (Qserv's partitioner refuses pairs farther apart than its overlap)."""
        return self.database.partitioning.overlap if table.ang_sep is None else table.ang_sep

    def load_order(self) -> list[TableConfig]:
        """Tables in the order Qserv must register them: directors, then the tables that name them
        (children, match tables), then regular tables."""
        rank = {"director": 0, "child": 1, "match": 2, "regular": 3}
        return sorted(self.tables, key=lambda t: rank[t.kind])

    # -- display and overrides --------------------------------------------------------------------

    def display_dict(self) -> dict[str, Any]:
        """The resolved config as plain data for printing: defaults filled in, paths absolute, secrets
        masked (auth keys show only whether their environment variable is set)."""
        data = self.model_dump(mode="json", by_alias=True)
        tables = []
        for t, d in zip(self.tables, data["tables"], strict=True):
            first = {
                k: d.pop(k) for k in ("name", "kind", "director", "director_key", "id", "ra", "dec") if k in d
            }
            if "overlap" in d or t.is_partitioned:
                d["overlap"] = self.table_overlap(t)
            d["charset_name"], d["collation_name"] = self.table_charset(t)
            for section in ("input", "schema"):  # show only the alternative that is used
                d[section] = {k: v for k, v in d[section].items() if v not in (None, False)}
            tables.append({**{k: v for k, v in first.items() if v is not None}, **d})
        data["tables"] = tables
        data["cluster"]["workers"] = self.cluster.worker_count
        data["cluster"]["memory_per_worker"] = format_bytes(self.cluster.worker_memory_limit)
        data["qserv"]["max_bytes_per_transaction"] = format_bytes(self.qserv.max_bytes_per_transaction)
        data = _drop_none(data)
        q = data["qserv"]
        for attr, env_attr in (("auth_key", "auth_key_env"), ("admin_auth_key", "admin_auth_key_env")):
            env = getattr(self.qserv, env_attr)
            q[attr] = (
                f"********** (from ${env})"
                if os.environ.get(env) is not None
                else f"(unset: ${env}, an empty key is sent)"
            )
        if self.qserv.czar_password_env:
            env = self.qserv.czar_password_env
            q["czar_password"] = (
                f"********** (from ${env})" if os.environ.get(env) is not None else f"(unset: ${env})"
            )
        return data

    def to_yaml(self) -> str:
        """The resolved config as YAML, secrets masked (what `qdask plan --check` prints)."""
        return yaml.safe_dump(self.display_dict(), sort_keys=False, default_flow_style=None, width=110)

    def __str__(self) -> str:
        return self.to_yaml()

    def with_overrides(
        self,
        *,
        workers: int | None = None,
        controller: str | None = None,
        czar: str | None = None,
        staging: str | os.PathLike[str] | None = None,
        scheduler: str | None = None,
        cluster: str | None = None,
    ) -> IngestConfig:
        """A new config with command-line overrides applied over the file, validated like the file.

        `workers` sets the worker count (on Kubernetes it replaces workers/adaptive); `scheduler` selects
        kind scheduler at that address; `cluster` selects the cluster kind; `staging` is relative to the
        current directory, as a command-line path is. Errors name the option that caused them.
        """
        from qdask.config.loading import validate  # loading builds IngestConfig: imported on use

        raw = copy.deepcopy(self._raw)
        origin: dict[str, str] = {}
        if controller is not None:
            raw.setdefault("qserv", {})["controller"] = controller
            origin["qserv.controller"] = "--controller"
        if czar is not None:
            raw.setdefault("qserv", {})["czar"] = czar
            origin["qserv.czar"] = "--czar"
        if staging is not None:
            raw.setdefault("staging", {})["directory"] = str(Path(staging).expanduser().resolve())
            ledger = raw["staging"].get("ledger")
            if ledger is not None and not Path(ledger).expanduser().is_absolute():
                raw["staging"]["ledger"] = str((self.base_dir / ledger).resolve())
            origin["staging.directory"] = "--staging"
        cl = raw.setdefault("cluster", {})
        if cluster is not None:
            cl["kind"] = cluster
            origin["cluster.kind"] = "--cluster"
        if scheduler is not None:
            cl["kind"] = "scheduler"
            cl["scheduler_address"] = scheduler
            origin["cluster.scheduler_address"] = "--scheduler"
        if workers is not None:
            cl["workers"] = workers
            origin["cluster.workers"] = "--workers"
            k8s = cl.get("kubernetes")
            if isinstance(k8s, dict):
                k8s.pop("adaptive", None)
                k8s["workers"] = workers
                origin["cluster.kubernetes.workers"] = "--workers"
        return validate(
            raw, self._source, self.base_dir, text=None, origin=origin, check_paths=self._check_paths
        )

    def remember_source(
        self, raw: dict[str, Any], source: Path | None, base_dir: Path, check_paths: bool
    ) -> None:
        """Record where this config came from, so `with_overrides` can re-validate the file with changes."""
        self._source = source
        self._base_dir = base_dir
        self._check_paths = check_paths
        self._raw = copy.deepcopy(raw)


def _drop_none(value: Any) -> Any:
    """`value` without the keys whose value is None (unset options), recursively, for display."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value

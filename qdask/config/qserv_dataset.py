"""A Qserv dataset description (the layout of Qserv's integration-test cases) turned into a qdask config.

Qserv describes a catalog with JSON files beside its data: ``ingest/database.json`` (the database and its
partitioning), one ``ingest/<table>.json`` per table (the ``/ingest/table`` request body: kind, keys,
position columns, schema and the ``LOAD DATA`` dialect of the data file), ``ingest/metadata.json`` (the
table order), ``partition/*.json`` (the partitioner's options) and ``schema/<table>.schema`` (the
``CREATE TABLE`` of the reference load). Qserv's own loader (``python/lsst/qserv/admin/itest_load.py`` and
``itest_table.py`` in lsst/qserv) reads exactly these: the data file of a table is
``data/<table>.<ext>[.gz]``, and the dialect comes from the table's ingest JSON with ``LOAD DATA``'s
defaults (``itest_table.LoadTable.fields_*``).

`dataset_config` builds the config mapping (loaded as is by `qdask ingest DIR`), `dataset_config_yaml`
the same as a commented YAML file for the user to read and edit. Tables qdask cannot yet express are left
out and named, with the reason, never silently.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qdask.config.errors import ConfigError

__all__ = ["DatasetDescription", "dataset_config", "dataset_config_yaml", "find_dataset", "is_dataset"]

#: Qserv's defaults for a table's data file dialect (``itest_table.py``: ``fields_*`` properties).
_DIALECT_DEFAULTS = {
    "fields_terminated_by": "\\t",
    "fields_enclosed_by": "",
    "fields_escaped_by": "\\\\",
    "lines_terminated_by": "\\n",
}
_COMPRESSIONS = ("", ".gz", ".bz2")
_TEXT_EXTENSIONS = (".tsv", ".csv", ".txt")
_CHARSET = re.compile(r"DEFAULT\s+CHARSET\s*=\s*(\w+)", re.IGNORECASE)
#: Where the controller and the czar listen on a default Qserv (and on the stand-in).
DEFAULT_CONTROLLER = "http://127.0.0.1:25081"
DEFAULT_CZAR = "mysql://qsmaster@127.0.0.1:4040"


@dataclass
class DatasetDescription:
    """What was read from a dataset directory: the config mapping and the tables left out, with why."""

    data_dir: Path
    database: str
    config: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)


def find_dataset(path: Path) -> Path | None:
    """The data directory of a dataset at `path` (itself or its ``data/``), or None if it is not one."""
    for candidate in (path, path / "data"):
        if (candidate / "ingest" / "database.json").is_file():
            return candidate
    return None


def is_dataset(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a directory in Qserv's dataset layout."""
    p = Path(path)
    return p.is_dir() and find_dataset(p) is not None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(path, [("", f"cannot read Qserv's JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, [("", "expected a JSON object")])
    return data


def _table_names(data_dir: Path) -> list[str]:
    """Tables in the order of ``metadata.json`` if present, else every ingest JSON; directors first (Qserv
    registers a director before its children)."""
    ingest = data_dir / "ingest"
    metadata = ingest / "metadata.json"
    if metadata.is_file():
        names = [Path(t["schema"]).stem for t in _json(metadata).get("tables", []) if "schema" in t]
    else:
        names = []
    for path in sorted(ingest.glob("*.json")):
        if path.stem not in ("database", "metadata") and path.stem not in names:
            names.append(path.stem)
    return names


def _data_extensions(data_dir: Path) -> tuple[str, ...]:
    """The data file extensions to look for: ``description.yaml``'s first, then the text ones."""
    description = data_dir / "description.yaml"
    declared: list[str] = []
    if description.is_file():
        ext = (yaml.safe_load(description.read_text()) or {}).get("extensions", {}) or {}
        if isinstance(ext.get("data"), str):
            declared.append(ext["data"])
    return tuple(dict.fromkeys([*declared, *_TEXT_EXTENSIONS]))


def _data_file(data_dir: Path, table: str, extensions: tuple[str, ...]) -> Path | None:
    for ext in extensions:
        for compression in _COMPRESSIONS:
            path = data_dir / f"{table}{ext}{compression}"
            if path.is_file():
                return path
    return None


def _charset(data_dir: Path, table: str) -> str | None:
    """The table's charset in its reference ``CREATE TABLE`` (what the data file is written in)."""
    schema = data_dir / "schema" / f"{table}.schema"
    if not schema.is_file():
        return None
    match = _CHARSET.search(schema.read_text(errors="replace"))
    return match.group(1).lower() if match else None


def _partition_options(data_dir: Path, table: str) -> dict[str, Any]:
    path = data_dir / "partition" / f"{table}.json"
    return _json(path) if path.is_file() else {}


def _table_entry(
    data_dir: Path, table: str, spec: Mapping[str, Any], data_file: Path, rel: Any, db_overlap: float
) -> tuple[dict[str, Any] | None, str]:
    """The config entry of one table and its kind, or None and the reason it cannot be expressed yet."""
    dialect = {key: spec.get(key) or default for key, default in _DIALECT_DEFAULTS.items()}
    charset = _charset(data_dir, table)
    files: dict[str, Any] = {
        "glob": rel(data_file),
        "format": "csv" if ".csv" in data_file.suffixes else "tsv",
        "dialect": {
            "preset": "mysql",
            **dialect,
            "header": False,
            **({"charset": charset} if charset else {}),
        },
    }
    entry: dict[str, Any] = {"name": table}
    if not spec.get("is_partitioned"):
        entry["kind"] = "regular"
    elif spec.get("director_table2"):
        # sph-partition-matches places a pair by part.pos1 and part.pos2, the flag column is part.flags.
        part = _partition_options(data_dir, table).get("part") or {}
        sides = [[c.strip() for c in str(part.get(k, "")).split(",") if c.strip()] for k in ("pos1", "pos2")]
        if any(len(side) != 2 for side in sides):
            return None, "a match table placed by its directors' ids (no part.pos1/pos2) is not supported yet"
        (ra1, dec1), (ra2, dec2) = sides
        entry.update(
            kind="match",
            director=spec["director_table"],
            director_key=spec["director_key"],
            ra=ra1,
            dec=dec1,
            director2=spec["director_table2"],
            director_key2=spec["director_key2"],
            ra2=ra2,
            dec2=dec2,
            flag=spec.get("flag") or part.get("flags") or "partitioningFlags",
        )
        if spec.get("ang_sep"):
            entry["ang_sep"] = float(spec["ang_sep"])
    else:
        # The partitioner places rows by part.pos (a child: its director's position, e.g. raObject); the
        # ingest JSON's longitude/latitude keys may name the row's own position instead (case02's Source).
        part = _partition_options(data_dir, table)
        pos = [c.strip() for c in str((part.get("part") or {}).get("pos", "")).split(",") if c.strip()]
        lon, lat = pos if len(pos) == 2 else (spec.get("longitude_key"), spec.get("latitude_key"))
        director = spec.get("director_table") or ""
        if director:
            entry.update(kind="child", director=director, director_key=spec["director_key"])
            if lon and lat:
                entry.update(ra=lon, dec=lat)  # else placed by its director's id (--part.id-url)
            if part.get("id"):
                entry["id"] = part["id"]
        elif not (lon and lat):
            return None, "a director without position columns"
        else:
            entry.update(kind="director", id=spec["director_key"], ra=lon, dec=lat)
            if str(spec.get("unique_primary_key", 1)) in ("0", "False", "false"):
                entry["unique_primary_key"] = False  # repeated ids are the catalog's own
            overlap = (part.get("part") or {}).get("overlap")
            if overlap is not None and float(overlap) != db_overlap:
                entry["overlap"] = float(overlap)
    entry["input"] = {"files": files}
    entry["schema"] = {"qserv_json": rel(data_dir / "ingest" / f"{table}.json")}
    return entry, entry["kind"]


def dataset_config(
    path: str | os.PathLike[str],
    *,
    relative_to: str | os.PathLike[str] | None = None,
    staging: str | None = None,
    controller: str = DEFAULT_CONTROLLER,
    czar: str = DEFAULT_CZAR,
) -> DatasetDescription:
    """The config of the dataset at `path`; file paths relative to `relative_to` (absolute if None)."""
    root = Path(path)
    data_dir = find_dataset(root)
    if data_dir is None:
        raise ConfigError(root, [("", "not a Qserv dataset: no ingest/database.json here or in data/")])
    data_dir = data_dir.resolve()
    base = Path(relative_to).resolve() if relative_to is not None else None

    def rel(p: Path) -> str:
        return os.path.relpath(p, base) if base is not None else str(p)

    db = _json(data_dir / "ingest" / "database.json")
    name = db.get("database")
    if not isinstance(name, str) or not name:
        raise ConfigError(data_dir / "ingest" / "database.json", [("database", "expected the database name")])
    overlap = float(db.get("overlap", 0.0))
    extensions = _data_extensions(data_dir)
    tables: list[dict[str, Any]] = []
    described = DatasetDescription(data_dir, name, {})
    for table in _table_names(data_dir):
        data_file = _data_file(data_dir, table, extensions)
        if data_file is None:
            described.skipped[table] = f"no data file {table}{extensions[0]}[.gz]"
            continue
        entry, kind = _table_entry(
            data_dir, table, _json(data_dir / "ingest" / f"{table}.json"), data_file, rel, overlap
        )
        if entry is None:
            described.skipped[table] = kind
            continue
        tables.append(entry)
        described.kinds[table] = kind
    directors = {t["name"] for t in tables if t["kind"] == "director"}
    for entry in [t for t in tables if t["kind"] in ("child", "match")]:
        absent = [d for d in (entry["director"], entry.get("director2")) if d and d not in directors]
        if absent:
            tables.remove(entry)
            described.kinds.pop(entry["name"])
            described.skipped[entry["name"]] = f"its director {', '.join(absent)} is not loaded"
    order = {"director": 0, "child": 1, "match": 2, "regular": 3}
    tables.sort(key=lambda t: order[t["kind"]])
    charsets = {t["input"]["files"]["dialect"].get("charset") for t in tables}
    database: dict[str, Any] = {
        "name": name,
        "partitioning": {
            "num_stripes": int(db["num_stripes"]),
            "num_sub_stripes": int(db["num_sub_stripes"]),
            "overlap": overlap,
        },
        "auto_build_director_index": bool(int(db.get("auto_build_secondary_index", 1))),
    }
    if len(charsets) == 1 and (charset := charsets.pop()) is not None:
        database["charset_name"] = charset  # the tables are created in the charset the dumps are written in
        database["collation_name"] = f"{charset}_general_ci"  # MariaDB's default collation of the charset
    described.config = {
        "database": database,
        "tables": tables,
        "qserv": {
            "controller": controller,
            "czar": f"{czar.rstrip('/')}/{name}",
            "auth_key_env": "QSERV_AUTH_KEY",
        },
        "staging": {"directory": staging if staging is not None else f"staging/{name}"},
    }
    return described


def dataset_config_yaml(described: DatasetDescription) -> str:
    """The config as YAML, headed by comments saying where it came from and what was left out."""
    lines = [
        f"# qdask config generated from the Qserv dataset in {described.data_dir}",
        "# (ingest/database.json, ingest/<table>.json, partition/*.json, schema/*.schema; each table's",
        "# LOAD DATA dialect from its ingest JSON, as Qserv's own loader reads it). Edit freely.",
    ]
    for table, kind in described.kinds.items():
        lines.append(f"#   {table}: {kind}")
    for table, why in described.skipped.items():
        lines.append(f"#   {table}: left out: {why}")
    body = yaml.safe_dump(described.config, sort_keys=False, allow_unicode=True, width=110)
    return "\n".join(lines) + "\n\n" + body

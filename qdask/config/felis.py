"""Finding felis schemas: a YAML file path, or a schema name of the lsst-sdm-schemas package (``dp02_dc2``).

The one resolver for the config (which checks that the file and table exist, with suggestions) and for
`qdask.schema.felis_table` (which reads the columns). Listing a schema's tables is a light text scan, not
a felis parse: DP0.2's schema takes about a second to validate.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from importlib import resources
from pathlib import Path

__all__ = [
    "felis_table_names",
    "is_felis_path",
    "missing_felis_schema",
    "resolve_felis_schema",
    "sdm_schema_names",
]


def sdm_schema_names() -> list[str]:
    """Names of the felis schemas shipped in lsst-sdm-schemas (e.g. ``dp02_dc2``)."""
    try:
        root = resources.files("lsst.sdm.schemas")
    except ModuleNotFoundError:
        return []
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def is_felis_path(schema: str) -> bool:
    """Whether `schema` names a file (``*.yaml``, a path with ``/``, ``~``) rather than an SDM schema name."""
    return schema.endswith((".yaml", ".yml")) or "/" in schema or schema.startswith("~")


def resolve_felis_schema(schema: str | os.PathLike[str], base_dir: Path | None = None) -> Path:
    """The felis YAML file for `schema`: a path (absolute, or relative to `base_dir`) or an SDM name.

    The file may not exist; `missing_felis_schema` says so with suggestions.
    """
    text = os.fspath(schema)
    if isinstance(schema, os.PathLike) or is_felis_path(text):
        p = Path(os.path.expanduser(text))
        return p if p.is_absolute() else ((base_dir or Path.cwd()) / p).resolve()
    try:
        return Path(str(resources.files("lsst.sdm.schemas").joinpath(f"{text}.yaml")))
    except ModuleNotFoundError:
        return (base_dir or Path.cwd()) / f"{text}.yaml"  # lsst-sdm-schemas is not installed: no such file


def missing_felis_schema(schema: str | os.PathLike[str], path: Path) -> str:
    """The message for a felis schema whose file `path` does not exist, naming the closest SDM schemas."""
    names = sdm_schema_names()
    close = difflib.get_close_matches(Path(os.fspath(schema)).stem, names, n=3)
    known = (
        f"did you mean {', '.join(close)}?" if close else f"lsst-sdm-schemas has {', '.join(names) or 'none'}"
    )
    return (
        f"felis schema {os.fspath(schema)!r} not found (no file {path}): neither a YAML file nor one of "
        f"lsst-sdm-schemas; {known}"
    )


def felis_table_names(path: Path) -> list[str]:
    """Top-level table names of a felis YAML file, by a light text scan (cached per file version)."""
    st = path.stat()
    return list(_felis_table_names(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=32)
def _felis_table_names(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    text = Path(path).read_text()
    return tuple(re.findall(r"^- name:\s*['\"]?([A-Za-z0-9_]+)['\"]?\s*$", text, flags=re.MULTILINE))

"""Reading a config: strict YAML (a repeated key is an error), validation, problems located by file line."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from qdask.config.errors import ConfigError
from qdask.config.ingest_config import IngestConfig
from qdask.config.messages import problems_of

__all__ = ["config_from_dict", "load_config", "validate"]


def _line_index(text: str) -> dict[str, int]:
    """Key path → 1-based line of that key in the YAML text (best effort; empty if unparsable)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    out: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{path}.{k.value}" if path else str(k.value)
                out.setdefault(key, k.start_mark.line + 1)
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                key = f"{path}[{i}]"
                out.setdefault(key, v.start_mark.line + 1)
                walk(v, key)

    if root is not None:
        walk(root, "")
    return out


def _locate(key: str, lines: Mapping[str, int]) -> int | None:
    """The line of `key`, or of its closest ancestor present in the file."""
    while key:
        if key in lines:
            return lines[key]
        parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", key)
        key = "" if parent == key else parent
    return None


def validate(
    raw: Any,
    source: Path | None,
    base_dir: Path,
    text: str | None,
    origin: Mapping[str, str] | None = None,
    check_paths: bool = True,
) -> IngestConfig:
    """Validate config data read from `source` (or built in memory); `ConfigError` lists every problem,
    located in `text` (the file's YAML) when given."""
    where = source or "<config>"
    if not isinstance(raw, dict):
        got = type(raw).__name__
        raise ConfigError(
            where, [("", f"expected a mapping of sections (database, tables, qserv, ...), got {got}")]
        )
    try:
        cfg = IngestConfig.model_validate(raw, context={"base_dir": base_dir, "check_paths": check_paths})
    except ValidationError as e:
        problems = problems_of(e, IngestConfig, origin)
        lines = _line_index(text) if text else {}
        located = {k: ln for k, _ in problems if (ln := _locate(k, lines)) is not None}
        raise ConfigError(where, problems, located) from None
    cfg.remember_source(raw, source, base_dir, check_paths)
    return cfg


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, first: int, line: int) -> None:
        self.key, self.first, self.line = key, first, line
        super().__init__(f"duplicate key {key!r}")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error, not a silent override
    (a config with two `ra:` keys would otherwise load the last one without a word)."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._qdask_root = node
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str) and key in seen:
                raise _DuplicateKey(_yaml_path(self, node, key), seen[key], line)
            if isinstance(key, str):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _yaml_path(loader: yaml.SafeLoader, node: yaml.Node, key: str) -> str:
    """Best-effort key path of `key` inside `node` (the path from the document root, by position)."""
    root = getattr(loader, "_qdask_root", None)
    path = _find_node_path(root, node, "") if root is not None else None
    return f"{path}.{key}" if path else key


def _find_node_path(current: yaml.Node, target: yaml.Node, path: str) -> str | None:
    if current is target:
        return path
    children: list[tuple[str, yaml.Node]] = []
    if isinstance(current, yaml.MappingNode):
        children = [(f"{path}.{k.value}" if path else str(k.value), v) for k, v in current.value]
    elif isinstance(current, yaml.SequenceNode):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(current.value)]
    for child_path, child in children:
        found = _find_node_path(child, target, child_path)
        if found is not None:
            return found
    return None


def config_from_dict(
    data: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None, *, check_paths: bool = True
) -> IngestConfig:
    """Validate config data already in memory (e.g. built by a test); relative paths use `base_dir`."""
    base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
    return validate(copy.deepcopy(dict(data)), None, base, text=None, check_paths=check_paths)


def load_config(path: str | os.PathLike[str], *, check_paths: bool = True) -> IngestConfig:
    """Read and validate an ingest config YAML file; raise `ConfigError` listing every problem.

    Relative paths in the file are resolved against the file's directory. With `check_paths` (the
    default) files the config names (globs, schema files) must exist. A directory in Qserv's dataset
    layout (`qdask.config.qserv_dataset`) is read as the config it describes, staging in the working
    directory.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return _load_dataset(p, check_paths)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(p, [("", f"cannot read the config file: {e.strerror or e}")]) from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except _DuplicateKey as e:
        raise ConfigError(
            p, [(e.key, f"key given twice (lines {e.first} and {e.line}); keep one")], {e.key: e.line}
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        lines = {"": mark.line + 1} if mark is not None else {}
        raise ConfigError(p, [("", f"not valid YAML: {getattr(e, 'problem', None) or e}")], lines) from None
    if raw is None:
        raise ConfigError(p, [("", "the file is empty")])
    return validate(raw, p.resolve(), p.resolve().parent, text, check_paths=check_paths)


def _load_dataset(path: Path, check_paths: bool) -> IngestConfig:
    """The config a Qserv dataset directory describes (its tables, dialects, keys and partitioning)."""
    from qdask.config.qserv_dataset import dataset_config, dataset_config_yaml

    described = dataset_config(path)
    text = dataset_config_yaml(described)
    return validate(described.config, path.resolve(), Path.cwd(), text, check_paths=check_paths)

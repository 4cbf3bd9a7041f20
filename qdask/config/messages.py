"""Pydantic's validation errors as the config's problems: ``(key.path, message)``, with suggestions.

Unknown keys list the keys allowed there (and the closest one), missing keys say what the key is for,
values that were refused are quoted unless they could be a password.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from qdask.config.errors import MultiProblem
from qdask.config.tables import TABLE_KINDS, TABLE_MODELS

__all__ = ["problems_of"]

# Error kinds whose message gains the refused value, "(got ...)".
_QUOTE_INPUT = frozenset(
    {
        "literal_error",
        "int_parsing",
        "float_parsing",
        "bool_parsing",
        "string_type",
        "int_type",
        "dict_type",
        "list_type",
        "model_type",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "string_too_short",
        "too_short",
        "string_pattern_mismatch",
        "model_attributes_type",
    }
)


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # discriminated-union tags and pydantic's function markers are not keys of the file
        if i == 2 and loc[0] == "tables" and isinstance(loc[1], int) and part in TABLE_KINDS:
            continue
        if isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue
        out += f".{part}" if out else str(part)
    return out


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The config model inside a field annotation (through Optional, list, dict, Annotated), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` below `root` (None when it cannot be told)."""
    cls: type[BaseModel] | None = root
    for i, part in enumerate(loc):
        if cls is None:
            return None
        if isinstance(part, int):
            continue
        if i == 2 and loc[0] == "tables" and part in TABLE_MODELS:
            cls = TABLE_MODELS[part]
            continue
        field = next((f for n, f in cls.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        cls = (
            TABLE_MODELS["director"] if part == "tables" and cls is root else _unwrap_model(field.annotation)
        )
    return cls


def _keys_of(cls: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in cls.model_fields.items()]


def _message(root: type[BaseModel], err: ErrorDetails) -> str:
    kind = err["type"]
    msg = err["msg"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        if parent is None:
            return "unknown key (see configs/README.md for the keys allowed here)"
        allowed = _keys_of(parent)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; {hint}allowed here: {', '.join(allowed)}"
    if kind == "missing":
        parent = _model_at(root, loc[:-1])
        field = parent.model_fields.get(str(loc[-1])) if parent is not None else None
        if field is None and parent is not None:
            field = next((f for f in parent.model_fields.values() if f.alias == loc[-1]), None)
        what = f" ({field.description})" if field is not None and field.description else ""
        if len(loc) >= 3 and loc[0] == "tables" and loc[2] in TABLE_KINDS:
            return f"missing required key{what} for a {loc[2]} table"
        return f"missing required key{what}"
    if kind == "table_kind":
        if not isinstance(err.get("input"), dict):
            return "expected a table: a mapping with name, kind, input, schema, ..."
        got = err["input"].get("kind")
        return f"kind must be one of director, child, match, regular (got {got!r})"
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if kind in _QUOTE_INPUT:
        value = err.get("input")
        secret = any("password" in str(part) for part in loc)
        if not secret and (not isinstance(value, (dict, list)) or len(repr(value)) < 60):
            msg += f" (got {value!r})"
    return msg


def problems_of(
    exc: ValidationError, root: type[BaseModel], origin: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """The problems in `exc` (validating a `root` model) as ``(key.path, message)``, without repeats.

    `origin` maps a key path to the command-line option that set it, named after the message.
    """
    problems: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        key = _key_path(tuple(err["loc"]))
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, MultiProblem):
            for p in ctx_err.problems:
                sub, _, msg = p.partition(": ")
                problems.append((f"{key}.{sub}" if key else sub, msg))
            continue
        msg = _message(root, err)
        for k, opt in (origin or {}).items():
            if key == k or key.startswith(k + "."):
                msg += f" (from {opt})"
        if (key, msg) not in seen:
            seen.add((key, msg))
            problems.append((key, msg))
    return problems

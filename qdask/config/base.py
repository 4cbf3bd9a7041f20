"""The base of every config model, and the validation context: where relative paths start, and
whether the files a config names must exist."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationInfo

__all__ = ["ConfigModel", "base_dir", "check_paths", "resolve_path"]


class ConfigModel(BaseModel):
    """Base of every config model: unknown keys are errors, fields are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def base_dir(info: ValidationInfo) -> Path:
    """The directory relative paths are resolved against (the config file's; the working directory)."""
    ctx = info.context or {}
    return Path(ctx.get("base_dir") or Path.cwd())


def resolve_path(value: str | Path, info: ValidationInfo) -> Path:
    """`value` with ``~`` expanded, made absolute against `base_dir`."""
    p = Path(os.path.expanduser(str(value)))
    return p if p.is_absolute() else (base_dir(info) / p).resolve()


def check_paths(info: ValidationInfo) -> bool:
    """Whether files the config names must exist now (off for configs of data still to be written)."""
    return bool((info.context or {}).get("check_paths", True))

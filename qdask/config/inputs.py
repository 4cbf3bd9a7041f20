"""Where a table's rows come from: a Butler query (`ButlerInput`) or files a glob matches (`FilesInput`)."""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from qdask.config.base import ConfigModel, check_paths, resolve_path
from qdask.config.globbing import glob_files
from qdask.config.names import check_identifier
from qdask.formats import FORMAT_BY_EXTENSION, format_from_name, strip_gzip

__all__ = ["ButlerInput", "FilesInput", "TableInput"]

_BIND_REF_RE = re.compile(r"(?<![A-Za-z0-9_:]):([A-Za-z_][A-Za-z0-9_]*)")
_STRING_LIT_RE = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _is_repo_path(repo: str) -> bool:
    """A Butler repo given as a path (resolved against the config's directory) rather than a URI or label."""
    return "://" not in repo and (repo.startswith(("/", ".", "~")) or "/" in repo or repo.endswith(".yaml"))


class ButlerInput(ConfigModel):
    """Rows from a Butler repository: one input unit per dataset of `dataset_type` matching `where`."""

    repo: str = Field(min_length=1, description="path, URI, or a label of the Butler repository index")
    collections: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    dataset_type: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")
    where: str = ""
    bind: dict[str, Any] = Field(default_factory=dict)
    instrument: str | None = None
    skymap: str | None = None

    @field_validator("collections", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("repo")
    @classmethod
    def _resolve_repo(cls, v: str, info: ValidationInfo) -> str:
        return str(resolve_path(v, info)) if _is_repo_path(v) else v

    @field_validator("bind")
    @classmethod
    def _bind_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            check_identifier(key, "bind name")
        return v

    @model_validator(mode="after")
    def _where_matches_bind(self) -> ButlerInput:
        bare = _STRING_LIT_RE.sub("''", self.where)
        missing = sorted({m for m in _BIND_REF_RE.findall(bare) if m not in self.bind})
        if missing:
            raise ValueError(f"where uses {', '.join(':' + m for m in missing)} but bind has no such key")
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", bare))
        if "tract" in words and self.skymap is None and "skymap" not in words:
            raise ValueError(
                "where constrains 'tract' but no skymap is given: set skymap (or constrain skymap in where); "
                "the Butler needs it to interpret tract numbers"
            )
        return self


#: The defaults of the text options, per text format.
_TEXT_DEFAULTS: dict[str, dict[str, Any]] = {
    "tsv": {"delimiter": "\t", "header": False, "null_marker": "\\N", "escape": "\\", "quote": None},
    "csv": {"delimiter": ",", "header": True, "null_marker": "", "escape": None, "quote": '"'},
}
_TEXT_OPTIONS = tuple(_TEXT_DEFAULTS["tsv"])


class FilesInput(ConfigModel):
    """Rows from files matched by a glob (relative to the config file's directory)."""

    glob: str = Field(min_length=1)
    format: Literal["parquet", "csv", "tsv"] | None = None
    compression: Literal["auto", "gzip", "none"] = "auto"
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    header: bool | None = None
    null_marker: str | None = None
    escape: str | None = Field(default=None, min_length=1, max_length=1)
    quote: str | None = Field(default=None, min_length=1, max_length=1)

    @field_validator("glob")
    @classmethod
    def _resolve_glob(cls, v: str, info: ValidationInfo) -> str:
        resolved = str(resolve_path(v, info)) if not os.path.isabs(os.path.expanduser(v)) else v
        if check_paths(info) and not glob_files(resolved):
            raise ValueError(f"no file matches {resolved!r}")
        return resolved

    @model_validator(mode="after")
    def _dialect(self) -> FilesInput:
        fmt = self.format or format_from_name(self.glob)
        if fmt is None:
            raise ValueError(
                f"cannot infer the file format from {self.glob!r} (known extensions: "
                f"{', '.join(FORMAT_BY_EXTENSION)}, each optionally .gz): set format to parquet, csv or tsv"
            )
        object.__setattr__(self, "format", fmt)
        if self.compression == "auto":
            object.__setattr__(self, "compression", "gzip" if strip_gzip(self.glob)[1] else "none")
        if fmt == "parquet":
            text_opts = [k for k in _TEXT_OPTIONS if getattr(self, k) is not None]
            if text_opts:
                raise ValueError(f"{', '.join(text_opts)} only apply to csv/tsv files, not parquet")
            if self.compression == "gzip":
                raise ValueError(
                    "Parquet compresses internally: compression must be auto or none for parquet"
                )
            return self
        for key, default in _TEXT_DEFAULTS[fmt].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, default)
        return self


class TableInput(ConfigModel):
    """Where a table's rows come from: exactly one of `butler` or `files`."""

    butler: ButlerInput | None = None
    files: FilesInput | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TableInput:
        given = [k for k in ("butler", "files") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of butler or files (got {', '.join(given) or 'neither'})")
        return self

"""Where a table's rows come from: a Butler query (`ButlerInput`) or files a glob matches (`FilesInput`)."""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from qdask.config.base import ConfigModel, check_paths, resolve_path
from qdask.config.globbing import glob_files
from qdask.config.names import check_identifier
from qdask.formats import FORMAT_BY_EXTENSION, format_from_name, strip_compression
from qdask.text_dialect import FORMAT_PRESETS, TextDialect

__all__ = ["ButlerInput", "DialectOptions", "FilesInput", "TableInput"]

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


class DialectOptions(ConfigModel):
    """A text file's dialect in ``LOAD DATA``'s terms: a preset and the options that change it.

    Characters are written as inside the quotes of a ``LOAD DATA`` statement (``'\\t'`` is a tab); see
    `qdask.text_dialect` for what each option means. After validation every option is filled in.
    """

    preset: Literal["mysql", "tsv", "csv"] | None = None
    fields_terminated_by: str | None = None
    fields_enclosed_by: str | None = None
    fields_optionally_enclosed: bool | None = None
    fields_escaped_by: str | None = None
    lines_terminated_by: str | None = None
    lines_starting_by: str | None = None
    ignore_lines: int | None = None
    header: bool | None = None
    null: list[str] | None = None
    charset: str | None = None


#: The text keys of earlier configs, and how each is written now.
_OLD_TEXT_KEYS = {
    "delimiter": "fields_terminated_by",
    "quote": "fields_enclosed_by",
    "escape": "fields_escaped_by",
    "header": "header",
    "encoding": "charset",
    "null_marker": "null",
}


def _old_key_message(key: str, value: Any) -> str:
    if key == "null_marker" and value == "\\N":
        how = "drop it: \\N is NULL whenever dialect.fields_escaped_by is set (the default)"
    elif key == "null_marker":
        how = f"write dialect: {{null: [{value!r}]}}"
    else:
        how = f"write dialect: {{{_OLD_TEXT_KEYS[key]}: {value!r}}}"
    return (
        f"{key} is no longer a files key: the text dialect is written in LOAD DATA's terms under "
        f"dialect: ({how})"
    )


class FilesInput(ConfigModel):
    """Rows from files matched by a glob (relative to the config file's directory)."""

    glob: str = Field(min_length=1)
    format: Literal["parquet", "csv", "tsv"] | None = None
    compression: Literal["auto", "gzip", "bz2", "none"] = "auto"
    dialect: DialectOptions | None = None
    _text_dialect: TextDialect | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _old_text_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = [k for k in _OLD_TEXT_KEYS if k in data]
            if old:
                raise ValueError("; ".join(_old_key_message(k, data[k]) for k in old))
        return data

    @field_validator("dialect", mode="before")
    @classmethod
    def _preset_name(cls, v: Any) -> Any:
        return {"preset": v} if isinstance(v, str) else v

    @field_validator("glob")
    @classmethod
    def _resolve_glob(cls, v: str, info: ValidationInfo) -> str:
        resolved = str(resolve_path(v, info)) if not os.path.isabs(os.path.expanduser(v)) else v
        if check_paths(info) and not glob_files(resolved):
            raise ValueError(f"no file matches {resolved!r}")
        return resolved

    @model_validator(mode="after")
    def _format_and_dialect(self) -> FilesInput:
        fmt = self.format or format_from_name(self.glob)
        if fmt is None:
            raise ValueError(
                f"cannot infer the file format from {self.glob!r} (known extensions: "
                f"{', '.join(FORMAT_BY_EXTENSION)}, each optionally .gz, .gzip or .bz2): set format to "
                "parquet, csv or tsv"
            )
        object.__setattr__(self, "format", fmt)
        if self.compression == "auto":
            object.__setattr__(self, "compression", strip_compression(self.glob)[1] or "none")
        if fmt == "parquet":
            if self.dialect is not None:
                raise ValueError("dialect only applies to csv/tsv files, not parquet")
            if self.compression != "none":
                raise ValueError(
                    "Parquet compresses internally: compression must be auto or none for parquet"
                )
            return self
        given = self.dialect.model_dump(exclude_none=True) if self.dialect is not None else {}
        try:
            dialect = TextDialect.resolve(given, fmt)  # the one check: what it accepts, the reader reads
        except ValueError as exc:
            raise ValueError(f"dialect: {exc}") from None
        preset = given.get("preset") or FORMAT_PRESETS[fmt]
        object.__setattr__(self, "dialect", DialectOptions(preset=preset, **dialect.options()))
        self._text_dialect = dialect
        return self

    @property
    def text_dialect(self) -> TextDialect | None:
        """The dialect the reader reads these files in, as validated (None for Parquet)."""
        return self._text_dialect


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

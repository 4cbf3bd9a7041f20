"""The ingest configuration: one YAML file, validated into typed pydantic models with located errors.

`load_config(path)` is the only way in. It reads the YAML, resolves relative paths against the file's
directory, checks every rule it can check without touching Qserv or the data (names Qserv accepts and
that cannot inject SQL, a partitioning layout Qserv accepts, tables that reference declared directors,
column selections that make sense, Kubernetes names and quantities), and raises `ConfigError` listing
every problem as ``file:line: key.path: what was expected``. Unknown keys are errors everywhere.

Secrets never live in the file: Qserv's auth keys are read from environment variables named in the
config (lazily, on first use) and held as `SecretStr`, so they never show in `repr`, `str`, dumps or
`qdask plan --check` output.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import functools
import glob as globlib
import json
import math
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SecretStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from qdask.errors import QdaskUsageError

__all__ = [
    "ButlerInput",
    "ChildTable",
    "ClusterConfig",
    "ColumnSelection",
    "ConfigError",
    "CzarDSN",
    "DatabaseConfig",
    "DirectorTable",
    "FelisSchema",
    "FilesInput",
    "IngestConfig",
    "KubernetesConfig",
    "Partitioning",
    "Policies",
    "QservConfig",
    "RegularTable",
    "SchemaSource",
    "StagingConfig",
    "TableInput",
    "TableConfig",
    "check_identifier",
    "config_from_dict",
    "load_config",
    "match_files",
    "parse_bytes",
]

# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------


class ConfigError(QdaskUsageError, ValueError):
    """An invalid configuration: every problem with the file, the key path and what was expected.

    `problems` is a list of ``(key_path, message)``; `str()` gives one line per problem, prefixed with
    the file (and line, when known), so the CLI can print it as is.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | None,
        problems: list[tuple[str, str]],
        lines: Mapping[str, int] | None = None,
    ) -> None:
        self.source = str(source) if source is not None else "<config>"
        self.problems = problems
        self.lines = dict(lines or {})
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.source}: invalid configuration ({len(self.problems)} problem"
        head += "s)" if len(self.problems) != 1 else ")"
        out = [head]
        for key, message in self.problems:
            line = self.lines.get(key)
            where = f"{self.source}:{line}" if line else self.source
            out.append(f"  {where}: {key}: {message}" if key else f"  {where}: {message}")
        return "\n".join(out)


# ---------------------------------------------------------------------------------------------------
# Small validators shared by the models
# ---------------------------------------------------------------------------------------------------

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_IDENTIFIER = 64  # MySQL/MariaDB identifier limit
MAX_DB_PLUS_TABLE = 56  # qservMeta.<db>__<table>__rows must fit in 64 characters
MAX_DB_NAME = 52  # qservCssData.<db>_EmptyChunks must fit in 64 characters
MAX_PARTITIONED_TABLE = 42  # <table>FullOverlap_1234567890 must fit in 64 characters
RESERVED_COLUMNS = ("qserv_trans_id",)


def check_identifier(value: str, what: str = "name") -> str:
    """Accept `value` only if Qserv accepts it as a name and it cannot inject SQL.

    Qserv (and qdask) build SQL and file names from database, table and column names, so only plain
    identifiers are allowed: ASCII letters, digits and underscores, not starting with a digit, at most
    64 characters.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a {what} (a string), got {type(value).__name__}")
    if not _IDENT_RE.match(value) or len(value) > MAX_IDENTIFIER:
        raise ValueError(
            f"{value!r} is not a valid {what}: use only ASCII letters, digits and '_', not starting with a "
            f"digit, at most {MAX_IDENTIFIER} characters"
        )
    return value


def _identifier(value: str) -> str:
    return check_identifier(value, "name")


def _column(value: str) -> str:
    check_identifier(value, "column name")
    if value.lower() in RESERVED_COLUMNS:
        raise ValueError(f"{value!r} is reserved by Qserv and cannot be a column name")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
ColumnName = Annotated[str, AfterValidator(_column)]

_K8S_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_K8S_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _k8s_name(value: str) -> str:
    if not _K8S_LABEL_RE.match(value) or len(value) > 63:
        raise ValueError(
            f"{value!r} is not a valid Kubernetes name (RFC 1123 label): lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


def _k8s_subdomain(value: str) -> str:
    if not _K8S_SUBDOMAIN_RE.match(value) or len(value) > 253:
        raise ValueError(
            f"{value!r} is not a valid Kubernetes name (RFC 1123 subdomain): lower-case letters, digits, '-' "
            "and '.', at most 253 characters"
        )
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid environment variable name (letters, digits, '_')")
    return value


K8sName = Annotated[str, AfterValidator(_k8s_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]

_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "p": 10**15,
    "pb": 10**15,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
    "pi": 2**50,
    "pib": 2**50,
}
_BYTES_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*\Z")


def parse_bytes(value: int | str) -> int:
    """Bytes from ``4GiB``/``4Gi`` (2**30 based), ``4GB``/``4G`` (10**9 based) or a plain integer."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as '4GiB', got a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"expected a positive size, got {value}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as '4GiB', got {type(value).__name__}")
    m = _BYTES_RE.match(value)
    unit = m.group(2).lower() if m else None
    if not m or unit not in _BYTE_UNITS:
        raise ValueError(f"{value!r} is not a size: expected e.g. '4GiB', '512MiB', '4Gi', '8GB' or bytes")
    n = float(m.group(1)) * _BYTE_UNITS[unit]
    if n < 1 or not math.isfinite(n):
        raise ValueError(f"expected a positive size, got {value!r}")
    return int(n)


Bytes = Annotated[int, Field(gt=0)]


def _bytes_before(value: Any) -> Any:
    return parse_bytes(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else value


_K8S_MEM_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?\Z")
_K8S_CPU_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m)?\Z")


def k8s_memory(value: int | str) -> str:
    """A Kubernetes memory quantity (``8Gi``) from a size; ``8GiB`` style is converted, not rejected."""
    if isinstance(value, str):
        s = value.strip()
        if _K8S_MEM_RE.match(s):
            parse_bytes(s)  # rejects zero
            return s
        m = re.match(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGTP])iB\Z", s)
        if m:
            return f"{m.group(1)}{m.group(2)}i"
        m = re.match(r"([0-9]+(?:\.[0-9]+)?)\s*([kKMGTP])B\Z", s)
        if m:
            return f"{m.group(1)}{m.group(2).replace('K', 'k')}"
    return str(parse_bytes(value))


def k8s_cpu(value: int | float | str) -> str:
    """A Kubernetes CPU quantity (``2``, ``1.5``, ``500m``), positive."""
    s = str(value).strip()
    m = _K8S_CPU_RE.match(s)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a CPU quantity: expected e.g. 2, 1.5 or 500m")
    return s


def cpu_cores(quantity: str) -> float:
    """Cores in a Kubernetes CPU quantity (``500m`` → 0.5)."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


MemoryQuantity = Annotated[str, Field(description="Kubernetes memory quantity"), AfterValidator(k8s_memory)]
CpuQuantity = Annotated[str | int | float, AfterValidator(k8s_cpu)]


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    return Path(ctx.get("base_dir") or Path.cwd())


def _resolve_path(value: str | Path, info: ValidationInfo) -> Path:
    p = Path(os.path.expanduser(str(value)))
    return p if p.is_absolute() else (_base_dir(info) / p).resolve()


def _check_paths(info: ValidationInfo) -> bool:
    return bool((info.context or {}).get("check_paths", True))


class _Model(BaseModel):
    """Base of every config model: unknown keys are errors, fields are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# ---------------------------------------------------------------------------------------------------
# database
# ---------------------------------------------------------------------------------------------------

_CHARSET_RE = re.compile(r"[a-z0-9]+\Z")
_COLLATION_RE = re.compile(r"[a-z0-9]+_[a-z0-9_]+\Z")


def _check_charset(charset: str | None, collation: str | None, where: str) -> None:
    if charset is not None and not _CHARSET_RE.match(charset):
        raise ValueError(
            f"{where}charset_name {charset!r} is not a MySQL character set name (e.g. latin1, utf8mb4)"
        )
    if collation is not None:
        if not _COLLATION_RE.match(collation):
            raise ValueError(f"{where}collation_name {collation!r} is not a MySQL collation name")
        if charset is not None and not collation.startswith(charset + "_"):
            raise ValueError(
                f"{where}collation_name {collation!r} does not belong to character set {charset!r} "
                f"(a collation of {charset} starts with '{charset}_')"
            )


class Partitioning(_Model):
    """Qserv's sky layout: stripes, sub-stripes per stripe, and overlap radius in degrees."""

    num_stripes: int = Field(gt=0, le=32767, description="stripes; <= 32767 keeps chunk ids in int32")
    num_sub_stripes: int = Field(gt=0, le=32767, description="sub-stripes per stripe")
    overlap: float = Field(ge=0, le=10)

    @property
    def sub_stripe_height(self) -> float:
        """Height of one sub-stripe in degrees; the overlap may not exceed it (Qserv's rule)."""
        return 180.0 / (self.num_stripes * self.num_sub_stripes)

    @model_validator(mode="after")
    def _overlap_fits(self) -> Partitioning:
        check_overlap(self.overlap, self)
        return self


def check_overlap(overlap: float, layout: Partitioning) -> None:
    """Qserv copies overlap rows only into neighbouring sub-chunks, so overlap ≤ the sub-stripe height."""
    if not math.isfinite(overlap) or overlap < 0 or overlap > 10:
        raise ValueError(f"overlap must be between 0 and 10 degrees, got {overlap}")
    h = layout.sub_stripe_height
    if overlap > h:
        raise ValueError(
            f"overlap {overlap} exceeds the sub-stripe height 180/({layout.num_stripes}*"
            f"{layout.num_sub_stripes}) = {h:.6g} degrees; Qserv requires overlap <= sub-stripe height"
        )


class DatabaseConfig(_Model):
    """The target Qserv database: its name, layout, director-index mode and default character set."""

    name: Identifier
    partitioning: Partitioning
    auto_build_director_index: bool = True
    charset_name: str = "latin1"
    collation_name: str = "latin1_general_ci"

    @field_validator("name")
    @classmethod
    def _name_length(cls, v: str) -> str:
        if len(v) > MAX_DB_NAME:
            raise ValueError(
                f"database name {v!r} is {len(v)} characters; at most {MAX_DB_NAME} (Qserv's "
                f"'<db>_EmptyChunks' table name must fit in 64)"
            )
        return v

    @model_validator(mode="after")
    def _charset(self) -> DatabaseConfig:
        _check_charset(self.charset_name, self.collation_name, "")
        return self


# ---------------------------------------------------------------------------------------------------
# tables: input
# ---------------------------------------------------------------------------------------------------

_BIND_REF_RE = re.compile(r"(?<![A-Za-z0-9_:]):([A-Za-z_][A-Za-z0-9_]*)")
_STRING_LIT_RE = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _is_repo_path(repo: str) -> bool:
    """A Butler repo given as a path (resolved against the config's directory) rather than a URI or label."""
    return "://" not in repo and (repo.startswith(("/", ".", "~")) or "/" in repo or repo.endswith(".yaml"))


class ButlerInput(_Model):
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
        return str(_resolve_path(v, info)) if _is_repo_path(v) else v

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


_FORMAT_BY_EXT = {
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
}


class FilesInput(_Model):
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
        resolved = str(_resolve_path(v, info)) if not os.path.isabs(os.path.expanduser(v)) else v
        if _check_paths(info) and not globlib.glob(resolved, recursive=True):
            raise ValueError(f"no file matches {resolved!r}")
        return resolved

    @model_validator(mode="after")
    def _dialect(self) -> FilesInput:
        name = self.glob[:-3] if self.glob.endswith(".gz") else self.glob
        inferred = _FORMAT_BY_EXT.get(Path(name).suffix.lower())
        fmt = self.format or inferred
        if fmt is None:
            raise ValueError(
                f"cannot infer the file format from {self.glob!r}: set format to parquet, csv or tsv"
            )
        object.__setattr__(self, "format", fmt)
        gz = self.glob.endswith(".gz")
        if self.compression == "auto":
            object.__setattr__(self, "compression", "gzip" if gz else "none")
        if fmt == "parquet":
            text_opts = [
                k
                for k in ("delimiter", "header", "null_marker", "escape", "quote")
                if getattr(self, k) is not None
            ]
            if text_opts:
                raise ValueError(f"{', '.join(text_opts)} only apply to csv/tsv files, not parquet")
            if self.compression == "gzip":
                raise ValueError(
                    "Parquet compresses internally: compression must be auto or none for parquet"
                )
            return self
        defaults = {
            "tsv": {"delimiter": "\t", "header": False, "null_marker": "\\N", "escape": "\\", "quote": None},
            "csv": {"delimiter": ",", "header": True, "null_marker": "", "escape": None, "quote": '"'},
        }[fmt]
        for key, default in defaults.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, default)
        return self


class TableInput(_Model):
    """Where a table's rows come from: exactly one of `butler` or `files`."""

    butler: ButlerInput | None = None
    files: FilesInput | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TableInput:
        given = [k for k in ("butler", "files") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of butler or files (got {', '.join(given) or 'neither'})")
        return self


# ---------------------------------------------------------------------------------------------------
# tables: schema, columns, policies
# ---------------------------------------------------------------------------------------------------


def sdm_schema_names() -> list[str]:
    """Names of the felis schemas shipped in lsst-sdm-schemas (e.g. ``dp02_dc2``)."""
    try:
        root = resources.files("lsst.sdm.schemas")
    except ModuleNotFoundError:
        return []
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _is_felis_path(schema: str) -> bool:
    return schema.endswith((".yaml", ".yml")) or "/" in schema or schema.startswith("~")


def resolve_felis_schema(schema: str, base_dir: Path | None = None) -> Path:
    """The felis YAML file for `schema`: a path (absolute, or relative to `base_dir`) or an SDM name."""
    if _is_felis_path(schema):
        p = Path(os.path.expanduser(schema))
        return p if p.is_absolute() else ((base_dir or Path.cwd()) / p).resolve()
    return Path(str(resources.files("lsst.sdm.schemas").joinpath(f"{schema}.yaml")))


def felis_table_names(path: Path) -> list[str]:
    """Top-level table names of a felis YAML file, by a light text scan (no full parse: DP0.2 is big)."""
    st = path.stat()
    return list(_felis_table_names(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=32)
def _felis_table_names(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    text = Path(path).read_text()
    return tuple(re.findall(r"^- name:\s*['\"]?([A-Za-z0-9_]+)['\"]?\s*$", text, flags=re.MULTILINE))


class FelisSchema(_Model):
    """Column types from a felis schema: a file path, or a schema of lsst-sdm-schemas such as dp02_dc2."""

    schema_: str = Field(alias="schema", min_length=1)
    table: Identifier | None = Field(default=None, description="table in the felis schema")

    @field_validator("schema_")
    @classmethod
    def _resolve(cls, v: str, info: ValidationInfo) -> str:
        return str(resolve_felis_schema(v, _base_dir(info))) if _is_felis_path(v) else v

    @model_validator(mode="after")
    def _exists(self, info: ValidationInfo) -> FelisSchema:
        if not _check_paths(info):
            return self
        path = self.path()
        if not path.is_file():
            names = sdm_schema_names()
            hint = difflib.get_close_matches(self.schema_, names, n=3)
            raise ValueError(
                f"felis schema {self.schema_!r} not found (no file {path}); known lsst-sdm-schemas names: "
                + (", ".join(hint) if hint else ", ".join(names))
            )
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


class SchemaSource(_Model):
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
        p = _resolve_path(v, info)
        if _check_paths(info):
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


class ColumnSelection(_Model):
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
        for key in ("include", "exclude"):
            cols = getattr(self, key)
            if cols is not None:
                dups = sorted({c for c in cols if cols.count(c) > 1})
                if dups:
                    raise ValueError(f"{key} lists {', '.join(dups)} more than once")
        if self.include is not None and not self.include:
            raise ValueError("include is empty: no column would be loaded")
        for src in self.rename:
            if self.include is not None and src not in self.include:
                raise ValueError(f"rename of {src!r}, which is not in include (rename only selected columns)")
            if self.exclude is not None and src in self.exclude:
                raise ValueError(f"rename of {src!r}, which is excluded")
        targets = list(self.rename.values())
        dups = sorted({t for t in targets if targets.count(t) > 1})
        if dups:
            raise ValueError(f"rename maps several columns to {', '.join(dups)}")
        if self.include is not None:
            finals = [self.final_name(c) for c in self.include]
            clash = sorted({f for f in finals if finals.count(f) > 1})
            if clash:
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


class Policies(_Model):
    """What to do with bad rows: quarantine them to a file the user can inspect, or stop the run.

    Either way they are counted and reported with examples; rows are never dropped silently.
    """

    invalid_positions: Policy = "quarantine"
    duplicate_ids: Policy = "stop"
    orphans: Policy = "quarantine"
    bad_values: Policy = "stop"


# ---------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------


class _TableBase(_Model):
    name: Identifier
    input: TableInput
    schema_: SchemaSource = Field(alias="schema")
    columns: ColumnSelection = Field(default_factory=ColumnSelection)
    policies: Policies = Field(default_factory=Policies)
    charset_name: str | None = None
    collation_name: str | None = None
    unique_primary_key: bool | None = None

    @model_validator(mode="after")
    def _table_checks(self, info: ValidationInfo) -> _TableBase:
        _check_charset(self.charset_name, self.collation_name, "")
        felis = self.schema_.felis
        if felis is not None and felis.table is None:
            object.__setattr__(felis, "table", self.name)  # the felis table defaults to the table's name
            path = felis.path()
            if _check_paths(info) and path.is_file() and self.name not in (names := felis_table_names(path)):
                raise _MultiProblem(
                    [
                        f"schema.felis.table: felis schema {felis.schema_!r} has no table {self.name!r} (the "
                        f"default, this table's name); set table to one of {', '.join(names)}"
                    ]
                )
        return self

    @property
    def is_partitioned(self) -> bool:
        """Partitioned into chunks (director and child) rather than fully replicated (regular)."""
        return self.kind != "regular"  # type: ignore[attr-defined]

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
        if "orphans" in self.policies.model_fields_set and self.kind != "child":  # type: ignore[attr-defined]
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

    @model_validator(mode="after")
    def _checks(self) -> DirectorTable:
        self._check_keys_selected()
        return self


class ChildTable(_TableBase):
    """A child (dependent) table: rows placed in the chunk of their director row, by position columns."""

    kind: Literal["child"]
    director: Identifier = Field(description="name of a director table declared in this config")
    director_key: ColumnName = Field(description="this table's column holding the director's id")
    ra: ColumnName = Field(description="column with the right ascension of the director row, e.g. raObject")
    dec: ColumnName = Field(description="column with the declination of the director row, e.g. declObject")
    id: ColumnName | None = Field(default=None, description="this table's own unique id, if any")

    @model_validator(mode="after")
    def _checks(self) -> ChildTable:
        self._check_keys_selected()
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


TABLE_KINDS = ("director", "child", "regular")


_TABLE_MODELS: dict[str, type[BaseModel]] = {
    "director": DirectorTable,
    "child": ChildTable,
    "regular": RegularTable,
}


TableConfig = DirectorTable | ChildTable | RegularTable


def _table_kind(v: Any) -> str | None:
    kind = v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)
    return kind if kind in TABLE_KINDS else None


Table = Annotated[
    Annotated[DirectorTable, Tag("director")]
    | Annotated[ChildTable, Tag("child")]
    | Annotated[RegularTable, Tag("regular")],
    Discriminator(
        _table_kind,
        custom_error_type="table_kind",
        custom_error_message="kind must be one of director, child, regular",
    ),
]


# ---------------------------------------------------------------------------------------------------
# qserv
# ---------------------------------------------------------------------------------------------------


class CzarDSN(_Model):
    """Where the czar answers SQL (MySQL protocol), parsed from ``mysql://user[:pass]@host:port[/db]``."""

    user: str = Field(min_length=1)
    password: SecretStr | None = None
    host: str = Field(min_length=1)
    port: int = Field(default=4040, gt=0, lt=65536)
    database: Identifier | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        u = urlsplit(v)
        if u.scheme not in ("mysql", "mysql+pymysql", "mariadb"):
            raise ValueError(
                f"expected mysql://user[:password]@host:port[/database], got scheme {u.scheme!r}"
            )
        if not u.username or not u.hostname:
            raise ValueError(
                "expected mysql://user[:password]@host:port[/database]: user and host are required"
            )
        try:
            port = u.port
        except ValueError:
            raise ValueError("the port of the czar DSN is not a number in 1..65535") from None
        if u.query or u.fragment:
            raise ValueError("the czar DSN takes no query string or fragment")
        db = u.path.lstrip("/") or None
        out: dict[str, Any] = {"user": unquote(u.username), "host": u.hostname, "database": db}
        if u.password is not None:
            out["password"] = unquote(u.password)
        if port is not None:
            out["port"] = port
        return out

    def url(self, reveal: bool = False) -> str:
        """The DSN as a URL; the password is masked unless `reveal`."""
        pw = ""
        if self.password is not None:
            pw = ":" + (self.password.get_secret_value() if reveal else "***")
        return f"mysql://{self.user}{pw}@{self.host}:{self.port}/{self.database or ''}"

    def __str__(self) -> str:
        return self.url()


def _mask_url(v: str) -> str:
    """`v` with any user:password part replaced, so a URL can be quoted in an error."""
    return re.sub(r"(?<=//)[^/@]*@", "***@", v)


def _check_controller(v: str) -> str:
    u = urlsplit(v)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(
            f"expected an http:// or https:// URL of the replication controller, got {_mask_url(v)!r}"
        )
    try:
        _ = u.port
    except ValueError:
        raise ValueError(f"the port in {_mask_url(v)!r} is not a number in 1..65535") from None
    if u.username or u.password:
        raise ValueError("do not put credentials in the controller URL; the auth key comes from auth_key_env")
    return v.rstrip("/")


class Concurrency(_Model):
    """Bounds on simultaneous uploads to Qserv, in total and per Qserv worker."""

    total: int = Field(default=16, gt=0, le=1024)
    per_worker: int = Field(default=4, gt=0, le=256)

    @model_validator(mode="after")
    def _order(self) -> Concurrency:
        if self.per_worker > self.total:
            raise ValueError(f"per_worker ({self.per_worker}) cannot exceed total ({self.total})")
        return self


class Timeouts(_Model):
    """HTTP timeouts in seconds: connecting, and a whole request (an upload may be slow)."""

    connect: float = Field(default=10.0, gt=0)
    request: float = Field(default=600.0, gt=0)


class Retries(_Model):
    """Retries of transient failures: attempts (≥1, 1 = no retry), exponential backoff in seconds."""

    attempts: int = Field(default=5, ge=1, le=100)
    backoff: float = Field(default=1.0, ge=0)
    backoff_max: float = Field(default=60.0, ge=0)


MIN_API_VERSION = 54  # POST /ingest/chunks (bulk chunk allocation) needs 54
MAX_TRANSACTIONS = 8192  # MariaDB partitions per table; one partition per transaction


class QservConfig(_Model):
    """The Qserv instance: endpoints, where the auth keys come from, and limits on how qdask talks to it."""

    controller: Annotated[str, AfterValidator(_check_controller)]
    czar: CzarDSN
    czar_password_env: EnvName | None = None
    auth_key_env: EnvName = "QSERV_AUTH_KEY"
    admin_auth_key_env: EnvName = "QSERV_ADMIN_AUTH_KEY"
    api_version: int = Field(default=55, ge=MIN_API_VERSION)
    upload: Literal["csv", "file"] = "csv"
    max_chunks_per_transaction: int = Field(default=100, gt=0)
    max_bytes_per_transaction: Bytes = 10 * 2**30
    max_transactions: int = Field(default=1000, gt=0, le=MAX_TRANSACTIONS)
    concurrency: Concurrency = Field(default_factory=Concurrency)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retries: Retries = Field(default_factory=Retries)

    _auth_key: SecretStr | None = PrivateAttr(default=None)
    _admin_auth_key: SecretStr | None = PrivateAttr(default=None)

    @field_validator("max_bytes_per_transaction", mode="before")
    @classmethod
    def _bytes(cls, v: Any) -> Any:
        return _bytes_before(v)

    @property
    def auth_key(self) -> SecretStr:
        """Qserv's auth key, read from $auth_key_env on first use ('' when unset: Qserv's default key)."""
        if self._auth_key is None:
            self._auth_key = SecretStr(os.environ.get(self.auth_key_env, ""))
        return self._auth_key

    @property
    def admin_auth_key(self) -> SecretStr:
        """Qserv's admin auth key, read from $admin_auth_key_env on first use ('' when unset)."""
        if self._admin_auth_key is None:
            self._admin_auth_key = SecretStr(os.environ.get(self.admin_auth_key_env, ""))
        return self._admin_auth_key

    @property
    def czar_password(self) -> SecretStr | None:
        """The czar password: from $czar_password_env when named there, else from the DSN."""
        if self.czar_password_env:
            value = os.environ.get(self.czar_password_env)
            if value is not None:
                return SecretStr(value)
        return self.czar.password

    @field_serializer("czar")
    def _czar_masked(self, czar: CzarDSN) -> str:
        return czar.url()


# ---------------------------------------------------------------------------------------------------
# staging
# ---------------------------------------------------------------------------------------------------


class StagingConfig(_Model):
    """Where shards, contribution files and the ledger live (relative paths: the config's directory)."""

    directory: Path = Path("staging")
    # Shards are intermediate and local: snappy writes ~20% faster than zstd-3 for ~4% more bytes on
    # DP0.2-shaped 991-column data (measured, see benchmarks/results).
    shard_compression: Literal["zstd", "snappy", "none"] = "snappy"
    shard_compression_level: int | None = None
    ledger: Path | None = None

    @field_validator("directory")
    @classmethod
    def _resolve_dir(cls, v: Path, info: ValidationInfo) -> Path:
        return _resolve_path(v, info)

    @field_validator("ledger")
    @classmethod
    def _resolve_ledger(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return None if v is None else _resolve_path(v, info)

    @model_validator(mode="after")
    def _defaults(self) -> StagingConfig:
        if self.shard_compression == "zstd":
            level = 3 if self.shard_compression_level is None else self.shard_compression_level
            if not 1 <= level <= 22:
                raise ValueError(f"shard_compression_level for zstd must be 1..22, got {level}")
            object.__setattr__(self, "shard_compression_level", level)
        elif self.shard_compression_level is not None:
            raise ValueError(f"shard_compression_level applies only to zstd, not {self.shard_compression}")
        if self.ledger is None:
            object.__setattr__(self, "ledger", self.directory / "ledger.sqlite")
        return self


# ---------------------------------------------------------------------------------------------------
# cluster
# ---------------------------------------------------------------------------------------------------


class Adaptive(_Model):
    """Adaptive scaling bounds for Kubernetes workers."""

    minimum: int = Field(ge=0)
    maximum: int = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> Adaptive:
        if self.minimum > self.maximum:
            raise ValueError(f"minimum ({self.minimum}) exceeds maximum ({self.maximum})")
        return self


class PodResources(_Model):
    """CPU and memory of a pod; qdask sets requests equal to limits."""

    cpu: CpuQuantity
    memory: MemoryQuantity

    @field_validator("memory", mode="before")
    @classmethod
    def _mem_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @property
    def memory_bytes(self) -> int:
        """Memory limit in bytes."""
        return parse_bytes(self.memory)

    @property
    def cores(self) -> float:
        """CPU limit in cores."""
        return cpu_cores(str(self.cpu))


class Toleration(_Model):
    """A Kubernetes pod toleration, spelled as in a pod spec."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds", ge=0)

    @model_validator(mode="after")
    def _rules(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("a toleration with operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without key must use operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies only to effect NoExecute")
        return self


class SecretRef(_Model):
    """A key of a Kubernetes secret."""

    name: Annotated[str, AfterValidator(_k8s_subdomain)]
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$")


class EnvVar(_Model):
    """An environment variable of the Dask pods: a literal value, or a key of a Kubernetes secret."""

    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str | None = None
    secret: SecretRef | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvVar:
        if (self.value is None) == (self.secret is None):
            raise ValueError("give exactly one of value or secret")
        return self


# dask-kubernetes names worker deployments "<cluster>-default-worker-<10 hex>", which must stay <= 63.
MAX_K8S_CLUSTER_NAME = 63 - len("-default-worker-") - 10


class KubernetesConfig(_Model):
    """A Dask cluster on Kubernetes (dask-kubernetes operator), built by qdask with requests = limits."""

    image: str = Field(pattern=r"^[^\s]+$")
    namespace: K8sName = "default"
    name: K8sName = "qdask"
    workers: int | None = Field(default=None, gt=0)
    adaptive: Adaptive | None = None
    worker: PodResources = Field(default_factory=lambda: PodResources(cpu="2", memory="8Gi"))
    scheduler: PodResources = Field(default_factory=lambda: PodResources(cpu="1", memory="2Gi"))
    service_account: Annotated[str, AfterValidator(_k8s_subdomain)] | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    spill_volume_size: MemoryQuantity = "20Gi"

    @field_validator("name")
    @classmethod
    def _short(cls, v: str) -> str:
        if len(v) > MAX_K8S_CLUSTER_NAME:
            raise ValueError(
                f"cluster name {v!r} is {len(v)} characters; at most {MAX_K8S_CLUSTER_NAME}, because "
                "worker deployments are named '<name>-default-worker-<10 hex>' (at most 63)"
            )
        return v

    @field_validator("node_selector")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            prefix, _, name = key.rpartition("/")
            if prefix:
                _k8s_subdomain(prefix)
            if not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", name) or len(name) > 63:
                raise ValueError(f"node_selector key {key!r} is not a valid Kubernetes label key")
            if len(value) > 63 or (
                value and not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", value)
            ):
                raise ValueError(f"node_selector value {value!r} is not a valid Kubernetes label value")
        return v

    @model_validator(mode="after")
    def _scaling(self) -> KubernetesConfig:
        if self.workers is not None and self.adaptive is not None:
            raise ValueError("give workers (a fixed count) or adaptive (minimum/maximum), not both")
        names = [e.name for e in self.env]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"env sets {', '.join(dups)} more than once")
        return self


_SCHEDULER_RE = re.compile(r"(tcp|tls|ws|wss|inproc|ucx)://[^\s/]+\Z")


class ClusterConfig(_Model):
    """Where the Dask work runs: a local cluster, Kubernetes, or an existing scheduler."""

    kind: Literal["local", "kubernetes", "scheduler"] = "local"
    workers: int = Field(default=2, gt=0)
    threads_per_worker: int = Field(default=1, gt=0)
    memory_per_worker: Bytes = 4 * 2**30
    scheduler_address: str | None = None
    kubernetes: KubernetesConfig | None = None

    @field_validator("memory_per_worker", mode="before")
    @classmethod
    def _bytes(cls, v: Any) -> Any:
        return _bytes_before(v)

    @field_validator("scheduler_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not _SCHEDULER_RE.match(v):
            raise ValueError(f"expected a Dask scheduler address such as tcp://host:8786, got {v!r}")
        return v

    @model_validator(mode="after")
    def _by_kind(self) -> ClusterConfig:
        if self.kind == "scheduler" and self.scheduler_address is None:
            raise ValueError("kind scheduler needs scheduler_address (e.g. tcp://host:8786)")
        if self.kind == "kubernetes":
            if self.kubernetes is None:
                raise ValueError("kind kubernetes needs a kubernetes section (image, namespace, worker, ...)")
            limit = self.kubernetes.worker.memory_bytes
            if "memory_per_worker" in self.model_fields_set and self.memory_per_worker > limit:
                raise ValueError(
                    f"memory_per_worker ({self.memory_per_worker} bytes) exceeds the worker pod's memory "
                    f"limit {self.kubernetes.worker.memory} ({limit} bytes)"
                )
        return self

    @property
    def worker_count(self) -> int:
        """Workers to start (for adaptive Kubernetes clusters: the adaptive maximum)."""
        if self.kind == "kubernetes" and self.kubernetes is not None:
            if self.kubernetes.adaptive is not None:
                return self.kubernetes.adaptive.maximum
            if self.kubernetes.workers is not None:
                return self.kubernetes.workers
        return self.workers

    @property
    def worker_memory_limit(self) -> int:
        """Dask's memory limit per worker in bytes (on Kubernetes: 0.9 x the pod limit unless set)."""
        if (
            self.kind == "kubernetes"
            and self.kubernetes is not None
            and "memory_per_worker" not in self.model_fields_set
        ):
            return int(0.9 * self.kubernetes.worker.memory_bytes)
        return self.memory_per_worker


# ---------------------------------------------------------------------------------------------------
# the whole file
# ---------------------------------------------------------------------------------------------------


class IngestConfig(_Model):
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
        by_name: dict[str, Any] = {}
        for i, t in enumerate(self.tables):
            if t.name in by_name:
                problems.append(f"tables[{i}].name: table {t.name!r} is declared twice")
            by_name.setdefault(t.name, t)
            db = self.database.name
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
            elif collation is not None and not collation.startswith(charset + "_"):
                problems.append(
                    f"tables[{i}].collation_name: {collation!r} does not belong to character set {charset!r}"
                )
            if isinstance(t, DirectorTable) and t.overlap is not None:
                try:
                    check_overlap(t.overlap, self.database.partitioning)
                except ValueError as e:
                    problems.append(f"tables[{i}].overlap: {e}")
        for i, t in enumerate(self.tables):
            if isinstance(t, ChildTable):
                d = by_name.get(t.director)
                if d is None:
                    declared = [x.name for x in self.tables if isinstance(x, DirectorTable)]
                    problems.append(
                        f"tables[{i}].director: {t.director!r} is not a table of this config "
                        f"(declared director tables: {', '.join(declared) or 'none'})"
                    )
                elif not isinstance(d, DirectorTable):
                    problems.append(
                        f"tables[{i}].director: {t.director!r} is a {d.kind} table, not a director table"
                    )
        if problems:
            raise _MultiProblem(problems)
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

    def table(self, name: str) -> DirectorTable | ChildTable | RegularTable:
        """The table called `name` (KeyError naming the known tables otherwise)."""
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"no table {name!r} in the config; tables: {', '.join(t.name for t in self.tables)}")

    @property
    def directors(self) -> list[DirectorTable]:
        """The director tables, in file order."""
        return [t for t in self.tables if isinstance(t, DirectorTable)]

    def table_charset(self, table: DirectorTable | ChildTable | RegularTable) -> tuple[str, str]:
        """(charset_name, collation_name) that `table` is declared to Qserv with."""
        charset = table.charset_name or self.database.charset_name
        collation = table.collation_name or self.database.collation_name
        return charset, collation

    def table_overlap(self, table: DirectorTable | ChildTable | RegularTable) -> float:
        """Overlap radius for `table`: its override, the database's for directors, 0 otherwise."""
        if isinstance(table, DirectorTable):
            return self.database.partitioning.overlap if table.overlap is None else table.overlap
        return 0.0

    def load_order(self) -> list[DirectorTable | ChildTable | RegularTable]:
        """Tables in the order Qserv must register them: directors, then children, then regular."""
        rank = {"director": 0, "child": 1, "regular": 2}
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
        return _validate(
            raw, self._source, self.base_dir, text=None, origin=origin, check_paths=self._check_paths
        )


def _drop_none(value: Any) -> Any:
    """`value` without the keys whose value is None (unset options), recursively, for display."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def format_bytes(n: int) -> str | int:
    """``n`` as an exact ``<k>GiB``/``MiB``/``KiB`` string when it is a whole multiple, else the integer."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return n


class _MultiProblem(ValueError):
    """Several located problems found by one cross-field check (key paths are already in the text)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# ---------------------------------------------------------------------------------------------------
# loading and error formatting
# ---------------------------------------------------------------------------------------------------


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # discriminated-union tags and pydantic's function markers are not keys of the file
        if i >= 2 and loc[0] == "tables" and isinstance(loc[1], int) and i == 2 and part in TABLE_KINDS:
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


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (None when it cannot be told)."""
    cls: type[BaseModel] | None = IngestConfig
    for i, part in enumerate(loc):
        if cls is None:
            return None
        if isinstance(part, int):
            continue
        if i == 2 and loc[0] == "tables" and part in _TABLE_MODELS:
            cls = _TABLE_MODELS[part]
            continue
        field = next((f for n, f in cls.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        cls = (
            _TABLE_MODELS.get("director")
            if part == "tables" and cls is IngestConfig
            else _unwrap_model(field.annotation)
        )
    return cls


def _keys_of(cls: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in cls.model_fields.items()]


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    msg = err["msg"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        if parent is None:
            return "unknown key (see configs/README.md for the keys allowed here)"
        allowed = _keys_of(parent)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; {hint}allowed here: {', '.join(allowed)}"
    if kind == "missing":
        parent = _model_at(loc[:-1])
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
        return f"kind must be one of director, child, regular (got {got!r})"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, ") :]
    if kind in (
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
    ):
        value = err.get("input")
        secret = any("password" in str(part) for part in loc)
        if not secret and (not isinstance(value, (dict, list)) or len(repr(value)) < 60):
            msg += f" (got {value!r})"
    return msg


def _errors_to_problems(exc: ValidationError, origin: Mapping[str, str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        key = _key_path(tuple(err["loc"]))
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _MultiProblem):
            for p in ctx_err.problems:
                sub, _, msg = p.partition(": ")
                full = f"{key}.{sub}" if key else sub
                problems.append((full, msg))
            continue
        msg = _message(err)
        for k, opt in origin.items():
            if key == k or key.startswith(k + "."):
                msg += f" (from {opt})"
        if (key, msg) not in seen:
            seen.add((key, msg))
            problems.append((key, msg))
    return problems


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


def _validate(
    raw: Any,
    source: Path | None,
    base_dir: Path,
    text: str | None,
    origin: Mapping[str, str] | None = None,
    check_paths: bool = True,
) -> IngestConfig:
    where = source or "<config>"
    if not isinstance(raw, dict):
        raise ConfigError(
            where,
            [
                (
                    "",
                    f"expected a mapping of sections (database, tables, qserv, ...), "
                    f"got {type(raw).__name__}",
                )
            ],
        )
    try:
        cfg = IngestConfig.model_validate(raw, context={"base_dir": base_dir, "check_paths": check_paths})
    except ValidationError as e:
        problems = _errors_to_problems(e, origin or {})
        lines = _line_index(text) if text else {}
        located = {k: ln for k, _ in problems if (ln := _locate(k, lines)) is not None}
        raise ConfigError(where, problems, located) from None
    cfg._source = source
    cfg._base_dir = base_dir
    cfg._check_paths = check_paths
    cfg._raw = copy.deepcopy(raw)
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
    if isinstance(current, yaml.MappingNode):
        for k, v in current.value:
            found = _find_node_path(v, target, f"{path}.{k.value}" if path else str(k.value))
            if found is not None:
                return found
    elif isinstance(current, yaml.SequenceNode):
        for i, v in enumerate(current.value):
            found = _find_node_path(v, target, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def config_from_dict(
    data: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None, *, check_paths: bool = True
) -> IngestConfig:
    """Validate config data already in memory (e.g. built by a test); relative paths use `base_dir`."""
    base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
    return _validate(copy.deepcopy(dict(data)), None, base, text=None, check_paths=check_paths)


def load_config(path: str | os.PathLike[str], *, check_paths: bool = True) -> IngestConfig:
    """Read and validate an ingest config YAML file; raise `ConfigError` listing every problem.

    Relative paths in the file are resolved against the file's directory. With `check_paths` (the
    default) files the config names (globs, schema files) must exist.
    """
    p = Path(path).expanduser()
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
    return _validate(raw, p.resolve(), p.resolve().parent, text, check_paths=check_paths)


def match_files(files: FilesInput) -> list[Path]:
    """The files a `files:` input matches, sorted (the glob is already absolute)."""
    return sorted(Path(p) for p in globlib.glob(files.glob, recursive=True) if not fnmatch.fnmatch(p, "*/.*"))

"""Where shards, contribution files and the ledger live; how shards are compressed and files written."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ValidationInfo, field_validator, model_validator

from qdask.config.base import ConfigModel, resolve_path

__all__ = ["StagingConfig"]


class StagingConfig(ConfigModel):
    """Where shards, contribution files and the ledger live (relative paths: the config's directory)."""

    directory: Path = Path("staging")
    # Shards are intermediate and local (Arrow IPC, `qdask.stages.shards`), written once and read once:
    # "none" (the default: catalog columns are mostly doubles, which lz4 shrinks by 3-16 % for ~10 % more
    # staging CPU, benchmarks/results/hats.md); "snappy" means IPC's fast codec, lz4, which IPC has instead
    # of snappy; zstd at its level, for a small local disk.
    shard_compression: Literal["zstd", "snappy", "none"] = "none"
    shard_compression_level: int | None = None
    # Shards and contribution files are written once and read back once (by collect, by the load): past
    # the page cache (O_DIRECT) after a file's first 1 MiB, and shards read back the same way
    # (`qdask.direct_io`), which saves the kernel's page allocation and copies (12-13 % of staging CPU
    # each, measured at 5M x 43) and keeps dirty pages off a pod's memory. False: the page cache for
    # every byte.
    direct_io: bool = True
    ledger: Path | None = None

    @field_validator("directory")
    @classmethod
    def _resolve_dir(cls, v: Path, info: ValidationInfo) -> Path:
        return resolve_path(v, info)

    @field_validator("ledger")
    @classmethod
    def _resolve_ledger(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return None if v is None else resolve_path(v, info)

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

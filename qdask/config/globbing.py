"""Which files a ``files:`` glob matches: ``**`` recurses, wildcards skip hidden names (``.*``)."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Protocol

__all__ = ["glob_files", "match_files"]


def glob_files(pattern: str) -> list[Path]:
    """The files `pattern` (absolute) matches, sorted. A wildcard never matches a name starting with ``.``
    (Python's `glob` rule), while a hidden directory written out in the pattern is followed."""
    return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())


class _HasGlob(Protocol):
    @property
    def glob(self) -> str: ...


def match_files(files: _HasGlob) -> list[Path]:
    """The files a ``files:`` input (`qdask.config.FilesInput`) matches, sorted."""
    return glob_files(files.glob)

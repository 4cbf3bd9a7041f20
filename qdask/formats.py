"""The input file formats qdask reads, and how a file name says which: one table, for config and reader.

`qdask.config` infers a `files:` input's format and compression from its glob with `format_from_name`,
and `qdask.sources.files` reads each matched file by the same rule, so a name the config accepts is always
one the reader can read (and the other way round).
"""

from __future__ import annotations

import os
from typing import Literal

__all__ = [
    "FORMATS",
    "FORMAT_BY_EXTENSION",
    "GZIP_SUFFIXES",
    "FileFormatName",
    "format_from_name",
    "strip_gzip",
]

FileFormatName = Literal["parquet", "csv", "tsv"]

#: The formats qdask reads.
FORMATS: tuple[FileFormatName, ...] = ("parquet", "csv", "tsv")

#: File name extension (lower case, after any gzip suffix is removed) → format.
FORMAT_BY_EXTENSION: dict[str, FileFormatName] = {
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".tab": "tsv",
}

#: Suffixes that mark a gzip-compressed text file (``Object.tsv.gz``).
GZIP_SUFFIXES = (".gz", ".gzip")


def strip_gzip(name: str) -> tuple[str, bool]:
    """`name` without a gzip suffix (any case), and whether it had one."""
    lower = name.lower()
    for suffix in GZIP_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)], True
    return name, False


def format_from_name(name: str) -> FileFormatName | None:
    """The format a file name (or glob) implies by its extension, ignoring a gzip suffix; None if unknown."""
    stem, _ = strip_gzip(os.path.basename(name))
    return FORMAT_BY_EXTENSION.get(os.path.splitext(stem)[1].lower())

"""The input file formats qdask reads, and how a file name says which: one table, for config and reader.

`qdask.config` infers a `files:` input's format and compression from its glob with `format_from_name` and
`strip_compression`, and `qdask.sources.files` reads each matched file by the same rule, so a name the
config accepts is always one the reader can read (and the other way round). How the bytes of a csv/tsv file
become fields is its dialect, `qdask.text_dialect`.
"""

from __future__ import annotations

import os
from typing import Literal

__all__ = [
    "FORMATS",
    "COMPRESSIONS",
    "COMPRESSION_SUFFIXES",
    "FORMAT_BY_EXTENSION",
    "Compression",
    "FileFormatName",
    "format_from_name",
    "strip_compression",
]

FileFormatName = Literal["parquet", "csv", "tsv"]
Compression = Literal["gzip", "bz2"]

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

#: The compressions of text files qdask inflates while reading.
COMPRESSIONS: tuple[Compression, ...] = ("gzip", "bz2")

#: Suffixes (lower case) that mark a compressed text file (``Object.tsv.gz``), and the compression of each.
COMPRESSION_SUFFIXES: dict[str, Compression] = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2"}


def strip_compression(name: str) -> tuple[str, Compression | None]:
    """`name` without a compression suffix (any case), and the compression it names (None: none)."""
    lower = name.lower()
    for suffix, compression in COMPRESSION_SUFFIXES.items():
        if lower.endswith(suffix):
            return name[: -len(suffix)], compression
    return name, None


def format_from_name(name: str) -> FileFormatName | None:
    """The format a file name (or glob) implies by its extension, ignoring a compression suffix; None if
    unknown."""
    stem, _ = strip_compression(os.path.basename(name))
    return FORMAT_BY_EXTENSION.get(os.path.splitext(stem)[1].lower())

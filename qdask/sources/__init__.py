"""Where rows come from: Butler datasets (`butler`) and plain files (`files`: Parquet in `parquet`, text in
any dialect ``LOAD DATA`` reads in `text`, `text_scan`, `text_serial`), as `InputUnit`s."""

from qdask.sources.butler import ButlerSource, MissingColumnsError, NoDatasetsError, read_unit, unit_schema
from qdask.sources.units import InputUnit, SourceError

__all__ = [
    "ButlerSource",
    "InputUnit",
    "MissingColumnsError",
    "NoDatasetsError",
    "SourceError",
    "read_unit",
    "unit_schema",
]

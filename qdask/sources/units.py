"""`InputUnit`: one unit of input work (a file, or a row-group range of it) that a Dask task carries.

Every source (Butler datasets, plain files) turns its input into a list of units at plan time. A unit is
small, picklable and JSON-serialisable (`to_dict`/`from_dict`), so the planner can record it in the ledger
and a task can be sent it cheaply; the task then opens the unit's file itself. A unit never holds data.

Unit ids are stable across runs for the same input, so a re-run finds its units in the ledger:

- a Butler dataset: ``objectTable_tract:skymap=DC2,tract=3828`` (dataset type, then its required data id);
- a file: ``file:/data/Object_1.parquet``;
- either, split into row groups: the id of the whole, then ``#rg=START:STOP`` (a half-open range).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from qdask.errors import QdaskError

__all__ = ["InputUnit", "SourceError", "row_group_suffix"]


class SourceError(QdaskError):
    """An input that cannot be discovered or read; the message names the dataset/file and the cause."""


def row_group_suffix(start: int, stop: int) -> str:
    """The unit-id suffix of the half-open row-group range ``[start, stop)``."""
    return f"#rg={start}:{stop}"


@dataclass(frozen=True)
class InputUnit:
    """One unit of input: a whole file, or the row groups ``[start, stop)`` of a Parquet file.

    `uri` is the resolved location (``file:///...``, ``s3://...`` or a local path), so reading a unit needs
    no catalogue lookup. `format` is ``parquet``, ``csv`` or ``tsv`` for files, or ``butler`` for a dataset
    that has no file pyarrow can read and must be read with ``butler.get`` (then `repo` and `dataset_id` say
    which). `est_rows`/`est_bytes` are the planner's estimates (rows in the unit, bytes of file it reads);
    `None` when unknown. `data_id` is the Butler data id (empty for files); `options` carries
    format-specific reading options (the compression, a text file's dialect) as plain JSON values.
    """

    unit_id: str
    table: str
    uri: str
    format: str = "parquet"
    row_groups: tuple[int, int] | None = None
    data_id: dict[str, Any] = field(default_factory=dict, hash=False)
    est_rows: int | None = None
    est_bytes: int | None = None
    dataset_type: str | None = None
    dataset_id: str | None = None
    run: str | None = None
    repo: str | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Plain dicts/tuples keep the unit picklable and JSON-friendly whatever mapping the caller gave.
        object.__setattr__(self, "data_id", dict(self.data_id))
        object.__setattr__(self, "options", dict(self.options))
        if self.row_groups is not None:
            start, stop = (int(v) for v in self.row_groups)
            if not 0 <= start < stop:
                raise ValueError(f"{self.unit_id}: bad row-group range [{start}, {stop})")
            object.__setattr__(self, "row_groups", (start, stop))

    @property
    def whole_id(self) -> str:
        """The id of the whole file or dataset this unit is (a part of)."""
        return self.unit_id.split("#rg=", 1)[0] if self.row_groups is not None else self.unit_id

    @property
    def label(self) -> str:
        """What error messages call this unit: its id and, when different, its file."""
        return self.unit_id if self.uri in self.unit_id else f"{self.unit_id} ({self.uri})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for the ledger); `from_dict` is its inverse."""
        out = asdict(self)
        out["row_groups"] = list(self.row_groups) if self.row_groups is not None else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputUnit:
        """The unit recorded by `to_dict`."""
        values = dict(data)
        if values.get("row_groups") is not None:
            values["row_groups"] = tuple(values["row_groups"])
        return cls(**values)

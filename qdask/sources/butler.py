"""Rows from a Butler repository: discover one `InputUnit` per dataset, then stream its Parquet file.

Discovery (`ButlerSource.discover`) runs once, on the client: it queries the datasets of one dataset type
in the given collections with a `where` expression and `bind` values (always ``limit=None``, because the
Butler's default silently caps the result at 20 000), resolves every file URI in one call, reads each
file's Parquet footer to estimate rows and bytes, and splits a file larger than the per-task byte budget
into row-group ranges. Reading (`read_unit`) runs in the Dask task and needs only the unit: it opens the
file with pyarrow and yields the selected columns as record batches (never the whole file), so a task's
memory is about one row group of the selected columns plus a batch, whatever the file size.

Files written from pandas (storage class ``DataFrame``, as DP0.2 did) read like any other table: pandas
index columns come back as ordinary leading columns (a named index such as ``objectId`` under its name, an
unnamed one as ``__index_level_0__``, a named RangeIndex kept only in the pandas metadata is recomputed),
and the flattened names pyarrow gives MultiIndex columns (``"('meas', 'g', 'psfFlux')"``) read as the
levels joined by ``_`` (``meas_g_psfFlux``). Only a dataset with no file pyarrow can read (e.g. in an
in-memory or non-Parquet datastore) falls back to ``butler.get``, which loads it whole.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qdask.sources.units import InputUnit, SourceError, row_group_suffix

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_MAX_UNIT_BYTES",
    "ButlerSource",
    "MissingColumnsError",
    "NoDatasetsError",
    "ParquetLayout",
    "parquet_layout",
    "read_parquet",
    "read_unit",
    "split_row_groups",
    "unit_schema",
]

#: Bytes of file one task reads at most (unless a single row group is larger): files above are split.
DEFAULT_MAX_UNIT_BYTES = 512 * 2**20
#: Decoded bytes of one record batch; sets the batch's row count from the selected columns' widths.
DEFAULT_BATCH_BYTES = 32 * 2**20

#: Storage classes the Butler writes with its ParquetFormatter, i.e. whose files pyarrow reads directly.
PARQUET_STORAGE_CLASSES = frozenset(
    {"DataFrame", "ArrowTable", "ArrowAstropy", "ArrowNumpy", "ArrowNumpyDict"}
)
_PARQUET_EXTENSIONS = (".parq", ".parquet", ".pq")


class NoDatasetsError(SourceError, LookupError):
    """A Butler query that matched no dataset; the message names the dataset type, collections and where."""


class MissingColumnsError(SourceError, ValueError):
    """Requested columns that the input does not have; the message names them and the dataset/file."""


# --------------------------------------------------------------------------------------------------
# Parquet files: the logical columns of a file, and streaming them
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParquetLayout:
    """How the physical columns of a Parquet file map to the columns a reader gets.

    `columns` is the default (logical) column order: pandas index columns first, then the data columns in
    file order. `physical` maps a logical name to the stored column it reads; `range_index` holds the
    ``(start, step)`` of a named pandas RangeIndex that is stored only as metadata and is recomputed.
    """

    columns: tuple[str, ...]
    physical: Mapping[str, str]
    range_index: Mapping[str, tuple[int, int]]

    def resolve(self, columns: Sequence[str] | None, label: str) -> list[str]:
        """The logical columns to read for a request (all when `columns` is None), checked to exist.

        A stored (physical) name is accepted too, e.g. the flattened ``"('meas', 'g', 'psfFlux')"``.
        """
        if columns is None:
            return list(self.columns)
        by_physical: dict[str, str] | None = None
        wanted: list[str] = []
        missing: list[str] = []
        for name in columns:
            if name in self.physical or name in self.range_index:
                logical: str | None = name
            else:
                if by_physical is None:
                    by_physical = {p: n for n, p in self.physical.items()}
                logical = by_physical.get(name)
            if logical is None:
                missing.append(name)
            elif logical not in wanted:
                wanted.append(logical)
        if missing:
            raise MissingColumnsError(
                f"{label}: no column {', '.join(repr(m) for m in missing)} "
                f"(it has {len(self.columns)} columns: {_preview(self.columns)})"
            )
        return wanted


def _preview(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def _flatten_multi_index_name(name: str) -> str:
    """``"('meas', 'g', 'psfFlux')"`` → ``meas_g_psfFlux``; other names unchanged."""
    try:
        value = ast.literal_eval(name)
    except (ValueError, SyntaxError):
        return name
    if not isinstance(value, tuple):
        return name
    return "_".join(str(level) for level in value if level not in ("", None))


def parquet_layout(schema: pa.Schema) -> ParquetLayout:
    """The logical columns of a file with this Arrow schema, reading its pandas metadata if it has any."""
    metadata = schema.metadata or {}
    pandas_md: dict[str, Any] = {}
    if b"pandas" in metadata:
        try:
            pandas_md = json.loads(metadata[b"pandas"])
        except ValueError:
            pandas_md = {}  # unreadable pandas metadata: treat the file as a plain table
    multi_index_columns = len(pandas_md.get("column_indexes") or []) > 1
    physical: dict[str, str] = {}
    range_index: dict[str, tuple[int, int]] = {}
    order: list[str] = []
    index_physical: set[str] = set()
    for index in pandas_md.get("index_columns") or []:
        if isinstance(index, str):
            if index in schema.names:
                physical[index] = index
                order.append(index)
                index_physical.add(index)
        elif isinstance(index, dict) and index.get("kind") == "range" and index.get("name") is not None:
            name = str(index["name"])
            if name not in schema.names:
                range_index[name] = (int(index.get("start", 0)), int(index.get("step", 1)))
                order.append(name)
    for name in schema.names:
        if name in index_physical:
            continue
        logical = _flatten_multi_index_name(name) if multi_index_columns else name
        if logical in physical or logical in range_index:
            raise SourceError(f"column {logical!r} appears twice after flattening the pandas column index")
        physical[logical] = name
        order.append(logical)
    return ParquetLayout(tuple(order), physical, range_index)


def _row_width(schema: pa.Schema, names: Iterable[str]) -> float:
    """Approximate decoded bytes per row of these physical columns (strings guessed at 32 bytes)."""
    width = 0.0
    for name in names:
        t = schema.field(name).type
        try:
            width += t.bit_width / 8
        except ValueError:  # variable width: strings, binaries, lists
            width += 32
    return max(width, 1.0)


def _batch_rows(schema: pa.Schema, names: Iterable[str], batch_bytes: int) -> int:
    return int(min(max(batch_bytes // _row_width(schema, names), 64), 1 << 20))


def _size_text(uri: str) -> str:
    """'N bytes', 'missing' or 'not a file': what a failed open found at `uri`, for the message."""
    from lsst.resources import ResourcePath

    try:
        rp = ResourcePath(uri, forceDirectory=False)
        if rp.isLocal and Path(rp.ospath).is_dir():
            return "a directory, not a file"
        return f"{rp.size()} bytes"
    except FileNotFoundError:
        return "missing"
    except Exception as exc:  # any scheme's own error: still report the open failure
        return f"size unknown: {exc}"


@contextmanager
def _open_parquet(uri: str, label: str) -> Iterator[pq.ParquetFile]:
    """Open a Parquet file by URI or path (local or any lsst-resources scheme), naming it in any error."""
    from lsst.resources import ResourcePath

    try:
        rp = ResourcePath(uri, forceDirectory=False)
        if rp.isLocal:
            handle = None
            pf = pq.ParquetFile(rp.ospath, memory_map=False, pre_buffer=False)
        else:
            fs, path = rp.to_fsspec()
            handle = fs.open(path, "rb")
            pf = pq.ParquetFile(handle, pre_buffer=False)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise SourceError(f"{label}: cannot open as a Parquet file ({_size_text(uri)}): {exc}") from exc
    try:
        yield pf
    finally:
        pf.close()
        if handle is not None:
            handle.close()


def split_row_groups(rows: Sequence[int], sizes: Sequence[int], max_bytes: int) -> list[tuple[int, int]]:
    """Consecutive half-open row-group ranges of at most `max_bytes` each (a larger single group alone)."""
    ranges: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > max_bytes:
            ranges.append((start, i))
            start, total = i, 0
        total += size
    if len(sizes) > start:
        ranges.append((start, len(sizes)))
    return ranges


def _output_schema(stored: pa.Schema, layout: ParquetLayout, wanted: Sequence[str]) -> pa.Schema:
    """The schema of the batches a reader yields: the `wanted` logical columns, typed as stored."""
    fields = []
    for name in wanted:
        if name in layout.range_index:
            fields.append(pa.field(name, pa.int64(), nullable=False))
        else:
            fields.append(stored.field(layout.physical[name]).with_name(name))
    return pa.schema(fields)


def _select(batch: pa.RecordBatch, layout: ParquetLayout, out: pa.Schema, first_row: int) -> pa.RecordBatch:
    """The logical columns of schema `out` from a batch of stored columns, recomputing RangeIndex values."""
    arrays = []
    for name in out.names:
        if name in layout.range_index:
            start, step = layout.range_index[name]
            pos = np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)
            arrays.append(pa.array(start + step * pos, type=pa.int64()))
        else:
            arrays.append(batch.column(layout.physical[name]))
    return pa.RecordBatch.from_arrays(arrays, schema=out)


def read_parquet(
    uri: str,
    columns: Sequence[str] | None = None,
    *,
    row_groups: tuple[int, int] | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    label: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the logical `columns` (all when None) of a Parquet file's row groups ``[start, stop)``.

    Batches hold about `batch_bytes` of decoded data. The rows read are checked against the file's
    footer, so a damaged file raises `SourceError` (naming `label` and the file) instead of losing rows.
    """
    label = label or uri
    with _open_parquet(uri, label) as pf:
        meta = pf.metadata
        schema = pf.schema_arrow
        layout = parquet_layout(schema)
        wanted = layout.resolve(columns, label)
        out = _output_schema(schema, layout, wanted)
        start, stop = row_groups if row_groups is not None else (0, meta.num_row_groups)
        if stop > meta.num_row_groups:
            raise SourceError(f"{label}: row groups [{start}, {stop}) but the file has {meta.num_row_groups}")
        stored = list(dict.fromkeys(layout.physical[c] for c in wanted if c in layout.physical))
        if not stored:  # only recomputed index columns: read the narrowest stored column for the counts
            stored = [min(schema.names, key=lambda n: _row_width(schema, [n]))]
        expected = sum(meta.row_group(i).num_rows for i in range(start, stop))
        row = sum(meta.row_group(i).num_rows for i in range(start)) if layout.range_index else 0
        done = 0
        batches = pf.iter_batches(
            batch_size=_batch_rows(schema, stored, batch_bytes),
            row_groups=range(start, stop),
            columns=stored,
            use_threads=True,
            use_pandas_metadata=False,
        )
        try:
            for batch in batches:
                yield _select(batch, layout, out, row + done)
                done += batch.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{label}: reading failed after {done} rows: {exc}") from exc
        if done != expected:
            raise SourceError(f"{label}: read {done} rows, its footer says {expected}")


def _parquet_schema(uri: str, columns: Sequence[str] | None, label: str) -> pa.Schema:
    with _open_parquet(uri, label) as pf:
        schema = pf.schema_arrow
        layout = parquet_layout(schema)
        return _output_schema(schema, layout, layout.resolve(columns, label))


# --------------------------------------------------------------------------------------------------
# Reading a unit (in the Dask task)
# --------------------------------------------------------------------------------------------------


def _butler_table(unit: InputUnit, butler: Any | None) -> pa.Table:
    """The whole dataset of a ``format="butler"`` unit as an Arrow table, via ``butler.get``."""
    from lsst.daf.butler import Butler

    if butler is None:
        if not unit.repo:
            raise SourceError(f"{unit.label}: no repository to read the dataset from")
        butler = Butler.from_config(unit.repo)
    try:
        ref = butler.get_dataset(uuid.UUID(unit.dataset_id))
        if ref is None:
            raise SourceError(f"{unit.label}: dataset {unit.dataset_id} is not in {unit.repo or butler}")
        return butler.get(ref, storageClass="ArrowTable")
    except SourceError:
        raise
    except Exception as exc:  # the Butler raises many types; name the dataset whatever it was
        raise SourceError(f"{unit.label}: butler.get failed: {type(exc).__name__}: {exc}") from exc


def read_unit(
    unit: InputUnit,
    columns: Sequence[str] | None = None,
    *,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    butler: Any | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the `columns` (all when None) of one unit as Arrow record batches.

    A Parquet unit is read from its file alone; a ``butler`` unit is loaded whole with ``butler.get``
    (from `butler`, or a Butler opened on ``unit.repo``) and then cut into batches.
    """
    if unit.format == "parquet":
        yield from read_parquet(
            unit.uri, columns, row_groups=unit.row_groups, batch_bytes=batch_bytes, label=unit.label
        )
    elif unit.format == "butler":
        table = _butler_table(unit, butler)
        layout = parquet_layout(table.schema)
        wanted = layout.resolve(columns, unit.label)
        out = _output_schema(table.schema, layout, wanted)
        stored = [layout.physical[c] for c in wanted if c in layout.physical]
        done = 0
        for batch in table.to_batches(max_chunksize=_batch_rows(table.schema, stored or [], batch_bytes)):
            yield _select(batch, layout, out, done)
            done += batch.num_rows
    else:
        raise SourceError(f"{unit.label}: the Butler source cannot read format {unit.format!r}")


def unit_schema(
    unit: InputUnit, columns: Sequence[str] | None = None, *, butler: Any | None = None
) -> pa.Schema:
    """The Arrow schema of the batches `read_unit(unit, columns)` yields (reads only a footer for files)."""
    if unit.format == "parquet":
        return _parquet_schema(unit.uri, columns, unit.label)
    batch = next(read_unit(unit, columns, batch_bytes=1, butler=butler), None)
    if batch is None:
        raise SourceError(f"{unit.label}: empty dataset, no schema to read")
    return batch.schema


# --------------------------------------------------------------------------------------------------
# Discovery (on the client)
# --------------------------------------------------------------------------------------------------


def _data_id_text(data_id: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in data_id.items())


class ButlerSource:
    """The datasets of one dataset type in a Butler repository, as input units for one table.

    `where` is a Butler query expression and `bind` its literal values, e.g.
    ``where="tract IN (tracts) AND skymap = sm", bind={"tracts": [3828, 3829], "sm": "DC2"}``; `data_id`
    adds equality constraints (``{"skymap": "DC2"}``). A ``tract`` or ``patch`` constraint must also
    constrain ``skymap``. `table` names the Qserv table the rows go to (default: the dataset type).
    Pass an open `butler` to reuse it; otherwise one is opened read-only on `repo`.
    """

    def __init__(
        self,
        repo: str,
        dataset_type: str,
        collections: str | Sequence[str],
        *,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        data_id: Mapping[str, Any] | None = None,
        table: str | None = None,
        max_unit_bytes: int = DEFAULT_MAX_UNIT_BYTES,
        butler: Any | None = None,
    ):
        from lsst.daf.butler import Butler

        if max_unit_bytes <= 0:
            raise ValueError(f"max_unit_bytes must be positive, not {max_unit_bytes}")
        self.repo = str(repo)
        self.dataset_type = dataset_type
        self.collections = [collections] if isinstance(collections, str) else list(collections)
        self.where = where
        self.bind = dict(bind or {})
        self.data_id = dict(data_id or {})
        self.table = table or dataset_type
        self.max_unit_bytes = max_unit_bytes
        self.butler = butler if butler is not None else Butler.from_config(self.repo)

    @classmethod
    def from_config(
        cls, spec: Any, *, table: str | None = None, max_unit_bytes: int = DEFAULT_MAX_UNIT_BYTES
    ) -> ButlerSource:
        """The source a config's ``input.butler`` block (`qdask.config.ButlerInput`) describes.

        Its `skymap` and `instrument`, when set, become data-id constraints.
        """
        data_id = {
            k: getattr(spec, k) for k in ("skymap", "instrument") if getattr(spec, k, None) is not None
        }
        return cls(
            spec.repo,
            spec.dataset_type,
            spec.collections,
            where=spec.where,
            bind=spec.bind,
            data_id=data_id,
            table=table,
            max_unit_bytes=max_unit_bytes,
        )

    def _query_text(self) -> str:
        text = f"{self.dataset_type!r} datasets in collections {self.collections}"
        if self.where:
            text += f" matching where {self.where!r}"
        if self.bind:
            text += f" with bind {self.bind}"
        if self.data_id:
            text += f" and data id {self.data_id}"
        return text

    def refs(self) -> list[Any]:
        """All matching dataset refs (``limit=None``), sorted by data id; an empty result is an error."""
        from lsst.daf.butler import InvalidQueryError, MissingCollectionError, MissingDatasetTypeError

        try:
            refs = self.butler.query_datasets(
                self.dataset_type,
                collections=self.collections,
                where=self.where,
                bind=self.bind,
                data_id=self.data_id or None,
                limit=None,
                explain=False,
            )
        except MissingDatasetTypeError as exc:
            raise SourceError(f"{self.repo}: no dataset type {self.dataset_type!r} ({exc})") from exc
        except MissingCollectionError as exc:
            raise SourceError(f"{self.repo}: collections {self.collections}: {exc}") from exc
        except InvalidQueryError as exc:
            hint = ""
            if re.search(r"\b(tract|patch)\b", self.where) and "skymap" in str(exc):
                names = [r.name for r in self.butler.query_dimension_records("skymap", limit=None)]
                hint = f"; add e.g. \"AND skymap = '{names[0] if names else 'DC2'}'\" (skymaps: {names})"
            raise SourceError(f"bad query for {self._query_text()}: {exc}{hint}") from exc
        if not refs:
            raise NoDatasetsError(f"{self.repo}: no {self._query_text()}")
        return sorted(refs, key=lambda r: tuple(r.dataId.required.values()))  # one type: same key types

    def discover(self) -> list[InputUnit]:
        """The input units: one per dataset, or several row-group ranges for a file over the byte budget."""
        plain = self._units(self.refs())
        with ThreadPoolExecutor(max_workers=8) as pool:
            split = pool.map(self._split, plain)
            return [unit for units in split for unit in units]

    def _units(self, refs: Sequence[Any]) -> list[InputUnit]:
        """One whole-file unit per ref, its URI resolved (all refs in one datastore call)."""
        uris = self.butler.get_many_uris(refs)
        units = []
        for ref in refs:
            data_id = {k: v for k, v in ref.dataId.required.items()}
            primary = uris[ref].primaryURI
            readable = (
                primary is not None
                and primary.scheme not in ("mem", "")
                and ref.datasetType.storageClass_name in PARQUET_STORAGE_CLASSES
                and primary.getExtension().lower() in _PARQUET_EXTENSIONS
            )
            units.append(
                InputUnit(
                    unit_id=f"{ref.datasetType.name}:{_data_id_text(data_id) or ref.id}",
                    table=self.table,
                    uri=str(primary) if primary is not None else "",
                    format="parquet" if readable else "butler",
                    data_id=data_id,
                    dataset_type=ref.datasetType.name,
                    dataset_id=str(ref.id),
                    run=ref.run,
                    repo=self.repo,
                )
            )
        return units

    def _split(self, unit: InputUnit) -> list[InputUnit]:
        """Estimate a file unit from its footer and cut it into row-group ranges over the byte budget."""
        if unit.format != "parquet":
            return [unit]
        from lsst.resources import ResourcePath

        with _open_parquet(unit.uri, unit.label) as pf:
            meta = pf.metadata
            rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            raw = [meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)]
        try:
            file_bytes = ResourcePath(unit.uri).size()
        except (OSError, FileNotFoundError) as exc:
            raise SourceError(f"{unit.label}: cannot stat {unit.uri}: {exc}") from exc
        # Footers give uncompressed sizes; scale them to the file's bytes so the budget means file bytes.
        scale = file_bytes / max(sum(raw), 1)
        sizes = [int(r * scale) for r in raw]
        if file_bytes <= self.max_unit_bytes or len(rows) <= 1:
            return [_replace(unit, est_rows=sum(rows), est_bytes=file_bytes)]
        return [
            _replace(
                unit,
                unit_id=unit.unit_id + row_group_suffix(a, b),
                row_groups=(a, b),
                est_rows=sum(rows[a:b]),
                est_bytes=sum(sizes[a:b]),
            )
            for a, b in split_row_groups(rows, sizes, self.max_unit_bytes)
        ]

    def schema(self, columns: Sequence[str] | None = None) -> pa.Schema:
        """The Arrow schema the units yield (from the first dataset's footer)."""
        first = self._units(self.refs()[:1])[0]
        return unit_schema(first, columns, butler=self.butler)

    def read(
        self, unit: InputUnit, columns: Sequence[str] | None = None, **kwargs: Any
    ) -> Iterator[pa.RecordBatch]:
        """`read_unit` with this source's Butler for any ``butler.get`` fallback."""
        return read_unit(unit, columns, butler=self.butler, **kwargs)


def _replace(unit: InputUnit, **changes: Any) -> InputUnit:
    values = unit.to_dict()
    values.update(changes)
    return InputUnit.from_dict(values)

"""The Butler source against real Butler repositories made in temp dirs (no mocks).

One demo repository (qdask.demo, DP0.2-shaped) serves most tests; datasets with particular layouts
(pandas indexes, MultiIndex columns, many row groups) are added to it with `butler.put`/`ingest`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lsst.daf.butler import Butler, Config, DatasetRef, DatasetType, FileDataset
from peak_memory import CHILD_SOURCE

from qdask.demo import make_demo_repo
from qdask.sources.butler import (
    ButlerSource,
    MissingColumnsError,
    NoDatasetsError,
    parquet_layout,
    read_unit,
    split_row_groups,
    unit_schema,
)
from qdask.sources.units import InputUnit, SourceError

EXTRA_RUN = "test/extra"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_repo(tmp_path_factory.mktemp("butler") / "repo", tracts=3, rows_per_patch=40, seed=3)


@pytest.fixture(scope="module")
def butler(demo):
    b = Butler.from_config(str(demo.root), writeable=True, run=EXTRA_RUN)
    yield b
    b.close()


def _table(units, columns=None, butler=None) -> pa.Table:
    batches = [b for u in units for b in read_unit(u, columns, butler=butler)]
    return pa.Table.from_batches(batches)


def _register(butler, name, dimensions=(), storage="DataFrame"):
    dt = DatasetType(name, list(dimensions), storage, universe=butler.dimensions)
    butler.registry.registerDatasetType(dt)
    return dt


# ---------------------------------------------------------------------------------------------- discovery


def test_discovery_with_where_and_bind(demo):
    src = ButlerSource(
        str(demo.root),
        "objectTable_tract",
        demo.collection,
        where="tract IN (tracts) AND skymap = sm",
        bind={"tracts": [demo.tracts[0], demo.tracts[2]], "sm": demo.skymap},
    )
    units = src.discover()
    assert [u.data_id for u in units] == [
        {"skymap": "DC2", "tract": demo.tracts[0]},
        {"skymap": "DC2", "tract": demo.tracts[2]},
    ]
    assert [u.unit_id for u in units] == [f"objectTable_tract:skymap=DC2,tract={t}" for t in demo.tracts[::2]]
    for u in units:
        assert u.format == "parquet" and u.uri.startswith("file://") and u.row_groups is None
        assert u.est_rows == 40 * len(demo.patches)
        assert u.est_bytes == os.path.getsize(u.uri.removeprefix("file://"))
        assert u.table == "objectTable_tract" and u.run == demo.run and u.repo == str(demo.root)
        assert InputUnit.from_dict(json.loads(json.dumps(u.to_dict()))) == u

    # Patch-level datasets of one tract, constrained by a data id instead of the expression.
    forced = ButlerSource(
        str(demo.root),
        "forcedSourceTable",
        [demo.collection],
        where="tract = t",
        bind={"t": demo.tracts[1]},
        data_id={"skymap": demo.skymap},
        table="ForcedSource",
    ).discover()
    assert [u.data_id["patch"] for u in forced] == list(demo.patches)
    assert {u.table for u in forced} == {"ForcedSource"}
    assert sum(u.est_rows for u in forced) == demo.rows["forcedSourceTable"] // len(demo.tracts)


def test_where_matching_nothing_names_the_query(demo):
    src = ButlerSource(
        str(demo.root),
        "objectTable_tract",
        demo.collection,
        where="tract IN (tracts) AND skymap = sm",
        bind={"tracts": [9999], "sm": "DC2"},
    )
    with pytest.raises(NoDatasetsError) as err:
        src.discover()
    text = str(err.value)
    assert "'objectTable_tract'" in text and "DC2/demo" in text and "tract IN (tracts)" in text
    assert "9999" in text


def test_tract_without_skymap_is_a_clear_error(demo):
    src = ButlerSource(
        str(demo.root), "objectTable_tract", demo.collection, where=f"tract = {demo.tracts[0]}"
    )
    with pytest.raises(SourceError, match=r"skymap.*AND skymap = 'DC2'"):
        src.discover()


@pytest.mark.parametrize(
    ("dataset_type", "collection", "message"),
    [("nosuchTable", "DC2/demo", "no dataset type 'nosuchTable'"), ("objectTable_tract", "nope", "nope")],
)
def test_unknown_dataset_type_or_collection(demo, dataset_type, collection, message):
    with pytest.raises(SourceError, match=message):
        ButlerSource(str(demo.root), dataset_type, collection).discover()


# ---------------------------------------------------------------------------------------------- reading


def test_column_selection_keeps_the_requested_order(demo, butler):
    units = ButlerSource(
        str(demo.root), "objectTable_tract", demo.collection, where="skymap = 'DC2'", butler=butler
    ).discover()
    columns = ["g_psfFlux", "objectId", "coord_ra", "detect_isPrimary", "refBand"]
    table = _table(units, columns)
    assert table.column_names == columns
    assert table.num_rows == demo.rows["objectTable_tract"]
    assert unit_schema(units[0], columns) == table.schema  # the schema a planner sees is what tasks read
    assert table.schema.field("objectId").type == pa.int64()
    assert table.schema.field("refBand").type == pa.string()
    # The same values the Butler itself returns for the same datasets.
    frames = [butler.get("objectTable_tract", u.data_id, collections=demo.collection) for u in units]
    expected = pd.concat(frames)
    np.testing.assert_array_equal(table.column("objectId").to_numpy(), expected.index.to_numpy())
    np.testing.assert_array_equal(table.column("coord_ra").to_numpy(), expected["coord_ra"].to_numpy())
    np.testing.assert_array_equal(table.column("g_psfFlux").to_numpy(), expected["g_psfFlux"].to_numpy())
    assert table.column("refBand").to_pylist() == expected["refBand"].tolist()


def test_missing_column_names_the_column_and_dataset(demo):
    unit = ButlerSource(
        str(demo.root), "forcedSourceTable", demo.collection, where="skymap = 'DC2'"
    ).discover()[0]
    with pytest.raises(MissingColumnsError) as err:
        next(read_unit(unit, ["objectId", "psfFlux", "no_such_column"]))
    text = str(err.value)
    assert "'no_such_column'" in text and unit.unit_id in text and unit.uri in text
    assert "'psfFlux'" not in text


def test_dataframe_index_columns_come_back_as_columns(demo, butler):
    # objectTable_tract: objectId is the pandas index, stored last; it reads as the first column.
    unit = ButlerSource(
        str(demo.root), "objectTable_tract", demo.collection, where="skymap = 'DC2'"
    ).discover()[0]
    stored = pq.read_schema(unit.uri.removeprefix("file://"))
    assert stored.names[-1] == "objectId" and json.loads(stored.metadata[b"pandas"])["index_columns"] == [
        "objectId"
    ]
    table = _table([unit])
    assert table.column_names[0] == "objectId" and table.num_columns == 991
    frame = butler.get("objectTable_tract", unit.data_id, collections=demo.collection)
    np.testing.assert_array_equal(table.column("objectId").to_numpy(), frame.index.to_numpy())

    # An unnamed, non-range index (a filtered frame) is stored as __index_level_0__.
    _register(butler, "filteredTable")
    frame = pd.DataFrame({"a": np.arange(10.0), "b": list("abcdefghij")}).iloc[[0, 3, 4, 9]]
    butler.put(frame, "filteredTable", {})
    units = ButlerSource(str(demo.root), "filteredTable", EXTRA_RUN).discover()
    table = _table(units)
    assert table.column_names == ["__index_level_0__", "a", "b"]
    assert table.column("__index_level_0__").to_pylist() == [0, 3, 4, 9]
    assert table.column("b").to_pylist() == ["a", "d", "e", "j"]

    # A named RangeIndex written by pandas itself lives only in the pandas metadata: it is recomputed,
    # also for a row-group range that does not start at row 0.
    _register(butler, "rangeIndexed", storage="ArrowTable")
    frame = pd.DataFrame({"x": np.arange(100.0)}, index=pd.RangeIndex(1000, 1200, 2, name="visit"))
    path = demo.root.parent / "range.parq"
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=30)
    assert pq.read_schema(path).names == ["x"]
    ref = DatasetRef(butler.get_dataset_type("rangeIndexed"), {}, run=EXTRA_RUN)
    butler.ingest(FileDataset(str(path), ref), transfer="copy")
    src = ButlerSource(str(demo.root), "rangeIndexed", EXTRA_RUN, max_unit_bytes=1)
    units = src.discover()
    assert [u.row_groups for u in units] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    table = _table(units, ["visit", "x"])
    assert table.column("visit").to_pylist() == list(range(1000, 1200, 2))
    assert table.column("x").to_pylist() == list(np.arange(100.0))


def test_flattened_multiindex_columns(demo, butler):
    _register(butler, "deepCoadd_objLike")
    columns = pd.MultiIndex.from_tuples(
        [("meas", "g", "psfFlux"), ("meas", "r", "psfFlux"), ("ref", "", "coord_ra")],
        names=["dataset", "band", "column"],
    )
    frame = pd.DataFrame(np.arange(12.0).reshape(4, 3), columns=columns)
    frame.index = pd.Index([5, 6, 7, 8], name="objectId")
    butler.put(frame, "deepCoadd_objLike", {})
    unit = ButlerSource(str(demo.root), "deepCoadd_objLike", EXTRA_RUN).discover()[0]
    assert parquet_layout(pq.read_schema(unit.uri.removeprefix("file://"))).columns == (
        "objectId",
        "meas_g_psfFlux",
        "meas_r_psfFlux",
        "ref_coord_ra",
    )
    table = _table([unit])
    assert table.column("meas_r_psfFlux").to_pylist() == [1.0, 4.0, 7.0, 10.0]
    assert table.column("objectId").to_pylist() == [5, 6, 7, 8]
    # The stored (flattened tuple) name selects the same column.
    stored = _table([unit], ["('ref', '', 'coord_ra')"])
    assert stored.column_names == ["ref_coord_ra"] and stored.column(0).to_pylist() == [2.0, 5.0, 8.0, 11.0]


def test_large_file_is_split_into_row_group_ranges(demo, butler):
    _register(butler, "manyGroups", storage="ArrowTable")
    n, groups = 50_000, 10
    ids = np.arange(n, dtype=np.int64)
    table = pa.table({"id": ids, "v": np.sqrt(ids.astype(np.float64)), "w": ids.astype(np.float32)})
    path = demo.root.parent / "many.parq"
    pq.write_table(table, path, row_group_size=n // groups, compression="none")
    ref = DatasetRef(butler.get_dataset_type("manyGroups"), {}, run=EXTRA_RUN)
    butler.ingest(FileDataset(str(path), ref), transfer="copy")
    size = os.path.getsize(path)

    whole = ButlerSource(str(demo.root), "manyGroups", EXTRA_RUN).discover()
    assert len(whole) == 1 and whole[0].row_groups is None and whole[0].est_rows == n

    units = ButlerSource(str(demo.root), "manyGroups", EXTRA_RUN, max_unit_bytes=size // 3).discover()
    ranges = [u.row_groups for u in units]
    assert len(units) >= 3
    assert ranges[0][0] == 0 and ranges[-1][1] == groups
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # contiguous, no overlap
    assert all(u.est_bytes <= size // 3 for u in units)
    assert sum(u.est_rows for u in units) == n
    assert [u.unit_id.split("#")[1] for u in units] == [f"rg={a}:{b}" for a, b in ranges]
    read = _table(units, ["id", "v"])
    np.testing.assert_array_equal(read.column("id").to_numpy(), ids)
    np.testing.assert_array_equal(read.column("v").to_numpy(), table.column("v").to_numpy())
    # Batches follow the byte budget: small budgets give small batches, same rows.
    batches = list(read_unit(units[0], ["id"], batch_bytes=8 * 1000))
    assert max(b.num_rows for b in batches) == 1000 and sum(b.num_rows for b in batches) == units[0].est_rows


def test_split_row_groups_ranges():
    assert split_row_groups([10] * 5, [100] * 5, 250) == [(0, 2), (2, 4), (4, 5)]
    assert split_row_groups([10] * 3, [500, 10, 10], 100) == [(0, 1), (1, 3)]  # a big group alone
    assert split_row_groups([], [], 100) == []


def test_fallback_to_butler_get_without_a_file(tmp_path):
    """An in-memory datastore has no file URI: the unit reads through butler.get."""
    cfg = Config({"datastore": {"cls": "lsst.daf.butler.datastores.inMemoryDatastore.InMemoryDatastore"}})
    Butler.makeRepo(str(tmp_path), config=cfg)
    butler = Butler.from_config(str(tmp_path), writeable=True, run="mem/run")
    _register(butler, "memTable")
    frame = pd.DataFrame({"a": np.arange(7.0), "objectId": np.arange(7) + 100}).set_index("objectId")
    butler.put(frame, "memTable", {})
    src = ButlerSource(str(tmp_path), "memTable", "mem/run", butler=butler)
    (unit,) = src.discover()
    assert unit.format == "butler" and unit.uri.startswith("mem://") and unit.dataset_id
    table = pa.Table.from_batches(list(src.read(unit, ["objectId", "a"])))
    assert table.column_names == ["objectId", "a"]
    assert table.column("objectId").to_pylist() == list(range(100, 107))
    assert src.schema(["a"]).names == ["a"]


# ---------------------------------------------------------------------------------------------- bad inputs


def _one_forced_unit(demo, patch):
    return ButlerSource(
        str(demo.root),
        "forcedSourceTable",
        demo.collection,
        where="skymap = 'DC2' AND tract = t AND patch = p",
        bind={"t": demo.tracts[2], "p": patch},
    )


def test_unreadable_file_names_dataset_and_file(demo):
    src = _one_forced_unit(demo, 0)
    (unit,) = src.discover()
    path = Path(unit.uri.removeprefix("file://"))
    path.unlink()
    path.mkdir()  # a directory where the file should be: unreadable as a file
    try:
        with pytest.raises(SourceError) as err:
            list(read_unit(unit))
        assert unit.unit_id in str(err.value) and str(path) in str(err.value)
        with pytest.raises(SourceError, match=unit.unit_id):
            src.discover()
    finally:
        path.rmdir()
    with pytest.raises(SourceError, match="cannot open"):  # and a missing file
        list(read_unit(unit))


def test_truncated_parquet_names_dataset_and_file(demo):
    src = _one_forced_unit(demo, 1)
    (unit,) = src.discover()
    path = Path(unit.uri.removeprefix("file://"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError) as err:
        list(read_unit(unit))
    assert unit.unit_id in str(err.value) and str(path) in str(err.value)
    with pytest.raises(SourceError, match=unit.unit_id):
        src.discover()


def test_damaged_column_data_is_an_error_not_a_silent_drop(demo):
    """A file whose footer is intact but whose data pages are garbage fails loudly."""
    src = _one_forced_unit(demo, 2)
    (unit,) = src.discover()
    path = Path(unit.uri.removeprefix("file://"))
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    for i in range(4, len(data) - footer, 7):
        data[i] = (data[i] * 31 + 17) % 256
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=unit.unit_id):
        list(read_unit(unit))


# ---------------------------------------------------------------------------------------------- memory

_READER = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa, pyarrow.parquet as pq
    from qdask.sources.butler import ButlerSource, read_unit
    repo, mode = sys.argv[1], sys.argv[2]
    src = ButlerSource(repo, "bigTable", "big/run")
    units = src.discover()
    pool = pa.default_memory_pool()
    before = mark_peak()
    rows, total = 0, 0.0
    if mode == "source":
        for unit in units:
            for batch in read_unit(unit):
                rows += batch.num_rows
                total += pa.compute.sum(batch.column("c0")).as_py()
    else:  # the control: what reading the file whole costs
        table = pq.read_table(units[0].uri.removeprefix("file://"))
        rows = table.num_rows
        total = pa.compute.sum(table.column("c0")).as_py()
    after = peak_since_mark()
    print(json.dumps({"units": len(units), "rows": rows, "total": total,
                      "pool_max": pool.max_memory(), "rss_growth": after - before}))
    """
)


def _run_reader(repo: Path, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD_SOURCE + _READER, str(repo), mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def scratch(tmp_path):
    """A temp dir removed after the test (pytest would otherwise keep the last runs' 2 GB files)."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_reading_a_2gb_dataset_streams_in_bounded_memory(scratch):
    """Peak memory of reading a 2 GB dataset through the source stays far below its size.

    Measured in a fresh process (Arrow's pool high-water mark and the growth of the peak RSS); the
    control run reads the same file whole with pyarrow and must exceed the bound.
    """
    repo = scratch / "repo"
    Butler.makeRepo(str(repo))
    butler = Butler.from_config(str(repo), writeable=True, run="big/run")
    dt = _register(butler, "bigTable", storage="ArrowTable")
    rows_per_batch = 1 << 16
    rng = np.random.default_rng(0)
    cols = {f"c{i}": rng.normal(size=rows_per_batch) for i in range(60)}
    cols.update({f"f{i}": rng.random(rows_per_batch) < 0.1 for i in range(30)})
    batch = pa.RecordBatch.from_pydict(cols)
    target = 2 * 10**9
    repeats = -(-target // (rows_per_batch * 8 * 60))
    path = scratch / "big.parq"
    with pq.ParquetWriter(path, batch.schema, compression="none", use_dictionary=False) as writer:
        for _ in range(repeats // 4):  # row groups of 4 batches (≈ 126 MB)
            writer.write_table(pa.Table.from_batches([batch] * 4))
    size = os.path.getsize(path)
    assert size >= target
    butler.ingest(FileDataset(str(path), DatasetRef(dt, {}, run="big/run")), transfer="move")
    butler.close()

    expected_rows = (repeats // 4) * 4 * rows_per_batch
    got = _run_reader(repo, "source")
    print("source read:", got)
    assert got["rows"] == expected_rows
    assert got["total"] == pytest.approx(float(np.sum(cols["c0"])) * (expected_rows // rows_per_batch))
    assert got["units"] >= 4  # split by the default 512 MiB per-task budget
    # ≈ 500 MB: a whole-file read needs at least the file's size (the control below grows 4.4 GB); the
    # source's growth measured 320 MB since the child's own mark (`peak_memory`)
    bound = size // 4
    assert got["pool_max"] < bound, got
    assert got["rss_growth"] < bound, got

    control = _run_reader(repo, "whole")
    print("whole-file control:", control)
    assert control["rows"] == expected_rows
    assert control["pool_max"] > bound and control["rss_growth"] > bound, control


def test_discovery_is_not_capped_at_the_butler_default_of_20000(tmp_path):
    """query_datasets caps at 20 000 results unless limit=None; the source must see every dataset."""
    Butler.makeRepo(str(tmp_path))
    butler = Butler.from_config(str(tmp_path), writeable=True, run="many/run")
    n = 20_001
    butler.registry.insertDimensionData(
        "skymap", {"name": "sky", "hash": b"x", "tract_max": n, "patch_nx_max": 1, "patch_ny_max": 1}
    )
    butler.registry.insertDimensionData("tract", *[{"skymap": "sky", "id": i} for i in range(n)])
    dt = _register(butler, "tiny", ["skymap", "tract"], storage="ArrowTable")
    butler.registry.insertDatasets(dt, [{"skymap": "sky", "tract": i} for i in range(n)], run="many/run")
    refs = ButlerSource(str(tmp_path), "tiny", "many/run", where="skymap = 'sky'", butler=butler).refs()
    assert len(refs) == n
    assert [r.dataId["tract"] for r in refs] == list(range(n))  # sorted by data id: a deterministic plan


def test_from_config_block_with_colon_bind_syntax(demo):
    """A config's input.butler block (skymap/instrument as data-id constraints, `:name` bind references)."""
    from qdask.config import ButlerInput

    spec = ButlerInput(
        repo=str(demo.root),
        collections="DC2/demo",
        dataset_type="forcedSourceTable",
        skymap="DC2",
        where="tract IN (:tracts) AND patch = :p",
        bind={"tracts": list(demo.tracts[:2]), "p": 3},
    )
    units = ButlerSource.from_config(spec, table="ForcedSource").discover()
    assert [(u.data_id["tract"], u.data_id["patch"]) for u in units] == [
        (demo.tracts[0], 3),
        (demo.tracts[1], 3),
    ]
    assert {u.table for u in units} == {"ForcedSource"}
    ccd = ButlerInput(
        repo=str(demo.root),
        collections=["DC2/demo"],
        dataset_type="ccdVisitTable",
        instrument="LSSTCam-imSim",
    )
    (unit,) = ButlerSource.from_config(ccd).discover()
    assert unit.unit_id == "ccdVisitTable:instrument=LSSTCam-imSim" and unit.table == "ccdVisitTable"

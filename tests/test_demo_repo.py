"""The DP0.2-shaped demo repository: a real Butler repo whose datasets look like DP0.2's and agree."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner
from lsst.daf.butler import Butler, CollectionType
from lsst.sphgeom import LonLat, UnitVector3d

from qdask.cli import main
from qdask.demo import FOOTPRINT, make_demo_repo
from qdask.schema import felis_table
from qdask.sources.butler import ButlerSource, read_unit

SEED = 11
ROWS = 60


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_repo(tmp_path_factory.mktemp("demo") / "repo", tracts=2, rows_per_patch=ROWS, seed=SEED)


def _read(demo, dataset_type, columns=None, where="", bind=None) -> pa.Table:
    units = ButlerSource(str(demo.root), dataset_type, demo.collection, where=where, bind=bind).discover()
    return pa.Table.from_batches([b for u in units for b in read_unit(u, columns)])


def test_repository_layout(demo):
    butler = Butler.from_config(str(demo.root))
    assert butler.collections.get_info(demo.collection).type == CollectionType.CHAINED
    assert list(butler.collections.get_info(demo.collection).children) == [demo.run]
    types = {name: butler.get_dataset_type(name) for name in demo.storage_classes}
    assert types["objectTable_tract"].storageClass_name == "DataFrame"
    assert types["forcedSourceTable"].storageClass_name == "ArrowTable"
    assert set(types["forcedSourceTable"].dimensions.required) == {"skymap", "tract", "patch"}
    assert set(types["objectTable_tract"].dimensions.required) == {"skymap", "tract"}
    counts = {name: len(butler.query_datasets(name, demo.collection, limit=None)) for name in types}
    assert counts == {
        "objectTable_tract": 2,
        "forcedSourceTable": 8,
        "ccdVisitTable": 1,
        "diaObjectTable_tract": 2,
        "diaSourceTable_tract": 2,
        "forcedSourceOnDiaObjectTable": 8,
        "truth_summary": 2,
        "match_ref_truth_summary_objectTable_tract": 2,
        "visitTable": 1,
    }
    tracts = {r.id: r for r in butler.query_dimension_records("tract", skymap="DC2", limit=None)}
    assert sorted(tracts) == list(demo.tracts)
    patches = butler.query_dimension_records("patch", skymap="DC2", limit=None)
    assert len(patches) == 8 and {(p.cell_x, p.cell_y) for p in patches} == {(0, 0), (1, 0), (0, 1), (1, 1)}
    for p in patches:  # each patch's region lies within its tract's region
        centre = p.region.getBoundingCircle().getCenter()
        assert tracts[p.tract].region.contains(centre)
    butler.close()


def test_object_has_the_dp02_columns_and_types(demo):
    felis = felis_table("dp02_dc2", "Object").arrow_schema()
    units = ButlerSource(
        str(demo.root), "objectTable_tract", demo.collection, where="skymap = 'DC2'"
    ).discover()
    table = pa.Table.from_batches(list(read_unit(units[0])))
    assert len(felis) == 991 and table.num_columns == 991
    assert table.column_names == felis.names  # objectId (the pandas index) first, as in felis
    for field in felis:
        assert table.schema.field(field.name).type == field.type, field.name
    assert table.num_rows == ROWS * len(demo.patches)


def test_values_are_realistic(demo):
    table = _read(demo, "objectTable_tract")
    ids = table.column("objectId").to_numpy()
    assert len(np.unique(ids)) == len(ids) == demo.rows["objectTable_tract"]
    g = table.column("g_psfFlux").to_numpy(zero_copy_only=False)
    assert 0 < np.isnan(g).mean() < 0.1  # NaNs where measurements failed, not everywhere
    finite = g[np.isfinite(g)]
    assert finite.min() > 0 and 10**9 > np.median(finite) > 10**2  # nJy for magnitudes 17–27
    err = table.column("g_psfFluxErr").to_numpy(zero_copy_only=False)
    assert np.nanmin(err) > 0
    primary = table.column("detect_isPrimary").to_numpy(zero_copy_only=False)
    flag = table.column("g_psfFlux_flag").to_numpy(zero_copy_only=False)
    assert primary.dtype == bool and primary.mean() > 0.7 and flag.mean() < 0.1
    assert set(table.column("skymap").to_pylist()) == {"DC2"}
    assert set(table.column("refBand").to_pylist()) <= set("ugrizy")
    assert set(table.column("tract").to_pylist()) == set(demo.tracts)


def test_positions_inside_footprint_and_their_patch(demo):
    table = _read(demo, "objectTable_tract", ["tract", "patch", "coord_ra", "coord_dec", "r_ra", "r_decl"])
    ra, dec = table.column("coord_ra").to_numpy(), table.column("coord_dec").to_numpy()
    ra0, ra1, dec0, dec1 = FOOTPRINT
    assert ((ra > ra0) & (ra < ra1) & (dec > dec0) & (dec < dec1)).all()
    butler = Butler.from_config(str(demo.root))
    regions = {(p.tract, p.id): p.region for p in butler.query_dimension_records("patch", limit=None)}
    butler.close()
    tracts, patches = table.column("tract").to_numpy(), table.column("patch").to_numpy()
    for (tract, patch), box in demo.patch_boxes.items():
        sel = (tracts == tract) & (patches == patch)
        assert sel.sum() == ROWS
        assert ((ra[sel] > box[0]) & (ra[sel] < box[1]) & (dec[sel] > box[2]) & (dec[sel] < box[3])).all()
        region = regions[(tract, patch)]  # and inside the region the Butler holds for the patch
        assert all(
            region.contains(UnitVector3d(LonLat.fromDegrees(a, d)))
            for a, d in zip(ra[sel], dec[sel], strict=True)
        )
    # Per-band positions are the object's, up to centroiding noise (with NaN where the band failed).
    assert np.nanmax(np.abs(table.column("r_ra").to_numpy(zero_copy_only=False) - ra)) < 1e-3


def test_forced_sources_are_children_of_objects(demo):
    objects = _read(demo, "objectTable_tract", ["objectId", "coord_ra", "coord_dec"])
    forced = _read(demo, "forcedSourceTable")
    felis = felis_table("dp02_dc2", "ForcedSource").arrow_schema()
    assert forced.column_names == felis.names and forced.num_rows == demo.rows["forcedSourceTable"]
    assert pc.all(pc.is_in(forced.column("objectId"), value_set=objects.column("objectId"))).as_py()
    ids = forced.column("forcedSourceId").to_numpy()
    assert len(np.unique(ids)) == len(ids)
    # They share their object's position.
    joined = forced.select(["objectId", "coord_ra", "coord_dec"]).join(
        objects, "objectId", right_suffix="_obj", join_type="inner"
    )
    assert joined.num_rows == forced.num_rows
    assert pc.all(pc.equal(joined.column("coord_ra"), joined.column("coord_ra_obj"))).as_py()
    assert pc.all(pc.equal(joined.column("coord_dec"), joined.column("coord_dec_obj"))).as_py()
    # Several rows per object in every band: 2 visits x 6 bands.
    per = forced.group_by(["objectId", "band"]).aggregate([("forcedSourceId", "count")])
    assert per.num_rows == objects.num_rows * 6 and set(per.column("forcedSourceId_count").to_pylist()) == {2}
    # And their ccdVisitIds are rows of the regular CcdVisit table.
    ccd = _read(demo, "ccdVisitTable")
    assert ccd.column_names == felis_table("dp02_dc2", "CcdVisit").arrow_schema().names
    assert pc.all(pc.is_in(forced.column("ccdVisitId"), value_set=ccd.column("ccdVisitId"))).as_py()


def test_dia_tables_are_dp02_shaped_children_of_their_own_director(demo):
    objects = _read(demo, "objectTable_tract", ["objectId", "coord_ra", "coord_dec"])
    dia = _read(demo, "diaObjectTable_tract")
    sources = _read(demo, "diaSourceTable_tract")
    forced = _read(demo, "forcedSourceOnDiaObjectTable")
    for table, name in ((dia, "DiaObject"), (sources, "DiaSource"), (forced, "ForcedSourceOnDiaObject")):
        felis = felis_table("dp02_dc2", name).arrow_schema()
        assert sorted(table.column_names) == sorted(felis.names), name  # a DataFrame's index comes first
        assert all(table.schema.field(f.name).type == f.type for f in felis), name
    ids = dia.column("diaObjectId").to_numpy()
    assert len(np.unique(ids)) == len(ids) == demo.rows["diaObjectTable_tract"] == objects.num_rows // 5
    assert not np.isin(ids, objects.column("objectId").to_numpy()).any()  # ids of its own
    for child in (sources, forced):
        assert pc.all(pc.is_in(child.column("diaObjectId"), value_set=dia.column("diaObjectId"))).as_py()
    per = sources.group_by("diaObjectId").aggregate([("diaSourceId", "count")])
    counts = dict(zip(per["diaObjectId"].to_pylist(), per["diaSourceId_count"].to_pylist(), strict=True))
    assert counts == dict(zip(dia["diaObjectId"].to_pylist(), dia["nDiaSources"].to_pylist(), strict=True))
    assert len(set(counts.values())) > 1  # 1-4 sources, not a constant
    # A DiaSource's position is its own, scattered around (within arcseconds of) its DiaObject's.
    joined = sources.select(["diaObjectId", "ra", "decl"]).join(
        dia.select(["diaObjectId", "ra", "decl"]), "diaObjectId", right_suffix="_dia"
    )
    offset = np.hypot(
        (joined["ra"].to_numpy() - joined["ra_dia"].to_numpy())
        * np.cos(np.radians(joined["decl"].to_numpy())),
        joined["decl"].to_numpy() - joined["decl_dia"].to_numpy(),
    )
    assert (offset > 0).all() and offset.max() < 3 / 3600
    assert forced.num_rows == dia.num_rows * 6 * 2 and len(
        np.unique(forced["forcedSourceOnDiaObjectId"])
    ) == (forced.num_rows)


def test_truth_matches_pair_truth_objects_with_objects(demo):
    objects = _read(demo, "objectTable_tract", ["objectId", "coord_ra", "coord_dec"])
    truth = _read(demo, "truth_summary")
    matches = _read(demo, "match_ref_truth_summary_objectTable_tract")
    assert truth.column_names == felis_table("dp02_dc2", "TruthSummary").arrow_schema().names
    dp02 = felis_table("dp02_dc2", "MatchesTruth").arrow_schema()
    assert matches.column_names == dp02.names + ["ra", "dec", "match_coord_ra", "match_coord_dec", "flags"]
    assert all(matches.schema.field(f.name).type == f.type for f in dp02)
    keys = truth.column("id_truth_type").to_pylist()
    assert len(set(keys)) == len(keys) == objects.num_rows and max(map(len, keys)) <= 18  # CHAR(18)
    pairs = matches.join(
        truth.select(["id_truth_type", "ra", "dec"]), "id_truth_type", right_suffix="_t"
    ).join(objects, keys="match_objectId", right_keys="objectId")
    assert pairs.num_rows == matches.num_rows == truth.num_rows
    for mine, theirs in (("ra", "ra_t"), ("dec", "dec_t"), ("match_coord_ra", "coord_ra"),
                         ("match_coord_dec", "coord_dec")):  # fmt: skip
        assert pc.all(pc.equal(pairs[mine], pairs[theirs])).as_py(), mine
    sep = np.hypot(
        (pairs["ra"].to_numpy() - pairs["coord_ra"].to_numpy()) * np.cos(np.radians(pairs["dec"].to_numpy())),
        pairs["dec"].to_numpy() - pairs["coord_dec"].to_numpy(),
    )
    assert sep.max() < 0.01667  # within the overlap, as Qserv's match tables need


def test_visits_are_the_ccdvisits_visits(demo):
    visits = _read(demo, "visitTable")
    ccd = _read(demo, "ccdVisitTable", ["visitId", "band"])
    assert sorted(visits.column_names) == sorted(felis_table("dp02_dc2", "Visit").arrow_schema().names)
    assert sorted(visits["visit"].to_pylist()) == sorted(set(ccd["visitId"].to_pylist()))


def test_deterministic_for_a_seed(demo, tmp_path):
    again = make_demo_repo(tmp_path / "again", tracts=2, rows_per_patch=ROWS, seed=SEED)
    other = make_demo_repo(tmp_path / "other", tracts=2, rows_per_patch=ROWS, seed=SEED + 1)
    for name in demo.storage_classes:
        first = _read(demo, name).to_pandas()
        assert first.equals(_read(again, name).to_pandas()), name  # same ids and values (NaN in place)
    ids = _read(demo, "objectTable_tract", ["objectId"]).column(0)
    assert ids.equals(_read(other, "objectTable_tract", ["objectId"]).column(0))  # ids follow the layout
    flux = _read(demo, "objectTable_tract", ["g_psfFlux"]).to_pandas()
    assert not flux.equals(_read(other, "objectTable_tract", ["g_psfFlux"]).to_pandas())  # values the seed


def test_bad_arguments(tmp_path, demo):
    with pytest.raises(ValueError, match="square"):
        make_demo_repo(tmp_path / "x", patches_per_tract=5)
    with pytest.raises(ValueError, match="60 tracts"):
        make_demo_repo(tmp_path / "y", tracts=61)
    with pytest.raises(FileExistsError):
        make_demo_repo(demo.root)


def test_cli_demo_repo(tmp_path):
    result = CliRunner().invoke(
        main, ["demo-repo", str(tmp_path / "r"), "--tracts", "1", "--rows-per-patch", "7"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["collection"] == "DC2/demo" and summary["tracts"] == [3828]
    assert summary["datasets"]["objectTable_tract"] == {"storage_class": "DataFrame", "rows": 28}
    butler = Butler.from_config(str(tmp_path / "r"))
    frame = butler.get("objectTable_tract", skymap="DC2", tract=3828, collections="DC2/demo")
    assert frame.index.name == "objectId" and frame.shape == (28, 990)
    butler.close()
    again = CliRunner().invoke(main, ["demo-repo", str(tmp_path / "r")])
    assert again.exit_code == 2 and "already holds a Butler repository" in again.output

"""A demo Butler repository with DP0.2-shaped catalogs: `make_demo_repo`.

The repository stands in for a DP0.2 data release wherever a real one is out of reach (tests, benchmarks,
`qdask demo`). It holds:

- a skymap ``DC2`` with tracts and patches tiling a DC2-like footprint (RA 50–75°, Dec −45…−27°). Tracts
  are 2.5° × 3° RA/Dec boxes numbered from 3828 in a 10 × 6 grid; each tract has an n × n grid of patches
  (id = cell_y · n + cell_x). Their sky boxes are the `region` of the tract/patch dimension records
  (`lsst.sphgeom.Box`), and `DemoRepo.tract_boxes`/`patch_boxes` give them in degrees;
- ``objectTable_tract`` (dimensions skymap, tract; storage class ``DataFrame``): all 991 columns of the
  DP0.2 ``Object`` table, written as pandas did for DP0.2, i.e. with ``objectId`` as the pandas index
  (stored last, named in the pandas metadata);
- ``forcedSourceTable`` (skymap, tract, patch; ``ArrowTable``): the 39 columns of DP0.2 ``ForcedSource``,
  a child of Object: per object, `visits_per_band` rows per band carrying its objectId and coord_ra/dec;
- ``ccdVisitTable`` (instrument; ``DataFrame`` indexed by ``ccdVisitId``): the DP0.2 ``CcdVisit`` table, a
  small regular table that the forced sources' ``ccdVisitId`` values refer to;
- the rest of DP0.2's table set, derived from the objects (see `qdask.demo_dp02`): ``diaObjectTable_tract``
  (DiaObject, a second director), ``diaSourceTable_tract`` (DiaSource) and ``forcedSourceOnDiaObjectTable``
  (ForcedSourceOnDiaObject, per patch), its children by ``diaObjectId``; ``truth_summary`` (TruthSummary)
  and ``match_ref_truth_summary_objectTable_tract`` (MatchesTruth, pairing truth objects with Objects);
  ``visitTable`` (Visit). `DATASETS` gives each one's dimensions, storage class and DP0.2 table.

All datasets are in the RUN collection ``DC2/runs/demo``, reached through the CHAINED collection
``DC2/demo``. Values are synthetic but typed and ranged like the real catalogs (fluxes in nJy from
magnitudes 17–27, boolean flags mostly false, NaN for failed measurements); objectIds are unique
(``tract << 40 | patch << 28 | n``). Generation is deterministic for a seed and streams: each file is
written a record batch (at most `chunk_rows` rows) at a time and ingested into the Butler by moving it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "BANDS",
    "DemoRepo",
    "FOOTPRINT",
    "make_demo_repo",
    "patch_box",
    "tract_box",
]

#: The DC2-like footprint, degrees: (ra_min, ra_max, dec_min, dec_max).
FOOTPRINT = (50.0, 75.0, -45.0, -27.0)
BANDS = "ugrizy"
SKYMAP = "DC2"
INSTRUMENT = "LSSTCam-imSim"
RUN = "DC2/runs/demo"
COLLECTION = "DC2/demo"
OBJECT_DATASET = "objectTable_tract"
FORCED_DATASET = "forcedSourceTable"
CCDVISIT_DATASET = "ccdVisitTable"
DIAOBJECT_DATASET = "diaObjectTable_tract"
DIASOURCE_DATASET = "diaSourceTable_tract"
FORCED_DIA_DATASET = "forcedSourceOnDiaObjectTable"
TRUTH_DATASET = "truth_summary"
MATCH_DATASET = "match_ref_truth_summary_objectTable_tract"
VISIT_DATASET = "visitTable"
#: Dataset type -> (dimensions, storage class, the pandas index of a DataFrame or None, DP0.2 table).
DATASETS: dict[str, tuple[tuple[str, ...], str, str | None, str]] = {
    OBJECT_DATASET: (("skymap", "tract"), "DataFrame", "objectId", "Object"),
    FORCED_DATASET: (("skymap", "tract", "patch"), "ArrowTable", None, "ForcedSource"),
    CCDVISIT_DATASET: (("instrument",), "DataFrame", "ccdVisitId", "CcdVisit"),
    DIAOBJECT_DATASET: (("skymap", "tract"), "DataFrame", "diaObjectId", "DiaObject"),
    DIASOURCE_DATASET: (("skymap", "tract"), "DataFrame", "diaSourceId", "DiaSource"),
    FORCED_DIA_DATASET: (("skymap", "tract", "patch"), "ArrowTable", None, "ForcedSourceOnDiaObject"),
    TRUTH_DATASET: (("skymap", "tract"), "ArrowTable", None, "TruthSummary"),
    MATCH_DATASET: (("skymap", "tract"), "ArrowTable", None, "MatchesTruth"),
    VISIT_DATASET: (("instrument",), "DataFrame", "visit", "Visit"),
}

TRACT_ID_BASE = 3828
_TRACT_COLUMNS, _TRACT_ROWS = 10, 6  # 2.5° × 3° tracts
_DETECTORS = 9
_AB_NJY = 31.4  # AB magnitude of 1 nJy
_PIXEL_DEG = 0.2 / 3600  # 0.2 arcsec pixels


def tract_box(index: int) -> tuple[float, float, float, float]:
    """The (ra_min, ra_max, dec_min, dec_max) box in degrees of the `index`-th tract (0-based)."""
    if not 0 <= index < _TRACT_COLUMNS * _TRACT_ROWS:
        raise ValueError(f"the footprint holds {_TRACT_COLUMNS * _TRACT_ROWS} tracts, not {index + 1}")
    ra0, ra1, dec0, dec1 = FOOTPRINT
    width, height = (ra1 - ra0) / _TRACT_COLUMNS, (dec1 - dec0) / _TRACT_ROWS
    col, row = index % _TRACT_COLUMNS, index // _TRACT_COLUMNS
    return (ra0 + col * width, ra0 + (col + 1) * width, dec0 + row * height, dec0 + (row + 1) * height)


def patch_box(
    tract: tuple[float, float, float, float], patch: int, n: int
) -> tuple[float, float, float, float]:
    """The box of patch `patch` (= cell_y · n + cell_x) of an n × n grid in the `tract` box."""
    ra0, ra1, dec0, dec1 = tract
    cx, cy = patch % n, patch // n
    w, h = (ra1 - ra0) / n, (dec1 - dec0) / n
    return (ra0 + cx * w, ra0 + (cx + 1) * w, dec0 + cy * h, dec0 + (cy + 1) * h)


@dataclass(frozen=True)
class DemoRepo:
    """What `make_demo_repo` built: where, which collections and datasets, and the sky layout."""

    root: Path
    seed: int
    rows_per_patch: int
    tracts: tuple[int, ...]
    patches: tuple[int, ...]  # patch ids present in every tract
    tract_boxes: dict[int, tuple[float, float, float, float]]
    patch_boxes: dict[tuple[int, int], tuple[float, float, float, float]]
    rows: dict[str, int]  # dataset type -> rows over all its datasets
    collection: str = COLLECTION
    run: str = RUN
    skymap: str = SKYMAP
    instrument: str = INSTRUMENT
    object_dataset: str = OBJECT_DATASET
    forced_dataset: str = FORCED_DATASET
    ccdvisit_dataset: str = CCDVISIT_DATASET
    storage_classes: dict[str, str] = field(
        default_factory=lambda: {name: spec[1] for name, spec in DATASETS.items()}
    )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (what `qdask demo-repo` prints)."""
        return {
            "root": str(self.root),
            "collection": self.collection,
            "run": self.run,
            "skymap": self.skymap,
            "instrument": self.instrument,
            "seed": self.seed,
            "rows_per_patch": self.rows_per_patch,
            "tracts": list(self.tracts),
            "patches": list(self.patches),
            "datasets": {
                name: {"storage_class": sc, "rows": self.rows[name]}
                for name, sc in self.storage_classes.items()
            },
        }


# --------------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------------


def _felis_schema(table: str) -> pa.Schema:
    """The Arrow schema of a DP0.2 table, from lsst-sdm-schemas via `qdask.schema.felis_table`."""
    from qdask.schema import felis_table

    return felis_table("dp02_dc2", table).arrow_schema()


def _pandas_schema(schema: pa.Schema, index: str, rows: int | None) -> pa.Schema:
    """`schema` laid out as pandas writes a frame indexed by `index`: the index last, pandas metadata
    (and the row count when known before writing)."""
    data = [f for f in schema if f.name != index]
    ordered = pa.schema(data + [schema.field(index)])
    sample = ordered.empty_table().to_pandas().set_index(index)
    pandas_md = pa.Table.from_pandas(sample, preserve_index=True).schema.metadata[b"pandas"]
    if rows is None:
        return ordered.with_metadata({b"pandas": pandas_md})
    return ordered.with_metadata({b"pandas": pandas_md, b"lsst::arrow::rowcount": str(rows).encode()})


def _arrow_schema(schema: pa.Schema, rows: int | None) -> pa.Schema:
    return schema.with_metadata({} if rows is None else {b"lsst::arrow::rowcount": str(rows).encode()})


def _file_schema(dataset: str, base: pa.Schema, rows: int | None = None) -> pa.Schema:
    """`base` as the dataset type's storage class writes it (see `DATASETS`)."""
    index = DATASETS[dataset][2]
    return _arrow_schema(base, rows) if index is None else _pandas_schema(base, index, rows)


# --------------------------------------------------------------------------------------------------
# Synthetic values
# --------------------------------------------------------------------------------------------------

_TRUE_MOSTLY = re.compile(r"isPrimary|isPatchInner|isTractInner|isDeblendedSource|isIsolated")
_BAND = re.compile(r"^([ugrizy])_(.*)$")


def _bool(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if _TRUE_MOSTLY.search(name):
        p = 0.9
    elif name.startswith(tuple(f"{b}_calib_" for b in BANDS)):
        p = 0.05
    else:
        p = 0.02
    return rng.random(n) < p


def _floats(name: str, n: int, rng: np.random.Generator, ctx: dict[str, Any]) -> np.ndarray:
    """Values for a float/double column by what its name says it measures (see the module doc)."""
    m = _BAND.match(name)
    band, stem = (m.group(1), m.group(2)) if m else (ctx.get("band"), name)
    flux = ctx["flux"][band] if band in ctx.get("flux", {}) else None
    if stem in ("ra", "coord_ra"):
        out = ctx["ra"] + rng.normal(0, 1e-5, n) * (stem == "ra")
    elif stem in ("decl", "dec", "coord_dec"):
        out = ctx["dec"] + rng.normal(0, 1e-5, n) * (stem == "decl")
    elif stem in ("x", "centroid_x"):
        out = ctx["x"] + rng.normal(0, 0.05, n) * (stem != "x")
    elif stem in ("y", "centroid_y"):
        out = ctx["y"] + rng.normal(0, 0.05, n) * (stem != "y")
    elif "Flux" in stem and flux is not None and not stem.startswith("localBackground"):
        if stem.endswith("Err"):
            out = 0.02 * flux + rng.lognormal(np.log(40), 0.3, n)
        else:
            out = flux * (1 + 0.05 * rng.normal(size=n))
            if "instFlux" in stem:
                out = out / 0.65
    elif stem.startswith("localBackground"):
        out = rng.lognormal(np.log(3), 0.3, n) if stem.endswith("Err") else rng.normal(0, 5, n)
    elif stem.endswith("Err"):
        out = rng.lognormal(np.log(0.05), 0.5, n)
    elif "CDMatrix" in stem:
        out = _PIXEL_DEG * (1 + 0.01 * rng.normal(size=n)) * (1 if stem.endswith(("1_1", "2_2")) else 0.01)
    elif stem.startswith("localPhotoCalib"):
        out = rng.uniform(0.55, 0.75, n)
    elif re.search(r"xy|ixy|_e[12]$|E[12]$", stem):
        out = rng.normal(0, 0.3, n)
    elif re.search(
        r"^(i?xx|i?yy|ixx|iyy|shape_|bdRe|fwhm|refFwhm|kronRad|sigma|psfFlux_area)", stem
    ) or stem in (
        "hsmShapeRegauss_sigma",
        "iRound_flag",
    ):
        out = rng.lognormal(np.log(4), 0.4, n)
    elif "xtendedness" in stem:
        out = ctx["extended"].astype(np.float64)
    elif stem.startswith("blendedness"):
        out = rng.beta(0.5, 8, n)
    elif "Chi2" in stem:
        out = rng.chisquare(5, n)
    else:
        out = rng.normal(0, 1, n)
    out = np.array(out, dtype=np.float64)
    if band is not None and "missing" in ctx and band in ctx["missing"]:
        out[ctx["missing"][band]] = np.nan  # the whole band failed for these objects
    if stem.endswith("Err") or stem.startswith(("ixx", "iyy", "ixy", "hsm", "bd", "kron", "gaap")):
        out[rng.random(n) < 0.01] = np.nan  # independent measurement failures
    return out


def _column(f: pa.Field, n: int, rng: np.random.Generator, ctx: dict[str, Any]) -> pa.Array:
    """A synthetic column of `n` values for field `f`; exact values from ``ctx["known"]`` win."""
    known = ctx["known"]
    if f.name in known:
        return pa.array(known[f.name], type=f.type)
    t = f.type
    if pa.types.is_boolean(t):
        return pa.array(_bool(f.name, n, rng), type=t)
    if pa.types.is_floating(t):
        return pa.array(_floats(f.name, n, rng, ctx).astype(t.to_pandas_dtype()), type=t)
    if pa.types.is_integer(t):
        if "inputCount" in f.name:
            values = rng.integers(1, 40, n)
        elif "footprintArea" in f.name:
            values = rng.integers(20, 3000, n)
        elif "nChild" in f.name:
            values = np.where(rng.random(n) < 0.1, rng.integers(2, 5, n), 0)
        else:
            values = rng.integers(0, 10, n)
        return pa.array(values, type=t)
    if pa.types.is_string(t):
        return pa.array(rng.choice(list(BANDS), n), type=t)
    raise TypeError(f"no synthetic values for column {f.name} of type {t}")


def _objects(
    rng: np.random.Generator, tract: int, patch: int, box: tuple[float, ...], first: int, n: int, tbox: tuple
) -> dict[str, Any]:
    """Positions, ids and per-band fluxes of `n` objects of one patch (the context of their columns)."""
    ra0, ra1, dec0, dec1 = box
    eps = 1e-9
    ra = rng.uniform(ra0 + eps, ra1 - eps, n)
    sin_dec = rng.uniform(np.sin(np.radians(dec0 + eps)), np.sin(np.radians(dec1 - eps)), n)
    dec = np.degrees(np.arcsin(sin_dec))
    object_id = (
        (np.int64(tract) << 40)
        | (np.int64(patch) << 28)
        | np.arange(first + 1, first + n + 1, dtype=np.int64)
    )
    mag = rng.uniform(17, 27, n)
    colours = np.cumsum(rng.normal(0.1, 0.2, (len(BANDS), n)), axis=0)
    flux = {b: 10 ** ((_AB_NJY - (mag + colours[i] - colours[3])) / 2.5) for i, b in enumerate(BANDS)}
    miss_p = {"u": 0.05, "g": 0.01, "r": 0.01, "i": 0.01, "z": 0.02, "y": 0.06}
    missing = {b: rng.random(n) < miss_p[b] for b in BANDS}
    parent = np.where(rng.random(n) < 0.1, object_id[0], 0).astype(np.int64)  # a few deblended children
    parent[0] = 0
    x = (ra - tbox[0]) * np.cos(np.radians(dec)) / _PIXEL_DEG + 100
    y = (dec - tbox[2]) / _PIXEL_DEG + 100
    return {
        "ra": ra,
        "dec": dec,
        "objectId": object_id,
        "parentObjectId": parent,
        "flux": flux,
        "missing": missing,
        "extended": rng.random(n) < 0.4,
        "x": x,
        "y": y,
    }


def _object_batches(
    schema: pa.Schema,
    tract: int,
    tbox: tuple,
    patches: dict[int, tuple],
    rows: int,
    seed: int,
    chunk_rows: int,
) -> Iterator[pa.RecordBatch]:
    """Object rows of one tract, patch by patch, at most `chunk_rows` per batch."""
    for patch, box in patches.items():
        for first in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - first)
            rng = np.random.default_rng([seed, tract, patch, first])
            ctx = _objects(rng, tract, patch, box, first, n, tbox)
            ctx["known"] = {
                "objectId": ctx["objectId"],
                "parentObjectId": ctx["parentObjectId"],
                "coord_ra": ctx["ra"],
                "coord_dec": ctx["dec"],
                "tract": np.full(n, tract),
                "patch": np.full(n, patch),
                "skymap": [SKYMAP] * n,
                "refBand": rng.choice(["i", "r"], n, p=[0.8, 0.2]),
            }
            yield pa.RecordBatch.from_arrays([_column(f, n, rng, ctx) for f in schema], schema=schema)


def _ccdvisits(visits_per_band: int) -> dict[str, np.ndarray]:
    """The CcdVisit rows' ids and bands: `visits_per_band` visits per band, `_DETECTORS` detectors each."""
    rows = [(b, v, d) for b in BANDS for v in range(visits_per_band) for d in range(_DETECTORS)]
    band = np.array([r[0] for r in rows])
    visit = np.array([200000 + BANDS.index(r[0]) * 1000 + r[1] for r in rows], dtype=np.int64)
    detector = np.array([r[2] for r in rows], dtype=np.int64)
    return {"band": band, "visitId": visit, "detector": detector, "ccdVisitId": visit * 1000 + detector}


def _ccdvisit_batch(schema: pa.Schema, seed: int, visits_per_band: int) -> pa.RecordBatch:
    ids = _ccdvisits(visits_per_band)
    n = len(ids["band"])
    rng = np.random.default_rng([seed, 1])
    ra0, ra1, dec0, dec1 = FOOTPRINT
    ra = rng.uniform(ra0, ra1, n)
    dec = rng.uniform(dec0, dec1, n)
    mjd = 60000 + np.sort(rng.uniform(0, 365, n))
    start = (mjd - 40587) * 86400e6  # µs since the Unix epoch
    half = 0.11  # half a detector, degrees
    known = {
        "ccdVisitId": ids["ccdVisitId"],
        "visitId": ids["visitId"],
        "detector": ids["detector"],
        "band": ids["band"],
        "physical_filter": [f"{b}_sim_1.4" for b in ids["band"]],
        "ra": ra,
        "decl": dec,
        "expMidpt": pa.array((start + 15e6).astype(np.int64), type=pa.timestamp("us")),
        "expMidptMJD": mjd + 15 / 86400,
        "obsStart": pa.array(start.astype(np.int64), type=pa.timestamp("us")),
        "obsStartMJD": mjd,
        "expTime": np.full(n, 30.0),
        "darkTime": np.full(n, 30.0),
        "xSize": np.full(n, 4072),
        "ySize": np.full(n, 4000),
        "zeroPoint": rng.normal(31.0, 0.1, n),
        "seeing": rng.lognormal(np.log(0.8), 0.2, n),
        "zenithDistance": rng.uniform(5, 60, n),
        "skyRotation": rng.uniform(0, 360, n),
        "psfSigma": rng.lognormal(np.log(1.7), 0.2, n),
        "skyBg": rng.uniform(200, 2000, n),
        "skyNoise": rng.uniform(10, 50, n),
    }
    for corner, (sr, sd) in {"llc": (-1, -1), "ulc": (-1, 1), "urc": (1, 1), "lrc": (1, -1)}.items():
        known[f"{corner}ra"] = ra + sr * half / np.cos(np.radians(dec))
        known[f"{corner}dec"] = dec + sd * half
    ctx = {"known": known}
    return pa.RecordBatch.from_arrays([_column(f, n, rng, ctx) for f in schema], schema=schema)


def _forced_batches(
    schema: pa.Schema,
    objects: pa.RecordBatch,
    tract: int,
    patch: int,
    seed: int,
    visits_per_band: int,
    first_row: int,
    first_object: int,
) -> pa.RecordBatch:
    """ForcedSource rows of a batch of objects: per object, `visits_per_band` rows in every band."""
    per = len(BANDS) * visits_per_band
    n_obj = objects.num_rows
    n = n_obj * per
    rng = np.random.default_rng([seed, tract, patch, first_object, 7])
    pick = np.repeat(np.arange(n_obj), per)
    band_of = np.tile(np.repeat(np.array(list(BANDS)), visits_per_band), n_obj)
    visit_k = np.tile(np.arange(visits_per_band), n_obj * len(BANDS))
    detector = rng.integers(0, _DETECTORS, n)
    ccd = 200000 + np.array([BANDS.index(b) for b in band_of]) * 1000 + visit_k
    ccd = ccd.astype(np.int64) * 1000 + detector  # = _ccdvisits()["ccdVisitId"] of that band/visit/detector

    def take(name: str) -> np.ndarray:
        return objects.column(name).to_numpy(zero_copy_only=False)[pick]

    # Each row's flux is its object's flux in its band (per band, then scattered back).
    flux = np.empty(n)
    for b in BANDS:
        sel = band_of == b
        flux[sel] = np.nan_to_num(take(f"{b}_psfFlux")[sel], nan=100.0)
    seq = np.arange(first_row + 1, first_row + n + 1, dtype=np.int64)
    known = {
        "forcedSourceId": (np.int64(tract) << 40) | (np.int64(patch) << 28) | seq,
        "objectId": take("objectId"),
        "parentObjectId": take("parentObjectId"),
        "coord_ra": take("coord_ra"),
        "coord_dec": take("coord_dec"),
        "skymap": [SKYMAP] * n,
        "tract": np.full(n, tract),
        "patch": np.full(n, patch),
        "band": band_of,
        "ccdVisitId": ccd,
        "detect_isPrimary": take("detect_isPrimary"),
        "detect_isPatchInner": take("detect_isPatchInner"),
        "detect_isTractInner": take("detect_isTractInner"),
    }
    ctx = {"known": known, "flux": {None: flux}, "band": None}
    psf = flux * (1 + 0.1 * rng.normal(size=n))
    known["psfFlux"] = psf
    known["psfFluxErr"] = 0.05 * np.abs(flux) + rng.lognormal(np.log(200), 0.3, n)
    known["psfDiffFlux"] = rng.normal(0, 1, n) * known["psfFluxErr"]
    known["psfDiffFluxErr"] = known["psfFluxErr"] * 1.4
    return pa.RecordBatch.from_arrays([_column(f, n, rng, ctx) for f in schema], schema=schema)


# --------------------------------------------------------------------------------------------------
# The repository
# --------------------------------------------------------------------------------------------------


def _register(butler: Any, tracts: dict[int, tuple], patches: dict[tuple[int, int], tuple], n: int) -> None:
    """Insert the instrument, skymap, tract and patch records and register the dataset types."""
    from lsst.daf.butler import CollectionType, DatasetType
    from lsst.sphgeom import Box

    def region(box: tuple[float, float, float, float]) -> Box:
        return Box.fromDegrees(box[0], box[2], box[1], box[3])

    registry = butler.registry
    registry.insertDimensionData(
        "instrument",
        {
            "name": INSTRUMENT,
            "class_name": "lsst.obs.lsst.LsstCamImSim",
            "detector_max": 189,
            "visit_max": 2**26,
            "exposure_max": 2**26,
        },
    )
    digest = hashlib.sha1(json.dumps({"footprint": FOOTPRINT, "patches": n}).encode()).digest()
    registry.insertDimensionData(
        "skymap",
        {
            "name": SKYMAP,
            "hash": digest,
            "tract_max": TRACT_ID_BASE + _TRACT_COLUMNS * _TRACT_ROWS,
            "patch_nx_max": n,
            "patch_ny_max": n,
        },
    )
    registry.insertDimensionData(
        "tract", *[{"skymap": SKYMAP, "id": t, "region": region(b)} for t, b in tracts.items()]
    )
    registry.insertDimensionData(
        "patch",
        *[
            {"skymap": SKYMAP, "tract": t, "id": p, "cell_x": p % n, "cell_y": p // n, "region": region(b)}
            for (t, p), b in patches.items()
        ],
    )
    universe = butler.dimensions
    for name, (dims, storage, _, _) in DATASETS.items():
        registry.registerDatasetType(DatasetType(name, dims, storage, universe=universe))
    registry.registerRun(RUN)
    registry.registerCollection(COLLECTION, CollectionType.CHAINED)
    registry.setCollectionChain(COLLECTION, [RUN])


def make_demo_repo(
    path: str | Path,
    *,
    tracts: int = 2,
    rows_per_patch: int = 200,
    patches_per_tract: int = 4,
    visits_per_band: int = 2,
    seed: int = 0,
    chunk_rows: int = 10_000,
) -> DemoRepo:
    """Create a Butler repository at `path` (which must not exist, or be an empty directory) with
    DP0.2-shaped datasets.

    The repository is built in a hidden sibling directory and renamed to `path` only when complete, so an
    interrupted build (Ctrl-C, a kill) never leaves a half-built repository that looks whole.
    `patches_per_tract` must be a square (an n × n patch grid). Sizes: Object has ``tracts ·
    patches_per_tract · rows_per_patch`` rows of 991 columns (≈ 4.2 kB each), ForcedSource
    ``6 · visits_per_band`` times as many rows of 39 columns; DiaObject a fifth of Object's rows (138
    columns), DiaSource 1–4 rows per DiaObject, ForcedSourceOnDiaObject ``6 · visits_per_band`` per
    DiaObject, TruthSummary and MatchesTruth one row per Object. Memory stays at about one batch of
    `chunk_rows` Object rows whatever the total size.
    """
    n = int(round(patches_per_tract**0.5))
    if n < 1 or n * n != patches_per_tract:
        raise ValueError(f"patches_per_tract must be a square (1, 4, 9, …, 49), not {patches_per_tract}")
    if tracts < 1 or rows_per_patch < 1 or visits_per_band < 1 or chunk_rows < 1:
        raise ValueError("tracts, rows_per_patch, visits_per_band and chunk_rows must be positive")
    final = Path(path).resolve()
    if (final / "butler.yaml").exists():
        raise FileExistsError(f"{final} already holds a Butler repository")
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FileExistsError(
            f"{final} exists and is not an empty directory; remove it or choose another path"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    # no "." in the name: Butler would take what follows it for a config file's extension
    root = Path(tempfile.mkdtemp(prefix="qdask-demo-repo-building-", dir=final.parent))
    try:
        built = _build_repo(
            root, tracts, rows_per_patch, patches_per_tract, visits_per_band, seed, chunk_rows
        )
        if final.exists():
            final.rmdir()
        root.rename(final)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return dataclasses.replace(built, root=final)


def _build_repo(
    root: Path,
    tracts: int,
    rows_per_patch: int,
    patches_per_tract: int,
    visits_per_band: int,
    seed: int,
    chunk_rows: int,
) -> DemoRepo:
    """Fill the empty directory `root` with the demo repository (see `make_demo_repo`)."""
    from lsst.daf.butler import Butler, DataCoordinate, DatasetRef, FileDataset

    from qdask.demo_dp02 import DiaRows, matches_schema, truth_rows, visit_batch

    n = int(round(patches_per_tract**0.5))
    tract_boxes = {TRACT_ID_BASE + i: tract_box(i) for i in range(tracts)}
    patch_ids = tuple(range(patches_per_tract))
    patch_boxes = {(t, p): patch_box(b, p, n) for t, b in tract_boxes.items() for p in patch_ids}

    Butler.makeRepo(str(root))
    butler = Butler.from_config(str(root), writeable=True)
    _register(butler, tract_boxes, patch_boxes, n)
    types = {name: butler.get_dataset_type(name) for name in DATASETS}

    def data_id(**values: Any) -> DataCoordinate:
        return DataCoordinate.standardize(values, universe=butler.dimensions)

    object_rows = rows_per_patch * patches_per_tract
    forced_rows = rows_per_patch * len(BANDS) * visits_per_band
    schemas = {
        OBJECT_DATASET: _file_schema(OBJECT_DATASET, _felis_schema("Object"), object_rows),
        FORCED_DATASET: _file_schema(FORCED_DATASET, _felis_schema("ForcedSource"), forced_rows),
        MATCH_DATASET: _file_schema(MATCH_DATASET, matches_schema()),
    }
    for name in (DIAOBJECT_DATASET, DIASOURCE_DATASET, FORCED_DIA_DATASET, TRUTH_DATASET):
        schemas[name] = _file_schema(name, _felis_schema(DATASETS[name][3]))
    dia_rows = DiaRows(seed, visits_per_band)
    rows = dict.fromkeys(DATASETS, 0)

    staging = Path(tempfile.mkdtemp(prefix=".demo-staging-", dir=root))
    datasets: list[Any] = []

    def write_whole(name: str, batch: pa.RecordBatch) -> None:
        path = staging / f"{name}.parq"
        schema = _file_schema(name, batch.schema, batch.num_rows)
        pq.write_table(pa.Table.from_batches([batch.select(schema.names)]).cast(schema), path)
        ref = DatasetRef(types[name], data_id(instrument=INSTRUMENT), run=RUN)
        datasets.append(FileDataset(str(path), ref))
        rows[name] += batch.num_rows

    def write(
        writers: dict[tuple[str, int | None], pq.ParquetWriter],
        tract: int,
        name: str,
        patch: int | None,
        batch: pa.RecordBatch,
    ) -> None:
        """Append `batch` to the file of dataset `name` for `tract` (and `patch` if per patch)."""
        key = (name, patch)
        if key not in writers:
            suffix = "" if patch is None else f"_{patch}"
            writers[key] = pq.ParquetWriter(staging / f"{name}_{tract}{suffix}.parq", schemas[name])
        schema = schemas[name]
        writers[key].write_batch(batch.select(schema.names).cast(schema))
        rows[name] += batch.num_rows

    try:
        write_whole(CCDVISIT_DATASET, _ccdvisit_batch(_felis_schema("CcdVisit"), seed, visits_per_band))
        write_whole(VISIT_DATASET, visit_batch(_felis_schema("Visit"), seed, visits_per_band))
        for tract, tbox in tract_boxes.items():
            patches = {p: patch_boxes[(tract, p)] for p in patch_ids}
            writers: dict[tuple[str, int | None], pq.ParquetWriter] = {}
            done: dict[tuple[str, int], int] = {}
            base = _felis_schema("Object")
            for batch in _object_batches(base, tract, tbox, patches, rows_per_patch, seed, chunk_rows):
                patch = batch.column("patch")[0].as_py()
                first = {t: done.get((t, patch), 0) for t in ("Object", "ForcedSource", "DiaSource",
                                                               "ForcedSourceOnDiaObject")}  # fmt: skip
                write(writers, tract, OBJECT_DATASET, None, batch)
                forced = _forced_batches(
                    schemas[FORCED_DATASET], batch, tract, patch, seed, visits_per_band,
                    first["ForcedSource"], first["Object"],
                )  # fmt: skip
                write(writers, tract, FORCED_DATASET, patch, forced)
                objects = _objects_of(batch)
                dia = dia_rows.batches(objects, tract, patch, first["Object"], first)
                write(writers, tract, DIAOBJECT_DATASET, None, dia["DiaObject"])
                write(writers, tract, DIASOURCE_DATASET, None, dia["DiaSource"])
                write(writers, tract, FORCED_DIA_DATASET, patch, dia["ForcedSourceOnDiaObject"])
                truth, matches = truth_rows(objects, tract, patch, first["Object"], seed)
                write(writers, tract, TRUTH_DATASET, None, truth)
                write(writers, tract, MATCH_DATASET, None, matches)
                for t, b in (("Object", batch), ("ForcedSource", forced), *dia.items()):
                    done[(t, patch)] = done.get((t, patch), 0) + b.num_rows
            for (name, patch), writer in writers.items():
                writer.close()
                suffix = "" if patch is None else f"_{patch}"
                ids = {"skymap": SKYMAP, "tract": tract} | ({} if patch is None else {"patch": patch})
                ref = DatasetRef(types[name], data_id(**ids), run=RUN)
                datasets.append(FileDataset(str(staging / f"{name}_{tract}{suffix}.parq"), ref))
        butler.ingest(*datasets, transfer="move")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DemoRepo(
        root=root,
        seed=seed,
        rows_per_patch=rows_per_patch,
        tracts=tuple(tract_boxes),
        patches=patch_ids,
        tract_boxes=tract_boxes,
        patch_boxes=patch_boxes,
        rows=rows,
    )


def _objects_of(batch: pa.RecordBatch) -> dict[str, Any]:
    """What the rows derived from objects need of a batch of Object rows: ids, positions, fluxes, shape."""

    def col(name: str) -> np.ndarray:
        return batch.column(name).to_numpy(zero_copy_only=False)

    return {
        "objectId": col("objectId"),
        "ra": col("coord_ra"),
        "dec": col("coord_dec"),
        "flux": {b: col(f"{b}_psfFlux") for b in BANDS},
        "extended": col("refExtendedness") > 0.5,
    }

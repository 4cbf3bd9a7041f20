"""Rows of the rest of DP0.2's table set for the demo repository (`qdask.demo` writes them).

Beside Object, ForcedSource and CcdVisit, DP0.2 holds difference-image tables, truth tables and visits.
Their rows are derived from a batch of the demo's objects (one patch), so they stream with them:

- **DiaObject** (a second director): every `DIA_EVERY`-th object has one, a fraction of an arcsecond
  away, with its own id (``tract << 40 | patch << 28 | 1 << 27 | n``);
- **DiaSource** (its child): 1–4 detections per DiaObject, each at its own position scattered around it
  (so a DiaSource is placed by its DiaObject's id, not by its position);
- **ForcedSourceOnDiaObject** (its child): `visits_per_band` rows per band, measured at the DiaObject's
  position;
- **TruthSummary** (a third director): one truth object per object, a fraction of an arcsecond away, keyed
  by the string ``id_truth_type`` as in DP0.2;
- **MatchesTruth** (a match table of TruthSummary and Object): one row per truth object naming its object.
  DP0.2's felis table has no positions, and Qserv's match tables need each side's (``sph-partition-matches``
  places a row by both), so the rows carry `MATCH_EXTRA` columns after DP0.2's eight: the truth's
  ``ra``/``dec``, the object's ``match_coord_ra``/``match_coord_dec`` and the integer ``flags`` column
  Qserv fills with the partitioning flag;
- **Visit** (regular): one row per visit of the CcdVisit table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from qdask.demo import _DETECTORS, BANDS, SKYMAP, _ccdvisits, _column, _felis_schema

__all__ = ["DIA_EVERY", "MATCH_EXTRA", "DiaRows", "matches_schema", "truth_rows", "visit_batch"]

#: One DiaObject for every DIA_EVERY objects.
DIA_EVERY = 5
_ARCSEC = 1 / 3600
#: The columns MatchesTruth's rows carry beyond DP0.2's felis table: both sides' positions and the flag.
MATCH_EXTRA = (
    pa.field("ra", pa.float64()),
    pa.field("dec", pa.float64()),
    pa.field("match_coord_ra", pa.float64()),
    pa.field("match_coord_dec", pa.float64()),
    pa.field("flags", pa.int32()),
)


def matches_schema() -> pa.Schema:
    """DP0.2's MatchesTruth columns and types (felis), then `MATCH_EXTRA`."""
    return pa.schema(list(_felis_schema("MatchesTruth")) + list(MATCH_EXTRA))


def _near(rng: np.random.Generator, ra: np.ndarray, dec: np.ndarray, sigma_arcsec: float):
    """Positions scattered around (ra, dec) by `sigma_arcsec` on the sky."""
    d = rng.normal(0, sigma_arcsec * _ARCSEC, (2, len(ra)))
    return ra + d[0] / np.cos(np.radians(dec)), dec + d[1]


def _ccd_of(rng: np.random.Generator, band: np.ndarray, visit_k: np.ndarray) -> np.ndarray:
    """The ccdVisitId (as `qdask.demo._ccdvisits` numbers them) of a band, visit and random detector."""
    detector = rng.integers(0, _DETECTORS, len(band))
    visit = 200000 + np.array([BANDS.index(b) for b in band], dtype=np.int64) * 1000 + visit_k
    return visit.astype(np.int64) * 1000 + detector


class DiaRows:
    """DiaObject, DiaSource and ForcedSourceOnDiaObject batches for a batch of one patch's objects."""

    def __init__(self, seed: int, visits_per_band: int) -> None:
        self.seed, self.visits_per_band = seed, visits_per_band
        self.schemas = {t: _felis_schema(t) for t in ("DiaObject", "DiaSource", "ForcedSourceOnDiaObject")}

    def batches(
        self, objects: dict[str, Any], tract: int, patch: int, first_object: int, first_rows: dict[str, int]
    ) -> dict[str, pa.RecordBatch]:
        """The three tables' rows for `objects` (the context `qdask.demo._objects` made), numbering each
        table's rows of this patch on from `first_rows[table]`."""
        rng = np.random.default_rng([self.seed, tract, patch, first_object, 11])
        seq = np.arange(first_object + 1, first_object + len(objects["ra"]) + 1, dtype=np.int64)
        pick = np.flatnonzero(seq % DIA_EVERY == 1)
        n = len(pick)
        base = (np.int64(tract) << 40) | (np.int64(patch) << 28)
        ra, dec = _near(rng, objects["ra"][pick], objects["dec"][pick], 0.3)
        dia_id = base | (np.int64(1) << 27) | seq[pick]
        n_src = rng.integers(1, 5, n)
        flux = {b: objects["flux"][b][pick] for b in BANDS}
        dia_known: dict[str, Any] = {"diaObjectId": dia_id, "ra": ra, "decl": dec, "nDiaSources": n_src}
        for b in BANDS:
            dia_known[f"{b}PSFluxMean"] = flux[b]
            dia_known[f"{b}PSFluxNdata"] = np.full(n, float(self.visits_per_band))
        out = {"DiaObject": self._batch("DiaObject", n, rng, dia_known)}

        # DiaSource: n_src detections per DiaObject, scattered around it by 0.2 arcsec.
        owner = np.repeat(np.arange(n), n_src)
        m = len(owner)
        s_ra, s_dec = _near(rng, ra[owner], dec[owner], 0.2)
        band = rng.choice(list(BANDS), m)
        first = first_rows["DiaSource"]
        out["DiaSource"] = self._batch(
            "DiaSource",
            m,
            rng,
            {
                "diaSourceId": base | np.arange(first + 1, first + m + 1, dtype=np.int64),
                "diaObjectId": dia_id[owner],
                "parentDiaSourceId": np.zeros(m, np.int64),
                "ssObjectId": np.zeros(m, np.int64),
                "ra": s_ra,
                "decl": s_dec,
                "coord_ra": s_ra,
                "coord_dec": s_dec,
                "x": rng.uniform(0, 4072, m),
                "y": rng.uniform(0, 4000, m),
                "filterName": band,
                "ccdVisitId": _ccd_of(rng, band, rng.integers(0, self.visits_per_band, m)),
                "midPointTai": 60000 + rng.uniform(0, 365, m),
                "psFlux": np.array([flux[b][i] for b, i in zip(band, owner, strict=True)]),
            },
        )

        # ForcedSourceOnDiaObject: every visit of every band, at the DiaObject's position.
        per = len(BANDS) * self.visits_per_band
        owner = np.repeat(np.arange(n), per)
        k = len(owner)
        band = np.tile(np.repeat(np.array(list(BANDS)), self.visits_per_band), n)
        first = first_rows["ForcedSourceOnDiaObject"]
        out["ForcedSourceOnDiaObject"] = self._batch(
            "ForcedSourceOnDiaObject",
            k,
            rng,
            {
                "forcedSourceOnDiaObjectId": base | np.arange(first + 1, first + k + 1, dtype=np.int64),
                "diaObjectId": dia_id[owner],
                "parentObjectId": np.zeros(k, np.int64),
                "coord_ra": ra[owner],
                "coord_dec": dec[owner],
                "band": band,
                "ccdVisitId": _ccd_of(rng, band, np.tile(np.arange(self.visits_per_band), n * len(BANDS))),
                "skymap": [SKYMAP] * k,
                "tract": np.full(k, tract),
                "patch": np.full(k, patch),
            },
        )
        return out

    def _batch(self, table: str, n: int, rng: np.random.Generator, known: dict[str, Any]) -> pa.RecordBatch:
        schema = self.schemas[table]
        ctx = {"known": known}
        return pa.RecordBatch.from_arrays([_column(f, n, rng, ctx) for f in schema], schema=schema)


def truth_rows(
    objects: dict[str, Any], tract: int, patch: int, first_object: int, seed: int
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """TruthSummary and MatchesTruth rows for a batch of objects: one truth object per object, 0.1 arcsec
    away, and the match row pairing them (positions of both sides, flag left 0 for Qserv's partitioner)."""
    rng = np.random.default_rng([seed, tract, patch, first_object, 13])
    n = len(objects["ra"])
    ra, dec = _near(rng, objects["ra"], objects["dec"], 0.1)
    seq = np.arange(first_object + 1, first_object + n + 1, dtype=np.int64)
    cosmo_id = (np.int64(tract) << 40) | (np.int64(patch) << 28) | seq
    truth_type = np.where(objects["extended"], 1, 2)
    ids = [str(i) for i in cosmo_id]
    id_truth_type = [f"{i}_{t}" for i, t in zip(ids, truth_type, strict=True)]
    known: dict[str, Any] = {
        "id_truth_type": id_truth_type,
        "id": ids,
        "host_galaxy": np.where(truth_type == 1, -1, 0),
        "ra": ra,
        "dec": dec,
        "redshift": np.where(truth_type == 1, rng.uniform(0.05, 3, n), 0.0),
        "is_variable": (rng.random(n) < 0.05).astype(np.int32),
        "is_pointsource": (truth_type == 2).astype(np.int32),
        "cosmodc2_hp": np.full(n, 10070),
        "cosmodc2_id": cosmo_id,
        "truth_type": truth_type,
    }
    for b in BANDS:
        flux = np.nan_to_num(objects["flux"][b], nan=100.0)
        known[f"flux_{b}"] = flux
        known[f"flux_{b}_noMW"] = flux * 1.05
    known["mag_r"] = 31.4 - 2.5 * np.log10(known["flux_r"])
    schema = _felis_schema("TruthSummary")
    ctx = {"known": known}
    truth = pa.RecordBatch.from_arrays([_column(f, n, rng, ctx) for f in schema], schema=schema)
    match_known = {
        "match_candidate": np.ones(n, bool),
        "match_count": np.ones(n, np.int32),
        "match_chisq": rng.chisquare(6, n),
        "match_n_chisq_finite": np.full(n, 6, np.int32),
        "id": ids,
        "truth_type": truth_type,
        "match_objectId": objects["objectId"],
        "id_truth_type": id_truth_type,
        "ra": ra,
        "dec": dec,
        "match_coord_ra": objects["ra"],
        "match_coord_dec": objects["dec"],
        "flags": np.zeros(n, np.int32),
    }
    mschema = matches_schema()
    matches = pa.RecordBatch.from_arrays(
        [_column(f, n, rng, {"known": match_known}) for f in mschema], schema=mschema
    )
    return truth, matches


def visit_batch(schema: pa.Schema, seed: int, visits_per_band: int) -> pa.RecordBatch:
    """The Visit rows: one per visit of the CcdVisit table (`qdask.demo._ccdvisits`)."""
    ccd = _ccdvisits(visits_per_band)
    visit, first = np.unique(ccd["visitId"], return_index=True)
    band = ccd["band"][first]
    n = len(visit)
    rng = np.random.default_rng([seed, 2])
    mjd = 60000 + np.sort(rng.uniform(0, 365, n))
    start = (mjd - 40587) * 86400e6
    zenith = rng.uniform(5, 60, n)
    known = {
        "visit": visit,
        "physical_filter": [f"{b}_sim_1.4" for b in band],
        "band": band,
        "ra": rng.uniform(50, 75, n),
        "decl": rng.uniform(-45, -27, n),
        "skyRotation": rng.uniform(0, 360, n),
        "azimuth": rng.uniform(0, 360, n),
        "altitude": 90 - zenith,
        "zenithDistance": zenith,
        "airmass": 1 / np.cos(np.radians(zenith)),
        "expTime": np.full(n, 30.0),
        "expMidpt": pa.array((start + 15e6).astype(np.int64), type=pa.timestamp("us")),
        "expMidptMJD": mjd + 15 / 86400,
        "obsStart": pa.array(start.astype(np.int64), type=pa.timestamp("us")),
        "obsStartMJD": mjd,
    }
    return pa.RecordBatch.from_arrays([_column(f, n, rng, {"known": known}) for f in schema], schema=schema)

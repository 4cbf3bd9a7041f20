"""scisql's functions as the stand-in's MariaDB computes them (qdask.emulator.czar.functions), against
independent references: numpy for the photometry, lsst.sphgeom for the geometry, and scisql's documented
rules for NULLs, ranges and RA wrap-around."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lsst import sphgeom

from qdask.emulator.czar import functions as sqlfunctions

DB = "czar_fn_test"


@pytest.fixture(scope="module")
def call(mariadb):
    """``call(sql, *args)``: run one SELECT on a MariaDB where the functions are installed."""
    conn = mariadb.connect()
    sqlfunctions.install(conn, DB)
    conn.select_db(DB)

    def run(sql: str, args=()):
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    yield run
    conn.close()


def _values(call, function: str, columns: list[np.ndarray]) -> list:
    """Evaluate ``function`` over the rows of ``columns`` in one statement (a VALUES table of doubles)."""
    rows = list(zip(*columns, strict=True))
    placeholders = ", ".join("(" + ", ".join(["%s"] * len(rows[0])) + ")" for _ in rows)
    names = [f"c{i}" for i in range(len(rows[0]))]
    casts = ", ".join(f"{n} + 0e0" for n in names)
    sql = f"WITH t ({', '.join(names)}) AS (VALUES {placeholders}) SELECT {function}({casts}) FROM t"
    return [r[0] for r in call(sql, [None if v is None else float(v) for row in rows for v in row])]


RNG = np.random.default_rng(42)


def test_flux_to_ab_mag_and_back_equal_numpy(call):
    flux = 10.0 ** RNG.uniform(-32, -25, 500)
    nano = 10.0 ** RNG.uniform(-2, 6, 500)
    assert _values(call, "scisql_fluxToAbMag", [flux]) == (-2.5 * np.log10(flux) - 48.6).tolist()
    assert _values(call, "scisql_nanojanskyToAbMag", [nano]) == (-2.5 * np.log10(nano) + 31.4).tolist()
    mag = RNG.uniform(10, 30, 500)
    # C's pow (numpy's vectorised power, SVML on AVX-512, may round the last bit differently)
    power = np.vectorize(math.pow)
    assert _values(call, "scisql_abMagToFlux", [mag]) == power(10.0, -0.4 * (mag + 48.6)).tolist()
    assert _values(call, "scisql_abMagToNanojansky", [mag]) == power(10.0, -0.4 * (mag - 31.4)).tolist()
    sigma = RNG.uniform(0, 1, 500)
    ratio = 1.085736204758129569  # 2.5 / ln(10), scisql's SCISQL_5_OVER_2LOG10
    flux_sigma = sigma * flux
    assert (
        _values(call, "scisql_fluxToAbMagSigma", [flux, flux_sigma]) == (ratio * flux_sigma / flux).tolist()
    )
    assert _values(call, "scisql_nanojanskyToAbMagSigma", [nano, sigma]) == (ratio * sigma / nano).tolist()
    expected = sigma * power(10.0, -0.4 * (mag - 31.4)) * 0.9210340371976182736
    assert _values(call, "scisql_abMagToNanojanskySigma", [mag, sigma]) == expected.tolist()


def test_photometry_nulls_follow_scisql(call):
    assert call("SELECT scisql_fluxToAbMag(0), scisql_fluxToAbMag(-1), scisql_fluxToAbMag(NULL)") == (
        (None, None, None),
    )
    assert call("SELECT scisql_nanojanskyToAbMagSigma(1, -1), scisql_abMagToFluxSigma(20, -0.1)") == (
        (None, None),
    )
    assert call("SELECT scisql_abMagToFlux(-1000)") == ((None,),)  # overflows to +inf in C: NULL


def _lonlat(lon, lat):
    return sphgeom.LonLat.fromDegrees(float(lon), float(lat))


def test_ang_sep_equals_sphgeom(call):
    n = 400
    lon1, lon2 = RNG.uniform(0, 360, n), RNG.uniform(0, 360, n)
    lat1, lat2 = RNG.uniform(-90, 90, n), RNG.uniform(-90, 90, n)
    near = lon1 + RNG.normal(0, 1e-3, n), lat1.clip(-89, 89) + RNG.normal(0, 1e-3, n)
    for b_lon, b_lat in ((lon2, lat2), near):
        got = _values(call, "scisql_angSep", [lon1, lat1, b_lon, b_lat])
        want = [
            sphgeom.NormalizedAngle(_lonlat(*a), _lonlat(*b)).asDegrees()
            for a, b in zip(zip(lon1, lat1, strict=True), zip(b_lon, b_lat, strict=True), strict=True)
        ]
        assert np.allclose(got, want, rtol=1e-12, atol=1e-12)
    assert call("SELECT scisql_angSep(0, 0, 0, 91), scisql_angSep(0, NULL, 0, 1)") == ((None, None),)
    xyz = call("SELECT scisql_angSep_xyz(1, 0, 0, 0, 0, 1), scisql_angSep_xyz(2, 0, 0, -3, 0, 0)")
    assert xyz == ((90.0, 180.0),)


def _far_from_edge(points, distance) -> np.ndarray:
    return np.abs(distance(points)) > 1e-7


def test_point_in_box_with_ra_wrap_around(call):
    lon = RNG.uniform(-20, 380, 2000)
    lat = RNG.uniform(-10, 10, 2000)
    for box in ((350, -5, 10, 5), (10, -5, 20, 5), (-10, -5, 10, 5), (350, -5, 370, 5), (0, -5, 360, 5)):
        got = _values(call, "scisql_s2PtInBox", [lon, lat, *(np.full(2000, v) for v in box)])
        region = sphgeom.Box.fromDegrees(*box)
        want = [
            int(region.contains(sphgeom.UnitVector3d(_lonlat(a, b)))) for a, b in zip(lon, lat, strict=True)
        ]
        lon_edges = np.minimum.reduce([np.abs(((lon - e) + 180) % 360 - 180) for e in box[::2]])
        clear = (lon_edges > 1e-7) & (np.abs(np.abs(lat) - 5) > 1e-7)
        assert np.array_equal(np.array(got)[clear], np.array(want)[clear]), box
    assert call(
        "SELECT scisql_s2PtInBox(359, 0, 350, -1, 10, 1), scisql_s2PtInBox(20, 0, 350, -1, 10, 1)"
    ) == ((1, 0),)
    # NULL → 0; latitude out of [-90, 90] → NULL; lonMax < lonMin with a bound outside [0, 360] → NULL
    assert call(
        "SELECT scisql_s2PtInBox(NULL, 0, 0, 0, 1, 1), scisql_s2PtInBox(0, 95, 0, 0, 1, 1), "
        "scisql_s2PtInBox(0, 0, 370, 0, 10, 1)"
    ) == ((0, None, None),)


def test_point_in_circle_constant_and_column_radius(call):
    lon, lat = RNG.uniform(10, 14, 2000), RNG.uniform(-2, 2, 2000)
    center, radius = (12.0, 0.5), 1.2
    region = sphgeom.Circle(sphgeom.UnitVector3d(_lonlat(*center)), sphgeom.Angle.fromDegrees(radius))
    want = np.array(
        [int(region.contains(sphgeom.UnitVector3d(_lonlat(a, b)))) for a, b in zip(lon, lat, strict=True)]
    )
    dist = np.array(
        [
            sphgeom.NormalizedAngle(_lonlat(a, b), _lonlat(*center)).asDegrees()
            for a, b in zip(lon, lat, strict=True)
        ]
    )
    clear = np.abs(dist - radius) > 1e-7
    rows = call(
        "WITH t (lon, lat) AS (VALUES " + ", ".join(["(%s, %s)"] * len(lon)) + ") "
        "SELECT scisql_s2PtInCircle(lon, lat, 12.0, 0.5, 1.2), "
        "scisql_s2PtInCircle_var(lon, lat, 12.0, 0.5, 1.2) FROM t",
        [float(v) for pair in zip(lon, lat, strict=True) for v in pair],
    )
    for column in range(2):
        got = np.array([r[column] for r in rows])
        assert np.array_equal(got[clear], want[clear])
    assert sqlfunctions.stored_name("scisql_s2PtInCircle", 5, lambda i: True) == "scisql_s2PtInCircle"
    assert sqlfunctions.stored_name("SCISQL_S2PTINCIRCLE", 5, lambda i: i != 4) == "scisql_s2PtInCircle_var"
    assert call("SELECT scisql_s2PtInCircle(0, 0, 0, 0, 181), scisql_s2PtInCircle(0, 0, NULL, 0, 1)") == (
        (None, 0),
    )


def test_point_in_ellipse_equals_sphgeom(call):
    lon, lat = RNG.uniform(-1, 1, 3000) + 45, RNG.uniform(-1, 1, 3000) + 30
    for major, minor, angle in ((3000.0, 1000.0, 30.0), (1800.0, 1800.0, 0.0), (2500.0, 400.0, 120.0)):
        got = np.array(
            _values(
                call,
                "scisql_s2PtInEllipse",
                [lon, lat, *(np.full(3000, v) for v in (45.0, 30.0, major, minor, angle))],
            )
        )
        region = sphgeom.Ellipse(
            sphgeom.UnitVector3d(_lonlat(45, 30)),
            sphgeom.Angle.fromDegrees(major / 3600),
            sphgeom.Angle.fromDegrees(minor / 3600),
            sphgeom.Angle.fromDegrees(angle),
        )
        want = np.array(
            [int(region.contains(sphgeom.UnitVector3d(_lonlat(a, b)))) for a, b in zip(lon, lat, strict=True)]
        )
        shrunk = sphgeom.Ellipse(
            sphgeom.UnitVector3d(_lonlat(45, 30)),
            sphgeom.Angle.fromDegrees(major / 3600 - 1e-6),
            sphgeom.Angle.fromDegrees(minor / 3600 - 1e-6),
            sphgeom.Angle.fromDegrees(angle),
        )
        grown = sphgeom.Ellipse(
            sphgeom.UnitVector3d(_lonlat(45, 30)),
            sphgeom.Angle.fromDegrees(major / 3600 + 1e-6),
            sphgeom.Angle.fromDegrees(minor / 3600 + 1e-6),
            sphgeom.Angle.fromDegrees(angle),
        )
        clear = np.array(
            [
                shrunk.contains(sphgeom.UnitVector3d(_lonlat(a, b)))
                == grown.contains(sphgeom.UnitVector3d(_lonlat(a, b)))
                for a, b in zip(lon, lat, strict=True)
            ]
        )
        assert want.sum() > 100 and np.array_equal(got[clear], want[clear])
    assert call(
        "SELECT scisql_s2PtInEllipse(0, 0, 0, 0, 10, 20, 0), scisql_s2PtInEllipse(0, 0, 0, 0, 40000, 1, 0)"
    ) == ((None, None),)


@pytest.mark.parametrize("clockwise", [False, True])
def test_point_in_convex_polygon_equals_sphgeom(call, clockwise):
    vertices = [(359.5, -5.0), (0.05, -5.0), (0.05, 3.5), (359.5, 3.5)]  # case01's 3001 polygon, across RA 0
    if clockwise:
        vertices = vertices[::-1]
    lon = (RNG.uniform(-1, 1, 3000) + 360) % 360
    lat = RNG.uniform(-6, 5, 3000)
    flat = [v for pair in vertices for v in pair]
    got = np.array(_values(call, "scisql_s2PtInCPoly_4", [lon, lat, *(np.full(3000, v) for v in flat)]))
    polygon = sphgeom.ConvexPolygon([sphgeom.UnitVector3d(_lonlat(*v)) for v in vertices])
    want = np.array(
        [int(polygon.contains(sphgeom.UnitVector3d(_lonlat(a, b)))) for a, b in zip(lon, lat, strict=True)]
    )
    lon_edge = np.minimum(np.abs(((lon - 359.5) + 180) % 360 - 180), np.abs(((lon - 0.05) + 180) % 360 - 180))
    clear = (lon_edge > 1e-3) & (np.abs(lat + 5) > 1e-3) & (np.abs(lat - 3.5) > 1e-3)
    assert want.sum() > 100 and np.array_equal(got[clear], want[clear])
    assert sqlfunctions.stored_name("scisql_s2PtInCPoly", 10, lambda i: True) == "scisql_s2PtInCPoly_4"
    assert sqlfunctions.stored_name("scisql_s2PtInCPoly", 7, lambda i: True) is None


def test_every_stored_function_cites_its_scisql_source():
    assert len(sqlfunctions.ALL) == len({f.name.lower() for f in sqlfunctions.ALL})
    assert all(f.source.split(",")[0].endswith(".c") for f in sqlfunctions.ALL)
    assert not math.isnan(float(sqlfunctions.RAD_PER_DEG))

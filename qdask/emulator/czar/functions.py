"""scisql's functions for the stand-in's czar, as MariaDB stored functions that compute what scisql's C does.

Qserv's workers and czar have scisql's UDFs loaded; the stand-in has plain MariaDB, so each function used
by Qserv's case01 queries and Rubin's DP0.2 tutorials is installed here as a stored function in a database
of its own (``<instance>_scisql``), and the czar's front end rewrites calls to it. Each one follows its
scisql source (smonkewitz/scisql 8a2fb35, cited per function): the same NULL and range rules, the same
formulas evaluated in the same order in IEEE double precision (MariaDB's SIN, COS, ASIN, SQRT, ATAN2, LOG10,
POW and MOD on DOUBLE are the C library's sin, cos, asin, sqrt, atan2, log10, pow and fmod), with every
constant written as a DOUBLE literal (E notation) so that no DECIMAL arithmetic creeps in.

Where scisql's UDF takes a variable number of arguments, each form gets its own stored function and
:func:`stored_name` picks it: ``scisql_angSep`` (4 angles, or 6 vector coordinates), ``scisql_s2PtInCPoly``
(3 to 20 vertices), and ``scisql_s2PtInCircle``, which in scisql compares squared chord lengths when the
radius is a constant and angles otherwise (``s2PtInCircle.c``). Not provided: the binary polygon forms
(``scisql_s2CPolyToBin``, ``scisql_s2PtInCPoly(lon, lat, poly)``), the HTM functions and the DN conversions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from qdask.emulator.storage import qid

# scisql's constants (geometry.h, photometry.h), as DOUBLE literals
RAD_PER_DEG = "1.74532925199432957692369076849e-2"
DEG_PER_RAD = "5.72957795130823208767981548141e1"
ARCSEC_PER_DEG = "3.6e3"
FIVE_OVER_2LOG10 = "1.085736204758129569e0"
TWO_LOG10_OVER_5 = "9.210340371976182736e-1"
MAX_VERTS = 20  # SCISQL_MAX_VERTS (geometry.h)

_OVERFLOW_IS_NULL = "DECLARE EXIT HANDLER FOR SQLEXCEPTION RETURN NULL;"  # C's IEEE special → NULL


@dataclass(frozen=True)
class StoredFunction:
    """One stored function: its name, parameters (all DOUBLE), return type and body statements."""

    name: str
    params: tuple[str, ...]
    returns: str
    body: tuple[str, ...]
    source: str  # the scisql file it follows

    def ddl(self, database: str) -> str:
        params = ", ".join(f"{p} DOUBLE" for p in self.params)
        body = "\n  ".join(self.body)
        return (
            f"CREATE OR REPLACE FUNCTION {qid(database, self.name)}({params}) RETURNS {self.returns}\n"
            f"DETERMINISTIC NO SQL\nBEGIN\n  {body}\nEND"
        )


def _any_null(names: Iterable[str]) -> str:
    return " OR ".join(f"{n} IS NULL" for n in names)


def _lat_bad(*lats: str) -> str:
    return " OR ".join(f"{lat} < -9e1 OR {lat} > 9e1" for lat in lats)


def _photometry(name: str, params: tuple[str, ...], guard: str, formula: str, source: str) -> StoredFunction:
    """A photometry UDF: NULL for NULL or out-of-domain input, or when the result overflows."""
    null = _any_null(params) + (f" OR {guard}" if guard else "")
    return StoredFunction(
        name,
        params,
        "DOUBLE",
        (_OVERFLOW_IS_NULL, f"IF {null} THEN RETURN NULL; END IF;", f"RETURN {formula};"),
        source,
    )


def _ab2flux(mag: str) -> str:  # scisql_ab2flux (photometry.h)
    return f"POW(1e1, -4e-1 * ({mag} + 4.86e1))"


def _ab2nanojansky(mag: str) -> str:  # scisql_ab2nanojansky (photometry.h)
    return f"POW(1e1, -4e-1 * ({mag} - 3.14e1))"


PHOTOMETRY = (
    _photometry(
        "scisql_fluxToAbMag", ("flux",), "flux <= 0e0", "-2.5e0 * LOG10(flux) - 4.86e1", "fluxToAbMag.c"
    ),
    _photometry(
        "scisql_fluxToAbMagSigma",
        ("flux", "fluxSigma"),
        "flux <= 0e0 OR fluxSigma < 0e0",
        f"{FIVE_OVER_2LOG10} * fluxSigma / flux",
        "fluxToAbMagSigma.c",
    ),
    _photometry("scisql_abMagToFlux", ("mag",), "", _ab2flux("mag"), "abMagToFlux.c"),
    _photometry(
        "scisql_abMagToFluxSigma",
        ("mag", "magSigma"),
        "magSigma < 0e0",
        f"magSigma * {_ab2flux('mag')} * {TWO_LOG10_OVER_5}",
        "abMagToFluxSigma.c",
    ),
    _photometry(
        "scisql_nanojanskyToAbMag",
        ("flux",),
        "flux <= 0e0",
        "-2.5e0 * LOG10(flux) + 3.14e1",
        "nanojanskyToAbMag.c",
    ),
    _photometry(
        "scisql_nanojanskyToAbMagSigma",
        ("flux", "fluxSigma"),
        "flux <= 0e0 OR fluxSigma < 0e0",
        f"{FIVE_OVER_2LOG10} * fluxSigma / flux",
        "nanojanskyToAbMagSigma.c",
    ),
    _photometry("scisql_abMagToNanojansky", ("mag",), "", _ab2nanojansky("mag"), "abMagToNanojansky.c"),
    _photometry(
        "scisql_abMagToNanojanskySigma",
        ("mag", "magSigma"),
        "magSigma < 0e0",
        f"magSigma * {_ab2nanojansky('mag')} * {TWO_LOG10_OVER_5}",
        "abMagToNanojanskySigma.c",
    ),
)


def _unit_vector(prefix: str, lon: str, lat: str) -> tuple[str, ...]:
    """scisql_sctov3 (geometry.c): x = cos(lon)cos(lat), y = sin(lon)cos(lat), z = sin(lat)."""
    return (
        f"SET {prefix}cl = COS({lat} * {RAD_PER_DEG});",
        f"SET {prefix}x = COS({lon} * {RAD_PER_DEG}) * {prefix}cl;",
        f"SET {prefix}y = SIN({lon} * {RAD_PER_DEG}) * {prefix}cl;",
        f"SET {prefix}z = SIN({lat} * {RAD_PER_DEG});",
    )


def _declare(*names: str) -> str:
    return f"DECLARE {', '.join(names)} DOUBLE;"


def _sc_dist2(lon1: str, lat1: str, lon2: str, lat2: str) -> tuple[str, ...]:
    """scisql_sc_dist2 (geometry.c) into variable d2: the squared chord length between two positions."""
    return (
        f"SET x = SIN(({lon1} - {lon2}) * {RAD_PER_DEG} * 5e-1);",
        "SET x = x * x;",
        f"SET y = SIN(({lat1} - {lat2}) * {RAD_PER_DEG} * 5e-1);",
        "SET y = y * y;",
        f"SET z = COS(({lat1} + {lat2}) * {RAD_PER_DEG} * 5e-1);",
        "SET z = z * z;",
        "SET d2 = 4e0 * (x * (z - y) + y);",
        "SET d2 = IF(d2 < 0e0, 0e0, IF(d2 > 4e0, 4e0, d2));",
    )


def _angred(var: str) -> tuple[str, ...]:
    """scisql_angred (geometry.h): reduce an angle to [0, 360)."""
    return (
        f"SET {var} = MOD({var}, 3.6e2);",
        f"IF {var} < 0e0 THEN SET {var} = {var} + 3.6e2; IF {var} = 3.6e2 THEN SET {var} = 0e0; END IF;"
        " END IF;",
    )


ANG_SEP = StoredFunction(
    "scisql_angSep",
    ("lon1", "lat1", "lon2", "lat2"),
    "DOUBLE",
    (
        _declare("x", "y", "z", "d2", "angsep"),
        f"IF {_any_null(('lon1', 'lat1', 'lon2', 'lat2'))} OR {_lat_bad('lat1', 'lat2')} THEN RETURN NULL;"
        " END IF;",
        *_sc_dist2("lon1", "lat1", "lon2", "lat2"),
        # scisql_sc_angsep
        f"SET angsep = 2e0 * {DEG_PER_RAD} * ASIN(SQRT(d2 * 2.5e-1));",
        "RETURN IF(angsep > 1.8e2, 1.8e2, angsep);",
    ),
    "angSep.c, geometry.c scisql_sc_angsep",
)

ANG_SEP_XYZ = StoredFunction(
    "scisql_angSep_xyz",
    ("x1", "y1", "z1", "x2", "y2", "z2"),
    "DOUBLE",
    (
        _declare("nx", "ny", "nz", "ss", "cs", "angsep"),
        f"IF {_any_null(('x1', 'y1', 'z1', 'x2', 'y2', 'z2'))} THEN RETURN NULL; END IF;",
        # scisql_v3_cross, scisql_v3_norm, scisql_v3_dot
        "SET nx = y1 * z2 - z1 * y2;",
        "SET ny = z1 * x2 - x1 * z2;",
        "SET nz = x1 * y2 - y1 * x2;",
        "SET ss = SQRT(nx * nx + ny * ny + nz * nz);",
        "SET cs = x1 * x2 + y1 * y2 + z1 * z2;",
        "IF cs = 0e0 AND ss = 0e0 THEN RETURN 0e0; END IF;",
        f"SET angsep = ATAN2(ss, cs) * {DEG_PER_RAD};",
        "RETURN IF(angsep > 1.8e2, 1.8e2, angsep);",
    ),
    "angSep.c, geometry.c scisql_v3_angsep",
)

S2_PT_IN_BOX = StoredFunction(
    "scisql_s2PtInBox",
    ("lon", "lat", "lonMin", "latMin", "lonMax", "latMax"),
    "BIGINT",
    (
        _declare("p", "bmin", "bmax"),
        f"IF {_any_null(('lon', 'lat', 'lonMin', 'latMin', 'lonMax', 'latMax'))} THEN RETURN 0; END IF;",
        f"IF {_lat_bad('lat', 'latMin', 'latMax')} THEN RETURN NULL; END IF;",
        "IF lonMax < lonMin AND (lonMax < 0e0 OR lonMin > 3.6e2) THEN RETURN NULL; END IF;",
        "IF latMin > latMax OR lat < latMin OR lat > latMax THEN RETURN 0; END IF;",
        "IF lonMax - lonMin >= 3.6e2 THEN RETURN 1; END IF;",
        "SET p = lon;",
        "SET bmin = lonMin;",
        "SET bmax = lonMax;",
        *_angred("p"),
        *_angred("bmin"),
        *_angred("bmax"),
        "IF bmin <= bmax THEN RETURN p >= bmin AND p <= bmax; END IF;",
        "RETURN p >= bmin OR p <= bmax;",
    ),
    "s2PtInBox.c",
)


def _circle(name: str, constant_radius: bool) -> StoredFunction:
    """scisql_s2PtInCircle: with a constant radius scisql compares squared chords, else angles."""
    compare = (
        (f"SET r = SIN(radius * 5e-1 * {RAD_PER_DEG});", "RETURN d2 <= 4e0 * r * r;")
        if constant_radius
        else (
            f"SET r = 2e0 * {DEG_PER_RAD} * ASIN(SQRT(d2 * 2.5e-1));",
            "RETURN IF(r > 1.8e2, 1.8e2, r) <= radius;",
        )
    )
    return StoredFunction(
        name,
        ("lon", "lat", "centerLon", "centerLat", "radius"),
        "BIGINT",
        (
            _declare("x", "y", "z", "d2", "r"),
            f"IF {_any_null(('lon', 'lat', 'centerLon', 'centerLat', 'radius'))} THEN RETURN 0; END IF;",
            f"IF {_lat_bad('lat', 'centerLat')} THEN RETURN NULL; END IF;",
            "IF radius < 0e0 OR radius > 1.8e2 THEN RETURN NULL; END IF;",
            "IF ABS(lat - centerLat) > radius THEN RETURN 0; END IF;",
            *_sc_dist2("lon", "lat", "centerLon", "centerLat"),
            *compare,
        ),
        "s2PtInCircle.c",
    )


S2_PT_IN_ELLIPSE = StoredFunction(
    "scisql_s2PtInEllipse",
    ("lon", "lat", "centerLon", "centerLat", "semiMajor", "semiMinor", "posAngle"),
    "BIGINT",
    (
        _declare(
            "sinLon",
            "cosLon",
            "sinLat",
            "cosLat",
            "sinPa",
            "cosPa",
            "invMinor2",
            "invMajor2",
            "major",
            "minor",
            "pa",
            "vcl",
            "vx",
            "vy",
            "vz",
            "xne",
            "yne",
            "x",
            "y",
        ),  # fmt: skip
        f"IF {_any_null(('lon', 'lat', 'centerLon', 'centerLat', 'semiMajor', 'semiMinor', 'posAngle'))}"
        " THEN RETURN 0; END IF;",
        f"IF {_lat_bad('lat')} THEN RETURN NULL; END IF;",
        "SET major = semiMajor;",
        "SET minor = semiMinor;",
        f"SET pa = posAngle * {RAD_PER_DEG};",
        f"IF minor < 0e0 OR minor > major OR major > 1e1 * {ARCSEC_PER_DEG} THEN RETURN NULL; END IF;",
        f"IF {_lat_bad('centerLat')} THEN RETURN NULL; END IF;",
        f"SET sinLon = SIN(centerLon * {RAD_PER_DEG});",
        f"SET cosLon = COS(centerLon * {RAD_PER_DEG});",
        f"SET sinLat = SIN(centerLat * {RAD_PER_DEG});",
        f"SET cosLat = COS(centerLat * {RAD_PER_DEG});",
        "SET sinPa = SIN(pa);",
        "SET cosPa = COS(pa);",
        f"SET minor = minor * {RAD_PER_DEG} / {ARCSEC_PER_DEG};",
        f"SET major = major * {RAD_PER_DEG} / {ARCSEC_PER_DEG};",
        "SET invMinor2 = 1e0 / (minor * minor);",
        "SET invMajor2 = 1e0 / (major * major);",
        *_unit_vector("v", "lon", "lat"),
        "SET xne = cosLat * vz - sinLat * (sinLon * vy + cosLon * vx);",
        "SET yne = cosLon * vy - sinLon * vx;",
        "SET x = sinPa * yne + cosPa * xne;",
        "SET y = cosPa * yne - sinPa * xne;",
        "RETURN x * x * invMajor2 + y * y * invMinor2 <= 1e0;",
    ),
    "s2PtInEllipse.c",
)


def _cpoly(n: int) -> StoredFunction:
    """scisql_s2PtInCPoly with n vertex pairs: scisql_s2cpoly_init then scisql_s2cpoly_cv3 (geometry.c)."""
    vertices = [(f"v{i}Lon", f"v{i}Lat") for i in range(n)]
    names = ["pcl", "px", "py", "pz", "sx", "sy", "sz", "flip"]
    for i in range(n):
        names += [f"v{i}cl", f"v{i}x", f"v{i}y", f"v{i}z", f"e{i}x", f"e{i}y", f"e{i}z"]
    body = [
        _declare(*names),
        "IF lon IS NULL OR lat IS NULL THEN RETURN 0; END IF;",
        f"IF {_lat_bad('lat')} THEN RETURN NULL; END IF;",
        *_unit_vector("p", "lon", "lat"),
        f"IF {_any_null(p for pair in vertices for p in pair)} THEN RETURN 0; END IF;",
        f"IF {_lat_bad(*(lat for _, lat in vertices))} THEN RETURN NULL; END IF;",
    ]
    for i, (lon, lat) in enumerate(vertices):
        body += _unit_vector(f"v{i}", lon, lat)
    body += [f"SET sx = v{n - 1}x;", f"SET sy = v{n - 1}y;", f"SET sz = v{n - 1}z;"]
    for i in range(n):
        a, b = f"v{i}", f"v{(i + 1) % n}"  # scisql_v3_rcross(edge, a, b)
        body += [
            f"SET e{i}x = ({b}y + {a}y) * ({b}z - {a}z) - ({b}z + {a}z) * ({b}y - {a}y);",
            f"SET e{i}y = ({b}z + {a}z) * ({b}x - {a}x) - ({b}x + {a}x) * ({b}z - {a}z);",
            f"SET e{i}z = ({b}x + {a}x) * ({b}y - {a}y) - ({b}y + {a}y) * ({b}x - {a}x);",
        ]
        if i < n - 1:
            body += [f"SET sx = sx + {a}x;", f"SET sy = sy + {a}y;", f"SET sz = sz + {a}z;"]
    body.append("SET flip = IF(sx * e0x + sy * e0y + sz * e0z < 0e0, -1e0, 1e0);")
    for i in range(n):  # a clockwise polygon's edge normals are negated; negation is exact
        body.append(
            f"IF px * (flip * e{i}x) + py * (flip * e{i}y) + pz * (flip * e{i}z) < 0e0 THEN RETURN 0; END IF;"
        )
    body.append("RETURN 1;")
    params = ("lon", "lat", *(p for pair in vertices for p in pair))
    return StoredFunction(f"scisql_s2PtInCPoly_{n}", params, "BIGINT", tuple(body), "s2PtInCPoly.c")


S2_PT_IN_CIRCLE = _circle("scisql_s2PtInCircle", constant_radius=True)
S2_PT_IN_CIRCLE_VAR = _circle("scisql_s2PtInCircle_var", constant_radius=False)

ALL: tuple[StoredFunction, ...] = (
    *PHOTOMETRY,
    ANG_SEP,
    ANG_SEP_XYZ,
    S2_PT_IN_BOX,
    S2_PT_IN_CIRCLE,
    S2_PT_IN_CIRCLE_VAR,
    S2_PT_IN_ELLIPSE,
    *(_cpoly(n) for n in range(3, MAX_VERTS + 1)),
)
_BY_NAME = {f.name.lower(): f for f in ALL}


def stored_name(name: str, arity: int, constant: Callable[[int], bool]) -> str | None:
    """The stored function that computes scisql function ``name`` called with ``arity`` arguments, or None
    when scisql has no such function/form. ``constant(i)`` says whether argument i is a literal."""
    lower = name.lower()
    if lower == "scisql_angsep":
        lower = {4: "scisql_angsep", 6: "scisql_angsep_xyz"}.get(arity, "")
    elif lower == "scisql_s2ptincircle" and arity == 5 and not constant(4):
        lower = "scisql_s2ptincircle_var"
    elif lower == "scisql_s2ptincpoly":
        lower = f"scisql_s2ptincpoly_{(arity - 2) // 2}" if arity % 2 == 0 else ""
    function = _BY_NAME.get(lower)
    if function is None or len(function.params) != arity:
        return None
    return function.name


def is_scisql(name: str) -> bool:
    """Whether ``name`` is in scisql's namespace (``scisql_…``, case-insensitive)."""
    return name.lower().startswith("scisql_")


def install(conn, database: str) -> None:
    """Create ``database`` and (re)create every stored function in it (idempotent)."""
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {qid(database)}")
        for function in ALL:
            cur.execute(function.ddl(database))

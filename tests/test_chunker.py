"""qdask.sky.Chunker against independent references: lsst.sphgeom, Qserv's own partitioner output, and a
literal per-point transliteration of the partitioner's arithmetic (for the exact boundary rules)."""

from __future__ import annotations

import collections
import gzip
import json
import math
import pickle

import lsst.sphgeom as sg
import numpy as np
import pytest
from click.testing import CliRunner

from qdask.cli import main
from qdask.sky import Chunker, InvalidPositionError, LayoutError

LAYOUTS = [(340, 3, 0.01667), (85, 12, 0.01667), (85, 14, 0.001)]
# Also checked for the overlap rules: the binary's default layout, and a coarse one whose wide overlap
# (alpha up to 0.66 of a sub-chunk) gives up to three copies into a neighbouring sub-stripe.
MORE_LAYOUTS = [(18, 100, 0.01), (12, 4, 2.5)]
# Edge slack for the sphgeom comparisons (36 µas in Dec, /cos(dec) in RA): wider than sphgeom's own box
# padding (which grows towards the poles in RA) and its radian/degree rounding.
EPS_DEG = 1e-8


def _random_sky(rng, n):
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    return ra, dec


def _near_poles(rng, n):
    ra = rng.uniform(0.0, 360.0, n)
    dec = rng.uniform(88.0, 90.0, n) * rng.choice([-1.0, 1.0], n)
    return ra, dec


def _widths(ch: Chunker) -> np.ndarray:
    """Sub-chunk width per sub-stripe, 360 / (C_stripe * N_k), from the (sphgeom-checked) counts."""
    c = np.repeat(ch.chunks_per_stripe.astype(np.int64), ch.num_sub_stripes)
    return 360.0 / (c * ch.sub_chunks_per_chunk)


def _edge_points(ch: Chunker, rng, per_kind: int = 1500):
    """Adversarial points: computed stripe/sub-stripe/sub-chunk/overlap edges and their 1-ulp neighbours."""
    h = 180.0 / (ch.num_stripes * ch.num_sub_stripes)
    nss = ch.num_stripes * ch.num_sub_stripes
    r = ch.overlap
    w = _widths(ch)
    ks = np.arange(nss + 1)
    lat_edges = ks * h - 90.0  # float-rounds to either side of the true edge
    lat_thr = np.concatenate([lat_edges + r, lat_edges - r])
    lat_thr = lat_thr[(lat_thr >= -90) & (lat_thr <= 90)]
    decs = []
    for base in (lat_edges, lat_thr):
        decs += [base, np.nextafter(base, -np.inf), np.nextafter(base, np.inf)]
    dec1 = np.clip(np.concatenate(decs), -90.0, 90.0)
    ra1 = rng.uniform(0.0, 360.0, dec1.size)
    # RA edges j*w of a sample of sub-stripes (always the polar ones), with and without ±alpha.
    k_sample = np.unique(np.concatenate([[0, 1, 2, nss - 3, nss - 2, nss - 1], rng.integers(0, nss, 60)]))
    ras, decs2 = [], []
    for k in k_sample:
        ring = round(360.0 / w[k])
        j = np.unique(np.concatenate([[0, 1, ring - 1, ring], rng.integers(0, ring + 1, 40)]))
        edges = j * w[k]
        a = _alpha_sphgeom(r, k, h)
        cand = np.concatenate([edges, edges + a, edges - a, edges + 2 * a])
        cand = np.concatenate([cand, np.nextafter(cand, -np.inf), np.nextafter(cand, np.inf)])
        cand = cand[(cand >= 0) & (cand <= 360)]
        ras.append(cand)
        decs2.append(rng.uniform(max(k * h - 90.0, -90.0), min((k + 1) * h - 90.0, 90.0), cand.size))
    ra2, dec2 = np.concatenate(ras), np.concatenate(decs2)
    special_ra = np.array([0.0, -0.0, 360.0, np.nextafter(360.0, 0.0), 180.0, 0.0, 360.0, 0.0, 360.0])
    special_dec = np.array([0.0, 10.0, 10.0, 10.0, 90.0, 90.0, 90.0, -90.0, -90.0])
    pick = rng.permutation(ra2.size)[: 4 * per_kind]
    pick1 = rng.permutation(ra1.size)[: 4 * per_kind]
    return (
        np.concatenate([ra1[pick1], ra2[pick], special_ra]),
        np.concatenate([dec1[pick1], dec2[pick], special_dec]),
    )


def _alpha_sphgeom(r: float, k: int, h: float) -> float:
    """Overlap RA half-width of sub-stripe k, from sphgeom's own circle half-width (degrees)."""
    phi = max(abs(k * h - 90.0), abs((k + 1) * h - 90.0))
    if r == 0:
        return 0.0
    return sg.Box.halfWidthForCircle(
        sg.Angle.fromDegrees(r), sg.Angle.fromDegrees(min(phi, 90.0))
    ).asDegrees()


def _sphgeom_cells(sph: sg.Chunker, lon: sg.NormalizedAngleInterval, lat: float) -> set[tuple[int, int]]:
    box = sg.Box(lon, sg.AngleInterval.fromDegrees(lat, lat))
    return {(c, s) for c, subs in sph.getSubChunksIntersecting(box) for s in subs}


def _lon_interval(ra: float, half: float) -> sg.NormalizedAngleInterval:
    if half >= 180.0:
        return sg.NormalizedAngleInterval.full()
    return sg.NormalizedAngleInterval.fromDegrees(ra - half, ra + half)


def _sphgeom_overlap(sph, ch, ra, dec, pad, k):
    """Sub-chunks whose overlap region (sub-chunk box dilated by r in Dec and alpha in RA) holds (ra, dec),
    given the home sub-stripe k; `pad` grows (+) or shrinks (-) r and alpha to bracket edge cases."""
    pad_lon = pad / max(math.cos(math.radians(min(abs(dec) + ch.overlap, 90.0))), 1e-6)
    h = 180.0 / (ch.num_stripes * ch.num_sub_stripes)
    nss = ch.num_stripes * ch.num_sub_stripes
    r = ch.overlap + pad

    def cells(band: int, lat: float) -> set[tuple[int, int]]:
        return _sphgeom_cells(sph, _lon_interval(ra, _alpha_sphgeom(ch.overlap, band, h) + pad_lon), lat)

    found = cells(k, dec)
    if k > 0 and dec - r < k * h - 90.0:
        found |= cells(k - 1, dec - r)
    if k < nss - 1 and dec + r >= (k + 1) * h - 90.0:
        found |= cells(k + 1, dec + r)
    return found


def _literal_locate(ch: Chunker, alphas, lon: float, lat: float):
    """The partitioner's Chunker::locate(position, -1, locations), transcribed per point from the notes
    (§4, §5): home (chunkId, subChunkId) and the overlap copies in emission order."""
    S, SS, r = ch.num_stripes, ch.num_sub_stripes, ch.overlap
    M = ch.max_sub_chunks_per_chunk
    nc, nsc = ch.chunks_per_stripe, ch.sub_chunks_per_chunk
    h = 180.0 / (S * SS)
    nss = S * SS
    widths = _widths(ch)

    def ids(stripe, sub_stripe, chunk, sub_chunk):
        return stripe * 2 * S + chunk, (sub_stripe - stripe * SS) * M + (
            sub_chunk - chunk * int(nsc[sub_stripe])
        )

    def alpha(k):
        return float(alphas[k])

    ss = min(math.floor((lat + 90.0) / h), nss - 1)
    stripe = ss // SS
    ring = int(nc[stripe]) * int(nsc[ss])
    sc = min(math.floor(lon / float(widths[ss])), ring - 1)
    chunk = sc // int(nsc[ss])
    home = ids(stripe, ss, chunk, sc)
    copies = []
    if r == 0:
        return home, copies
    lon_min = sc * float(widths[ss])
    lon_max = (sc + 1) * float(widths[ss])
    lon_max = 360.0 if lon_max > 360.0 - 0.001 / 3600 else lon_max
    lat_min = max(ss * h - 90.0, -90.0)
    lat_max = min((ss + 1) * h - 90.0, 90.0)

    def up_down(k):
        st = k // SS
        n_ring = int(nc[st]) * int(nsc[k])
        lo = math.floor((lon - alpha(k)) / float(widths[k]))
        hi = math.floor((lon + alpha(k)) / float(widths[k]))
        lo += n_ring if lo < 0 else 0
        hi -= n_ring if hi >= n_ring else 0
        targets = list(range(lo, n_ring)) + list(range(0, hi + 1)) if lo > hi else list(range(lo, hi + 1))
        copies.extend(ids(st, k, t // int(nsc[k]), t) for t in targets)

    if ss > 0 and lat < lat_min + r:
        up_down(ss - 1)
    if ss < nss - 1 and lat >= lat_max - r:
        up_down(ss + 1)
    if ring > 1:
        if lon < lon_min + alpha(ss):
            t = ring - 1 if sc == 0 else sc - 1
            copies.append(ids(stripe, ss, t // int(nsc[ss]), t))
        if lon > lon_max - alpha(ss):
            t = 0 if sc == ring - 1 else sc + 1
            copies.append(ids(stripe, ss, t // int(nsc[ss]), t))
    return home, copies


def _copies_by_row(ch, ra, dec):
    rows, oc, osc = ch.locate_overlap(ra, dec)
    by_row = collections.defaultdict(list)
    for i, c, s in zip(rows.tolist(), oc.tolist(), osc.tolist(), strict=True):
        by_row[i].append((c, s))
    return by_row


# ---- layout tables ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS + [(18, 100, 0.01), (12, 4, 2.5)])
def test_tables_match_sphgeom(layout):
    """Chunk ids, sub-chunk ids per chunk and the overlap half-widths agree with lsst.sphgeom."""
    ch = Chunker(*layout)
    sph = sg.Chunker(layout[0], layout[1])
    assert ch.all_chunks().tolist() == sorted(sph.getAllChunks())
    assert ch.all_chunks()[-1] == ch.max_chunk_id == 2 * layout[0] * (layout[0] - 1)
    for stripe in range(layout[0]):  # first chunk of every stripe (sub-chunks depend only on the stripe)
        cid = stripe * 2 * layout[0]
        assert ch.sub_chunks(cid).tolist() == sorted(sph.getAllSubChunks(cid))
    h = ch.sub_stripe_height
    for k in range(layout[0] * layout[1]):
        assert ch._t.alpha[k] == pytest.approx(_alpha_sphgeom(layout[2], k, h), rel=1e-12, abs=0)


def test_dp02_layout_facts():
    """Facts recorded in the partitioning notes (§4, §9) for the DP0.2 layout."""
    ch = Chunker(340, 3, 0.01667)
    assert ch.max_sub_chunks_per_chunk == 12
    assert ch.all_chunks().size == 146_332
    assert ch.chunks_per_stripe[:6].tolist() == [1, 5, 12, 18, 25, 31]
    assert ch.sub_chunks(0).tolist() == [0] + list(range(12, 17)) + list(range(24, 36))
    assert ch.sub_chunks(230520).tolist() == list(range(0, 17)) + [24]
    assert ch.sub_chunks(68093).tolist() == [0, 1, 2, 12, 13, 14, 24, 25, 26]
    assert [int(x) for x in ch.locate(62.0, -37.0)] == [68093, 1]
    ra_min, ra_max, dec_min, dec_max = ch.chunk_bounds(79680)
    assert (ra_min, ra_max) == pytest.approx((72.0, 72.6), abs=1e-9)
    assert (dec_min, dec_max) == pytest.approx((-28.0588235, -27.5294118), abs=1e-6)
    assert ch.is_valid_chunk(np.array([0, 1, 680, 681, 79680, 230520, 230521, -1])).tolist() == [
        True, False, True, True, True, True, False, False,
    ]  # fmt: skip
    assert Chunker(85, 12, 0.01667).max_chunk_id == 14_280


@pytest.mark.parametrize(
    ("layout", "n_chunks", "max_id", "m", "equator_chunks", "equator_n", "n_sub_chunks"),
    [
        ((340, 3, 0.01667), 146_332, 230_520, 12, 679, 3, 1_317_080),
        ((85, 12, 0.01667), 8_983, 14_280, 69, 169, 12, 1_300_320),
        ((85, 14, 0.001), 8_983, 14_280, 81, 169, 14, 1_771_342),
        ((18, 100, 0.01), 368, 612, 618, 35, 102, 4_102_724),
    ],
)
def test_layout_statistics(layout, n_chunks, max_id, m, equator_chunks, equator_n, n_sub_chunks):
    """Layout statistics from the partitioning notes (§9), computed by the authors with their own model."""
    ch = Chunker(*layout)
    s, ss = layout[:2]
    assert ch.all_chunks().size == n_chunks and ch.max_chunk_id == max_id
    assert ch.max_sub_chunks_per_chunk == m
    assert ch.chunks_per_stripe[s // 2] == equator_chunks
    assert ch.sub_chunks_per_chunk[s * ss // 2] == equator_n
    assert int(np.sum(np.repeat(ch.chunks_per_stripe, ss) * ch.sub_chunks_per_chunk)) == n_sub_chunks


def test_bounds_contain_located_points():
    ch = Chunker(85, 14, 0.001)
    ra, dec = _random_sky(np.random.default_rng(5), 300)
    cids, scids = ch.locate(ra, dec)
    for x, y, c, s in zip(ra, dec, cids.tolist(), scids.tolist(), strict=True):
        a, b, lo, hi = ch.chunk_bounds(c)
        assert a <= x <= b and lo <= y <= hi
        a, b, lo, hi = ch.sub_chunk_bounds(c, s)
        assert a <= x <= b and lo <= y <= hi
    with pytest.raises(ValueError, match="does not exist"):
        ch.chunk_bounds(1)


# ---- home location vs sphgeom -------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_locate_matches_sphgeom(layout):
    """Random, near-pole and adversarial edge points: qdask's answer is sphgeom's, or one of sphgeom's
    candidates when the point is within sphgeom's padding of an edge; random points are never ambiguous."""
    rng = np.random.default_rng(layout[0] * 100 + layout[1])
    ch = Chunker(*layout)
    sph = sg.Chunker(layout[0], layout[1])
    sets = {
        "random": _random_sky(rng, 6000),
        "poles": _near_poles(rng, 3000),
        "edges": _edge_points(ch, rng),
    }
    for name, (ra, dec) in sets.items():
        cids, scids = ch.locate(ra, dec)
        ambiguous = 0
        for x, y, c, s in zip(ra.tolist(), dec.tolist(), cids.tolist(), scids.tolist(), strict=True):
            p = sg.LonLat.fromDegrees(x, y)
            cand = {(cc, ss) for cc, subs in sph.getSubChunksIntersecting(sg.Box(p, p)) for ss in subs}
            assert (c, s) in cand, (name, x, y, c, s, cand)
            ambiguous += len(cand) > 1
        if name != "edges":
            assert ambiguous == 0, name
        else:
            assert ambiguous > len(ra) // 10  # the edge set really does sit on edges


@pytest.mark.parametrize("layout", LAYOUTS + MORE_LAYOUTS)
def test_edges_follow_partitioner_rules(layout):
    """On computed edges the float quotient decides, as in the partitioner: compare every edge point with
    a literal per-point transcription of its arithmetic (home and overlap copies, in emission order)."""
    ch = Chunker(*layout)
    rng = np.random.default_rng(7)
    ra, dec = _edge_points(ch, rng, per_kind=800)
    cids, scids = ch.locate(ra, dec)
    by_row = _copies_by_row(ch, ra, dec)
    below_edge = 0
    for i, (x, y) in enumerate(zip(ra.tolist(), dec.tolist(), strict=True)):
        home, copies = _literal_locate(ch, ch._t.alpha, x, y)
        assert (int(cids[i]), int(scids[i])) == home, (x, y)
        assert by_row.get(i, []) == copies, (x, y)
    # the notes' observation: some computed edges k*h-90 fall into sub-stripe k-1
    h = ch.sub_stripe_height
    for k in range(ch.num_stripes * ch.num_sub_stripes + 1):  # all 1021 computed edges for 340/3
        below_edge += math.floor(((k * h - 90.0) + 90.0) / h) == k - 1
    if layout == (340, 3, 0.01667):
        assert below_edge == 144


# ---- overlap vs sphgeom -------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS + MORE_LAYOUTS)
def test_overlap_matches_sphgeom_geometry(layout):
    """Overlap copies equal the sub-chunks (other than home) whose r/alpha-dilated box holds the point,
    found with sphgeom; exact on unambiguous points, bracketed (sure ⊆ ours ⊆ possible) on edges."""
    rng = np.random.default_rng(11 + layout[1])
    ch = Chunker(*layout)
    sph = sg.Chunker(layout[0], layout[1])
    h = ch.sub_stripe_height
    nss = ch.num_stripes * ch.num_sub_stripes
    sets = {
        "random": _random_sky(rng, 5000),
        "poles": _near_poles(rng, 3000),
        "edges": _edge_points(ch, rng, per_kind=500),
    }
    for name, (ra, dec) in sets.items():
        cids, scids = ch.locate(ra, dec)
        by_row = _copies_by_row(ch, ra, dec)
        exact = 0
        for i, (x, y) in enumerate(zip(ra.tolist(), dec.tolist(), strict=True)):
            ours = by_row.get(i, [])
            assert len(set(ours)) == len(ours)
            home = (int(cids[i]), int(scids[i]))
            ks = {min(math.floor((y + 90.0 + d) / h), nss - 1) for d in (-EPS_DEG, 0.0, EPS_DEG)}
            ks = {max(k, 0) for k in ks}
            possible = set().union(*(_sphgeom_overlap(sph, ch, x, y, EPS_DEG, k) for k in ks))
            sure = set.intersection(*(_sphgeom_overlap(sph, ch, x, y, -EPS_DEG, k) for k in ks))
            p = sg.LonLat.fromDegrees(x, y)
            homes = {(c, s) for c, subs in sph.getSubChunksIntersecting(sg.Box(p, p)) for s in subs}
            assert set(ours) <= possible - {home}, (name, x, y, ours, possible)
            assert sure - homes <= set(ours), (name, x, y, ours, sure)
            if possible == sure and len(homes) == 1:
                assert set(ours) == possible - homes
                exact += 1
        if name != "edges":
            assert exact >= 0.99 * len(ra), name
    total_rows = sum(len(r) for r, _ in sets.values())
    assert total_rows > 0


def test_overlap_statistics_dp02():
    """Placement statistics from the notes (§5): ~82k copies per 200k random rows, ~65% same-chunk."""
    ch = Chunker(340, 3, 0.01667)
    ra, dec = _random_sky(np.random.default_rng(0), 200_000)
    located = ch.locate_all(ra, dec)
    rows = located.overlap_row
    assert 80_000 < rows.size < 85_000
    same = np.mean(located.overlap_chunk_id == located.chunk_id[rows])
    assert 0.62 < same < 0.68
    per_row = np.bincount(rows, minlength=ra.size)
    assert per_row.max() == 3 and np.mean(per_row == 0) == pytest.approx(0.66, abs=0.01)
    assert np.all(np.diff(rows) >= 0)  # row-ordered
    r2, c2, s2 = ch.locate_overlap(ra, dec)
    assert np.array_equal(r2, rows) and np.array_equal(c2, located.overlap_chunk_id)
    assert np.array_equal(s2, located.overlap_sub_chunk_id)
    c1, s1 = ch.locate(ra, dec)
    assert np.array_equal(c1, located.chunk_id) and np.array_equal(s1, located.sub_chunk_id)


def test_poles_and_wrap():
    """Cap rows get no left/right copies; rows near the cap edge copy into the cap; RA 0/360 wrap."""
    ch = Chunker(340, 3, 0.01667)
    h = ch.sub_stripe_height
    by_row = _copies_by_row(
        ch, [10.0, 200.0, 10.0, 10.0], [90 - h - 0.01, 89.9999, 90 - h + 0.01, -90 + h - 0.01]
    )
    assert by_row[0].count((230520, 24)) == 1  # just below the north cap: one copy into the cap
    assert 1 not in by_row  # deep in the cap: nothing
    assert by_row[2] and all(c == 230520 and 12 <= s <= 16 for c, s in by_row[2])  # cap into the ring below
    assert by_row[3] and all(c == 0 and 12 <= s <= 16 for c, s in by_row[3])  # south cap into the ring above
    # a row just above RA 0 copies into the last sub-chunk of the ring, in chunk C-1 of its stripe
    home = int(ch.locate(1e-6, 0.05)[0])
    stripe = home // 680
    assert _copies_by_row(ch, [1e-6], [0.05])[0] == [
        (stripe * 680 + int(ch.chunks_per_stripe[stripe]) - 1, 2)
    ]
    # ra = 360 lands in the last sub-chunk (not chunk 0) and copies right into chunk 0 of the stripe
    c360, s360 = ch.locate(360.0, 10.0)
    assert (int(c360), int(s360)) == (128508, 26)
    assert (128508 - 128508 % 680, 24) in _copies_by_row(ch, [360.0], [10.0])[0]


# ---- real partitioner output --------------------------------------------------------------------------


def _read_csv(path, sep):
    with open(path, "rb") as f:
        return [line.rstrip(b"\n").split(sep) for line in f]


def test_test101_object_reproduced_exactly(shared_data):
    """Every home and overlap row that Qserv's partitioner wrote for test101 Object is reproduced."""
    base = shared_data / "qserv-itest" / "test101"
    db = json.loads((base / "database_test101.json").read_text())
    table = json.loads((base / "table_Object.json").read_text())
    names = [c["name"] for c in table["schema"]]
    i_ra, i_dec = names.index(table["longitude_key"]), names.index(table["latitude_key"])
    i_id = names.index(table["director_key"])
    sep = table["fields_terminated_by"].encode()
    ch = Chunker(db["num_stripes"], db["num_sub_stripes"], db["overlap"])

    files = sorted((base / "data" / "Object").glob("chunk_*.txt"))
    assert len(files) == 3
    home_rows = _read_csv(base / "data" / "Object" / "chunk_7480.txt", sep)
    ra = np.array([float(r[i_ra]) for r in home_rows])
    dec = np.array([float(r[i_dec]) for r in home_rows])
    cids, scids = ch.locate(ra, dec)
    assert cids.tolist() == [int(r[-2]) for r in home_rows]
    assert scids.tolist() == [int(r[-1]) for r in home_rows]

    overlap_files = [f for f in files if f.name.endswith("_overlap.txt")]
    written = collections.Counter()
    positions = {r[i_id]: (float(r[i_ra]), float(r[i_dec])) for r in home_rows}
    target_chunks = set()
    for f in overlap_files:
        target_chunks.add(int(f.name.split("_")[1]))
        for r in _read_csv(f, sep):
            written[(r[i_id], int(r[-2]), int(r[-1]))] += 1
            positions.setdefault(r[i_id], (float(r[i_ra]), float(r[i_dec])))
    ids = list(positions)
    ra = np.array([positions[k][0] for k in ids])
    dec = np.array([positions[k][1] for k in ids])
    rows, oc, osc = ch.locate_overlap(ra, dec)
    predicted = collections.Counter(
        (ids[i], c, s)
        for i, c, s in zip(rows.tolist(), oc.tolist(), osc.tolist(), strict=True)
        if c in target_chunks
    )
    assert sum(written.values()) == 91 + 66
    assert predicted == written


def test_test101_source_placed_by_director_position(shared_data):
    """Source rows carry the chunk of their Object's position (raObject, declObject), overlap 0."""
    base = shared_data / "qserv-itest" / "test101"
    table = json.loads((base / "table_Source.json").read_text())
    names = [c["name"] for c in table["schema"]]
    rows = _read_csv(base / "data" / "Source" / "chunk_7480.txt", table["fields_terminated_by"].encode())
    ra = np.array([float(r[names.index("raObject")]) for r in rows])
    dec = np.array([float(r[names.index("declObject")]) for r in rows])
    cids, scids = Chunker(85, 12, 0.0).locate(ra, dec)
    assert len(rows) == 4583
    assert cids.tolist() == [int(r[-2]) for r in rows]
    assert scids.tolist() == [int(r[-1]) for r in rows]
    assert Chunker(85, 12, 0.0).locate_overlap(ra, dec)[0].size == 0


def _case01_positions(data, table):
    part = json.loads((data / "partition" / f"{table}.json").read_text())
    fields = part["in"]["csv"]["field"]
    ra_name, dec_name = (s.strip() for s in part["part"]["pos"].split(","))
    i_ra, i_dec = fields.index(ra_name), fields.index(dec_name)
    with gzip.open(data / f"{table}.tsv.gz", "rb") as f:
        rows = [line.rstrip(b"\n").split(b"\t") for line in f]
    assert all(len(r) >= len(fields) for r in rows)  # a few Source blobs hold a tab, after the positions
    assert max(i_ra, i_dec) < len(fields) - 1
    return part, np.array([float(r[i_ra]) for r in rows]), np.array([float(r[i_dec]) for r in rows])


def test_case01_chunk_lists_match_metadata(shared_data):
    """The Object chunks and overlap chunks (and Source chunks) equal those Qserv's ingest metadata lists."""
    data = shared_data / "qserv-itest" / "case01" / "data"
    common = json.loads((data / "partition" / "common.json").read_text())["part"]
    meta = json.loads((data / "ingest" / "metadata.json").read_text())
    listed = {t["schema"]: t["data"][0] for t in meta["tables"]}
    part, ra, dec = _case01_positions(data, "Object")
    ch = Chunker(common["num-stripes"], common["num-sub-stripes"], part["part"]["overlap"])
    cids, _ = ch.locate(ra, dec)
    _, oc, _ = ch.locate_overlap(ra, dec)
    assert sorted(set(cids.tolist())) == listed["Object.json"]["chunks"]
    assert sorted(set(oc.tolist())) == listed["Object.json"]["overlaps"]
    part, ra, dec = _case01_positions(data, "Source")
    ch0 = Chunker(common["num-stripes"], common["num-sub-stripes"], part["part"]["overlap"])
    assert sorted(set(ch0.locate(ra, dec)[0].tolist())) == listed["Source.json"]["chunks"]


# ---- invalid positions and layouts --------------------------------------------------------------------


def test_invalid_positions_raise_with_details():
    ch = Chunker(340, 3, 0.01667)
    ra = np.array([10.0, np.nan, 20.0, -0.5, 361.0, 30.0, np.inf, 5.0, 6.0])
    dec = np.array([0.0, 0.0, 95.0, 0.0, 0.0, -90.5, 0.0, np.nan, 0.0])
    with pytest.raises(InvalidPositionError) as err:
        ch.locate(ra, dec)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert msg.startswith("7 of 9 rows")
    assert "(row 1, ra=nan, dec=0.0)" in msg and "(row 2, ra=20.0, dec=95.0)" in msg
    assert "(row 3, ra=-0.5" in msg and "(row 5, ra=30.0, dec=-90.5)" in msg
    assert "and 2 more" in msg and "row 6" not in msg
    with pytest.raises(InvalidPositionError, match="1 of 1 rows"):
        ch.locate_overlap([np.nan], [0.0])
    with pytest.raises(InvalidPositionError):
        ch.locate_all([0.0], [-np.inf])


def test_invalid_positions_mask_mode():
    ch = Chunker(340, 3, 0.01667)
    rng = np.random.default_rng(3)
    ra, dec = _random_sky(rng, 100_000)  # spans several blocks
    bad_rows = np.array([0, 5, 40_000, 99_999])
    ra_bad, dec_bad = ra.copy(), dec.copy()
    ra_bad[bad_rows] = [np.nan, -1.0, 400.0, 10.0]
    dec_bad[bad_rows[-1]] = -np.inf
    cids, scids, mask = ch.locate(ra_bad, dec_bad, invalid="mask")
    assert np.flatnonzero(mask).tolist() == bad_rows.tolist()
    assert (cids[mask] == -1).all() and (scids[mask] == -1).all()
    good_c, good_s = ch.locate(ra[~mask], dec[~mask])
    assert np.array_equal(cids[~mask], good_c) and np.array_equal(scids[~mask], good_s)
    rows, oc, osc, mask2 = ch.locate_overlap(ra_bad, dec_bad, invalid="mask")
    assert np.array_equal(mask, mask2)
    assert not np.isin(rows, bad_rows).any()
    keep = np.flatnonzero(~mask)
    r_ref, c_ref, s_ref = ch.locate_overlap(ra[keep], dec[keep])
    assert np.array_equal(rows, keep[r_ref]) and np.array_equal(oc, c_ref) and np.array_equal(osc, s_ref)
    c, s, m = ch.locate([], [], invalid="mask")
    assert c.size == s.size == m.size == 0
    with pytest.raises(ValueError, match="invalid must be"):
        ch.locate([1.0], [1.0], invalid="drop")


def test_boundary_inputs_that_are_valid():
    """ra = 360 and dec = ±90 are valid; -0.0 is 0."""
    ch = Chunker(340, 3, 0.01667)
    cids, _ = ch.locate([360.0, -0.0, 0.0, 0.0], [10.0, 0.0, 90.0, -90.0])
    assert cids.tolist() == [128508, int(ch.locate(0.0, 0.0)[0]), 230520, 0]


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ((340, 3, 11.0), r"overlap radius 11.0 deg must be in \[0, 10\]"),
        ((340, 3, -0.1), r"overlap radius -0.1 deg"),
        ((340, 3, 0.2), r"0.2 deg is greater than the sub-stripe height 0.17647"),
        ((0, 3, 0.01), r"must be positive"),
        ((12, 4, 3.7), r"alpha=.* in sub-stripe \d+ .* more than its sub-chunk width"),
        ((340, 3000, 0.0), r"below 1 arcsec"),
    ],
)
def test_layout_validation(args, pattern):
    with pytest.raises(LayoutError, match=pattern) as err:
        Chunker(*args)
    assert isinstance(err.value, ValueError)


def test_cached_and_picklable():
    a = Chunker.for_layout(340, 3, 0.01667)
    assert Chunker.for_layout(340, 3, 0.01667) is a
    assert Chunker(340, 3, 0.01667)._t is a._t
    b = pickle.loads(pickle.dumps(a))
    assert b == a and b.layout == (340, 3, 0.01667)


def test_locate_cli():
    result = CliRunner().invoke(main, ["locate", "62.0", "-37.0"])
    assert result.exit_code == 0, result.output
    assert "chunkId 68093" in result.output and "subChunkId 1" in result.output
    assert "overlap copies: 1" in result.output and "68093/0" in result.output
    result = CliRunner().invoke(main, ["locate", "10", "95", "--layout", "85,12,0.01667"])
    assert result.exit_code != 0 and "dec=95.0" in result.output
    result = CliRunner().invoke(main, ["locate", "10", "5", "--layout", "85,12"])
    assert result.exit_code != 0 and "S,SS,OVERLAP" in result.output

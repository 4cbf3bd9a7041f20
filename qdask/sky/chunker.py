"""Qserv's sky partitioning (chunks, sub-chunks, overlap), bit-for-bit and vectorised with numpy.

The layout tables are built once per (stripes, sub-stripes, overlap) with Python's ``math`` module (the
same libm calls as Qserv's C++ ``partition::Chunker``); per-row work is only IEEE division, ``floor``,
comparisons and gathers from those small tables, evaluated in the partitioner's order, so every row gets
the chunkId/subChunkId and the overlap copies that ``sph-partition`` writes. The arithmetic is described
in ``/work/shared/qserv-partitioning.md`` (§3 tables, §4 home location, §5 overlap copies).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple, overload

import numpy as np

__all__ = ["Chunker", "InvalidPositionError", "LayoutError", "Located"]

IntArrays2 = tuple[np.ndarray, np.ndarray]
IntArrays3 = tuple[np.ndarray, np.ndarray, np.ndarray]

DEG_PER_RAD = 57.2957795130823208767981548141  # the partitioner's literal; equals 180/pi as a double
RAD_PER_DEG = 0.0174532925199432957692369076849
EPSILON_DEG = 0.001 / 3600  # 1 mas: an upper RA edge this close to 360 is clamped to 360
POLE_DEG = 1 / 3600  # 1 arcsec: a band this close to a pole is one cap

#: Rows per block: the block working set (~10 arrays of 8 bytes/row) stays cache-resident while the
#: Python overhead per block (~60 numpy calls) stays small against the per-row work.
BLOCK_ROWS = 1 << 15


class InvalidPositionError(ValueError):
    """Positions Qserv's partitioner cannot place (NaN, ±inf, RA outside [0, 360], Dec outside [-90, 90])."""


class LayoutError(ValueError):
    """A (stripes, sub-stripes, overlap) layout that Qserv's partitioner refuses."""


class Located(NamedTuple):
    """Home location per row plus every overlap copy, as returned by `Chunker.locate_all`."""

    chunk_id: np.ndarray  # int32, one per row (-1 for invalid rows in mask mode)
    sub_chunk_id: np.ndarray  # int32, one per row
    overlap_row: np.ndarray  # int64 index into the input, one per overlap copy
    overlap_chunk_id: np.ndarray  # int32 target chunk of each copy
    overlap_sub_chunk_id: np.ndarray  # int32 target sub-chunk of each copy
    invalid: np.ndarray | None  # bool per row in mask mode, else None


def _segments(lat_min: float, lat_max: float, width: float) -> int:
    """How many equal RA slices a band gets so that slices are at least `width` apart (as Qserv)."""
    lat = max(abs(lat_min), abs(lat_max))
    if lat > 90.0 - POLE_DEG or width >= 180.0:
        return 1
    # Qserv meant to clamp width to 1 arcsec but its integer division yields 0 (undefined result);
    # layouts that would reach this branch are rejected before we get here.
    lat *= RAD_PER_DEG
    cw = math.cos(width * RAD_PER_DEG)
    sl = math.sin(lat)
    cl = math.cos(lat)
    x = cw - sl * sl
    u = cl * cl
    y = math.sqrt(abs(u * u - x * x))
    return int(math.floor(360.0 / abs(DEG_PER_RAD * math.atan2(y, x))))


def _max_alpha(r: float, center_lat: float) -> float:
    """RA half-extent (deg) of a circle of radius `r` centred at latitude `center_lat` (Qserv's maxAlpha)."""
    if r == 0.0:
        return 0.0
    lat = min(max(center_lat, -90.0), 90.0)
    if abs(lat) + r > 90.0 - POLE_DEG:
        return 180.0
    r *= RAD_PER_DEG
    lat *= RAD_PER_DEG
    y = math.sin(r)
    x = math.sqrt(abs(math.cos(lat - r) * math.cos(lat + r)))
    return DEG_PER_RAD * abs(math.atan(y / x))


def _clamp_lat(lat: float) -> float:
    return min(max(lat, -90.0), 90.0)


def _clamp_lon(lon: float) -> float:
    return 360.0 if lon > 360.0 - EPSILON_DEG else lon


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class _Tables:
    """Per-sub-stripe lookup tables of one layout (float64 so per-row arithmetic stays in doubles)."""

    chunks_per_stripe: np.ndarray  # int32 [S]
    sub_chunks_per_chunk: np.ndarray  # int32 [NSS], N_k
    max_sub_chunks_per_chunk: int  # M
    width: np.ndarray  # [NSS] sub-chunk width w_k (deg)
    ring_last: np.ndarray  # [NSS] index of the last sub-chunk of the ring, C_i*N_k - 1
    n_float: np.ndarray  # [NSS] N_k
    chunk_base: np.ndarray  # [NSS] stripe * 2S
    sub_base: np.ndarray  # [NSS] (k - stripe*SS) * M
    alpha: np.ndarray  # [NSS] overlap RA half-width for copies into this sub-stripe (deg)
    alpha_lr: np.ndarray  # [NSS] alpha, or -inf where the ring has one sub-chunk (no left/right copies)
    below_thr: np.ndarray  # [NSS] latMin + r; -inf for the bottom sub-stripe
    above_thr: np.ndarray  # [NSS] latMax - r; +inf for the top sub-stripe


@functools.lru_cache(maxsize=32)
def _build_tables(num_stripes: int, num_sub_stripes: int, overlap: float) -> _Tables:
    """Build (once per layout) the tables of Qserv's Chunker::_initialize, validating as it does."""
    S, SS, r = num_stripes, num_sub_stripes, overlap
    layout = f"(num_stripes={S}, num_sub_stripes={SS}, overlap={r})"
    if S < 1 or SS < 1:
        raise LayoutError(f"the number of stripes and sub-stripes per stripe must be positive {layout}")
    if not (0.0 <= r <= 10.0):
        raise LayoutError(f"the overlap radius {r} deg must be in [0, 10] deg {layout}")
    if 2 * S * (S - 1) >= 2**31:
        raise LayoutError(f"{S} stripes give chunk ids beyond int32 {layout}")
    nss = S * SS
    stripe_height = 180.0 / S
    h = 180.0 / nss
    if h < POLE_DEG:
        raise LayoutError(
            f"sub-stripe height {h} deg is below 1 arcsec, where Qserv's segment count is undefined {layout}"
        )
    if h < r:
        raise LayoutError(
            f"the overlap radius {r} deg is greater than the sub-stripe height {h} deg {layout}"
        )
    nc = np.empty(S, dtype=np.int32)
    nsc = np.empty(nss, dtype=np.int32)
    width = np.empty(nss)
    alpha = np.empty(nss)
    lat_lo = np.empty(nss)
    lat_hi = np.empty(nss)
    for i in range(S):
        c = _segments(i * stripe_height - 90.0, (i + 1) * stripe_height - 90.0, stripe_height)
        nc[i] = c
        for j in range(SS):
            k = i * SS + j
            lat_min = k * h - 90.0
            lat_max = (k + 1) * h - 90.0
            n = _segments(lat_min, lat_max, h) // c
            if n < 1:
                raise LayoutError(f"sub-stripe {k} gets no sub-chunks per chunk {layout}")
            nsc[k] = n
            w = 360.0 / (n * c)
            a = _max_alpha(r, max(abs(lat_min), abs(lat_max)))
            if a > w:
                raise LayoutError(
                    f"the overlap radius {r} deg needs an RA half-width alpha={a} deg in sub-stripe {k} "
                    f"(dec {lat_min:.6f}..{lat_max:.6f}), more than its sub-chunk width {w} deg {layout}"
                )
            width[k] = w
            alpha[k] = a
            lat_lo[k] = _clamp_lat(lat_min)
            lat_hi[k] = _clamp_lat(lat_max)
    m = int(nsc.max())
    if SS * m >= 2**31:
        raise LayoutError(f"sub-chunk ids would exceed int32 (M={m}) {layout}")
    stripe_of = np.arange(nss) // SS
    ring = nc[stripe_of].astype(np.float64) * nsc
    below = np.array([lat_lo[k] + r for k in range(nss)])  # Python floats: latMin + overlap, as in C++
    above = np.array([lat_hi[k] - r for k in range(nss)])
    below[0] = -np.inf
    above[-1] = np.inf
    return _Tables(
        chunks_per_stripe=_frozen(nc),
        sub_chunks_per_chunk=_frozen(nsc),
        max_sub_chunks_per_chunk=m,
        width=_frozen(width),
        ring_last=_frozen(ring - 1.0),
        n_float=_frozen(nsc.astype(np.float64)),
        chunk_base=_frozen((stripe_of * 2 * S).astype(np.float64)),
        sub_base=_frozen(((np.arange(nss) - stripe_of * SS) * m).astype(np.float64)),
        alpha=_frozen(alpha),
        alpha_lr=_frozen(np.where(ring > 1, alpha, -np.inf)),
        below_thr=_frozen(below),
        above_thr=_frozen(above),
    )


def _as_float64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


class _Scratch:
    """Per-call work buffers for one block (reused block after block, never shared between calls)."""

    def __init__(self, rows: int) -> None:
        self.f = [np.empty(rows) for _ in range(8)]
        self.ss = np.empty(rows, dtype=np.intp)
        self.counts = np.empty(rows, dtype=np.int64)
        self.start = np.empty(rows, dtype=np.int64)


class Chunker:
    """Qserv's chunk/sub-chunk/overlap assignment for one layout (S stripes, SS sub-stripes, overlap deg).

    Construction validates the layout exactly as Qserv's partitioner does (raising `LayoutError`) and
    reuses the tables cached per layout, so building a Chunker per task is cheap. Instances are immutable
    and safe to share between threads.
    """

    def __init__(self, num_stripes: int, num_sub_stripes: int, overlap: float) -> None:
        if int(num_stripes) != num_stripes or int(num_sub_stripes) != num_sub_stripes:
            raise LayoutError(
                f"stripes and sub-stripes must be integers, got {num_stripes}, {num_sub_stripes}"
            )
        self._S = int(num_stripes)
        self._SS = int(num_sub_stripes)
        self._r = float(overlap)
        if math.isnan(self._r):
            raise LayoutError("the overlap radius is NaN")
        self._t = _build_tables(self._S, self._SS, self._r)
        self._chunks_per_stripe: list[int] = self._t.chunks_per_stripe.tolist()
        self._h = 180.0 / (self._S * self._SS)
        self._nss = self._S * self._SS

    @classmethod
    @functools.lru_cache(maxsize=32)
    def for_layout(cls, num_stripes: int, num_sub_stripes: int, overlap: float) -> Chunker:
        """A shared Chunker per layout (tables are cached either way; this also shares the object)."""
        return cls(num_stripes, num_sub_stripes, overlap)

    def __repr__(self) -> str:
        return f"Chunker(num_stripes={self._S}, num_sub_stripes={self._SS}, overlap={self._r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Chunker) and self.layout == other.layout

    def __hash__(self) -> int:
        return hash(self.layout)

    def __reduce__(self):
        return (Chunker, self.layout)

    # ---- layout properties -------------------------------------------------------------------------

    @property
    def layout(self) -> tuple[int, int, float]:
        """(num_stripes, num_sub_stripes, overlap), the arguments this Chunker was built from."""
        return (self._S, self._SS, self._r)

    @property
    def num_stripes(self) -> int:
        return self._S

    @property
    def num_sub_stripes(self) -> int:
        """Sub-stripes per stripe (Qserv's ``num-sub-stripes``)."""
        return self._SS

    @property
    def overlap(self) -> float:
        """Overlap radius in degrees."""
        return self._r

    @property
    def stripe_height(self) -> float:
        return 180.0 / self._S

    @property
    def sub_stripe_height(self) -> float:
        return self._h

    @property
    def max_sub_chunks_per_chunk(self) -> int:
        """M: the sub-chunk id stride between sub-stripes of a chunk (max sub-chunks per chunk row)."""
        return self._t.max_sub_chunks_per_chunk

    @property
    def max_chunk_id(self) -> int:
        return 2 * self._S * (self._S - 1)

    @property
    def chunks_per_stripe(self) -> np.ndarray:
        """int32 [num_stripes]: chunks in each stripe, south to north."""
        return self._t.chunks_per_stripe

    @property
    def sub_chunks_per_chunk(self) -> np.ndarray:
        """int32 [num_stripes*num_sub_stripes]: sub-chunks per chunk in each sub-stripe (N_k)."""
        return self._t.sub_chunks_per_chunk

    # ---- chunk catalogue -----------------------------------------------------------------------------

    def all_chunks(self) -> np.ndarray:
        """Every chunk id of the layout, sorted (int32)."""
        nc = self._t.chunks_per_stripe
        base = np.repeat(np.arange(self._S, dtype=np.int64) * 2 * self._S, nc)
        first = np.repeat(np.cumsum(nc) - nc, nc)
        return (base + np.arange(base.size) - first).astype(np.int32)

    def is_valid_chunk(self, chunk_id):
        """Whether each chunk id exists in this layout (bool, or a bool array for array input)."""
        ids = np.asarray(chunk_id)
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"chunk ids must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.int64)
        stripe = ids // (2 * self._S)
        chunk = ids - stripe * 2 * self._S
        ok = (ids >= 0) & (stripe < self._S)
        nc = self._t.chunks_per_stripe.take(np.clip(stripe, 0, self._S - 1))
        ok &= chunk < nc
        return bool(ok) if ok.ndim == 0 else ok

    def _split_chunk(self, chunk_id: int) -> tuple[int, int]:
        """(stripe, chunk within it) of one valid chunk id: `is_valid_chunk`'s test in plain integers, as
        one id at a time is how the callers ask (a report maps 140k chunks; numpy on scalars took 12 µs)."""
        stripe, chunk = divmod(int(chunk_id), 2 * self._S)
        if int(chunk_id) < 0 or stripe >= self._S or chunk >= self._chunks_per_stripe[stripe]:
            raise ValueError(f"chunk {chunk_id} does not exist in layout {self.layout}")
        return stripe, chunk

    def sub_chunks(self, chunk_id: int) -> np.ndarray:
        """The sub-chunk ids of a chunk, sorted (int32), as Qserv's Chunker::getSubChunks lists them."""
        stripe, _ = self._split_chunk(chunk_id)
        m = self.max_sub_chunks_per_chunk
        n = self._t.sub_chunks_per_chunk[stripe * self._SS : (stripe + 1) * self._SS]
        return np.concatenate([j * m + np.arange(nj, dtype=np.int32) for j, nj in enumerate(n)])

    def chunk_bounds(self, chunk_id: int) -> tuple[float, float, float, float]:
        """(ra_min, ra_max, dec_min, dec_max) of a chunk in degrees, as Qserv's getChunkBounds."""
        stripe, chunk = self._split_chunk(chunk_id)
        width = 360.0 / self._chunks_per_stripe[stripe]
        return (
            chunk * width,
            _clamp_lon((chunk + 1) * width),
            _clamp_lat(stripe * self._SS * self._h - 90.0),
            _clamp_lat((stripe + 1) * self._SS * self._h - 90.0),
        )

    def sub_chunk_bounds(self, chunk_id: int, sub_chunk_id: int) -> tuple[float, float, float, float]:
        """(ra_min, ra_max, dec_min, dec_max) of a sub-chunk in degrees, as Qserv's getSubChunkBounds."""
        stripe, chunk = self._split_chunk(chunk_id)
        m = self.max_sub_chunks_per_chunk
        local_ss, local_sc = divmod(int(sub_chunk_id), m)
        k = stripe * self._SS + local_ss
        if not (0 <= local_ss < self._SS) or local_sc >= int(self._t.sub_chunks_per_chunk[k]):
            raise ValueError(f"sub-chunk {sub_chunk_id} does not exist in chunk {chunk_id} of {self.layout}")
        sc = chunk * int(self._t.sub_chunks_per_chunk[k]) + local_sc
        w = float(self._t.width[k])
        lat_min = _clamp_lat(k * self._h - 90.0)
        return (sc * w, _clamp_lon((sc + 1) * w), lat_min, _clamp_lat((k + 1) * self._h - 90.0))

    # ---- locating rows -------------------------------------------------------------------------------

    @overload
    def locate(self, ra, dec, *, invalid: Literal["raise"] = "raise") -> IntArrays2: ...
    @overload
    def locate(self, ra, dec, *, invalid: Literal["mask"]) -> IntArrays3: ...

    def locate(self, ra, dec, *, invalid: str = "raise"):
        """Home (chunk_id, sub_chunk_id) as int32 arrays for positions in degrees (arrays, lists or scalars).

        Inputs are broadcast together and taken as float64, the double the partitioner's ``strtod`` reads
        from text; outputs have the broadcast shape. With ``invalid="mask"`` returns ``(chunk_id,
        sub_chunk_id, invalid_mask)`` and invalid rows get -1; with the default ``"raise"`` any invalid row
        raises `InvalidPositionError` (nothing is ever placed silently where Qserv's result is undefined).
        """
        located = self._run(ra, dec, invalid, overlap=False)
        if invalid == "mask":
            return located.chunk_id, located.sub_chunk_id, located.invalid
        return located.chunk_id, located.sub_chunk_id

    @overload
    def locate_overlap(self, ra, dec, *, invalid: Literal["raise"] = "raise") -> IntArrays3: ...
    @overload
    def locate_overlap(
        self, ra, dec, *, invalid: Literal["mask"]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...

    def locate_overlap(self, ra, dec, *, invalid: str = "raise"):
        """Overlap copies: (row int64, chunk_id int32, sub_chunk_id int32), one entry per copy.

        These are exactly the rows Qserv's partitioner writes to ``chunk_<id>_overlap.txt``, same-chunk
        copies included, ordered by row and within a row as Qserv emits them (below, above, left, right).
        ``row`` indexes the (flattened, broadcast) input. With overlap 0 there are no copies.
        With ``invalid="mask"`` the invalid mask is returned fourth and invalid rows get no copies.
        """
        located = self._run(ra, dec, invalid, overlap=True)
        out = (located.overlap_row, located.overlap_chunk_id, located.overlap_sub_chunk_id)
        return out + (located.invalid,) if invalid == "mask" else out

    def locate_all(self, ra, dec, *, invalid: str = "raise") -> Located:
        """Home location and overlap copies in one pass (cheaper than `locate` + `locate_overlap`)."""
        return self._run(ra, dec, invalid, overlap=True)

    def _run(self, ra, dec, invalid: str, overlap: bool) -> Located:
        if invalid not in ("raise", "mask"):
            raise ValueError(f'invalid must be "raise" or "mask", got {invalid!r}')
        ra_b, dec_b = np.broadcast_arrays(_as_float64(ra), _as_float64(dec))
        shape = ra_b.shape
        ra_f = np.ascontiguousarray(ra_b).reshape(-1)
        dec_f = np.ascontiguousarray(dec_b).reshape(-1)
        n = ra_f.size
        chunk_id = np.empty(n, dtype=np.int32)
        sub_id = np.empty(n, dtype=np.int32)
        mask = np.zeros(n, dtype=bool) if invalid == "mask" else None
        want_overlap = overlap and self._r > 0.0
        pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        scratch = _Scratch(min(n, BLOCK_ROWS))
        for start in range(0, n, BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, n)
            r_blk, d_blk = ra_f[start:stop], dec_f[start:stop]
            bad_blk = None
            # validate block by block while the block is in cache (a separate pass over the whole input
            # would double the memory traffic)
            if not _all_valid(r_blk, d_blk):
                if mask is None:
                    raise _invalid_error(ra_f, dec_f, ~_valid_mask(ra_f, dec_f))
                bad_blk = ~_valid_mask(r_blk, d_blk)
                mask[start:stop] = bad_blk
                r_blk = np.where(bad_blk, 0.0, r_blk)  # compute on harmless stand-ins, then overwrite
                d_blk = np.where(bad_blk, 0.0, d_blk)
            home = self._home(r_blk, d_blk, chunk_id[start:stop], sub_id[start:stop], scratch)
            if want_overlap:
                rows, oc, osc = self._overlap(r_blk, d_blk, home, bad_blk, scratch)
                if rows.size:
                    rows += start
                    pieces.append((rows, oc, osc))
            if bad_blk is not None:
                chunk_id[start:stop][bad_blk] = -1
                sub_id[start:stop][bad_blk] = -1
        if pieces:
            o_row = np.concatenate([p[0] for p in pieces])
            o_chunk = np.concatenate([p[1] for p in pieces])
            o_sub = np.concatenate([p[2] for p in pieces])
        else:
            o_row = np.empty(0, dtype=np.int64)
            o_chunk = np.empty(0, dtype=np.int32)
            o_sub = np.empty(0, dtype=np.int32)
        shaped_mask = mask.reshape(shape) if mask is not None else None
        return Located(chunk_id.reshape(shape), sub_id.reshape(shape), o_row, o_chunk, o_sub, shaped_mask)

    def _home(self, ra, dec, cid_out, scid_out, scratch: _Scratch):
        """Qserv's Chunker::locate for one block; returns the intermediates the overlap step reuses.

        Works in preallocated scratch (``out=``): per-block temporaries would otherwise be mapped and
        unmapped by malloc for every block, and the page faults cost more than the arithmetic.
        """
        t = self._t
        m = ra.size
        ssf, w, sc, nn, chunk = (f[:m] for f in scratch.f[:5])
        ss = scratch.ss[:m]
        np.add(dec, 90.0, out=ssf)
        np.divide(ssf, self._h, out=ssf)
        np.floor(ssf, out=ssf)
        np.minimum(ssf, self._nss - 1, out=ssf)  # dec = +90 goes to the top sub-stripe
        np.copyto(ss, ssf, casting="unsafe")
        t.width.take(ss, out=w, mode="clip")
        np.divide(ra, w, out=sc)
        np.floor(sc, out=sc)
        t.ring_last.take(ss, out=nn, mode="clip")
        np.minimum(sc, nn, out=sc)  # ra = 360 goes to the last sub-chunk of the ring
        t.n_float.take(ss, out=nn, mode="clip")
        np.divide(sc, nn, out=chunk)  # exact integer division: sc, N are small integers held in doubles
        np.floor(chunk, out=chunk)
        tmp = ssf
        t.chunk_base.take(ss, out=tmp, mode="clip")
        tmp += chunk
        cid_out[...] = tmp
        np.multiply(chunk, nn, out=tmp)
        np.subtract(sc, tmp, out=tmp)
        t.sub_base.take(ss, out=chunk, mode="clip")
        tmp += chunk
        scid_out[...] = tmp
        return ss, sc, w

    def _overlap(self, ra, dec, home, bad, scratch: _Scratch):
        """Qserv's overlap placements for one block: (local row, chunk_id, sub_chunk_id), row-ordered."""
        t = self._t
        ss, sc, w = home
        m = ra.size
        thr, a_lr, edge = (f[:m] for f in scratch.f[5:8])
        t.below_thr.take(ss, out=thr, mode="clip")
        below = dec < thr
        t.above_thr.take(ss, out=thr, mode="clip")
        above = dec >= thr
        t.alpha_lr.take(ss, out=a_lr, mode="clip")
        np.multiply(sc, w, out=edge)  # lonMin
        edge += a_lr
        left = ra < edge
        np.add(sc, 1.0, out=edge)
        edge *= w  # lonMax before clamping
        edge[edge > 360.0 - EPSILON_DEG] = 360.0
        edge -= a_lr
        right = ra > edge
        if bad is not None:
            keep = ~bad
            below &= keep
            above &= keep
            left &= keep
            right &= keep
        i_b = np.flatnonzero(below)
        i_a = np.flatnonzero(above)
        i_l = np.flatnonzero(left)
        i_r = np.flatnonzero(right)
        b_lo, b_cnt, b_ss = self._up_down(ra, ss, i_b, -1)
        a_lo, a_cnt, a_ss = self._up_down(ra, ss, i_a, +1)
        # Row-major output: count each row's copies, then scatter each kind into its slot of the row.
        counts, start = scratch.counts[:m], scratch.start[:m]
        counts.fill(0)
        counts[i_b] = b_cnt
        n_before_a = counts[i_a]
        counts[i_a] += a_cnt
        n_before_l = counts[i_l]
        counts[i_l] += 1
        n_before_r = counts[i_r]
        counts[i_r] += 1
        np.cumsum(counts, out=start)
        total = int(start[-1]) if m else 0
        start -= counts
        o_row = np.empty(total, dtype=np.int64)
        o_chunk = np.empty(total, dtype=np.int32)
        o_sub = np.empty(total, dtype=np.int32)
        self._emit_up_down(i_b, b_lo, b_cnt, b_ss, start[i_b], o_row, o_chunk, o_sub)
        self._emit_up_down(i_a, a_lo, a_cnt, a_ss, start[i_a] + n_before_a, o_row, o_chunk, o_sub)
        ring_last = t.ring_last
        # left neighbour: sc - 1, wrapping from 0 to the last sub-chunk of the ring
        sc_l = sc[i_l] - 1.0
        wrap = sc_l < 0.0
        sc_l[wrap] = ring_last.take(ss[i_l][wrap])
        self._emit_same(i_l, sc_l, ss[i_l], start[i_l] + n_before_l, o_row, o_chunk, o_sub)
        sc_r = sc[i_r] + 1.0
        ss_r = ss[i_r]
        sc_r[sc_r > ring_last.take(ss_r)] = 0.0
        self._emit_same(i_r, sc_r, ss_r, start[i_r] + n_before_r, o_row, o_chunk, o_sub)
        return o_row, o_chunk, o_sub

    def _up_down(self, ra, ss, idx, step):
        """First target sub-chunk, copy count and target sub-stripe for rows copied one sub-stripe up/down."""
        t = self._t
        k = ss[idx] + step
        a = t.alpha.take(k)
        w = t.width.take(k)
        r = ra[idx]
        lo = np.subtract(r, a)
        lo /= w
        np.floor(lo, out=lo)
        hi = np.add(r, a)
        hi /= w
        np.floor(hi, out=hi)
        ring = t.ring_last.take(k) + 1.0
        lo[lo < 0.0] += ring[lo < 0.0]
        over = hi >= ring
        hi[over] -= ring[over]
        cnt = hi - lo + 1.0
        wrap = lo > hi
        cnt[wrap] += ring[wrap]
        return lo, cnt.astype(np.int64), k

    def _emit_up_down(self, idx, lo, cnt, k, first_slot, o_row, o_chunk, o_sub):
        """Write the copies of rows `idx` into sub-chunks lo, lo+1, ... (mod ring) of sub-stripes `k`."""
        if idx.size == 0:
            return
        total = int(cnt.sum())
        if total == idx.size:  # the common case: one copy per row
            rep: slice | np.ndarray = slice(None)
            j = np.zeros(idx.size)
            slots = first_slot
        else:
            rep = np.repeat(np.arange(idx.size), cnt)
            seg_start = np.cumsum(cnt) - cnt
            j = (np.arange(total) - np.repeat(seg_start, cnt)).astype(np.float64)
            slots = first_slot[rep] + j.astype(np.int64)
        sc = lo[rep] + j
        kk = k[rep]
        ring = self._t.ring_last.take(kk) + 1.0
        over = sc >= ring
        sc[over] -= ring[over]
        self._write(idx[rep], sc, kk, slots, o_row, o_chunk, o_sub)

    def _emit_same(self, idx, sc, k, slots, o_row, o_chunk, o_sub):
        if idx.size:
            self._write(idx, sc, k, slots, o_row, o_chunk, o_sub)

    def _write(self, rows, sc, k, slots, o_row, o_chunk, o_sub):
        """Turn target (sub-stripe k, ring sub-chunk sc) into chunkId/subChunkId at output `slots`."""
        t = self._t
        nn = t.n_float.take(k)
        chunk = np.floor(sc / nn)
        o_row[slots] = rows
        o_chunk[slots] = t.chunk_base.take(k) + chunk
        o_sub[slots] = t.sub_base.take(k) + (sc - chunk * nn)


def _all_valid(ra: np.ndarray, dec: np.ndarray) -> bool:
    """Fast check (min/max, NaN-propagating) that every position is finite and in range."""
    if ra.size == 0:
        return True
    return bool(ra.min() >= 0.0 and ra.max() <= 360.0 and dec.min() >= -90.0 and dec.max() <= 90.0)


def _valid_mask(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """True where 0 <= ra <= 360 and -90 <= dec <= 90 (NaN and ±inf fail these comparisons)."""
    ok = ra >= 0.0
    ok &= ra <= 360.0
    ok &= dec >= -90.0
    ok &= dec <= 90.0
    return ok


def _invalid_error(ra: np.ndarray, dec: np.ndarray, bad: np.ndarray, shown: int = 5) -> InvalidPositionError:
    rows = np.flatnonzero(bad)
    examples = ", ".join(
        f"(row {i}, ra={float(ra[i])!r}, dec={float(dec[i])!r})" for i in rows[:shown].tolist()
    )
    more = f" and {rows.size - shown} more" if rows.size > shown else ""
    return InvalidPositionError(
        f"{rows.size} of {ra.size} rows have positions Qserv cannot partition (need finite "
        f"0 <= ra <= 360 and -90 <= dec <= 90 degrees): {examples}{more}"
    )

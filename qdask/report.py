"""The run report: one self-contained HTML page written to ``<staging>/report.html`` after each ingest.

It reads offline, from a file, with no network: every picture is inline SVG drawn here (no script needed
to see it), and the Dask performance report (distributed's `performance_report`, rendered by bokeh with
its resources inlined, ``mode="inline"``) is embedded whole in an ``<iframe srcdoc>``. It shows

* a sky map of the chunks: each chunk's box in RA/Dec, coloured by its rows (home rows of every
  partitioned table) and outlined by its state (loaded, staged, partitioned);
* rows per table, naming catalog rows, overlap copies and replicas of regular tables apart
  (`qdask.counts`), next to the rows read, quarantined and excluded;
* what was quarantined, and where;
* each stage's time, and every invocation of the run with its outcome (`qdask.runrecord`);
* the Dask workers' memory over time against their limit;
* the Dask performance report of the last invocation that ran Dask tasks.
"""

from __future__ import annotations

import contextlib
import html
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq
from dask.utils import format_bytes

from qdask.counts import RowCounts, loaded_rows, total
from qdask.ledger import REGULAR_CHUNK, FileStatus, Ledger
from qdask.runrecord import Invocation, RunRecord, now
from qdask.sky import Chunker

if TYPE_CHECKING:
    from distributed import Client

    from qdask.config import IngestConfig

__all__ = ["REPORT_NAME", "PERFORMANCE_NAME", "dask_performance_report", "write_run_report"]

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
#: What the Dask report shows as the code that ran (it would show this module's helper otherwise).
CALLING_CODE = "qdask ingest: the partition, key check and collect stages (qdask.staging_run.StagingRun.run)"
PERFORMANCE_NAME = "dask-performance.html"

#: Chunk states, most advanced first, with their outline in the sky map.
STATES = {
    "loaded": ("#1a1a1a", ""),
    "staged": ("#1f5fbf", "4 2"),
    "partitioned": ("#c0392b", "2 2"),
}
#: A sequential colour scale (viridis at 6 stops) for rows per chunk.
SCALE = ["#440154", "#414487", "#2a788e", "#22a884", "#7ad151", "#fde725"]


# -- the Dask performance report ----------------------------------------------------------------------


@contextlib.contextmanager
def dask_performance_report(client: Client, path: Path) -> Iterator[None]:
    """distributed's performance report of what runs inside, written to `path` with bokeh's resources
    inlined (offline). Not written after Ctrl-C; a failure to write it is logged, never raised."""
    from distributed import performance_report

    report = performance_report(filename=str(path), mode="inline")
    try:
        with client.as_current():
            report.__enter__()
    except Exception as exc:  # noqa: BLE001 - the report is an extra; the stage runs without it
        log.warning("no Dask performance report: %s: %s", type(exc).__name__, exc)
        yield
        return
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if not interrupted:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with client.as_current():
                    client.sync(report.__aexit__, None, None, None, code=CALLING_CODE)
            except Exception as exc:  # noqa: BLE001
                log.warning(
                    "the Dask performance report could not be written: %s: %s", type(exc).__name__, exc
                )


# -- what the report shows ------------------------------------------------------------------------------


@dataclass
class ChunkCell:
    """One chunk on the sky map (or a run of `count` neighbouring chunks of a stripe, from `chunk_id` on,
    when the map has too many to draw one by one): its box, home rows per table and state."""

    chunk_id: int
    box: tuple[float, float, float, float]  # ra0, ra1, dec0, dec1 in degrees
    rows: dict[str, int] = field(default_factory=dict)
    state: str = "partitioned"
    count: int = 1
    last_chunk: int | None = None  # the run's last chunk id (count > 1)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def chunk_cells(config: IngestConfig, ledger: Ledger) -> list[ChunkCell]:
    """The chunks the ledger knows (from shards, and chunk files where collected): home rows and state."""
    p = config.database.partitioning
    chunker = Chunker(p.num_stripes, p.num_sub_stripes, p.overlap)
    shard_rows: dict[tuple[int, str], int] = {}
    for shard in ledger.shards():
        for chunk_id, rows in shard.home_rows().items():
            if chunk_id != REGULAR_CHUNK:
                shard_rows[(chunk_id, shard.table)] = shard_rows.get((chunk_id, shard.table), 0) + rows
    files = {
        (f.chunk_id, f.table): f
        for f in ledger.chunk_files()
        if f.chunk_id != REGULAR_CHUNK and not f.overlap
    }
    cells: dict[int, ChunkCell] = {}
    for (chunk, table), rows in shard_rows.items():
        cell = cells.setdefault(chunk, ChunkCell(chunk, chunker.chunk_bounds(chunk)))
        file = files.get((chunk, table))
        cell.rows[table] = file.rows if file is not None else rows
    for cell in cells.values():
        states = [
            "partitioned"
            if (f := files.get((cell.chunk_id, t))) is None
            else ("loaded" if f.status == FileStatus.LOADED else "staged")
            for t in cell.rows
        ]
        cell.state = next(s for s in reversed(list(STATES)) if s in states)  # the least advanced
    return sorted(cells.values(), key=lambda c: c.chunk_id)


def _colour(rows: int, low: int, high: int) -> str:
    if high <= low:
        return SCALE[-2]
    share = (math.log10(rows + 1) - math.log10(low + 1)) / (math.log10(high + 1) - math.log10(low + 1))
    return SCALE[min(len(SCALE) - 1, max(0, round(share * (len(SCALE) - 1))))]


def _ticks(low: float, high: float, count: int = 6) -> list[float]:
    raw = max(high - low, 1e-9) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 6) for i in range(int((high - first) / step) + 1)]


def _ra_origin(cells: Sequence[ChunkCell]) -> float:
    """Where to cut the RA circle so the chunks form one run: in the middle of the widest empty gap."""
    centres = sorted(((c.box[0] + c.box[1]) / 2) % 360 for c in cells)
    gaps = [(centres[0] + 360 - centres[-1], centres[-1])] + [
        (b - a, a) for a, b in zip(centres, centres[1:], strict=False)
    ]
    width, start = max(gaps)
    return (start + width / 2) % 360


#: Boxes the sky map draws at most: an all-sky catalog has ~140k chunks at DP0.2's layout, smaller than a
#: pixel at the map's width and ~30 MB of report; beyond this, neighbouring chunks of a stripe share a box.
MAP_BOXES = 20_000


def merge_neighbours(cells: Sequence[ChunkCell], limit: int = MAP_BOXES) -> list[ChunkCell]:
    """`cells` (sorted by chunk id) as about `limit` boxes: runs of chunks that are neighbours in the same
    stripe (same Dec band, each starting where the last ends) share one box, with their rows added and the
    least advanced state of any of them. A chunk the catalog does not reach ends a run, so a sparse map
    keeps more boxes (200k rows over the sky, 109k of 146k chunks: 27,892 boxes, 8 MB of SVG)."""
    per_box = -(-len(cells) // limit)
    if per_box <= 1:
        return list(cells)
    box = np.array([c.box for c in cells], np.float64)
    joins = np.zeros(len(cells), bool)  # a cell that continues the one before: same band, ends meet
    joins[1:] = (
        (box[1:, 2] == box[:-1, 2]) & (box[1:, 3] == box[:-1, 3]) & (np.abs(box[:-1, 1] - box[1:, 0]) < 1e-9)
    )
    starts = _run_starts(joins, per_box)
    while len(starts) > limit and per_box < 256:  # gaps between chunks break runs: longer ones elsewhere
        per_box *= 2
        starts = _run_starts(joins, per_box)
    return _merged(cells, box, starts)


def _run_starts(joins: np.ndarray, per_box: int) -> np.ndarray:
    """Where each box starts: at a cell that does not continue the one before, and every `per_box` cells
    along a chain of cells that do."""
    at = np.arange(len(joins))
    chain = np.maximum.accumulate(np.where(joins, 0, at))  # where each cell's chain starts
    return np.flatnonzero((at - chain) % per_box == 0)


def _merged(cells: Sequence[ChunkCell], box: np.ndarray, starts: np.ndarray) -> list[ChunkCell]:
    """One cell per box of cells `starts[i]` up to the next start: rows added per table, the least
    advanced state of any of them, the box from the first one's start to the last one's end. Summed
    with numpy, table by table: 72k chunks of an all-sky run in 0.18 s with the runs found, where a loop
    over the chunks, run up to seven times, took 1.5 s."""
    ends = np.append(starts[1:], len(cells)) - 1
    order = list(STATES)  # most advanced first
    worst = np.maximum.reduceat(np.array([order.index(c.state) for c in cells]), starts)
    sums = {}
    for table in dict.fromkeys(t for c in cells for t in c.rows):
        per_chunk = np.array([c.rows.get(table, -1) for c in cells], np.int64)
        held = np.maximum.reduceat(per_chunk, starts) >= 0  # some chunk of the box has the table
        sums[table] = (np.add.reduceat(np.maximum(per_chunk, 0), starts), held)
    out = []
    for i, (first, last) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        if first == last:
            out.append(cells[first])
            continue
        rows = {t: int(total[i]) for t, (total, held) in sums.items() if held[i]}
        ra0, dec0, dec1 = box[first, 0], box[first, 2], box[first, 3]
        out.append(
            ChunkCell(
                cells[first].chunk_id,
                (float(ra0), float(box[last, 1]), float(dec0), float(dec1)),
                rows,
                order[worst[i]],
                count=last - first + 1,
                last_chunk=cells[last].chunk_id,
            )
        )
    return out


def sky_map_svg(cells: Sequence[ChunkCell], width: int = 900) -> str:
    """The chunks as boxes on RA/Dec axes (RA growing to the left, as on the sky), coloured by rows per
    chunk; more than `MAP_BOXES` chunks are drawn as runs of neighbours (`merge_neighbours`)."""
    if not cells:
        return '<p id="skymap-empty">No chunk has been partitioned yet.</p>'
    chunks = len(cells)
    counts = {state: sum(1 for c in cells if c.state == state) for state in STATES}
    cells = merge_neighbours(cells)
    origin = _ra_origin(cells)

    def unwrap(ra: float) -> float:
        return (ra - origin) % 360 + origin

    boxes = []
    for c in cells:
        ra0, ra1, dec0, dec1 = c.box
        if ra1 - ra0 >= 359.999:  # a polar cap chunk covers every RA
            boxes.append((origin, origin + 360, dec0, dec1))
        else:
            a = unwrap(ra0)
            boxes.append((a, a + (ra1 - ra0), dec0, dec1))
    ra_lo, ra_hi = min(b[0] for b in boxes), max(b[1] for b in boxes)
    dec_lo, dec_hi = min(b[2] for b in boxes), max(b[3] for b in boxes)
    pad_ra, pad_dec = max((ra_hi - ra_lo) * 0.03, 0.05), max((dec_hi - dec_lo) * 0.03, 0.05)
    ra_lo, ra_hi, dec_lo, dec_hi = ra_lo - pad_ra, ra_hi + pad_ra, dec_lo - pad_dec, dec_hi + pad_dec
    left, right, top, bottom = 70, 30, 20, 55
    plot_w = width - left - right
    plot_h = max(220, min(640, plot_w * (dec_hi - dec_lo) / (ra_hi - ra_lo)))
    height = int(plot_h + top + bottom)

    def x(ra: float) -> float:  # RA grows to the left
        return left + (ra_hi - ra) / (ra_hi - ra_lo) * plot_w

    def y(dec: float) -> float:
        return top + (dec_hi - dec) / (dec_hi - dec_lo) * plot_h

    rows = [c.total // c.count for c in cells]  # per chunk, so the scale reads the same either way
    low, high = min(rows), max(rows)
    out = [
        f'<svg id="skymap" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 40}" '
        f'viewBox="0 0 {width} {height + 40}" role="img" aria-label="sky map of {chunks} chunks">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h:.1f}" fill="#f7f7f7" stroke="#999"/>',
    ]
    for ra in _ticks(ra_lo, ra_hi):
        out.append(
            f'<line class="grid" x1="{x(ra):.1f}" x2="{x(ra):.1f}" y1="{top}" y2="{top + plot_h:.1f}" '
            f'stroke="#ddd"/><text x="{x(ra):.1f}" y="{top + plot_h + 16:.1f}" font-size="11" '
            f'text-anchor="middle">{ra % 360:g}</text>'
        )
    for dec in _ticks(dec_lo, dec_hi):
        out.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y(dec):.1f}" y2="{y(dec):.1f}" '
            f'stroke="#ddd"/><text x="{left - 6}" y="{y(dec) + 4:.1f}" font-size="11" '
            f'text-anchor="end">{dec:g}</text>'
        )
    out.append(
        f'<text class="axis" x="{left + plot_w / 2:.1f}" y="{top + plot_h + 36:.1f}" font-size="13" '
        'text-anchor="middle">RA (deg)</text>'
        f'<text class="axis" x="16" y="{top + plot_h / 2:.1f}" font-size="13" text-anchor="middle" '
        f'transform="rotate(-90 16 {top + plot_h / 2:.1f})">Dec (deg)</text>'
    )
    for c, per_chunk, (ra0, ra1, dec0, dec1) in zip(cells, rows, boxes, strict=True):
        stroke, dash = STATES[c.state]
        tables = ", ".join(f"{t} {n:,}" for t, n in sorted(c.rows.items()))
        name = f"chunk {c.chunk_id}"
        run = ""
        if c.count > 1:
            name = f"chunks {c.chunk_id}-{c.last_chunk} ({c.count})"
            run = f' data-last-chunk="{c.last_chunk}" data-count="{c.count}"'
        out.append(
            f'<rect class="chunk state-{c.state}" data-chunk="{c.chunk_id}" data-rows="{c.total}"{run} '
            f'x="{x(ra1):.2f}" y="{y(dec1):.2f}" width="{x(ra0) - x(ra1):.2f}" '
            f'height="{y(dec0) - y(dec1):.2f}" '
            f'fill="{_colour(per_chunk, low, high)}" stroke="{stroke}" stroke-width="1"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + f"><title>{name}: {c.total:,} rows ({html.escape(tables)}); {c.state}</title>"
            + "</rect>"
        )
    legend_y = height + 8
    step = 36
    for i, colour in enumerate(SCALE):
        out.append(f'<rect x="{left + i * step}" y="{legend_y}" width="{step}" height="12" fill="{colour}"/>')
    out.append(
        f'<text x="{left}" y="{legend_y + 26}" font-size="11">{low:,} rows</text>'
        f'<text x="{left + len(SCALE) * step}" y="{legend_y + 26}" font-size="11" text-anchor="end">'
        f"{high:,} rows per chunk</text>"
    )
    lx = left + len(SCALE) * step + 40
    for state, (stroke, dash) in STATES.items():
        count = counts[state]
        out.append(
            f'<rect x="{lx}" y="{legend_y}" width="14" height="12" fill="none" stroke="{stroke}"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + f'/><text x="{lx + 20}" y="{legend_y + 10}" font-size="11">{state} ({count})</text>'
        )
        lx += 130
    out.append("</svg>")
    return "\n".join(out)


def _bars_svg(items: Sequence[tuple[str, float, str]], unit: str = "s", width: int = 700) -> str:
    """Horizontal bars: (label, value, text shown after the bar)."""
    if not items:
        return ""
    most = max(v for _, v, _ in items) or 1.0
    h = 22
    out = [
        f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h * len(items) + 6}">'
    ]
    for i, (label, value, text) in enumerate(items):
        w = max(1.0, (width - 300) * value / most)
        out.append(
            f'<text x="0" y="{i * h + 15}" font-size="12">{html.escape(label)}</text>'
            f'<rect x="110" y="{i * h + 4}" width="{w:.1f}" height="{h - 8}" fill="#2a788e"/>'
            f'<text x="{116 + w:.1f}" y="{i * h + 15}" font-size="12">{html.escape(text)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def memory_svg(
    samples: Sequence[tuple[float, str, int, int | None]], width: int = 900, height: int = 300
) -> str:
    """Each worker's memory over time (seconds since the run started), the memory limits dashed."""
    if not samples:
        return '<p id="memory-empty">No Dask worker ran in this invocation.</p>'
    left, right, top, bottom = 80, 150, 15, 45
    t_hi = max(s[0] for s in samples) or 1.0
    limits = sorted({s[3] for s in samples if s[3]})
    y_hi = max([s[2] for s in samples] + limits) * 1.08 or 1.0
    pw, ph = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + t / t_hi * pw

    def y(b: float) -> float:
        return top + ph - b / y_hi * ph

    out = [
        f'<svg id="memory" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    unit = next(u for u in (2**30, 2**20, 2**10, 1) if y_hi >= 2 * u or u == 1)
    for b in (t * unit for t in _ticks(0, y_hi / unit, 5)):
        out.append(
            f'<text x="{left - 6}" y="{y(b) + 4:.1f}" font-size="11" text-anchor="end">{format_bytes(int(b))}'
            f'</text><line x1="{left}" x2="{left + pw}" y1="{y(b):.1f}" y2="{y(b):.1f}" stroke="#eee"/>'
        )
    for t in _ticks(0, t_hi, 8):
        out.append(
            f'<text x="{x(t):.1f}" y="{top + ph + 15}" font-size="11" text-anchor="middle">{t:g}</text>'
        )
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" font-size="12" text-anchor="middle">seconds since the '
        "run started</text>"
    )
    for limit in limits:
        out.append(
            f'<line class="limit" x1="{left}" x2="{left + pw}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
            f'stroke="#c0392b" stroke-dasharray="6 3"/><text x="{left + pw - 4}" y="{y(limit) - 4:.1f}" '
            f'font-size="11" fill="#c0392b" text-anchor="end">limit {format_bytes(limit)}</text>'
        )
    workers = sorted({s[1] for s in samples})
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]
    for i, worker in enumerate(workers):
        points = " ".join(f"{x(t):.1f},{y(b):.1f}" for t, w, b, _ in samples if w == worker)
        colour = colours[i % len(colours)]
        out.append(
            f'<polyline class="worker" points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
            f'<text x="{left + pw + 6}" y="{top + 14 + 14 * i}" font-size="11" fill="{colour}">worker '
            f"{html.escape(worker)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _quarantine_files(staging: Path) -> dict[str, list[tuple[str, int]]]:
    """Per table, the quarantine files (relative to staging) and their rows."""
    root = staging / "quarantine"
    out: dict[str, list[tuple[str, int]]] = {}
    for path in sorted(root.glob("*/*.parquet")):
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception:  # noqa: BLE001 - a damaged file is shown with no count
            rows = -1
        out.setdefault(path.parent.name, []).append((str(path.relative_to(staging)), rows))
    return out


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{v:,}</td>' if isinstance(v, int) else f"<td>{html.escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _stages(invocation: Invocation | None) -> str:
    if invocation is None or not invocation.stages:
        return "<p>No stage ran in this invocation.</p>"
    merged: dict[str, tuple[float, int, int]] = {}
    for s in invocation.stages:
        seconds, items, rows = merged.get(s.name, (0.0, 0, 0))
        merged[s.name] = (seconds + s.seconds, items + s.items, rows + s.rows)
    lines = [
        (name, f"{seconds:.1f}", items, rows, f"{rows / seconds:,.0f}" if rows and seconds else "")
        for name, (seconds, items, rows) in merged.items()
    ]
    bars = _bars_svg([(name, seconds, f"{seconds:.1f} s") for name, (seconds, _, _) in merged.items()])
    return _table(["stage", "seconds", "items", "rows", "rows/s"], lines, "stages") + bars


def _invocations(record: RunRecord) -> str:
    def outcome(i: Invocation) -> str:  # an earlier one still "running" was killed before it could say
        silent = i.outcome == "running" and i is not record.current
        return "ended without a word (killed?)" if silent else i.outcome

    rows = [
        (i.started, i.ended or "", outcome(i), f"{sum(s.seconds for s in i.stages):.1f}")
        for i in record.invocations
    ]
    return _table(["started (UTC)", "ended (UTC)", "outcome", "seconds in stages"], rows[::-1], "invocations")


def _performance(staging: Path, invocation: Invocation | None) -> str:
    path = staging / PERFORMANCE_NAME
    if not path.is_file():
        return '<p id="dask-performance-none">No Dask tasks have run with this staging directory.</p>'
    when = now_of(path)
    fresh = invocation is not None and when >= invocation.started
    note = "" if fresh else f"<p>No Dask tasks ran in this invocation; this report is from {when}.</p>"
    content = path.read_text(errors="replace")
    return (
        f'{note}<iframe id="dask-performance" title="Dask performance report" srcdoc="'
        f'{html.escape(content, quote=True)}"></iframe>'
    )


def now_of(path: Path) -> str:
    """A file's modification time, in the run record's format."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")


CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { padding: 3px 10px; border: 1px solid #ddd; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.totals td { font-weight: 600; } .ok { color: #1e7b34; } .bad { color: #c0392b; }
iframe#dask-performance { width: 100%; height: 900px; border: 1px solid #ccc; }
"""


def render(config: IngestConfig, ledger: Ledger, record: RunRecord) -> str:
    """The report page for a config's staging directory."""
    staging = Path(config.staging.directory)
    invocation = record.current
    loaded = loaded_rows(ledger)
    read = ledger.table_rows()
    quarantine = _quarantine_files(staging)
    kinds = {t.name: t.kind for t in config.tables}
    table_rows = []
    for name in [t.name for t in config.load_order()]:
        counts, r = loaded.get(name, RowCounts()), read.get(name, {})
        excluded = sum(n for p, n in quarantine.get(name, []) if p.endswith(".excluded.parquet") and n > 0)
        staged = r.get("rows_staged", 0)
        table_rows.append(
            (
                name,
                kinds[name],
                r.get("rows_read", 0),
                r.get("rows_quarantined", 0),
                excluded,
                counts.catalog,
                counts.overlap,
                counts.replicas,
                staged,
            )
        )
    all_rows = total(loaded)
    quarantine_rows = [
        (
            table,
            path,
            "excluded by key policy" if path.endswith(".excluded.parquet") else "invalid position",
            rows if rows >= 0 else "unreadable",
        )
        for table, files in sorted(quarantine.items())
        for path, rows in files
    ]
    verified = record.verified
    verify_html = (
        "<p>Not verified yet.</p>"
        if verified is None
        else f'<p class="{"ok" if verified["ok"] else "bad"}">Verification of {verified["at"]}: '
        f"{'all ' + str(verified['checks']) + ' checks agree' if verified['ok'] else 'FAILED'}.</p>"
        + (
            "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in verified["failed"]) + "</ul>"
            if verified["failed"]
            else ""
        )
    )
    published = record.published
    cells = chunk_cells(config, ledger)
    memory = invocation.memory if invocation is not None else []
    limits = sorted({format_bytes(m[3]) for m in memory if m[3]})
    title = f"qdask run report: {config.database.name}"
    run = ledger.run()
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>"
        + f"Run <code>{html.escape(run.run_id if run else '?')}</code>, config "
        + f"<code>{html.escape(str(config.source or '(in memory)'))}</code>, staging "
        + f"<code>{html.escape(str(staging))}</code>. Latest invocation: "
        + html.escape(invocation.outcome if invocation else "none")
        + f". Written {now()} (UTC).</p>",
        f"<p>Database {html.escape(config.database.name)}: "
        + ("published " + html.escape(published["at"]) if published else "not published yet")
        + f". Qserv holds <b>{all_rows.catalog:,}</b> catalog rows, {all_rows.overlap:,} overlap copies and "
        f"{all_rows.replicas:,} replicas of regular tables ({all_rows.stored:,} stored rows in all).</p>",
        verify_html,
        "<h2>Sky map: rows per chunk</h2>",
        f"<p>{len(cells)} chunks (layout {config.database.partitioning.num_stripes} stripes, "
        f"{config.database.partitioning.num_sub_stripes} sub-stripes); colour: home rows of every "
        "partitioned table in the chunk; outline: the chunk's least advanced table (loaded, staged, or "
        "partitioned only). Hover a chunk for its rows per table.</p>",
        sky_map_svg(cells),
        "<h2>Rows per table</h2>",
        "<p><i>Catalog rows</i> are the table's own rows, each once. <i>Overlap copies</i> are a "
        "director's rows stored again in the overlap tables of neighbouring chunks (for near-neighbour "
        "queries; never returned as rows). <i>Replicas</i> are the copies of a regular table on every "
        "Qserv worker but the first.</p>",
        _table(
            [
                "table",
                "kind",
                "rows read",
                "quarantined (positions)",
                "excluded (keys)",
                "catalog rows loaded",
                "overlap copies",
                "replicas",
                "staged, not loaded",
            ],
            [
                *table_rows,
                (
                    "all",
                    "",
                    sum(r[2] for r in table_rows),
                    sum(r[3] for r in table_rows),
                    sum(r[4] for r in table_rows),
                    all_rows.catalog,
                    all_rows.overlap,
                    all_rows.replicas,
                    sum(r[8] for r in table_rows),
                ),
            ],
            "tables",
        ),
        "<h2>Quarantine</h2>",
        _table(["table", "file", "why", "rows"], quarantine_rows, "quarantine")
        if quarantine_rows
        else "<p>Nothing was quarantined.</p>",
        "<h2>Time per stage (latest invocation)</h2>",
        _stages(invocation),
        "<h3>Invocations of this run</h3>",
        _invocations(record),
        "<h2>Dask workers' memory</h2>",
        f"<p>Memory each worker used while Dask tasks ran, against its limit "
        f"({', '.join(limits) or '?'}).</p>"
        if memory
        else "",
        memory_svg(memory),
        "<h2>Dask performance report</h2>",
        _performance(staging, invocation),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_run_report(
    config: IngestConfig, ledger: Ledger, record: RunRecord, path: Path | None = None
) -> Path:
    """Write the report (atomically) to `path`, by default ``<staging>/report.html``; returns the path."""
    path = Path(path or Path(config.staging.directory) / REPORT_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render(config, ledger, record), encoding="utf-8")
    tmp.replace(path)
    return path

"""The run report (<staging>/report.html) written by every ingest: its content, and its rendering in a
real headless Chromium with no network at all (the sky map drawn, the Dask performance report's bokeh
running from inlined resources)."""

from __future__ import annotations

import html
import re

import pytest
from PIL import Image

from qdask.ledger import Ledger
from qdask.report import SCALE
from tests.operator.chromium import Browser


@pytest.fixture(scope="module")
def report(ingested):
    path = ingested.staging / "report.html"
    assert path.is_file()
    return path


def test_the_report_names_each_kind_of_row_per_table(report, ingested):
    text = report.read_text()
    tables = ingested.summary["tables"]
    for name, rows in tables.items():
        cells = [f'<td class="num">{rows[k]:,}</td>' for k in ("catalog", "overlap_copies", "replicas")]
        assert f"<td>{name}</td>" in text and "".join(cells) in text, name
    for words in ("Catalog rows", "Overlap copies", "Replicas"):
        assert words in text


def test_the_report_has_stage_times_memory_quarantine_and_verification(report, ingested):
    text = report.read_text()
    for stage in ("partition", "keys", "collect", "load", "publish", "verify"):
        assert re.search(rf"<tr><td>{stage}</td><td>[\d.]+</td>", text), stage
    assert '<svg id="memory"' in text and 'class="limit"' in text and "limit 2.00 GiB" in text
    assert text.count('class="worker"') == 2  # one line per Dask worker
    assert "Nothing was quarantined." in text or "invalid position" in text
    assert "all 16 checks agree" in text or re.search(r"all \d+ checks agree", text)
    assert "published 20" in text


def test_the_report_is_self_contained(report):
    text = report.read_text()
    outside = re.findall(r"""(?:src|href)=["'](https?:)?//""", text)
    assert outside == []  # nothing is fetched from anywhere: no CDN, no font, no script URL
    inner = html.unescape(re.search(r'srcdoc="([^"]*)"', text).group(1))  # the embedded Dask report
    assert "<script" in inner and "cdn.bokeh.org" not in inner and "Bokeh" in inner


def test_the_sky_map_has_a_box_per_chunk_with_its_rows(report, ingested):
    with Ledger(ingested.staging / "ledger.sqlite") as ledger:
        chunks = {f.chunk_id for f in ledger.chunk_files() if f.chunk_id >= 0 and not f.overlap}
    boxes = re.findall(
        r'<rect class="chunk state-(\w+)" data-chunk="(\d+)" data-rows="(\d+)"', report.read_text()
    )
    assert {int(c) for _, c, _ in boxes} == chunks
    assert {s for s, _, _ in boxes} == {"loaded"}
    assert sum(int(n) for _, _, n in boxes) == sum(
        ingested.summary["tables"][t]["catalog"] for t in ("Object", "Source")
    )


def test_chromium_without_network_renders_the_sky_map_and_the_dask_report(report, tmp_path):
    browser = Browser()
    try:
        page = browser.open(report.as_uri())
        assert page.evaluate("document.title").startswith("qdask run report")
        drawn = page.evaluate(
            "Array.from(document.querySelectorAll('#skymap rect.chunk'))"
            ".filter(r => r.getBBox().width > 0 && r.getBBox().height > 0).length"
        )
        assert drawn == len(re.findall(r'class="chunk ', report.read_text())) > 0
        labels = page.evaluate(
            "Array.from(document.querySelectorAll('#skymap text.axis')).map(t => t.textContent)"
        )
        assert labels == ["RA (deg)", "Dec (deg)"]
        box = page.evaluate(
            "(() => { const b = document.querySelector('#skymap').getBoundingClientRect(); return"
            " {x: b.x + window.scrollX, y: b.y + window.scrollY, width: b.width, height: b.height}; })()"
        )
        assert box["width"] > 500 and box["height"] > 200
        shot = Image.open(page.screenshot(tmp_path / "skymap.png", box)).convert("RGB")
        colours = {"#{:02x}{:02x}{:02x}".format(*rgb) for _, rgb in shot.getcolors(maxcolors=1 << 24)}
        assert len(colours & set(SCALE)) >= 2  # chunks painted in the rows scale, not a blank box
        bokeh = page.until(
            "(() => { const w = document.getElementById('dask-performance').contentWindow;"
            " return !!(w.Bokeh && w.Bokeh.documents && w.Bokeh.documents.length > 0); })()"
        )
        assert bokeh, "the Dask performance report's bokeh did not run offline"
        foreign = [u for u in page.requests if not u.startswith(("file:", "data:", "about:", "blob:"))]
        assert foreign == []
    finally:
        browser.close()
    assert browser.isolated, "Chromium ran with the machine's network: `unshare -n` was refused here"

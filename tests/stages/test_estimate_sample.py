"""The plan's sample runs through the real partition and collect code, but writes at most
`CALIBRATION_FILES` contribution files: a sample spread over the sky puts about one row in each file, and
the files it does write measure bytes and seconds per row as well."""

from __future__ import annotations

import pytest
from all_sky_catalog import all_sky_director

from qdask import estimate
from qdask.config import config_from_dict
from qdask.ingest import Ingest

ROWS = 3_000


@pytest.fixture
def all_sky(tmp_path):
    """One director over a Parquet file of `ROWS` rows uniform over the sphere (DP0.2's layout)."""
    config = config_from_dict(all_sky_director(tmp_path, "sky", ROWS, seed=11), tmp_path)
    (setup,) = Ingest(config).plan()
    return config, setup


def _calibrated(config, setup, monkeypatch, cap: int) -> tuple[estimate.TableEstimate, int]:
    """The sample's measures with at most `cap` files, and how many files its collect tasks wrote."""
    written = []

    def counting(task, root):
        files = real(task, root)
        written.extend(files)
        return files

    real = estimate.collect_chunks
    monkeypatch.setattr(estimate, "CALIBRATION_FILES", cap)
    monkeypatch.setattr(estimate, "collect_chunks", counting)
    out = estimate.TableEstimate("Object", "director", units=1, input_bytes=0)
    estimate._calibrate(config, setup, out, ROWS)
    monkeypatch.undo()
    return out, len(written)


def test_an_all_sky_sample_writes_at_most_its_cap_and_measures_the_same_bytes_per_row(all_sky, monkeypatch):
    config, setup = all_sky
    capped, files = _calibrated(config, setup, monkeypatch, 200)
    whole, every = _calibrated(config, setup, monkeypatch, 10**9)
    assert files == 200 and every > 2_500  # about one file per row (and per overlap copy) otherwise
    assert capped.sample_rows == whole.sample_rows == ROWS
    assert capped.shard_bytes_per_row == whole.shard_bytes_per_row  # partition runs on the whole sample
    assert capped.contribution_bytes_per_row == pytest.approx(whole.contribution_bytes_per_row, rel=0.1)
    assert capped.sample_seconds > 0

"""The plan stage refuses settings the pipeline would otherwise not apply, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qdask.config import config_from_dict
from qdask.ingest import Ingest, IngestError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _case01(tmp_path, change) -> Ingest:
    raw = yaml.safe_load((CONFIGS / "case01.yaml").read_text())
    raw["tables"] = raw["tables"][:3]  # Object, Source, Filter
    raw["staging"] = {"directory": str(tmp_path / "staging")}
    change(raw["tables"])
    return Ingest(config_from_dict(raw, CONFIGS))


def test_the_example_plan_resolves_units_and_schemas(tmp_path, shared_data):
    setups = _case01(tmp_path, lambda tables: None).plan()
    assert [s.name for s in setups] == ["Object", "Source", "Filter"]
    assert setups[0].plan.schema.names[-2:] == ["chunkId", "subChunkId"] and len(setups[0].units) == 1
    assert not list((tmp_path / "staging").rglob("*.parquet"))  # planning stages nothing


def test_bad_values_quarantine_is_refused_not_ignored(tmp_path, shared_data):
    def change(tables):
        tables[0]["policies"] = {"bad_values": "quarantine"}

    with pytest.raises(IngestError, match="table Object: policies.bad_values: quarantine is not supported"):
        _case01(tmp_path, change).plan()

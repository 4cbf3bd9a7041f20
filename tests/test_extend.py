"""The ledger's side of adding tables (`qdask.extend.open_run`): a config that only gained tables becomes
the run's config; one that also changed a table the ledger holds, or lost one, is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qdask.config import load_config
from qdask.extend import open_run
from qdask.ingest import fingerprint
from qdask.ledger import FingerprintMismatch, Ledger, LedgerError, Unit

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _config(tmp_path: Path, name: str, tables: list[str], **change):
    """configs/case01.yaml with `tables` only (paths absolute); `change` updates a table's settings."""
    raw = yaml.safe_load((CONFIGS / "case01.yaml").read_text())
    raw["tables"] = [t for t in raw["tables"] if t["name"] in tables]
    for table in raw["tables"]:
        table["input"]["files"]["glob"] = str((CONFIGS / table["input"]["files"]["glob"]).resolve())
        table["schema"]["qserv_json"] = str((CONFIGS / table["schema"]["qserv_json"]).resolve())
        table.update(change.get(table["name"], {}))
    raw["staging"] = {"directory": str(tmp_path / "staging")}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


@pytest.fixture
def ledger(tmp_path):
    """A ledger whose run is the config of Object and Filter, with a unit of each."""
    first = _config(tmp_path, "first", ["Object", "Filter"])
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.open_run(fingerprint(first))
        ledger.plan_units([Unit("Object-0", "Object"), Unit("Filter-0", "Filter")])
        yield ledger


def test_a_config_that_gained_tables_becomes_the_run_s_config(ledger, tmp_path):
    grown = _config(tmp_path, "grown", ["Object", "Source", "Filter", "LeapSeconds"])
    run = open_run(ledger, grown, fingerprint)
    assert run.fingerprint == fingerprint(grown) == ledger.run().fingerprint
    assert open_run(ledger, grown, fingerprint) == run  # and stays it


def test_a_gained_table_does_not_cover_a_changed_one(ledger, tmp_path):
    changed = _config(
        tmp_path, "changed", ["Object", "Filter", "LeapSeconds"], Filter={"columns": {"exclude": ["photBW"]}}
    )
    before = ledger.run().fingerprint
    with pytest.raises(LedgerError, match=r"gained table\(s\) LeapSeconds, but also changed table\(s\)"):
        open_run(ledger, changed, fingerprint)
    assert ledger.run().fingerprint == before


def test_a_config_that_lost_a_table_is_another_config(ledger, tmp_path):
    other = _config(tmp_path, "other", ["Object", "LeapSeconds"])
    with pytest.raises(FingerprintMismatch):
        open_run(ledger, other, fingerprint)

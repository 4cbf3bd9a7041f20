"""`qdask plan CONFIG`: writes nothing; lists the units it selected, the chunks, the staging disk needed
and the time, saying where each estimate comes from; a misspelled position column or `infer` on a text
file is refused here, by name, not later as a KeyError."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from qdask.demo import make_demo_repo
from qdask.demo_run import DEMO_CONFIG
from qdask.ledger import Ledger
from tests.faults.conftest import write_case01
from tests.operator.conftest import run_qdask


def files_under(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def test_plan_writes_nothing(qserv, tmp_path):
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "op_plan")
    before = files_under(tmp_path)
    result = run_qdask(qserv, "plan", config, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path) == before and not (tmp_path / "staging").exists()


def test_plan_lists_units_chunks_disk_and_time_with_their_sources(qserv, tmp_path):
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "op_plan")
    err = run_qdask(qserv, "plan", config, cwd=tmp_path).stderr
    assert re.search(
        r"^Object: 1 unit\(s\)\n  file:/\S+/case01/data/Object\.tsv\.gz  \([\d.]+ kiB\)$", err, re.M
    )
    assert re.search(
        r"^estimate: [\d,]+ rows, \d+ chunk\(s\); staging disk needed [\d.]+ MiB \([\d.]+× the "
        r"input\); time: staging \d+:\d\d:\d\d, load unknown$",
        err,
        re.M,
    )
    assert "staging time: partition and collect of a" in err and "timed by this plan on one thread" in err
    assert "load time: unknown until a run with this staging directory has loaded" in err


def test_the_estimate_matches_what_the_ingest_then_staged(ingested, qserv):
    result = run_qdask(qserv, "plan", ingested.config, "--json", cwd=ingested.config.parent)
    estimate = json.loads(result.stdout)["estimate"]
    with Ledger(ingested.staging / "ledger.sqlite") as ledger:
        chunks = {f.chunk_id for f in ledger.chunk_files() if f.chunk_id >= 0}
        staged = sum(f.bytes for f in ledger.chunk_files()) + sum(s.bytes for s in ledger.shards())
        rows = sum(u.rows_read or 0 for u in ledger.units())
    assert estimate["chunks_exact"] and estimate["chunks"] == len(chunks)
    assert estimate["rows_exact"] and estimate["rows"] == rows
    assert 0.7 < estimate["staging_bytes"] / staged < 1.3  # per-row sizes measured on a sample
    # rates measured by that run are used now, and said so
    assert any("the run of" in s and "measured" in s for s in estimate["sources"])
    assert estimate["load_seconds"] is not None and any(
        "MiB/s, as the run of" in s for s in estimate["sources"]
    )


def test_a_misspelled_position_column_fails_at_plan_naming_it(qserv, tmp_path):
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "op_plan")
    raw = yaml.safe_load(config.read_text())
    raw["tables"][0]["dec"] = "decl_PSS"
    config.write_text(yaml.safe_dump(raw))
    assert (
        run_qdask(qserv, "plan", config, "--check", cwd=tmp_path).returncode == 0
    )  # the file itself is valid
    result = run_qdask(qserv, "plan", config, cwd=tmp_path)
    assert result.returncode == 1 and "KeyError" not in result.stderr
    assert "table Object: the dec column 'decl_PSS' is not among its columns; did you mean 'decl_PS'?" in (
        result.stderr.replace("\n", " ")
    )


def test_infer_on_a_text_file_fails_at_plan_saying_why(qserv, tmp_path):
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "op_plan", tables=["Filter"])
    raw = yaml.safe_load(config.read_text())
    raw["tables"][0]["schema"] = {"infer": True}
    config.write_text(yaml.safe_dump(raw))
    result = run_qdask(qserv, "plan", config, cwd=tmp_path)
    assert result.returncode == 1 and "magic bytes" not in result.stderr
    assert "schema: {infer: true} needs Parquet or Butler input" in result.stderr.replace("\n", " ")


def test_plan_lists_butler_units_by_their_data_ids(qserv, tmp_path):
    repo = make_demo_repo(tmp_path / "repo", tracts=1, rows_per_patch=5)
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    for table in raw["tables"]:
        table["input"]["butler"]["repo"] = str(repo.root)
    raw["staging"] = {"directory": str(tmp_path / "staging")}
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(raw))
    result = run_qdask(qserv, "plan", tmp_path / "demo.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert re.search(
        r"^Object: 1 unit\(s\)\n  objectTable_tract:skymap=DC2,tract=3828  \(20 rows, ", err, re.M
    )
    assert re.search(
        r"^ForcedSource: 4 unit\(s\)\n  forcedSourceTable:skymap=DC2,tract=3828,patch=0  \(60 rows", err, re.M
    )
    assert not (tmp_path / "staging").exists()

"""`qdask status` as a table, `qdask reset` with its confirmation, and what a resumed run may change:
the controller and the policies may, as far as the staged data allow; what was staged may not."""

from __future__ import annotations

import io
import re

import pytest
import yaml
from rich.console import Console

from qdask.config import load_config
from qdask.ingest import Ingest, IngestError
from tests.config.test_keys_honoured import client, config, stage, tiny  # noqa: F401 (client: a fixture)
from tests.faults.conftest import write_case01
from tests.operator.conftest import run_qdask


def test_status_is_a_table_saying_published_and_verified(ingested, qserv):
    result = run_qdask(qserv, "status", ingested.config, cwd=ingested.config.parent)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "database op_case01" in out and re.search(r"^published: yes, \d{4}-", out, re.M)
    assert re.search(r"^verified: yes, .*: all \d+ checks agree$", out, re.M)
    assert "chunk files: " in out and "0 to collect" in out and "0 open" in out
    catalog = ingested.summary["tables"]["Object"]["catalog"]
    assert re.search(rf"│ Object +│ +[\d,]+ │ +0 │ +{catalog:,} │", out)
    assert f"run report: {ingested.staging}/report.html" in out


def test_status_without_a_run_says_so(ingested, qserv, tmp_path):
    raw = yaml.safe_load(ingested.config.read_text())
    raw["staging"] = {"directory": str(tmp_path / "never")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    result = run_qdask(qserv, "status", tmp_path / "c.yaml", cwd=tmp_path)
    assert result.returncode == 0 and "nothing has been ingested" in result.stderr
    assert not (tmp_path / "never").exists()


def test_reset_asks_first_and_removes_only_what_qdask_wrote(qserv, tmp_path, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    path = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "op_reset", tables=["Filter"])
    Ingest(load_config(path), console=Console(file=io.StringIO())).run(stage_only=True)
    (tmp_path / "staging" / "my-notes.txt").write_text("not qdask's")
    kept = run_qdask(qserv, "reset", path, cwd=tmp_path, stdin="n\n")
    assert kept.returncode == 1 and "nothing was removed" in kept.stderr
    assert "ledger.sqlite" in kept.stderr and "reset the staging directory? [y/N]" in kept.stderr
    assert (tmp_path / "staging" / "ledger.sqlite").is_file()
    gone = run_qdask(qserv, "reset", path, cwd=tmp_path, stdin="y\n")
    assert gone.returncode == 0, gone.stderr
    assert sorted(p.name for p in (tmp_path / "staging").iterdir()) == ["my-notes.txt"]
    again = run_qdask(qserv, "reset", path, "--yes", cwd=tmp_path)
    assert again.returncode == 0 and "nothing to reset" in again.stderr


def test_reset_warns_that_loaded_rows_stay_in_qserv(ingested, qserv, tmp_path):
    result = run_qdask(qserv, "reset", ingested.config, cwd=tmp_path, stdin="n\n")
    assert result.returncode == 1
    assert "are loaded in Qserv database op_case01: resetting does not remove them" in result.stderr


def test_a_run_reached_another_way_resumes_and_says_what_it_reuses(ingested, qserv, tmp_path):
    """`--controller` may change between runs (the same Qserv, reached by another name)."""
    other = qserv.controller_url.replace("127.0.0.1", "localhost")
    result = run_qdask(qserv, "ingest", ingested.config, "--controller", other, "--no-verify", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run_id = ingested.summary["run_id"]
    assert re.search(
        rf"^resuming run {run_id}: reusing 4 partitioned unit\(s\), 0 staged and \d+ loaded chunk file\(s\) "
        r"\(\d+ committed transaction\(s\)\), recorded since ",
        result.stderr,
        re.M,
    )
    assert "nothing to do" in result.stderr


def test_a_change_to_what_was_staged_is_refused_naming_reset(ingested, qserv, tmp_path):
    raw = yaml.safe_load(ingested.config.read_text())
    raw["tables"][2]["columns"] = {"exclude": ["photBW"]}  # Filter's staged files hold that column
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    result = run_qdask(qserv, "ingest", tmp_path / "c.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "records a run of another config" in result.stderr and "qdask reset CONFIG" in result.stderr


def test_a_changed_key_policy_is_applied_to_what_was_staged(tmp_path, client):  # noqa: F811
    raw = tiny(tmp_path, duplicates=2)
    with pytest.raises(IngestError, match="duplicate ids"):  # the default: stop, nothing collected
        stage(raw, tmp_path, client)
    raw["tables"][0]["policies"] = {"duplicate_ids": "quarantine"}  # as the message advises
    quarantined = stage(raw, tmp_path, client)  # the same staging directory: not locked by the change
    assert any("duplicate ids" in n and "quarantined" in n for n in quarantined.summary.notes)
    assert list((tmp_path / "staging" / "quarantine" / "D").glob("*.excluded.parquet"))
    raw["tables"][0]["policies"] = {
        "duplicate_ids": "stop"
    }  # after D's files were collected under quarantine
    out = io.StringIO()
    again = Ingest(config(raw, tmp_path), client=client, console=Console(file=out, width=200))
    with pytest.raises(IngestError, match="duplicate ids"):  # applied, not ignored: the run stops now
        again.run(stage_only=True)
    assert re.search(
        r"D: key policies changed \(D: quarantine → stop\): its \d+ staged chunk file", out.getvalue()
    )
    assert again.ledger.chunk_files(table="D") == []


def test_positions_quarantined_earlier_cannot_be_stopped_at_now(tmp_path, client):  # noqa: F811
    raw = tiny(tmp_path, invalid=3)
    stage(raw, tmp_path, client)
    raw["tables"][0]["policies"] = {"invalid_positions": "stop"}
    with pytest.raises(
        IngestError, match=r"3 row\(s\) with invalid positions were quarantined by an earlier run"
    ):
        stage(raw, tmp_path, client)

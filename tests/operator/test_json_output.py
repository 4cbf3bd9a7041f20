"""`--json` on plan, ingest, verify and status: real output validated against docs/json.md's schemas,
and the numbers in it checked against what the catalog really holds."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.operator.conftest import run_qdask, schemas

#: The fault tables of case01 written by `write_case01`: 2 partitioned, 2 regular.
REGULAR = ("Filter", "LeapSeconds")


def test_the_docs_hold_a_schema_for_each_command():
    found = schemas()
    assert set(found) == {"plan", "ingest", "verify", "status"}
    for schema in found.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_ingest_json_follows_its_schema_and_is_alone_on_stdout(ingested):
    summary = ingested.summary  # stdout parses as one JSON document: nothing else was printed there
    jsonschema.validate(summary, schemas()["ingest"])
    assert summary["verify"]["ok"] and summary["units_partitioned"] == 4
    assert summary["report"] and summary["report"].endswith("report.html")
    assert "run report:" in ingested.result.stderr  # the human summary went to stderr


def test_rows_are_counted_as_catalog_rows_overlap_copies_and_replicas(ingested, truth, qserv):
    """Each kind of row counted apart and exactly, against the plain load and the chunker."""
    tables = ingested.summary["tables"]
    for table, rows in truth.rows.items():
        assert tables[table]["catalog"] == sum(rows.values()), table
    assert tables["Object"]["overlap_copies"] == sum(truth.chunks[("Object", True)].values()) > 0
    assert tables["Source"]["overlap_copies"] == 0  # a child has no overlap
    workers = len(qserv.worker_urls)
    for table in REGULAR:
        assert tables[table]["replicas"] == sum(truth.rows[table].values()) * (workers - 1) > 0
        assert tables[table]["overlap_copies"] == 0
    total = ingested.summary["rows_loaded"]
    assert total["catalog"] == sum(sum(r.values()) for r in truth.rows.values())


def test_a_redone_transaction_counts_its_rows_once(qserv, truth, tmp_path, monkeypatch):
    """A contribution that fails after loading began aborts its transaction, which is redone whole; the
    rows are counted once, by the committed transaction."""
    import io

    from rich.console import Console

    from qdask.config import load_config
    from qdask.ingest import Ingest
    from tests.faults.conftest import write_case01

    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    config = load_config(write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "op_redo"))
    fault = qserv.faults.add("load_failed", match={"table": "Source", "database": "op_redo"}, nth=2)
    try:
        summary = Ingest(config, console=Console(file=io.StringIO())).run()
    finally:
        qserv.faults.clear()
    assert fault.fired == 1 and any("redone" in n for n in summary.notes)
    assert summary.rows["Source"].catalog == sum(truth.rows["Source"].values())
    assert summary.loaded.catalog == sum(sum(r.values()) for r in truth.rows.values())


def test_plan_json_follows_its_schema_and_lists_every_unit(ingested, qserv):
    result = run_qdask(qserv, "plan", ingested.config, "--json", cwd=ingested.config.parent)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    jsonschema.validate(plan, schemas()["plan"])
    assert [t["name"] for t in plan["tables"]] == ["Object", "Source", "Filter", "LeapSeconds"]
    assert all(len(t["units"]) == 1 and t["units"][0]["uri"].endswith(".tsv.gz") for t in plan["tables"])


def test_verify_json_follows_its_schema(ingested, qserv):
    result = run_qdask(qserv, "verify", ingested.config, "--json", cwd=ingested.config.parent)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, schemas()["verify"])
    assert report["ok"] and {c["check"] for c in report["checks"]} >= {"rows", "key checksum", "sample rows"}


def test_status_json_follows_its_schema_and_says_published_and_verified(ingested, qserv):
    result = run_qdask(qserv, "status", ingested.config, "--json", cwd=ingested.config.parent)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    jsonschema.validate(status, schemas()["status"])
    assert status["published"]["database"] == "op_case01" and status["verified"]["ok"]
    assert status["tables"]["Object"]["catalog"] == ingested.summary["tables"]["Object"]["catalog"]


def test_status_json_of_a_staging_directory_never_used_is_null(ingested, qserv, tmp_path):
    text = ingested.config.read_text().replace(str(ingested.staging), str(tmp_path / "unused"))
    (tmp_path / "c.yaml").write_text(text)
    result = run_qdask(qserv, "status", tmp_path / "c.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout) is None
    jsonschema.validate(None, schemas()["status"])
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize("command", ["plan", "ingest", "verify", "status"])
def test_json_is_offered_by_the_commands_help(qserv, tmp_path, command):
    result = run_qdask(qserv, command, "--help", cwd=tmp_path)
    assert "--json" in result.stdout and "docs/json.md" in result.stdout


def test_verify_unique_scan_options_are_honoured(ingested, qserv):
    """`--unique-scan-rows N`: a director of more rows is not grouped by id (the report says so);
    `--unique-scan-all` groups it whatever N; the default is the library's."""
    import inspect

    from qdask import api, cli
    from qdask.stages.verify import UNIQUE_SCAN_ROWS

    option = next(p for p in cli.verify_command.params if p.name == "unique_scan_rows")
    assert (
        option.default
        == UNIQUE_SCAN_ROWS
        == inspect.signature(api.verify).parameters["unique_scan_rows"].default
    )

    def unique_detail(*flags: str) -> str:
        result = run_qdask(
            qserv, "verify", ingested.config, "--json", "--sample", "0", *flags, cwd=ingested.config.parent
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        jsonschema.validate(report, schemas()["verify"])
        return next(
            c["detail"] for c in report["checks"] if c["table"] == "Object" and c["check"] == "unique key"
        )

    assert "not scanned through the czar" in unique_detail("--unique-scan-rows", "5")
    assert "appears twice" in unique_detail("--unique-scan-rows", "5", "--unique-scan-all")
    assert "appears twice" in unique_detail()

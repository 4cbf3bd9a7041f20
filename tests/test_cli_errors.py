"""What `qdask` prints when something goes wrong: a user-facing error (`QdaskError`) as one message with
its exit code, Ctrl-C as one line, and anything else — a bug — with its traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from qdask.cli import main
from qdask.errors import QdaskError
from qdask.ingest import Ingest, IngestError
from qdask.ledger import LedgerError
from qdask.qserv import QservError

CASE01 = Path(__file__).resolve().parents[1] / "configs" / "case01.yaml"


def _plan_raising(monkeypatch, exc: BaseException):
    def plan(self):
        raise exc

    monkeypatch.setattr(Ingest, "plan", plan)
    return CliRunner().invoke(main, ["plan", str(CASE01)])


@pytest.mark.parametrize(
    "error",
    [
        IngestError("planning failed: no file matches x*.parquet"),
        LedgerError("the ledger is locked"),
        QservError("GET /meta/version", "no such database"),
    ],
    ids=["ingest", "ledger", "qserv"],
)
def test_a_user_facing_error_is_one_message_and_its_exit_code(monkeypatch, error):
    result = _plan_raising(monkeypatch, error)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip().splitlines()[-1] == f"qdask plan stopped: {error}"
    assert "Traceback" not in result.output


def test_a_config_error_exits_2_with_its_located_message(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("database: {name: x}\n")
    result = CliRunner().invoke(main, ["ingest", str(path)])
    assert result.exit_code == 2 and result.stderr.startswith(f"{path.resolve()}: invalid configuration")
    assert "Traceback" not in result.output and "stopped" not in result.output


def test_ctrl_c_is_one_line(monkeypatch):
    result = _plan_raising(monkeypatch, KeyboardInterrupt())
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "qdask plan interrupted: nothing else was done"


def test_anything_else_is_a_bug_and_keeps_its_traceback(monkeypatch):
    result = _plan_raising(monkeypatch, ZeroDivisionError("a bug"))
    assert isinstance(result.exception, ZeroDivisionError)  # not swallowed: the traceback is printed
    assert "stopped" not in result.output
    assert not issubclass(ZeroDivisionError, QdaskError) and issubclass(IngestError, QdaskError)

"""The auth key never leaks (output, errors, staging files, ledger, transaction contexts); names from
configs cannot inject SQL; the admin key is not needed to ingest."""

from __future__ import annotations

import pytest
import yaml

from qdask.config import ConfigError, load_config
from qdask.qserv import QservClient
from qdask.qserv.czar import quote_identifier
from tests.faults.conftest import write_case01


def _files_containing(root, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_keys_never_leak_and_the_admin_key_is_not_needed(qserv, truth, tmp_path, runner):
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "faults_secrets")
    runner.env.pop("QSERV_ADMIN_AUTH_KEY")  # ingest must not need the administrator key
    wrong = runner.run("ingest", str(config), env_key="not-the-key-7f3a9")
    assert wrong.returncode != 0 and "not-the-key-7f3a9" not in wrong.output
    outcome = runner.ingest(config)
    status = runner.run("status", str(config))
    assert outcome.returncode == 0, outcome.output[-3000:]
    assert truth.problems(qserv, "faults_secrets") == []
    key = qserv.auth_key.encode()
    for text in (outcome.output, status.output, wrong.output):
        assert qserv.auth_key not in text and qserv.admin_auth_key not in text
    assert _files_containing(tmp_path, key) == []  # staging, ledger, quarantine, config, logs
    assert _files_containing(tmp_path, qserv.admin_auth_key.encode()) == []
    with QservClient(qserv.controller_url, qserv.auth_key) as client:
        contexts = [t.context for t in client.list_transactions("faults_secrets", include_context=True)]
    assert contexts and all(qserv.auth_key not in str(c) for c in contexts)


@pytest.mark.parametrize(
    "where, value",
    [("database", "qdask`; DROP DATABASE mysql; --"), ("table", "Object; DROP TABLE x"), ("table", "a b")],
)
def test_names_that_could_inject_sql_are_refused(qserv, tmp_path, where, value):
    path = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "faults_names")
    raw = yaml.safe_load(path.read_text())
    if where == "database":
        raw["database"]["name"] = value
    else:
        raw["tables"][2]["name"] = value
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError):
        load_config(path)
    with pytest.raises(ValueError):
        quote_identifier(value)

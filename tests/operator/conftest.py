"""The operator's view of qdask, tested as an operator meets it: `qdask` run as a real process.

`ingested` runs ``qdask ingest CONFIG --json --log-file ... --log-level debug`` once, on case01's fault
tables (a director, its child, two regular tables) into the session's Qserv stand-in, with stdout and
stderr kept apart (stderr is a pipe, not a terminal: the plain progress lines). Most tests of this
directory look at what that run left: its JSON, its log, its run report, the staging directory.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.conftest import QDASK, plain_case01, truth, write_case01  # noqa: F401 (fixtures)

DOCS = Path(__file__).resolve().parents[2] / "docs"


def qdask_env(qserv) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QDASK_", "PYTEST_"))}
    env.update(QSERV_AUTH_KEY=qserv.auth_key, QSERV_ADMIN_AUTH_KEY=qserv.admin_auth_key, PYTHONUNBUFFERED="1")
    return env


def run_qdask(qserv, *args: str, cwd: Path, stdin: str | None = None, timeout: float = 600):
    """`qdask ARGS` as a process (stdout and stderr apart, stdin from `stdin`)."""
    return subprocess.run(
        [str(QDASK), *map(str, args)],
        env=qdask_env(qserv),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Ingested:
    config: Path
    staging: Path
    log: Path
    result: subprocess.CompletedProcess

    @property
    def summary(self) -> dict:
        return json.loads(self.result.stdout)


@pytest.fixture(scope="session")
def ingested(qserv, tmp_path_factory) -> Ingested:
    root = tmp_path_factory.mktemp("operator")
    config = write_case01(root / "case01.yaml", qserv, root / "staging", "op_case01")
    log = root / "logs" / "ingest.log"
    result = run_qdask(
        qserv,
        "ingest",
        config,
        "--json",
        "--log-file",
        log,
        "--log-level",
        "debug",
        "--progress-every",
        "0.2",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return Ingested(config, root / "staging", log, result)


def schemas() -> dict[str, dict]:
    """The JSON Schemas of docs/json.md, by name (`<!-- schema: NAME -->` before each)."""
    import re

    text = (DOCS / "json.md").read_text()
    found = re.findall(r"<!-- schema: (\w+) -->\s*```json\n(.*?)```", text, flags=re.S)
    return {name: json.loads(body) for name, body in found}

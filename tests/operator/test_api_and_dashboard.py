"""The Python API (`qdask.ingest(config, client=...)` on the caller's own Dask client) and the Dask
dashboard a run links to, which must answer a page (bokeh installed), not "Dask needs bokeh"."""

from __future__ import annotations

import io
import re
import tomllib
from pathlib import Path

import httpx
from distributed import Client, LocalCluster
from rich.console import Console

import qdask
from qdask.cluster import ClusterSpec, open_client
from tests.faults.conftest import write_case01

ROOT = Path(__file__).resolve().parents[2]


def test_ingest_runs_on_the_callers_client_and_leaves_it_open(qserv, truth, tmp_path, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "op_api")
    planned = qdask.plan(config)
    assert [t.name for t in planned.setups] == ["Object", "Source", "Filter", "LeapSeconds"]
    assert not (tmp_path / "staging").exists()
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            summary = qdask.ingest(config, client=client, console=Console(file=io.StringIO()))
            ran = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
            assert {"partition", "collect"} <= {
                re.sub(r"-.*", "", p) for p in ran
            }  # on this client's cluster
            assert client.status == "running" and client.submit(sum, [1, 2]).result() == 3  # still usable
    assert summary.verify is not None and summary.verify.ok
    assert summary.loaded.catalog == sum(sum(rows.values()) for rows in truth.rows.values())
    status = qdask.status(config)
    assert status is not None and status.published is not None and status.verified["ok"]
    assert qdask.verify(config).ok


def test_qdask_ingest_is_the_api_whether_or_not_the_driver_module_was_imported():
    import subprocess
    import sys

    program = (
        "import qdask, qdask.api as api\n"
        "assert callable(qdask.ingest) and qdask.plan is api.plan and qdask.reset is api.reset\n"
        "from qdask.ingest import Ingest\n"  # the driver module stays importable by its name
        "assert callable(qdask.ingest) and Ingest.__module__ == 'qdask.ingest'\n"
        "print(qdask.ingest.__class__.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "_CallableModule"


def test_the_dashboard_answers_a_page():
    with open_client(ClusterSpec(kind="local", workers=1, memory_per_worker=1 << 30)) as client:
        page = httpx.get(client.dashboard_link, follow_redirects=True, timeout=60)
    assert page.status_code == 200, page.text[:500]
    assert "Dask needs bokeh" not in page.text and "bokeh" in page.text.lower()


def test_bokeh_is_a_runtime_dependency_and_in_the_worker_image():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("bokeh") for d in project["dependencies"])
    dockerfile = (ROOT / "clusters" / "Dockerfile").read_text()
    install = re.search(r"RUN pip install --no-cache-dir \. \\\n && python -c \"import ([^;]+);", dockerfile)
    assert install and "bokeh" in install.group(1).split(", ")  # the image build fails without it

"""What lives as long as a qdask process is taken out of the garbage collector's full passes, once per
role, and only in the processes qdask owns: `qdask ingest`'s and its local workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from qdask.cli import main
from qdask.cluster import ClusterSpec, open_client
from qdask.ingest import Ingest, IngestError
from qdask.long_lived import YOUNG_OBJECTS

CASE01 = Path(__file__).resolve().parents[1] / "configs" / "case01.yaml"

FRESH_PROCESS = """
import gc, json
from qdask.long_lived import freeze_long_lived
before = gc.get_freeze_count()
first = freeze_long_lived("driver")
frozen = gc.get_freeze_count()
again = freeze_long_lived("driver")
other = freeze_long_lived("worker")
print(json.dumps([before, first, frozen, again, gc.get_freeze_count() - frozen, other, gc.get_threshold()]))
"""


def test_a_role_freezes_what_is_alive_once_per_process():
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, check=True)
    before, first, frozen, again, added, other, thresholds = json.loads(out.stdout)
    assert before == 0 and first is True
    assert frozen > 1_000  # what a fresh interpreter and qdask's package hold
    assert again is False
    assert other is True and added >= 0
    assert thresholds == [YOUNG_OBJECTS, 10, 10]  # young passes 28x rarer than CPython's default


SET_UP = """
import gc, json
from qdask.long_lived import setting_up
with setting_up("driver"):
    during = gc.isenabled()
    import qdask.ingest  # what the CLI imports and plans under it
after, frozen = gc.isenabled(), gc.get_freeze_count()
gc.disable()
with setting_up("worker"):
    pass
print(json.dumps([during, after, frozen, gc.isenabled()]))
"""


def test_set_up_runs_without_collector_passes_then_freezes_what_it_left():
    out = subprocess.run([sys.executable, "-c", SET_UP], capture_output=True, text=True, check=True)
    during, after, frozen, disabled_stays = json.loads(out.stdout)
    assert during is False and after is True
    assert frozen > 50_000  # qdask.ingest's imports: dask, distributed, pyarrow
    assert disabled_stays is False  # a collector the caller had turned off stays off


def _worker_state() -> tuple[int, bool, int]:
    import gc

    stages = {"polars", "qdask.stages.collect", "qdask.stages.partition"}
    return gc.get_freeze_count(), stages <= set(sys.modules), gc.get_threshold()[0]


def test_local_workers_start_with_the_stages_modules_frozen():
    with open_client(ClusterSpec(kind="local", workers=1, memory_per_worker=1 << 30)) as client:
        frozen, imported, young = client.submit(_worker_state, pure=False).result()
    assert imported and young == YOUNG_OBJECTS
    assert frozen > 50_000  # ~130k here: distributed, pyarrow, polars and the stages, before any task


def test_qdask_ingest_freezes_its_process_before_the_run(monkeypatch):
    calls: list[str] = []

    def run(self, **_):
        calls.append("run")
        raise IngestError("stopped here by the test")

    monkeypatch.setattr("qdask.long_lived.freeze_long_lived", lambda role: calls.append(role) or True)
    monkeypatch.setattr(Ingest, "run", run)
    result = CliRunner().invoke(main, ["ingest", str(CASE01), "--stage-only"])
    assert result.exit_code == 1, result.output
    assert calls == ["driver", "run"]

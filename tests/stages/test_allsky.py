"""A unit spread over the whole sky (thousands of chunks) stages under the common open-files limit of 1024,
and its contribution files hold every row exactly once (issue 14: one shard file per chunk used to fail
with EMFILE past ~500 chunks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from all_sky_catalog import all_sky_director

from qdask.sky import Chunker

LAYOUT = (340, 3, 0.01667)  # DP0.2's: ~140k chunks over the sky
ROWS = 6000

CHILD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    import pyarrow as pa
    import pyarrow.parquet as pq
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    from qdask.stages.collect import collect_chunks, collect_task_for, plan_collect
    from qdask.stages.partition import TablePlan, partition_batches

    source, root = sys.argv[1], Path(sys.argv[2])
    schema = pa.schema([("id", pa.int64()), ("ra", pa.float64()), ("dec", pa.float64()),
                        ("chunkId", pa.int32()), ("subChunkId", pa.int32())])
    plan = TablePlan("Object", "director", schema, ra="ra", dec="dec", layout=(340, 3, 0.01667))
    batches = pq.ParquetFile(source).iter_batches(batch_size=1000)
    result = partition_batches(batches, plan, "allsky", root / "shards", root / "q")
    keys = [k for s in result.shards for k in s.keys()]
    files = []
    for group, shards in plan_collect(keys, result.shards):
        task = collect_task_for(group, shards, schema.names, "utf8mb4")
        files += [c.file for c in collect_chunks(task, root / "contrib")]
    print(json.dumps({"keys": len(keys), "shards": len(result.shards), "overlap_rows": result.overlap_rows,
                      "files": [[f.chunk_id, f.overlap, f.path, f.rows] for f in files],
                      "limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}))
""")


def test_an_all_sky_unit_stages_under_1024_open_files_with_every_row_once(tmp_path):
    rng = np.random.default_rng(14)
    ra = rng.uniform(0, 360, ROWS)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, ROWS)))  # uniform over the sphere
    ids = rng.permutation(10 * ROWS)[:ROWS].astype(np.int64)
    pq.write_table(pa.table({"id": ids, "ra": ra, "dec": dec}), tmp_path / "allsky.parquet")
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "allsky.parquet"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    chunker = Chunker(*LAYOUT)
    home, _ = chunker.locate(ra, dec)
    rows, overlap_chunks, _ = chunker.locate_overlap(ra, dec)
    assert out["limit"] == 1024 and out["shards"] == 1
    assert out["keys"] == len(set(home.tolist())) + len(set(overlap_chunks.tolist())) > 2 * 1024

    by_id = dict(zip(ids.tolist(), home.tolist(), strict=True))
    staged, copies = [], []
    for chunk_id, overlap, path, count in out["files"]:
        lines = [line.split("\t") for line in open(path).read().splitlines()]  # noqa: SIM115
        assert len(lines) == count and {int(line[3]) for line in lines} == {chunk_id}
        (copies if overlap else staged).extend((int(line[0]), chunk_id) for line in lines)
    assert len(staged) == ROWS and sorted(staged) == sorted(by_id.items())  # each row once, in its chunk
    want = sorted(zip(ids[rows].tolist(), overlap_chunks.tolist(), strict=True))
    assert sorted(copies) == want and out["overlap_rows"] == len(want)


DRIVER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from qdask.config import config_from_dict
    from qdask.ingest import Ingest
    Ingest(config_from_dict(json.loads(sys.argv[1]), Path(sys.argv[2]))).run(stage_only=True)
""")


def _stage_only(config: dict, folder, env: dict) -> subprocess.CompletedProcess:
    run = subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(config), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # its Dask workers with it, so they can be killed with it
    )
    try:
        output, _ = run.communicate(timeout=600)
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)  # workers a killed driver left behind
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(run.args, run.returncode, output, "")


def test_a_driver_killed_inside_a_batch_of_chunk_file_records_resumes_with_every_row_once(tmp_path):
    """The driver records a collect task's thousands of files in one ledger transaction; SIGKILLed inside
    the second one (its rows inserted, not committed), the ledger keeps the first task's files only, and
    the same command re-run collects the rest: every destination recorded once, every row once."""
    from qdask.ledger import Ledger
    from qdask.stages.collect import plan_collect

    n = 3000
    config = all_sky_director(tmp_path, "killbatch", n, seed=41)
    written = pq.read_table(tmp_path / "in" / "allsky.parquet")
    ids, ra, dec = (written.column(c).to_numpy() for c in ("id", "ra", "dec"))
    config["cluster"] = {"kind": "local", "workers": 1, "memory_per_worker": "2GiB"}
    faults = tmp_path / "faults"
    faults.mkdir()
    env = {**os.environ, "QDASK_FAULT_DIR": str(faults)}
    killed = _stage_only(config, tmp_path, {**env, "QDASK_KILL_AT": "ledger.chunk_files:2"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:]
    assert "ledger.chunk_files" in (faults / "kills.log").read_text()
    ledger_path = tmp_path / "staging" / "ledger.sqlite"
    with Ledger(ledger_path) as ledger:
        first = ledger.chunk_files()
        left = ledger.chunks_to_collect()
        every = left + [f.key for f in first]
        groups = [set(keys) for keys, _ in plan_collect(every, ledger.shards(), spread=2)]  # the driver's
    assert len(groups) == 2 and set(left) in groups  # the killed task's files: none recorded, not some

    done = _stage_only(config, tmp_path, env)
    assert done.returncode == 0, done.stdout[-3000:]
    with Ledger(ledger_path) as ledger:
        files = ledger.chunk_files()
        assert not ledger.chunks_to_collect()
    keys = [f.key for f in files]
    assert len(keys) == len(set(keys)) == len(first) + len(left)
    assert {f.key: f for f in files}.items() >= {f.key: f for f in first}.items()  # kept as recorded
    chunker = Chunker(*LAYOUT)
    home, _ = chunker.locate(ra, dec)
    rows, overlap_chunks, _ = chunker.locate_overlap(ra, dec)
    staged, copies = [], []
    for f in files:
        lines = Path(f.path).read_text().splitlines()
        assert len(lines) == f.rows
        (copies if f.overlap else staged).extend((int(line.split("\t")[0]), f.chunk_id) for line in lines)
    assert sorted(staged) == sorted(zip(ids.tolist(), home.tolist(), strict=True))  # each row once
    assert sorted(copies) == sorted(zip(ids[rows].tolist(), overlap_chunks.tolist(), strict=True))

"""More unit key files than the process may open at once (issue 14: any footprint under `ulimit -n 1024`):
the key check, verify's staged-id check and the placement index read them without holding them open. A
memory map holds its file open while it, or any view of it, lives, so mapping every unit failed with
"Too many open files" past about a thousand units.

Each case runs in a child process whose open-files limit is a quarter of the number of files it reads."""

from __future__ import annotations

import errno
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from qdask.config import load_config
from qdask.ingest import Ingest
from qdask.stages.keys import KeyFamily, KeyTable, save_unit_keys
from qdask.stages.placement import save_unit_placement

UNITS = 1200
LIMIT = 300  # a quarter of UNITS: mapping even the director's files would pass it

CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
from pathlib import Path
import numpy as np
from qdask.config import load_config
from qdask.ingest import Ingest
from qdask.stages.keys import KeyFamily, KeyTable, check_family_task
from qdask.stages.placement import bucket_task, plan_buckets_task
from qdask.stages.staged_ids import repeated_ids

args = json.load(sys.stdin)
if args["case"] == "check":
    family = KeyFamily(KeyTable(**args["director"]), (KeyTable(**args["child"]),))
    found = check_family_task(family, args["root"])
    print(json.dumps({{p.table: [p.rows, p.examples] for p in found}}))
elif args["case"] == "exhausted":  # every file descriptor taken: the check fails, and deletes nothing
    import os
    held = []
    try:
        while True:
            held.append(os.open(args["files"][0], os.O_RDONLY))
    except OSError:
        pass
    family = KeyFamily(KeyTable("Object", "objectId", "stop", tuple(args["files"])), ())
    try:
        check_family_task(family, args["root"])
        print(json.dumps("no error"))
    except OSError as exc:
        print(json.dumps(exc.errno))
elif args["case"] == "staged":
    found = repeated_ids([Path(p) for p in args["files"]], shown=5)
    print(json.dumps([found.rows, found.examples]))
else:
    starts = plan_buckets_task(args["files"], bucket_rows=args["bucket_rows"])
    rows = [bucket_task(b, starts, args["files"], args["out"])[1] for b in range(len(starts) + 1)]
    print(json.dumps([len(starts), sum(rows)]))
"""


def _run(case: str, **args) -> object:
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(limit=LIMIT)],
        input=json.dumps({"case": case, **args}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _units(tmp_path, table: str, arrays) -> list[str]:
    return [str(save_unit_keys(a, tmp_path / table / f"u{i:05d}.x.npy")) for i, a in enumerate(arrays)]


def _director_ids() -> list[np.ndarray]:
    ids = [np.arange(i * 10, i * 10 + 10, dtype=np.int64) for i in range(UNITS)]
    ids[-1][-1] = 5  # id 5 is in the first unit and the last
    return ids


def test_the_key_check_reads_more_unit_files_than_it_may_open(tmp_path):
    director = _units(tmp_path, "Object", _director_ids())
    child = _units(tmp_path, "Source", [np.array([i * 10 + 3, 10**9 + i], np.int64) for i in range(UNITS)])
    family = KeyFamily(
        KeyTable("Object", "objectId", "stop", tuple(director)),
        (KeyTable("Source", "objectId", "report", tuple(child)),),
    )
    found = _run(
        "check",
        director=vars(family.director),
        child=vars(family.children[0]),
        root=str(tmp_path / "keys"),
    )
    assert found == {
        "Object": [2, [5]],
        "Source": [UNITS, [10**9, 10**9 + 1, 10**9 + 2, 10**9 + 3, 10**9 + 4]],
    }


def test_the_staged_id_merge_reads_more_unit_files_than_it_may_open(tmp_path):
    files = _units(tmp_path, "ids", _director_ids())
    assert _run("staged", files=files) == [2, [[5, 2]]]


def test_the_placement_index_reads_more_unit_files_than_it_may_open(tmp_path):
    files = [str(tmp_path / "Object" / f"u{i:05d}.x.npy") for i in range(UNITS)]
    for path, ids in zip(files, _director_ids(), strict=True):
        zeros = np.zeros(len(ids), np.int32)
        save_unit_placement(ids, zeros, zeros, Path(path))
    buckets, rows = _run("placement", files=files, bucket_rows=3000, out=str(tmp_path / "index"))
    assert buckets >= 3 and rows == UNITS * 10 - 1  # one entry per id: the repeated 5 is kept once


def test_running_out_of_open_files_is_not_taken_for_a_damaged_key_file(tmp_path):
    """A damaged key file is removed to be rebuilt from its shards; a file that could not be opened for
    want of descriptors is not damaged, and must stay."""
    files = _units(tmp_path, "Object", _director_ids()[:3])
    assert _run("exhausted", files=files, root=str(tmp_path / "keys")) == errno.EMFILE
    assert all(Path(f).is_file() for f in files)


def test_a_catalog_of_more_input_files_than_open_files_stages_end_to_end(tmp_path):
    """`qdask ingest --stage-only` of 1,100 small Parquet files (1,100 units) under `ulimit -n 1024`, its
    Dask workers included: every unit partitioned, every row staged, the key check passed. Before, the
    key check ran out of descriptors, took that for damaged key files, rebuilt them and gave up ("staging
    did not settle")."""
    files, rows = 1100, 50
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(8)
    for i in range(files):
        ra0, dec0 = (i * 0.25) % 360, -30.0 + 0.25 * (i * 0.25 // 360)
        table = pa.table(
            {
                "id": np.arange(i * rows, (i + 1) * rows, dtype=np.int64),
                "ra": rng.uniform(ra0, ra0 + 0.2, rows),
                "dec": rng.uniform(dec0, dec0 + 0.2, rows),
            }
        )
        pq.write_table(table, inputs / f"part{i:05d}.parquet")
    config = tmp_path / "many.yaml"
    layout = {"num_stripes": 340, "num_sub_stripes": 3, "overlap": 0.01667}
    director = {"name": "Object", "kind": "director", "id": "id", "ra": "ra", "dec": "dec"}
    director |= {"input": {"files": {"glob": str(inputs / "*.parquet")}}, "schema": {"infer": True}}
    settings = {
        "database": {"name": "many", "partitioning": layout},
        "tables": [director],
        "qserv": {"controller": "http://127.0.0.1:9", "czar": "mysql://qsmaster@127.0.0.1:9/many"},
        "staging": {"directory": str(tmp_path / "staging")},
        "cluster": {"kind": "local", "workers": 2, "memory_per_worker": "2GiB"},
    }
    config.write_text(yaml.safe_dump(settings))

    def limit_open_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    run = subprocess.run(
        [str(Path(sys.executable).with_name("qdask")), "ingest", str(config), "--stage-only"],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=limit_open_files,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    units = Ingest(load_config(config)).ledger.units(table="Object")
    assert len(units) == files and sum(u.rows_read or 0 for u in units) == files * rows
    assert f"{files} unit(s) partitioned" in run.stdout + run.stderr

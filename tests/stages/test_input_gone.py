"""A unit recorded in the ledger that the plan no longer has (an input file removed from the glob, or a file
split into other row-group units) must not leave its rows in what is collected: staging follows the input
as it is now, and a change the loaded data cannot follow is refused."""

from __future__ import annotations

import copy
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from qdask.ingest import Ingest, IngestError
from qdask.ledger import FileStatus, Ledger
from tests.config.test_keys_honoured import client, config, tiny  # noqa: F401 (client: a fixture)


def _director_files(root, parts: int, rows: int = 200) -> None:
    rng = np.random.default_rng(3)
    for i in range(parts):
        ids = np.arange(i * rows + 1, (i + 1) * rows + 1, dtype=np.int64)
        table = pa.table(
            {
                "id": ids,
                "ra": rng.uniform(10, 14, rows),
                "dec": rng.uniform(-2, 2, rows),
                "flux": rng.normal(size=rows),
            }
        )
        pq.write_table(table, root / "in" / f"d{i}.parquet")


def _two_file_director(tmp_path) -> dict:
    raw = copy.deepcopy(tiny(tmp_path))
    raw["tables"] = [t for t in raw["tables"] if t["name"] == "D"]
    (tmp_path / "in" / "d.parquet").unlink()
    _director_files(tmp_path, 2)
    raw["tables"][0]["input"] = {"files": {"glob": str(tmp_path / "in" / "d*.parquet")}}
    return raw


def _stage(raw, root, dask_client) -> Ingest:
    ingest = Ingest(config(raw, root), client=dask_client, console=Console(file=io.StringIO()))
    ingest.run(stage_only=True)
    return ingest


def _staged_rows(ingest: Ingest) -> int:
    return sum(f.rows for f in ingest.ledger.chunk_files(table="D") if not f.key.overlap)


def test_a_removed_input_file_leaves_no_rows_behind(tmp_path, client):  # noqa: F811
    raw = _two_file_director(tmp_path)
    first = _stage(raw, tmp_path, client)
    assert _staged_rows(first) == 400 and len(first.ledger.units(table="D")) == 2
    first.ledger.close()
    (tmp_path / "in" / "d1.parquet").unlink()
    again = _stage(raw, tmp_path, client)
    assert _staged_rows(again) == 200
    planned = [u.unit_id for s in again.setups.values() for u in s.units]
    assert [u.unit_id for u in again.ledger.units(table="D")] == planned
    assert [s.unit_id for s in again.ledger.shards(table="D")] == planned
    assert any("no longer in the input" in note for note in again.summary.notes)


def test_a_removed_input_whose_rows_are_loaded_is_refused(tmp_path, client):  # noqa: F811
    raw = _two_file_director(tmp_path)
    first = _stage(raw, tmp_path, client)
    path = first.ledger.path
    first.ledger.close()
    with Ledger(path) as ledger:  # as if the files had been loaded into Qserv
        ledger._db.execute("UPDATE chunk_files SET status = ?", (FileStatus.LOADED,))
        ledger._db.commit()
        before = (len(ledger.units()), len(ledger.shards()), len(ledger.chunk_files()))
    (tmp_path / "in" / "d1.parquet").unlink()
    with pytest.raises(IngestError, match=r"d1\.parquet.*no longer in the input.*loaded in Qserv"):
        _stage(raw, tmp_path, client)
    with Ledger(path) as ledger:  # refused as a whole: nothing forgotten
        assert (len(ledger.units()), len(ledger.shards()), len(ledger.chunk_files())) == before

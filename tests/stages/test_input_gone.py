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
from qdask.stages.plan import plan_ingest
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


def _split_director(tmp_path, parts_first: int, parts_then: int):
    """One director file of 8 row groups, planned first as `parts_first` units, then as `parts_then`."""
    raw = copy.deepcopy(tiny(tmp_path))
    raw["tables"] = [t for t in raw["tables"] if t["name"] == "D"]
    _director_files(tmp_path, 1, rows=800)
    table = pq.read_table(tmp_path / "in" / "d0.parquet")
    pq.write_table(table, tmp_path / "in" / "d.parquet", row_group_size=100)
    raw["tables"][0]["input"] = {"files": {"glob": str(tmp_path / "in" / "d.parquet")}}
    size = (tmp_path / "in" / "d.parquet").stat().st_size
    return raw, [max(1, size // parts) for parts in (parts_first, parts_then)]


def _stage_split(raw, root, dask_client, max_unit_bytes: int) -> Ingest:
    ingest = Ingest(config(raw, root), client=dask_client, console=Console(file=io.StringIO()))
    ingest.setups = {s.name: s for s in plan_ingest(ingest.config, max_unit_bytes=max_unit_bytes)}
    ingest.run(stage_only=True)
    return ingest


@pytest.mark.parametrize(("parts_first", "parts_then"), [(1, 8), (8, 1), (2, 4)])
def test_a_loaded_file_cut_otherwise_by_a_later_plan_keeps_its_recorded_units(
    tmp_path,
    client,  # noqa: F811
    parts_first,
    parts_then,
):
    """Unit ids name their row-group range: a later run whose unit size differs (a new default, other
    memory) cuts the same file otherwise. Once the file is partitioned the recorded units are kept, so
    its loaded rows are neither refused as a change nor staged twice."""
    raw, (first_limit, then_limit) = _split_director(tmp_path, parts_first, parts_then)
    first = _stage_split(raw, tmp_path, client, first_limit)
    recorded = [u.unit_id for u in first.ledger.units(table="D")]
    assert len(recorded) == parts_first and _staged_rows(first) == 800
    path = first.ledger.path
    first.ledger.close()
    with Ledger(path) as ledger:  # as if the files had been loaded into Qserv
        ledger._db.execute("UPDATE chunk_files SET status = ?", (FileStatus.LOADED,))
        ledger._db.commit()
    assert len(plan_ingest(config(raw, tmp_path), max_unit_bytes=then_limit)[0].units) == parts_then
    again = _stage_split(raw, tmp_path, client, then_limit)
    assert [u.unit_id for u in again.setups["D"].units] == recorded
    assert [u.unit_id for u in again.ledger.units(table="D")] == recorded
    assert _staged_rows(again) == 800 and again.summary.units_partitioned == 0
    assert not any("no longer in the input" in note for note in again.summary.notes)


def test_a_rewritten_file_is_not_kept_as_recorded(tmp_path, client):  # noqa: F811
    """The recorded split is kept only for the same rows: a file rewritten with other rows is new input
    (here refused, its old rows being loaded)."""
    raw, (first_limit, then_limit) = _split_director(tmp_path, 1, 4)
    first = _stage_split(raw, tmp_path, client, first_limit)
    path = first.ledger.path
    first.ledger.close()
    with Ledger(path) as ledger:
        ledger._db.execute("UPDATE chunk_files SET status = ?", (FileStatus.LOADED,))
        ledger._db.commit()
    table = pq.read_table(tmp_path / "in" / "d.parquet")
    pq.write_table(table.slice(0, 700), tmp_path / "in" / "d.parquet", row_group_size=100)
    with pytest.raises(IngestError, match=r"d\.parquet.*no longer in the input.*loaded in Qserv"):
        _stage_split(raw, tmp_path, client, then_limit)

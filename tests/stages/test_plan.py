"""The plan stage: schemas and units of case01, the key column each table's checks read, and settings the
pipeline would otherwise not apply refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from qdask.config import ConfigError, IngestConfig, config_from_dict
from qdask.kinds import TableKind
from qdask.schema import SchemaError
from qdask.stages.plan import plan_ingest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _case01(tmp_path, change=lambda tables: None) -> IngestConfig:
    raw = yaml.safe_load((CONFIGS / "case01.yaml").read_text())
    raw["tables"] = raw["tables"][:3]  # Object, Source, Filter
    raw["staging"] = {"directory": str(tmp_path / "staging")}
    change(raw["tables"])
    return config_from_dict(raw, CONFIGS)


def test_the_example_plan_resolves_units_and_schemas(tmp_path, shared_data):
    setups = plan_ingest(_case01(tmp_path))
    assert [s.name for s in setups] == ["Object", "Source", "Filter"]
    assert [s.plan.kind for s in setups] == [TableKind.DIRECTOR, TableKind.CHILD, TableKind.REGULAR]
    assert setups[0].plan.schema.names[-2:] == ["chunkId", "subChunkId"] and len(setups[0].units) == 1
    assert not (tmp_path / "staging").exists()  # planning stages nothing


def test_the_key_checks_read_integer_ids_and_director_keys_only(tmp_path, shared_data):
    keys = {s.name: s.plan.key_column for s in plan_ingest(_case01(tmp_path))}
    assert keys == {"Object": "objectId", "Source": "objectId", "Filter": None}

    # a director whose ids are floats: not merged (exactly) as keys, so the director gets no key column
    (tmp_path / "in").mkdir()
    position = {"ra": [1.0, 2.0], "dec": [0.0, 0.0]}
    pq.write_table(pa.table({"id": [1.5, 2.5], **position}), tmp_path / "in/d.parquet")
    pq.write_table(pa.table({"id": [1, 2], "did": [1.0, 2.0], **position}), tmp_path / "in/c.parquet")
    files = {"D": "d.parquet", "C": "c.parquet"}
    raw = {
        "database": {"name": "k", "partitioning": {"num_stripes": 85, "num_sub_stripes": 12, "overlap": 0}},
        "tables": [
            {"name": "D", "kind": "director", "id": "id", "ra": "ra", "dec": "dec"},
            {"name": "C", "kind": "child", "director": "D", "director_key": "did", "ra": "ra", "dec": "dec"},
        ],
        "qserv": {"controller": "http://127.0.0.1:1", "czar": "mysql://u@127.0.0.1:1/keys"},
        "staging": {"directory": str(tmp_path / "staging")},
    }
    for t in raw["tables"]:
        t.update(input={"files": {"glob": str(tmp_path / "in" / files[t["name"]])}}, schema={"infer": True})
    keys = {s.name: s.plan.key_column for s in plan_ingest(config_from_dict(raw, tmp_path))}
    assert keys == {"D": None, "C": None}

    # a child whose director key is an integer where its director's id is a float (or the other way
    # round) cannot be compared exactly: refused before anything is staged
    pq.write_table(pa.table({"id": [1, 2], "did": [1, 2], **position}), tmp_path / "in/c.parquet")
    with pytest.raises(SchemaError, match=r"director_key column 'did' is int64 .* director D is double"):
        plan_ingest(config_from_dict(raw, tmp_path))


def test_bad_values_quarantine_is_refused_not_ignored(tmp_path, shared_data):
    def change(tables):
        tables[0]["policies"] = {"bad_values": "quarantine"}

    # refused by the config itself (so `qdask plan --check` says it), not accepted and ignored
    with pytest.raises(ConfigError, match=r"tables\[0\].policies.bad_values: quarantine is not supported"):
        plan_ingest(_case01(tmp_path, change))


def test_a_column_qserv_could_never_query_is_refused_unless_renamed(tmp_path):
    """Qserv's query parser refuses identifiers starting with "_" (ParseAdapters.h, UidAdapter): a column
    so named in the data (pandas writes "__index_level_0__") is refused at planning, before anything is
    registered; renaming or excluding it lets the plan through."""
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": [1, 2], "_flag": [0, 1]}), tmp_path / "in/r.parquet")
    table = {"name": "R", "kind": "regular", "input": {"files": {"glob": str(tmp_path / "in/r.parquet")}}}
    raw = {
        "database": {"name": "u", "partitioning": {"num_stripes": 85, "num_sub_stripes": 12, "overlap": 0}},
        "tables": [{**table, "schema": {"infer": True}}],
        "qserv": {"controller": "http://127.0.0.1:1", "czar": "mysql://u@127.0.0.1:1/u"},
        "staging": {"directory": str(tmp_path / "staging")},
    }
    with pytest.raises(SchemaError, match=r"'_flag' is not a valid column name .* start with an _"):
        plan_ingest(config_from_dict(raw, tmp_path))
    raw["tables"][0]["columns"] = {"rename": {"_flag": "flag"}}
    assert plan_ingest(config_from_dict(raw, tmp_path))[0].plan.schema.names == ["id", "flag"]
    raw["tables"][0]["columns"] = {"exclude": ["_flag"]}
    assert plan_ingest(config_from_dict(raw, tmp_path))[0].plan.schema.names == ["id"]

"""Tests of `qdask.config`: the examples validate, every rule gives a located error, secrets never leak."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from qdask.cli import main
from qdask.config import (
    ChildTable,
    ConfigError,
    DirectorTable,
    IngestConfig,
    RegularTable,
    check_identifier,
    config_from_dict,
    load_config,
    match_files,
    parse_bytes,
)
from qdask.text_dialect import TextDialect

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SECRET = "s3cr3t-auth-key-7f1c9a"
ADMIN_SECRET = "adm1n-key-e02b44"


def _files_table(case01: Path, name: str, kind: str, schema: dict, **keys: str) -> dict:
    """A table entry read from case01's dump of `name`."""
    return {
        "name": name,
        "kind": kind,
        **keys,
        "input": {"files": {"glob": str(case01 / f"{name}.tsv.gz")}},
        "schema": schema,
    }


@pytest.fixture
def good(case01: Path) -> dict:
    """A small valid config (as plain data): Object director, Source child, Filter regular."""
    return {
        "database": {
            "name": "qcase01",
            "partitioning": {"num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.01667},
        },
        "tables": [
            _files_table(
                case01,
                "Object",
                "director",
                {"qserv_json": str(case01 / "ingest" / "Object.json")},
                id="objectId",
                ra="ra_PS",
                dec="decl_PS",
            ),
            _files_table(
                case01,
                "Source",
                "child",
                {"ddl": str(case01 / "schema" / "Source.schema")},
                director="Object",
                director_key="objectId",
                ra="raObject",
                dec="declObject",
            ),
            _files_table(case01, "Filter", "regular", {"infer": True}),
        ],
        "qserv": {"controller": "http://127.0.0.1:25081", "czar": "mysql://qsmaster@127.0.0.1:4040/qcase01"},
        "staging": {"directory": "staging"},
    }


def write(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def problems(tmp_path: Path, data: dict) -> dict[str, str]:
    """The problems of an invalid config as {key path: message}; fails the test if it validates."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    return dict(info.value.problems)


# --------------------------------------------------------------------------------- the examples


def test_every_example_config_validates():
    files = sorted(CONFIGS.glob("*.yaml"))
    assert {f.name for f in files} >= {"demo.yaml", "dp02.yaml", "run1.2.yaml", "case01.yaml"}
    for f in files:
        cfg = load_config(f)
        assert isinstance(cfg, IngestConfig)
        assert cfg.source == f.resolve()
        assert any(isinstance(t, DirectorTable) for t in cfg.tables), f


def test_case01_example_matches_qservs_own_ingest_metadata(case01: Path, case01_tables):
    cfg = load_config(CONFIGS / "case01.yaml")
    db = json.loads((case01 / "ingest" / "database.json").read_text())
    p = cfg.database.partitioning
    assert (p.num_stripes, p.num_sub_stripes, p.overlap) == (
        db["num_stripes"],
        db["num_sub_stripes"],
        db["overlap"],
    )
    assert {t.name for t in cfg.tables} == set(case01_tables) - {"RefSrcMatch"}  # all but the match table
    for t in cfg.tables:
        body = json.loads(t.schema_.qserv_json.read_text())
        assert body["table"] == t.name
        assert bool(body["is_partitioned"]) == t.is_partitioned
        assert match_files(t.input.files) == [case01 / f"{t.name}.tsv.gz"]
        assert (t.input.files.format, t.input.files.compression) == ("tsv", "gzip")
        assert t.input.files.text_dialect == TextDialect.preset("mysql")
        if t.is_partitioned:
            assert body["director_key"] == (t.id if isinstance(t, DirectorTable) else t.director_key)
            assert (body["longitude_key"], body["latitude_key"]) == (t.ra, t.dec)
            assert body["director_table"] == ("" if isinstance(t, DirectorTable) else t.director)
            columns = [c["name"] for c in body["schema"]]
            assert {t.ra, t.dec} <= set(columns)
    assert isinstance(cfg.table("Source"), ChildTable)
    assert [t.kind for t in cfg.load_order()][:2] == ["director", "child"]
    assert cfg.table_overlap(cfg.table("Object")) == 0.01667 and cfg.table_overlap(cfg.table("Source")) == 0.0


def test_demo_example_targets_the_dp02_schema_and_local_stand_in():
    cfg = load_config(CONFIGS / "demo.yaml")
    obj, fs = cfg.table("Object"), cfg.table("ForcedSource")
    assert (obj.id, obj.ra, obj.dec) == ("objectId", "coord_ra", "coord_dec")
    assert obj.input.butler.dataset_type == "objectTable_tract"
    assert obj.schema_.felis.path().name == "dp02_dc2.yaml" and obj.schema_.felis.table == "Object"
    assert isinstance(fs, ChildTable) and (fs.director, fs.director_key) == ("Object", "objectId")
    assert any(isinstance(t, RegularTable) for t in cfg.tables)
    assert cfg.qserv.controller == "http://127.0.0.1:25081" and cfg.cluster.kind == "local"
    assert Path(obj.input.butler.repo).is_absolute()  # a relative repo path is resolved against configs/


# --------------------------------------------------------------------------------- located errors


def test_missing_director_columns_are_named(tmp_path, good):
    del good["tables"][0]["dec"]
    del good["tables"][0]["id"]
    found = problems(tmp_path, good)
    assert set(found) == {"tables[0].dec", "tables[0].id"}
    assert "missing required key" in found["tables[0].dec"] and "director table" in found["tables[0].dec"]
    assert "declination" in found["tables[0].dec"]


def test_unknown_keys_are_errors_at_every_level(tmp_path, good):
    good["colour"] = "red"
    good["database"]["partitioning"]["num_stipes"] = 3
    good["tables"][0]["input"]["files"]["dialetc"] = "csv"
    found = problems(tmp_path, good)
    assert set(found) == {"colour", "database.partitioning.num_stipes", "tables[0].input.files.dialetc"}
    assert "did you mean 'dialect'" in found["tables[0].input.files.dialetc"]
    assert "did you mean 'num_stripes'" in found["database.partitioning.num_stipes"]


def test_error_text_gives_file_line_and_key(tmp_path, good):
    good["tables"][1]["ra"] = "ra Object"
    path = write(tmp_path, good)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "ra Object" in text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path.resolve()}:{line}: tables[1].ra: 'ra Object' is not a valid column name" in str(info.value)


@pytest.mark.parametrize(
    ("partitioning", "key", "words"),
    [
        ({"num_stripes": 0}, "num_stripes", "greater than 0"),
        ({"num_sub_stripes": -3}, "num_sub_stripes", "greater than 0"),
        ({"num_stripes": "many"}, "num_stripes", "integer"),
        ({"overlap": -0.1}, "overlap", "greater than or equal to 0"),
        ({"overlap": 11}, "overlap", "less than or equal to 10"),
        ({"num_stripes": 340, "num_sub_stripes": 3, "overlap": 0.2}, "", "sub-stripe height"),
    ],
)
def test_bad_partitioning_numbers(tmp_path, good, partitioning, key, words):
    good["database"]["partitioning"].update(partitioning)
    found = problems(tmp_path, good)
    path = "database.partitioning" + (f".{key}" if key else "")
    assert list(found) == [path]
    assert words in found[path]


def test_director_overlap_override_is_checked_against_the_layout(tmp_path, good):
    good["tables"][0]["overlap"] = 0.5  # 85x12 sub-stripes are 0.176 deg high
    found = problems(tmp_path, good)
    assert "sub-stripe height" in found["tables[0].overlap"]


def test_child_whose_director_is_not_declared(tmp_path, good):
    good["tables"][1]["director"] = "Obj"
    found = problems(tmp_path, good)
    assert list(found) == ["tables[1].director"]
    assert "'Obj' is not a table of this config" in found["tables[1].director"]
    assert "Object" in found["tables[1].director"]  # the declared directors are listed


def test_child_whose_director_is_not_a_director(tmp_path, good):
    good["tables"][1]["director"] = "Filter"
    found = problems(tmp_path, good)
    assert "'Filter' is a regular table, not a director table" in found["tables[1].director"]


def test_unknown_kind_and_keys_foreign_to_a_kind(tmp_path, good):
    good["tables"][2]["kind"] = "dimension"
    good["tables"][0]["director"] = "Object"  # only a child has a director
    found = problems(tmp_path, good)
    assert "kind must be one of director, child, match, regular" in found["tables[2]"]
    assert "unknown key" in found["tables[0].director"]


def test_duplicate_table_names(tmp_path, good):
    good["tables"][2]["name"] = "Source"
    assert "declared twice" in problems(tmp_path, good)["tables[2].name"]


def test_include_and_exclude_together(tmp_path, good):
    good["tables"][2]["columns"] = {"include": ["filterId"], "exclude": ["photClam"]}
    found = problems(tmp_path, good)
    assert "include and exclude cannot be used together" in found["tables[2].columns"]


@pytest.mark.parametrize(
    ("columns", "words"),
    [
        ({"include": ["filterId"], "rename": {"photClam": "clam"}}, "not in include"),
        ({"exclude": ["photClam"], "rename": {"photClam": "clam"}}, "excluded"),
        ({"rename": {"a": "x", "b": "x"}}, "several columns to x"),
        ({"include": []}, "no column would be loaded"),
    ],
)
def test_bad_column_selections(tmp_path, good, columns, words):
    good["tables"][2]["columns"] = columns
    assert words in problems(tmp_path, good)["tables[2].columns"]


def test_key_column_removed_by_the_selection(tmp_path, good):
    good["tables"][0]["columns"] = {"exclude": ["decl_PS"]}
    assert "the dec column 'decl_PS' is removed" in problems(tmp_path, good)["tables[0]"]
    good["tables"][0]["columns"] = {"include": ["objectId", "ra_PS", "decl"], "rename": {"decl": "decl_PS"}}
    load_config(write(tmp_path, good))  # key columns name Qserv columns, i.e. after rename


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("database", "name"), "Object; DROP TABLE x"),
        (("tables", 0, "name"), "Object; DROP TABLE x"),
        (("tables", 0, "name"), "Object`"),
        (("tables", 0, "id"), "objectId) ; DELETE FROM Object; --"),
        (("tables", 2, "columns"), {"rename": {"filterId": "x`, y"}}),
        (("tables", 0, "name"), "1Object"),
        (("tables", 0, "name"), "Objéct"),
        (("database", "name"), "d" * 65),
    ],
)
def test_names_that_could_inject_sql_are_refused(tmp_path, good, where, value):
    node = good
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value
    found = problems(tmp_path, good)
    assert any("is not a valid" in msg for msg in found.values()), found


def test_name_length_rules_of_qserv(tmp_path, good):
    good["database"]["name"] = "d" * 30
    good["tables"][0]["name"] = "T" * 27  # 30 + 27 > 56: qservMeta.<db>__<table>__rows would exceed 64
    good["tables"][1]["director"] = "T" * 27
    found = problems(tmp_path, good)
    assert "at most 56" in found["tables[0].name"]
    with pytest.raises(ValueError):
        check_identifier("x" * 65)
    assert check_identifier("dp02_dc2") == "dp02_dc2"


def test_inputs_and_schemas_take_exactly_one_source(tmp_path, good, case01):
    good["tables"][0]["input"]["butler"] = {
        "repo": "/repo",
        "collections": "c",
        "dataset_type": "objectTable",
    }
    good["tables"][2]["schema"] = {"infer": True, "ddl": str(case01 / "schema" / "Filter.schema")}
    good["tables"][1]["schema"] = {}
    found = problems(tmp_path, good)
    assert "exactly one of butler or files (got butler, files)" in found["tables[0].input"]
    assert "exactly one of felis, qserv_json, ddl or infer" in found["tables[2].schema"]
    assert "(got none)" in found["tables[1].schema"]


def test_schema_files_and_felis_names_are_checked(tmp_path, good):
    good["tables"][0]["schema"] = {"felis": {"schema": "dp02_dcc"}}
    good["tables"][2]["schema"] = {"qserv_json": "nowhere/Filter.json"}
    found = problems(tmp_path, good)
    assert "felis schema 'dp02_dcc' not found" in found["tables[0].schema.felis"]
    assert "dp02_dc2" in found["tables[0].schema.felis"]  # the close match is suggested
    assert "file not found" in found["tables[2].schema.qserv_json"]
    good["tables"][0]["schema"] = {"felis": {"schema": "dp02_dc2"}}  # table defaults to "Object": exists
    good["tables"][2]["schema"] = {"felis": {"schema": "dp02_dc2"}}  # there is no "Filter" in dp02_dc2
    found = problems(tmp_path, good)
    assert list(found) == ["tables[2].schema.felis.table"]
    assert "no table 'Filter'" in found["tables[2].schema.felis.table"]


def test_file_inputs_resolve_relative_globs_and_infer_the_dialect(tmp_path, good):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.csv.gz").write_bytes(b"")
    (data / "f.parquet").write_bytes(b"")
    (data / "f.dat").write_bytes(b"")
    good["tables"][2]["input"] = {"files": {"glob": "data/*.csv.gz"}}
    cfg = load_config(write(tmp_path, good))
    files = cfg.table("Filter").input.files
    assert files.glob == str(data / "*.csv.gz")
    assert (files.format, files.compression, files.text_dialect) == ("csv", "gzip", TextDialect.preset("csv"))
    parquet = {"glob": "data/f.parquet", "dialect": {"fields_terminated_by": ";"}}
    good["tables"][2]["input"] = {"files": parquet}
    assert "only applies to csv/tsv" in problems(tmp_path, good)["tables[2].input.files"]
    good["tables"][2]["input"] = {"files": {"glob": "data/f.dat"}}
    assert "cannot infer the file format" in problems(tmp_path, good)["tables[2].input.files"]
    good["tables"][2]["input"] = {"files": {"glob": "data/none-*.tsv"}}
    assert "no file matches" in problems(tmp_path, good)["tables[2].input.files.glob"]


def test_butler_inputs(tmp_path, good):
    butler = {
        "repo": "repo",
        "collections": "2.2i/runs/DP0.2",
        "dataset_type": "objectTable_tract",
        "where": "skymap = :skymap AND tract IN (:tracts) AND band = 'r:x'",
        "bind": {"skymap": "DC2", "tracts": [3828]},
    }
    good["tables"][0]["input"] = {"butler": butler}
    cfg = load_config(write(tmp_path, good))
    b = cfg.table("Object").input.butler
    assert b.collections == ["2.2i/runs/DP0.2"] and b.repo == "repo"  # a bare name is a repository label
    good["tables"][0]["input"]["butler"] = dict(
        butler, repo="./repo", where="tract IN (:tracts) AND patch = :p", bind={"tracts": [1]}
    )
    found = problems(tmp_path, good)
    assert "where uses :p but bind has no such key" in found["tables[0].input.butler"]
    good["tables"][0]["input"]["butler"]["bind"] = {"tracts": [1], "p": 3}
    assert "needs it to interpret tract" in problems(tmp_path, good)["tables[0].input.butler"]
    good["tables"][0]["input"]["butler"]["skymap"] = "DC2"
    cfg = load_config(write(tmp_path, good))
    assert cfg.table("Object").input.butler.repo == str(tmp_path / "repo")


def test_charset_and_collation_must_agree(tmp_path, good):
    good["tables"][2]["charset_name"] = "utf8mb4"
    assert "set collation_name too" in problems(tmp_path, good)["tables[2].collation_name"]
    good["tables"][2]["collation_name"] = "latin1_swedish_ci"
    assert "does not belong to character set 'utf8mb4'" in problems(tmp_path, good)["tables[2]"]
    good["tables"][2]["collation_name"] = "utf8mb4_general_ci"
    cfg = load_config(write(tmp_path, good))
    assert cfg.table_charset(cfg.table("Filter")) == ("utf8mb4", "utf8mb4_general_ci")
    assert cfg.table_charset(cfg.table("Object")) == ("latin1", "latin1_general_ci")


def test_qserv_settings(tmp_path, good):
    good["qserv"].update(
        controller="ftp://u:pw@host",
        czar="mysql://host:4040",
        api_version=16,
        max_transactions=9000,
        concurrency={"total": 2, "per_worker": 4},
    )
    found = problems(tmp_path, good)
    assert "http:// or https://" in found["qserv.controller"] and "pw" not in found["qserv.controller"]
    assert "user and host are required" in found["qserv.czar"]
    assert "greater than or equal to 54" in found["qserv.api_version"]
    assert "less than or equal to 8192" in found["qserv.max_transactions"]
    assert "cannot exceed total" in found["qserv.concurrency"]


def test_chunks_per_transaction_is_auto_or_a_positive_number(tmp_path, good):
    good["qserv"].pop("max_chunks_per_transaction", None)
    assert load_config(write(tmp_path, good)).qserv.max_chunks_per_transaction == "auto"
    good["qserv"]["max_chunks_per_transaction"] = 7
    assert load_config(write(tmp_path, good)).qserv.max_chunks_per_transaction == 7
    for bad in (0, "many"):
        good["qserv"]["max_chunks_per_transaction"] = bad
        assert "above 0, or auto" in problems(tmp_path, good)["qserv.max_chunks_per_transaction"]


def test_staging_defaults_and_relative_paths(tmp_path, good):
    cfg = load_config(write(tmp_path, good))
    assert cfg.staging.directory == tmp_path / "staging"
    assert cfg.staging.ledger == tmp_path / "staging" / "ledger.sqlite"
    assert (cfg.staging.shard_compression, cfg.staging.shard_compression_level) == ("none", None)
    good["staging"] = {"shard_compression": "zstd"}
    assert load_config(write(tmp_path, good)).staging.shard_compression_level == 3
    good["staging"] = {"shard_compression": "snappy", "shard_compression_level": 5}
    assert "applies only to zstd" in problems(tmp_path, good)["staging"]


# --------------------------------------------------------------------------------- cluster


def test_sizes_and_quantities():
    assert parse_bytes("4GiB") == 4 * 2**30 == parse_bytes("4Gi")
    assert parse_bytes("4GB") == 4 * 10**9 == parse_bytes("4 G")
    assert parse_bytes("512MiB") == 512 * 2**20 and parse_bytes(1000) == 1000
    for bad in ("4 lightyears", "-1GiB", "0", True, "GiB"):
        with pytest.raises(ValueError):
            parse_bytes(bad)


def test_local_cluster_memory_is_parsed(tmp_path, good):
    good["cluster"] = {"kind": "local", "workers": 3, "memory_per_worker": "1.5GiB"}
    cfg = load_config(write(tmp_path, good))
    assert cfg.cluster.memory_per_worker == int(1.5 * 2**30) and cfg.cluster.worker_count == 3
    good["cluster"] = {"kind": "local", "memory_per_worker": "lots"}
    assert "is not a size" in problems(tmp_path, good)["cluster.memory_per_worker"]
    good["cluster"] = {"kind": "scheduler"}
    assert "needs scheduler_address" in problems(tmp_path, good)["cluster"]


def test_kubernetes_cluster(tmp_path, good):
    k8s = {
        "image": "ghcr.io/x/qdask:1",
        "namespace": "ingest",
        "name": "qdask-dp02",
        "workers": 4,
        "worker": {"cpu": "500m", "memory": "4GiB"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}],
        "env": [{"name": "A", "value": "1"}, {"name": "B", "secret": {"name": "s3", "key": "id"}}],
    }
    good["cluster"] = {"kind": "kubernetes", "kubernetes": k8s}
    cfg = load_config(write(tmp_path, good))
    kc = cfg.cluster.kubernetes
    assert kc.worker.memory == "4Gi" and kc.worker.memory_bytes == 4 * 2**30 and kc.worker.cores == 0.5
    assert cfg.cluster.worker_memory_limit == int(0.9 * 4 * 2**30) and cfg.cluster.worker_count == 4

    def bad(**changes):
        good["cluster"] = {"kind": "kubernetes", "kubernetes": {**copy.deepcopy(k8s), **changes}}
        return problems(tmp_path, good)

    assert "RFC 1123" in bad(name="QDask")["cluster.kubernetes.name"]
    assert "at most 37" in bad(name="q" * 40)["cluster.kubernetes.name"]
    assert "RFC 1123" in bad(namespace="in_gest")["cluster.kubernetes.namespace"]
    assert "not both" in bad(adaptive={"minimum": 1, "maximum": 8})["cluster.kubernetes"]
    assert (
        "minimum (9) exceeds maximum (8)"
        in bad(workers=None, adaptive={"minimum": 9, "maximum": 8})["cluster.kubernetes.adaptive"]
    )
    assert "CPU quantity" in bad(worker={"cpu": "two", "memory": "4Gi"})["cluster.kubernetes.worker.cpu"]
    assert "exactly one of value or secret" in bad(env=[{"name": "A"}])["cluster.kubernetes.env[0]"]
    assert (
        "takes no value"
        in bad(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}])[
            "cluster.kubernetes.tolerations[0]"
        ]
    )
    good["cluster"] = {"kind": "kubernetes", "memory_per_worker": "8GiB", "kubernetes": k8s}
    assert "exceeds the worker pod's memory" in problems(tmp_path, good)["cluster"]
    good["cluster"] = {"kind": "kubernetes"}
    assert "needs a kubernetes section" in problems(tmp_path, good)["cluster"]


# --------------------------------------------------------------------------------- overrides


def test_command_line_overrides(tmp_path, good, monkeypatch):
    cfg = load_config(write(tmp_path, good))
    monkeypatch.chdir(tmp_path)
    new = cfg.with_overrides(
        workers=8,
        controller="https://ctl:25081/",
        czar="mysql://u@czar:4040/x",
        staging="elsewhere",
        scheduler="tcp://sched:8786",
    )
    assert new.cluster.workers == 8 and new.cluster.kind == "scheduler"
    assert new.cluster.scheduler_address == "tcp://sched:8786"
    assert new.qserv.controller == "https://ctl:25081" and new.qserv.czar.host == "czar"
    assert new.staging.directory == tmp_path / "elsewhere"
    assert new.staging.ledger == tmp_path / "elsewhere" / "ledger.sqlite"
    assert cfg.cluster.workers == 2 and cfg.qserv.controller == "http://127.0.0.1:25081"  # original intact
    with pytest.raises(ConfigError) as info:
        cfg.with_overrides(controller="localhost:25081", workers=0)
    found = dict(info.value.problems)
    assert "(from --controller)" in found["qserv.controller"]
    assert "(from --workers)" in found["cluster.workers"]


def test_workers_override_replaces_adaptive_kubernetes_scaling(tmp_path, good):
    good["cluster"] = {
        "kind": "kubernetes",
        "kubernetes": {"image": "i", "adaptive": {"minimum": 1, "maximum": 9}},
    }
    cfg = load_config(write(tmp_path, good))
    assert cfg.cluster.worker_count == 9
    new = cfg.with_overrides(workers=24)
    assert new.cluster.kubernetes.adaptive is None and new.cluster.worker_count == 24
    assert cfg.with_overrides(cluster="local").cluster.worker_count == 2


# --------------------------------------------------------------------------------- secrets


def test_auth_keys_come_from_the_environment_and_never_show(tmp_path, good, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", SECRET)
    monkeypatch.setenv("MY_ADMIN_KEY", ADMIN_SECRET)
    monkeypatch.setenv("CZAR_PW", "czar-pw-31d8")
    good["qserv"].update(
        admin_auth_key_env="MY_ADMIN_KEY",
        czar_password_env="CZAR_PW",
        czar="mysql://qsmaster:dsn-pw-a9f0@127.0.0.1:4040/qcase01",
    )
    cfg = load_config(write(tmp_path, good))
    assert cfg.qserv.auth_key.get_secret_value() == SECRET
    assert cfg.qserv.admin_auth_key.get_secret_value() == ADMIN_SECRET
    assert cfg.qserv.czar_password.get_secret_value() == "czar-pw-31d8"
    assert cfg.qserv.czar.password.get_secret_value() == "dsn-pw-a9f0"
    shown = [
        repr(cfg),
        str(cfg),
        repr(cfg.qserv),
        str(cfg.qserv),
        cfg.model_dump_json(),
        cfg.to_yaml(),
        json.dumps(cfg.model_dump(mode="json")),
        str(cfg.model_dump()),
        str(cfg.display_dict()),
        repr(cfg.with_overrides(workers=3)),
    ]
    for text in shown:
        for secret in (SECRET, ADMIN_SECRET, "czar-pw-31d8", "dsn-pw-a9f0"):
            assert secret not in text
    assert "********** (from $QSERV_AUTH_KEY)" in cfg.to_yaml()
    assert "mysql://qsmaster:***@127.0.0.1:4040/qcase01" in cfg.to_yaml()


def test_auth_key_is_read_lazily_and_empty_when_unset(tmp_path, good, monkeypatch):
    monkeypatch.delenv("QSERV_AUTH_KEY", raising=False)
    cfg = load_config(write(tmp_path, good))
    monkeypatch.setenv("QSERV_AUTH_KEY", SECRET)  # set after loading: read on first use
    assert cfg.qserv.auth_key.get_secret_value() == SECRET
    monkeypatch.delenv("QSERV_AUTH_KEY")
    fresh = load_config(write(tmp_path, good))
    assert fresh.qserv.auth_key.get_secret_value() == ""  # Qserv's default key is the empty string
    assert "(unset: $QSERV_AUTH_KEY" in fresh.to_yaml()


def test_a_bad_dsn_does_not_echo_its_password(tmp_path, good):
    good["qserv"]["czar"] = "mysql://u:pw-7c1e@host:notaport/db"
    found = problems(tmp_path, good)
    assert "port" in found["qserv.czar"] and "pw-7c1e" not in found["qserv.czar"]


# --------------------------------------------------------------------------------- the command


def test_plan_check_prints_the_resolved_config(tmp_path, good, monkeypatch, case01):
    monkeypatch.setenv("QSERV_AUTH_KEY", SECRET)
    result = CliRunner().invoke(main, ["plan", str(CONFIGS / "case01.yaml"), "--check"])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    resolved = yaml.safe_load(result.stdout)
    assert resolved["database"]["name"] == "qcase01"
    assert resolved["tables"][0]["input"]["files"]["glob"] == str(case01 / "Object.tsv.gz")
    assert resolved["qserv"]["auth_key"] == "********** (from $QSERV_AUTH_KEY)"
    assert "valid" in result.stderr
    plain = CliRunner().invoke(main, ["plan", str(CONFIGS / "case01.yaml")])  # the units, not the config
    assert plain.exit_code == 0, plain.output
    assert "qdask plan: database qcase01" in plain.output and "Science_Ccd_Exposure" in plain.output
    assert SECRET not in plain.output


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["tables"][0].pop("ra"), "tables[0].ra: missing required key"),
        (lambda d: d["tables"][1].update(director="Nope"), "tables[1].director: 'Nope' is not a table"),
        (lambda d: d["database"]["partitioning"].update(num_stripes=-1), "database.partitioning.num_stripes"),
        (lambda d: d["qserv"].update(auth_key="inline"), "qserv.auth_key: unknown key"),
        (
            lambda d: d["tables"][2].update(columns={"include": ["a"], "exclude": ["b"]}),
            "include and exclude",
        ),
        (lambda d: d["tables"][2].update(name="Filter; DROP TABLE x"), "is not a valid name"),
        (lambda d: d["tables"][2].update(name="_Filter"), "refuses identifiers that start with an _"),
        (lambda d: d["database"].update(name="_q"), "refuses identifiers that start with an _"),
    ],
)
def test_plan_check_fails_with_a_located_message(tmp_path, good, monkeypatch, change, expected):
    monkeypatch.setenv("QSERV_AUTH_KEY", SECRET)
    change(good)
    path = write(tmp_path, good)
    result = CliRunner().invoke(main, ["plan", str(path), "--check"])
    assert result.exit_code == 2
    assert f"{path.resolve()}:" in result.stderr and expected in result.stderr
    assert result.stdout == "" and SECRET not in result.output


def test_plan_check_reports_yaml_syntax_errors_with_their_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("database:\n  name: x\n tables: [\n")
    result = CliRunner().invoke(main, ["plan", str(path), "--check"])
    assert result.exit_code == 2 and "not valid YAML" in result.stderr
    assert f"{path.resolve()}:3" in result.stderr or f"{path}:3" in result.stderr


def test_config_from_memory_and_path_checks(tmp_path, good):
    good["tables"][2]["input"] = {"files": {"glob": "later/*.tsv"}}  # files that do not exist yet
    with pytest.raises(ConfigError) as info:
        config_from_dict(good, tmp_path)
    assert "no file matches" in dict(info.value.problems)["tables[2].input.files.glob"]
    cfg = config_from_dict(good, tmp_path, check_paths=False)
    assert cfg.table("Filter").input.files.glob == str(tmp_path / "later" / "*.tsv")
    assert cfg.staging.directory == tmp_path / "staging" and cfg.source is None
    assert cfg.with_overrides(workers=5).cluster.workers == 5  # overrides keep the relaxed path checks


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path, good):
    path = write(tmp_path, good)
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == "ra: ra_PS")
    lines.insert(at + 1, lines[at].replace("ra_PS", "ra_SG"))  # same indentation: same mapping
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [(key, message)] = info.value.problems
    assert key == "tables[0].ra" and "key given twice" in message
    line = at + 2
    assert f"{path.resolve()}:{line}: tables[0].ra" in str(info.value)


def test_a_table_that_is_not_a_mapping(tmp_path, good):
    good["tables"].append("Object")
    assert "expected a table" in problems(tmp_path, good)["tables[3]"]


def test_a_duplicate_policy_on_a_director_declared_with_repeated_ids_is_refused(tmp_path):
    from tests.config.test_keys_honoured import tiny

    raw = tiny(tmp_path)
    raw["tables"][0]["unique_primary_key"] = False
    config_from_dict(raw, tmp_path)  # repeated ids declared: accepted
    raw["tables"][0]["policies"] = {"duplicate_ids": "quarantine"}
    with pytest.raises(ConfigError, match="duplicate_ids applies to a director with unique ids"):
        config_from_dict(raw, tmp_path)

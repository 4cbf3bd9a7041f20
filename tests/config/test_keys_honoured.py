"""Every key configs/README.md documents does what it says, or is refused by the config itself.

One test per key, each running the smallest real thing that observes the key: the request Qserv receives
(a recording HTTP server), a stage's output on disk, the Dask cluster it starts, the manifest it would
send to Kubernetes, a connection to a real server. Each would fail if the key were read and then ignored
(the default would show instead). `test_every_documented_key_has_a_test` holds the list to the README.
"""

from __future__ import annotations

import copy
import io
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from distributed import Client, LocalCluster
from page_cache import cached_bytes
from rich.console import Console

from qdask import direct_io, run_settings
from qdask.cluster import ClusterError, open_client
from qdask.config import ConfigError, config_from_dict
from qdask.demo import make_demo_repo
from qdask.ingest import Ingest, IngestError, cluster_spec, czar_for, fingerprint, load_settings, qserv_client
from qdask.kube import spec as kube_spec
from qdask.ledger import REGULAR_CHUNK, Ledger
from qdask.qserv import QservTransportError
from qdask.stages.load import Loader, plan_transactions
from qdask.stages.plan import discover_units, plan_ingest
from qdask.stages.register import register_catalog
from tests.faults.conftest import write_case01
from tests.qserv.fakeqserv import FakeQserv, Slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "configs" / "README.md"
LAYOUT = {"num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.01667}

#: key → the tests that show it honoured (filled by `@honours`).
HONOURED: dict[str, list[str]] = {}


def honours(*keys: str) -> Callable:
    def mark(test: Callable) -> Callable:
        for key in keys:
            HONOURED.setdefault(key, []).append(test.__name__)
        return test

    return mark


def documented_keys() -> set[str]:
    """The leaf keys of the README's "Every key" block, as dotted paths (table keys as `tables.KEY`)."""
    block = README.read_text().split("## Every key", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    paths: list[str] = []
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        m = re.match(r"^(\s*)(- )?([a-z_][a-z0-9_]*):(.*)$", line)
        if not m:
            continue
        indent = len(m.group(1)) + (2 if m.group(2) else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [m.group(3)])
        if not m.group(4).strip().startswith("{...}"):  # `input: {...}` refers to its own section
            paths.append(path)
        stack.append((indent, m.group(3)))
    return {p for p in paths if not any(q.startswith(p + ".") for q in paths)}


def test_every_documented_key_has_a_test():
    documented = documented_keys()
    assert len(documented) > 70
    assert sorted(documented - set(HONOURED)) == []  # a documented key nothing shows honoured
    assert sorted(set(HONOURED) - documented) == []  # a tested key the README does not document


# -- shared pieces --------------------------------------------------------------------------------------


def write_inputs(
    root: Path, *, rows: int = 300, duplicates: int = 0, orphans: int = 0, invalid: int = 0
) -> Path:
    """A director (d.parquet), its child (c.parquet) and a regular table (r.parquet) in `root`/in."""
    data = root / "in"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    ids = np.arange(1, rows + 1, dtype=np.int64)
    ids[:duplicates] = ids[duplicates : 2 * duplicates]
    ra, dec = rng.uniform(10, 14, rows), rng.uniform(-2, 2, rows)
    ra[:invalid] = np.nan
    pq.write_table(
        pa.table({"id": ids, "ra": ra, "dec": dec, "flux": rng.normal(size=rows)}), data / "d.parquet"
    )
    owners = np.repeat(np.arange(1, rows + 1, dtype=np.int64), 2)
    owners[:orphans] = 10**9 + np.arange(orphans)
    pq.write_table(
        pa.table(
            {
                "cid": np.arange(2 * rows, dtype=np.int64),
                "did": owners,
                "ra": np.repeat(ra, 2),
                "dec": np.repeat(dec, 2),
            }
        ),
        data / "c.parquet",
    )
    pq.write_table(pa.table({"rid": np.arange(5, dtype=np.int64), "name": list("abcde")}), data / "r.parquet")
    return data


def tiny(root: Path, **inputs) -> dict:
    """A config (plain data) over `write_inputs`: director D, child C, regular R, schemas inferred."""
    data = write_inputs(root, **inputs)

    def files(name: str) -> dict:
        return {"files": {"glob": str(data / name)}}

    return {
        "database": {"name": "keys", "partitioning": dict(LAYOUT)},
        "tables": [
            {
                "name": "D",
                "kind": "director",
                "id": "id",
                "ra": "ra",
                "dec": "dec",
                "input": files("d.parquet"),
                "schema": {"infer": True},
            },
            {
                "name": "C",
                "kind": "child",
                "director": "D",
                "director_key": "did",
                "ra": "ra",
                "dec": "dec",
                "id": "cid",
                "input": files("c.parquet"),
                "schema": {"infer": True},
            },
            {
                "name": "R",
                "kind": "regular",
                "id": "rid",
                "input": files("r.parquet"),
                "schema": {"infer": True},
            },
        ],
        "qserv": {"controller": "http://127.0.0.1:9", "czar": "mysql://qsmaster@127.0.0.1:9/keys"},
        "staging": {"directory": str(root / "staging")},
        "cluster": {"kind": "local", "workers": 1, "memory_per_worker": "1GiB"},
    }


def config(raw: dict, root: Path):
    return config_from_dict(copy.deepcopy(raw), root)


@pytest.fixture(scope="module")
def client():
    """One small in-process Dask cluster for the staging runs of this module."""
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c


def stage(raw: dict, root: Path, client: Client) -> Ingest:
    """Run the staging stages of `raw` on `client` (nothing is sent to Qserv); returns the driver."""
    ingest = Ingest(config(raw, root), client=client, console=Console(file=io.StringIO()))
    ingest.run(stage_only=True)
    return ingest


def staged_files(ingest: Ingest, table: str) -> list:
    return ingest.ledger.chunk_files(table=table)


@pytest.fixture
def fake():
    server = FakeQserv().start()
    server.route("GET", "/replication/config", {"config": {"databases": []}})
    server.route("POST", "/ingest/database", {"database": {}})
    server.route("POST", "/ingest/table", {"database": {}})
    try:
        yield server
    finally:
        server.stop()


def registered(raw: dict, root: Path, fake: FakeQserv, monkeypatch=None) -> tuple[dict, dict[str, dict]]:
    """Register `raw`'s catalog with the recording server: the database body, and each table's body."""
    raw = copy.deepcopy(raw)
    raw["qserv"]["controller"] = fake.url
    cfg = config(raw, root)
    fake.route("GET", f"/ingest/table/{cfg.database.name}", {"tables": []})
    with qserv_client(cfg) as qserv:
        register_catalog(qserv, cfg, {s.name: s.qserv_schema for s in plan_ingest(cfg)})
    database = fake.calls("POST", "/ingest/database")[0].json
    tables = {r.json["table"]: r.json for r in fake.calls("POST", "/ingest/table")}
    return database, tables


# -- database -------------------------------------------------------------------------------------------


@honours("database.name", "database.partitioning.num_stripes", "database.partitioning.num_sub_stripes")
def test_database_name_and_layout_are_what_qserv_registers(tmp_path, fake):
    raw = tiny(tmp_path)
    raw["database"] = {
        "name": "other_db",
        "partitioning": {"num_stripes": 340, "num_sub_stripes": 3, "overlap": 0},
    }
    database, tables = registered(raw, tmp_path, fake)
    assert (database["database"], database["num_stripes"], database["num_sub_stripes"]) == (
        "other_db",
        340,
        3,
    )
    assert {t["database"] for t in tables.values()} == {"other_db"}


@honours("database.partitioning.overlap")
def test_the_database_overlap_makes_overlap_copies(tmp_path, client):
    raw = tiny(tmp_path)
    with_overlap = stage(raw, tmp_path / "a", client)
    assert any(f.overlap and f.rows for f in staged_files(with_overlap, "D"))
    raw["database"]["partitioning"]["overlap"] = 0.0
    raw["staging"]["directory"] = str(tmp_path / "b" / "staging")
    without = stage(raw, tmp_path / "b", client)
    assert not any(f.overlap and f.rows for f in staged_files(without, "D"))


@honours("tables.overlap")
def test_a_directors_own_overlap_wins_over_the_databases(tmp_path, client):
    raw = tiny(tmp_path)
    raw["tables"][0]["overlap"] = 0.0
    ingest = stage(raw, tmp_path, client)
    assert staged_files(ingest, "D") and not any(f.overlap and f.rows for f in staged_files(ingest, "D"))


@honours("database.auto_build_director_index")
def test_auto_build_director_index_is_sent_with_the_database(tmp_path, fake):
    raw = tiny(tmp_path)
    raw["database"]["auto_build_director_index"] = False
    database, _ = registered(raw, tmp_path, fake)
    assert database["auto_build_secondary_index"] == 0


@honours("database.charset_name", "database.collation_name")
def test_the_database_charset_is_every_tables_default(tmp_path, fake):
    raw = tiny(tmp_path)
    raw["database"].update(charset_name="utf8mb4", collation_name="utf8mb4_unicode_ci")
    _, tables = registered(raw, tmp_path, fake)
    assert {(t["charset_name"], t["collation_name"]) for t in tables.values()} == {
        ("utf8mb4", "utf8mb4_unicode_ci")
    }


@honours("tables.charset_name", "tables.collation_name", "tables.unique_primary_key")
def test_a_tables_charset_and_unique_key_are_registered(tmp_path, fake):
    raw = tiny(tmp_path)
    raw["tables"][2].update(charset_name="utf8mb4", collation_name="utf8mb4_bin", unique_primary_key=False)
    _, tables = registered(raw, tmp_path, fake)
    assert (tables["R"]["charset_name"], tables["R"]["collation_name"]) == ("utf8mb4", "utf8mb4_bin")
    assert tables["R"]["unique_primary_key"] == 0 and "unique_primary_key" not in tables["D"]
    assert tables["D"]["charset_name"] == "latin1"


@honours(
    "tables.name",
    "tables.kind",
    "tables.id",
    "tables.ra",
    "tables.dec",
    "tables.director",
    "tables.director_key",
)
def test_table_names_kinds_and_keys_are_what_qserv_registers(tmp_path, fake):
    raw = tiny(tmp_path)
    raw["tables"][0]["name"] = "Obj"
    raw["tables"][1]["director"] = "Obj"
    _, tables = registered(raw, tmp_path, fake)
    assert tables["Obj"]["is_partitioned"] == 1 and tables["R"]["is_partitioned"] == 0
    assert (tables["Obj"]["director_key"], tables["Obj"]["longitude_key"], tables["Obj"]["latitude_key"]) == (
        "id",
        "ra",
        "dec",
    )
    assert (tables["C"]["director_table"], tables["C"]["director_key"]) == ("Obj", "did")


def with_match(root: Path, raw: dict, separations: np.ndarray) -> dict:
    """`raw` plus a second director E and a match table M pairing D's rows with E's, `separations` degrees
    apart (eastwards), near D's chunk edges so that pairs split between chunks."""
    data = root / "in"
    d = pq.read_table(data / "d.parquet")
    n = d.num_rows
    ra1, dec1 = d["ra"].to_numpy(), d["dec"].to_numpy()
    ra2 = ra1 + separations[:n] / np.cos(np.radians(dec1))
    pq.write_table(
        pa.table({"eid": np.arange(n, dtype=np.int64) + 5000, "era": ra2, "edec": dec1}), data / "e.parquet"
    )
    pq.write_table(
        pa.table(
            {
                "did": d["id"],
                "eid": np.arange(n, dtype=np.int64) + 5000,
                "ra_d": ra1,
                "dec_d": dec1,
                "ra_e": ra2,
                "dec_e": dec1,
                "pflag": np.zeros(n, np.int32),
            }
        ),
        data / "m.parquet",
    )
    raw = copy.deepcopy(raw)
    raw["tables"].insert(
        1,
        {"name": "E", "kind": "director", "id": "eid", "ra": "era", "dec": "edec",
         "input": {"files": {"glob": str(data / "e.parquet")}}, "schema": {"infer": True}},
    )  # fmt: skip
    raw["tables"].append(
        {"name": "M", "kind": "match", "director": "D", "director_key": "did", "ra": "ra_d", "dec": "dec_d",
         "director2": "E", "director_key2": "eid", "ra2": "ra_e", "dec2": "dec_e", "flag": "pflag",
         "input": {"files": {"glob": str(data / "m.parquet")}}, "schema": {"infer": True}},
    )  # fmt: skip
    return raw


@honours("tables.director2", "tables.director_key2", "tables.flag", "tables.ang_sep")
def test_a_match_tables_directors_flag_and_separation_are_what_qserv_registers(tmp_path, fake):
    raw = with_match(tmp_path, tiny(tmp_path), np.full(300, 0.001))
    _, tables = registered(raw, tmp_path, fake)
    m = tables["M"]
    assert (m["director_table"], m["director_key"], m["director_table2"], m["director_key2"]) == (
        "D",
        "did",
        "E",
        "eid",
    )
    assert (m["flag"], m["ang_sep"], m["is_partitioned"]) == (
        "pflag",
        LAYOUT["overlap"],
        1,
    )  # default: overlap
    assert "latitude_key" not in m and "longitude_key" not in m  # Qserv refuses them on a match table
    raw["tables"][-1]["ang_sep"] = 0.005
    _, tables = registered(raw, tmp_path / "again", fake)
    assert tables["M"]["ang_sep"] == 0.005


@honours("tables.ra2", "tables.dec2", "tables.flag")
def test_a_match_pair_is_stored_with_each_side_as_sph_partition_matches_stores_it(tmp_path, client):
    """Each side placed by its own position columns: split pairs twice (flags 1 and 2), others once (3)."""
    from qdask.sky import Chunker
    from tests.sky.test_matches import model

    separations = np.random.default_rng(3).uniform(0, 0.015, 300)
    raw = with_match(tmp_path, tiny(tmp_path), separations)
    ingest = stage(raw, tmp_path, client)
    m = pq.read_table(tmp_path / "in" / "m.parquet").to_pydict()
    pairs = [
        ((a, b), (c, d)) for a, b, c, d in zip(m["ra_d"], m["dec_d"], m["ra_e"], m["dec_e"], strict=True)
    ]
    expected = Counter(
        (m["did"][i], m["eid"][i], chunk, flag) for i, chunk, _, flag in model(Chunker(**LAYOUT), pairs)
    )
    staged: Counter = Counter()
    for f in staged_files(ingest, "M"):
        text = Path(f.path).read_text()
        for line in text.splitlines():
            fields = line.split("\t")
            staged[(int(fields[0]), int(fields[1]), int(fields[-2]), int(fields[6]))] += 1
    assert staged == expected
    assert {flag for *_, flag in expected} == {1, 2, 3}


@honours("tables.ang_sep")
def test_a_pair_farther_apart_than_ang_sep_stops_the_run_naming_it(tmp_path, client):
    separations = np.full(300, 0.001)
    separations[17] = 0.004
    raw = with_match(tmp_path, tiny(tmp_path), separations)
    raw["tables"][-1]["ang_sep"] = 0.005  # the pair at 0.004 deg is within it
    assert stage(raw, tmp_path, client).ledger.chunk_files(table="M")
    raw["tables"][-1]["ang_sep"] = 0.002
    raw["staging"]["directory"] = str(tmp_path / "narrow")
    with pytest.raises(IngestError, match=r"row 17: .* more than the overlap radius 0.002"):
        stage(raw, tmp_path, client)


@honours("tables.id")
def test_a_childs_own_id_is_checked_unique_by_verify(tmp_path):
    from qdask.stages.verify_catalog import table_to_verify

    raw = tiny(tmp_path)
    setups = {s.name: s for s in plan_ingest(config(raw, tmp_path))}
    assert table_to_verify(setups["C"]).key == "cid" and table_to_verify(setups["R"]).key == "rid"


# -- inputs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_repo(tmp_path_factory.mktemp("keys-butler") / "repo", tracts=2, rows_per_patch=5)


def butler_table(demo, **butler) -> dict:
    spec = {
        "repo": str(demo.root),
        "collections": demo.collection,
        "dataset_type": "forcedSourceTable",
        "skymap": "DC2",
        **butler,
    }
    return {"name": "F", "kind": "regular", "input": {"butler": spec}, "schema": {"infer": True}}


def units_of(table: dict, root: Path) -> list:
    raw = tiny(root)
    raw["tables"] = [table]
    return discover_units(config(raw, root).tables[0])


@honours("input.butler.repo", "input.butler.dataset_type")
def test_butler_units_come_from_that_repository_and_dataset_type(tmp_path, demo):
    patches = units_of(butler_table(demo), tmp_path)
    tracts = units_of(butler_table(demo, dataset_type="objectTable_tract"), tmp_path)
    assert (len(patches), len(tracts)) == (8, 2)
    assert all(str(demo.root) in u.uri for u in patches + tracts)


@honours("input.butler.collections")
def test_butler_collections_are_searched(tmp_path, demo):
    with pytest.raises(Exception, match="no/such/run"):
        units_of(butler_table(demo, collections=["no/such/run"]), tmp_path)


@honours("input.butler.where", "input.butler.bind")
def test_butler_where_and_bind_select_units(tmp_path, demo):
    table = butler_table(demo, where="tract = :t AND patch IN (:p)", bind={"t": 3829, "p": [0, 3]})
    assert sorted((u.data_id["tract"], u.data_id["patch"]) for u in units_of(table, tmp_path)) == [
        (3829, 0),
        (3829, 3),
    ]


@honours("input.butler.skymap")
def test_butler_skymap_is_the_default_for_tract_values(tmp_path, demo):
    assert len(units_of(butler_table(demo, where="tract = 3828"), tmp_path)) == 4
    with pytest.raises(Exception, match="NoSuchMap"):
        units_of(butler_table(demo, where="tract = 3828", skymap="NoSuchMap"), tmp_path)


@honours("input.butler.instrument")
def test_butler_instrument_is_the_default_for_instrument_values(tmp_path, demo):
    table = butler_table(demo, dataset_type="ccdVisitTable", skymap=None, instrument="LSSTCam-imSim")
    assert len(units_of(table, tmp_path)) == 1
    with pytest.raises(Exception, match="NoSuchCam"):
        units_of(
            butler_table(demo, dataset_type="ccdVisitTable", skymap=None, instrument="NoSuchCam"), tmp_path
        )


def text_table(root: Path, name: str, text: str | bytes, **files) -> dict:
    path = root / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    (root / "t.sql").write_text("CREATE TABLE T (id INT NOT NULL, band VARCHAR(16))")
    return {
        "name": "T",
        "kind": "regular",
        "input": {"files": {"glob": str(path), **files}},
        "schema": {"ddl": str(root / "t.sql")},
    }


def rows_of(table: dict, root: Path) -> list[dict]:
    from qdask.stages.partition import read_input

    raw = tiny(root)
    raw["tables"] = [table]
    [setup] = plan_ingest(config(raw, root))
    return [
        r
        for u in setup.units
        for b in read_input(u, setup.input_schema, ["id", "band"])
        for r in b.to_pylist()
    ]


@honours("input.files.glob")
def test_files_glob_selects_the_units(tmp_path):
    for name in ("a.tsv", "b.tsv", "c.csv"):
        (tmp_path / name).write_text("1\tg\n")
    table = text_table(tmp_path, "a.tsv", "1\tg\n")
    table["input"]["files"]["glob"] = str(tmp_path / "*.tsv")
    assert sorted(Path(u.uri).name for u in units_of(table, tmp_path)) == ["a.tsv", "b.tsv"]


@honours("input.files.format")
def test_files_format_decides_how_lines_split(tmp_path):
    assert rows_of(text_table(tmp_path, "t.txt", "id,band\r\n1,g\r\n", format="csv"), tmp_path) == [
        {"id": 1, "band": "g"}
    ]


@honours("input.files.compression")
def test_files_compression_gzip_reads_a_file_without_a_gz_name(tmp_path):
    import gzip

    table = text_table(tmp_path, "t.tsv", gzip.compress(b"3\ti\n"), compression="gzip")
    assert rows_of(table, tmp_path) == [{"id": 3, "band": "i"}]


def dialect_rows(root: Path, text: str | bytes, **dialect) -> list[dict]:
    """The rows of a one-file tsv table read with `dialect` (keys of `input.files.dialect`)."""
    return rows_of(text_table(root, "t.tsv", text, dialect=dialect), root)


@honours("input.files.dialect.preset")
def test_dialect_preset_csv_reads_rfc_4180(tmp_path):
    assert dialect_rows(tmp_path, 'id,band\r\n1,"g,h"\r\n', preset="csv") == [{"id": 1, "band": "g,h"}]


@honours("input.files.dialect.fields_terminated_by")
def test_dialect_fields_terminated_by_splits_fields(tmp_path):
    assert dialect_rows(tmp_path, "2|r\n", fields_terminated_by="|") == [{"id": 2, "band": "r"}]


@honours("input.files.dialect.fields_enclosed_by")
def test_dialect_fields_enclosed_by_keeps_a_terminator_inside_a_field(tmp_path):
    assert dialect_rows(tmp_path, '3\t"a\tb"\n', fields_enclosed_by='"') == [{"id": 3, "band": "a\tb"}]


@honours("input.files.dialect.fields_optionally_enclosed")
def test_dialect_fields_optionally_enclosed_is_kept_in_the_load_data_clause(tmp_path):
    """OPTIONALLY reads the same (as in LOAD DATA); the key is kept, so the resolved dialect says it."""
    table = text_table(
        tmp_path, "t.tsv", '3\t"b"\n', dialect={"fields_enclosed_by": '"', "fields_optionally_enclosed": True}
    )
    raw = tiny(tmp_path)
    raw["tables"] = [table]
    dialect = config(raw, tmp_path).tables[0].input.files.text_dialect
    assert "OPTIONALLY ENCLOSED BY" in dialect.load_data_options()
    assert rows_of(table, tmp_path) == [{"id": 3, "band": "b"}]


@honours("input.files.dialect.fields_escaped_by")
def test_dialect_fields_escaped_by_empty_reads_backslashes_as_data(tmp_path):
    assert dialect_rows(tmp_path, "4\ta\\nb\n") == [{"id": 4, "band": "a\nb"}]
    assert dialect_rows(tmp_path, "4\ta\\nb\n", fields_escaped_by="") == [{"id": 4, "band": "a\\nb"}]


@honours("input.files.dialect.lines_terminated_by")
def test_dialect_lines_terminated_by_crlf(tmp_path):
    assert dialect_rows(tmp_path, "5\tz\r\n", lines_terminated_by="\r\n") == [{"id": 5, "band": "z"}]


@honours("input.files.dialect.lines_starting_by")
def test_dialect_lines_starting_by_skips_the_prefix(tmp_path):
    assert dialect_rows(tmp_path, "xx6\tq\n", lines_starting_by="xx") == [{"id": 6, "band": "q"}]


@honours("input.files.dialect.ignore_lines")
def test_dialect_ignore_lines_skips_leading_lines(tmp_path):
    assert dialect_rows(tmp_path, "junk line\n7\tk\n", ignore_lines=1) == [{"id": 7, "band": "k"}]


@honours("input.files.dialect.header")
def test_dialect_header_skips_and_checks_the_first_line(tmp_path):
    assert dialect_rows(tmp_path, "id\tband\n4\tz\n", header=True) == [{"id": 4, "band": "z"}]


@honours("input.files.dialect.null")
def test_dialect_null_adds_null_spellings(tmp_path):
    assert dialect_rows(tmp_path, "8\t\n") == [{"id": 8, "band": ""}]
    assert dialect_rows(tmp_path, "8\t\n", null=[""]) == [{"id": 8, "band": None}]


@honours("input.files.dialect.charset")
def test_dialect_charset_decodes_the_file(tmp_path):
    assert dialect_rows(tmp_path, b"9\t\xe9\n", charset="latin1") == [{"id": 9, "band": "\u00e9"}]


# -- schema and columns ---------------------------------------------------------------------------------


def qserv_columns(table: dict, root: Path) -> dict[str, str]:
    raw = tiny(root)
    raw["tables"] = [table]
    [setup] = plan_ingest(config(raw, root))
    return {c.name: c.sql_type for c in setup.qserv_schema.columns}


def regular(root: Path, **keys) -> dict:
    """The regular table R of `write_inputs`, its schema inferred, with `keys` added."""
    data = write_inputs(root)
    return {
        "name": "R",
        "kind": "regular",
        "input": {"files": {"glob": str(data / "r.parquet")}},
        "schema": {"infer": True},
        **keys,
    }


@honours("schema.infer", "schema.ddl")
def test_schema_from_the_input_or_from_ddl(tmp_path):
    table = regular(tmp_path)
    assert qserv_columns(table, tmp_path) == {"rid": "BIGINT", "name": "TEXT"}  # from the Arrow types
    (tmp_path / "r.sql").write_text("CREATE TABLE R (rid BIGINT NOT NULL, name VARCHAR(3))")
    table["schema"] = {"ddl": str(tmp_path / "r.sql")}
    assert qserv_columns(table, tmp_path) == {"rid": "BIGINT", "name": "VARCHAR(3)"}  # not inferred TEXT


@honours("schema.qserv_json")
def test_schema_from_a_qserv_json_body(tmp_path, case01):
    table = {
        "name": "Filter",
        "kind": "regular",
        "input": {"files": {"glob": str(case01 / "Filter.tsv.gz")}},
        "schema": {"qserv_json": str(case01 / "ingest" / "Filter.json")},
    }
    assert list(qserv_columns(table, tmp_path)) == ["filterId", "filterName", "photClam", "photBW"]


@honours("schema.felis.schema", "schema.felis.table")
def test_schema_from_felis_by_schema_and_table(tmp_path, demo):
    table = butler_table(demo, dataset_type="ccdVisitTable", skymap=None, instrument="LSSTCam-imSim")
    table.update(name="Visits", schema={"felis": {"schema": "dp02_dc2", "table": "CcdVisit"}})
    columns = qserv_columns(table, tmp_path)
    assert "ccdVisitId" in columns and "seeing" in columns


@honours("columns.include", "columns.exclude", "columns.rename")
def test_column_selection_and_rename_shape_the_qserv_table(tmp_path):
    table = regular(tmp_path, columns={"include": ["name", "rid"], "rename": {"name": "label"}})
    assert list(qserv_columns(table, tmp_path)) == ["rid", "label"]  # in the schema's order
    table["columns"] = {"exclude": ["name"]}
    assert list(qserv_columns(table, tmp_path)) == ["rid"]


# -- policies -------------------------------------------------------------------------------------------


@honours("policies.invalid_positions")
def test_invalid_positions_quarantine_or_stop(tmp_path, client):
    raw = tiny(tmp_path / "q", invalid=3)
    assert stage(raw, tmp_path / "q", client).summary.quarantined["D"][0] == 3
    raw = tiny(tmp_path / "s", invalid=3)
    raw["tables"][0]["policies"] = {"invalid_positions": "stop"}
    with pytest.raises(IngestError, match="invalid positions"):
        stage(raw, tmp_path / "s", client)


@honours("policies.duplicate_ids")
def test_duplicate_ids_stop_or_quarantine(tmp_path, client):
    raw = tiny(tmp_path / "s", duplicates=2)
    with pytest.raises(IngestError, match="duplicate"):
        stage(raw, tmp_path / "s", client)
    raw = tiny(tmp_path / "q", duplicates=2)
    raw["tables"][0]["policies"] = {"duplicate_ids": "quarantine"}
    ingest = stage(raw, tmp_path / "q", client)
    assert list((tmp_path / "q" / "staging" / "quarantine" / "D").glob("*.excluded.parquet"))
    assert any("quarantined" in n for n in ingest.summary.notes)


@honours("policies.orphans")
def test_orphans_are_reported_by_default_and_quarantined_or_stopped_when_set(tmp_path, client):
    raw = tiny(tmp_path / "r", orphans=2)
    assert any("loaded as they are" in n for n in stage(raw, tmp_path / "r", client).summary.notes)
    raw = tiny(tmp_path / "q", orphans=2)
    raw["tables"][1]["policies"] = {"orphans": "quarantine"}
    stage(raw, tmp_path / "q", client)
    assert list((tmp_path / "q" / "staging" / "quarantine" / "C").glob("*.excluded.parquet"))
    raw = tiny(tmp_path / "s", orphans=2)
    raw["tables"][1]["policies"] = {"orphans": "stop"}
    with pytest.raises(IngestError, match="orphans"):
        stage(raw, tmp_path / "s", client)


@honours("policies.bad_values")
def test_bad_values_quarantine_is_refused_by_the_config(tmp_path):
    raw = tiny(tmp_path)
    raw["tables"][0]["policies"] = {"bad_values": "quarantine"}
    with pytest.raises(ConfigError, match="bad_values: quarantine is not supported"):
        config(raw, tmp_path)


# -- staging --------------------------------------------------------------------------------------------


@honours("staging.directory", "staging.ledger")
def test_staging_directory_and_ledger_are_where_things_go(tmp_path, client):
    raw = tiny(tmp_path)
    raw["staging"] = {"directory": str(tmp_path / "here"), "ledger": str(tmp_path / "elsewhere" / "l.sqlite")}
    ingest = stage(raw, tmp_path, client)
    assert all(Path(f.path).is_relative_to(tmp_path / "here") for f in ingest.ledger.chunk_files())
    assert (tmp_path / "elsewhere" / "l.sqlite").is_file() and not (
        tmp_path / "here" / "ledger.sqlite"
    ).exists()


def shard_codecs_and_bytes(ingest: Ingest) -> tuple[set[str], int]:
    shards = ingest.ledger.shards()
    codecs = {pa.ipc.open_stream(s.path).schema.metadata[b"qdask.codec"].decode() for s in shards}
    return codecs, sum(s.bytes for s in shards)


@honours("staging.shard_compression", "staging.shard_compression_level")
def test_shards_are_compressed_as_configured(tmp_path, client):
    raw = tiny(tmp_path / "a", rows=3000)
    assert shard_codecs_and_bytes(stage(raw, tmp_path / "a", client))[0] == {"none"}  # the default
    raw = tiny(tmp_path / "s", rows=3000)
    raw["staging"]["shard_compression"] = "snappy"
    assert shard_codecs_and_bytes(stage(raw, tmp_path / "s", client))[0] == {"lz4"}  # IPC's fast codec
    sizes = {}
    for level in (1, 19):
        raw = tiny(tmp_path / f"z{level}", rows=3000)
        raw["staging"].update(shard_compression="zstd", shard_compression_level=level)
        codecs, sizes[level] = shard_codecs_and_bytes(stage(raw, tmp_path / f"z{level}", client))
        assert codecs == {"zstd"}
    assert sizes[19] != sizes[1]  # the same rows, the same writer: only the level differs


@honours("staging.direct_io")
def test_direct_io_writes_large_contribution_files_past_the_page_cache(tmp_path, client, monkeypatch):
    """Read from the kernel (mincore, `page_cache`): with direct_io (the default) a contribution file holds
    at most its first buffer and its tail in the page cache; with false, all of it."""
    monkeypatch.setattr(direct_io, "BUFFER_BYTES", 16 * 1024)  # the cluster runs in this process
    found = {}
    for setting in (None, False):
        raw = tiny(tmp_path / str(setting), rows=20_000)  # ~9 chunks of ~130 KB
        if setting is not None:
            raw["staging"]["direct_io"] = setting
        files = [
            f
            for f in staged_files(stage(raw, tmp_path / str(setting), client), "D")
            if f.bytes > 8 * 16 * 1024
        ]
        assert files, "no contribution file outgrows the buffer: the test would show nothing"
        found[setting] = [(cached_bytes(f.path), f.bytes) for f in files]
    assert all(cached <= 2 * 16 * 1024 for cached, _ in found[None]), found[None]  # first buffer and tail
    assert all(cached >= size for cached, size in found[False]), found[False]


@honours("staging.direct_io")
def test_direct_io_writes_and_reads_shards_past_the_page_cache(tmp_path, client, monkeypatch):
    """A shard is written once (partition) and read once (collect): with direct_io (the default) it holds
    at most its first buffer and its tail in the page cache once both are done; with false, all of it."""
    monkeypatch.setattr(direct_io, "BUFFER_BYTES", 16 * 1024)  # the cluster runs in this process
    found = {}
    for setting in (None, False):
        raw = tiny(tmp_path / str(setting), rows=20_000)
        if setting is not None:
            raw["staging"]["direct_io"] = setting
        ingest = stage(raw, tmp_path / str(setting), client)
        shards = [s for s in ingest.ledger.shards(table="D") if s.bytes > 8 * 16 * 1024]
        assert shards, "no shard outgrows the buffer: the test would show nothing"
        found[setting] = [(cached_bytes(s.path), s.bytes) for s in shards]
    assert all(cached <= 2 * 16 * 1024 for cached, _ in found[None]), found[None]
    assert all(cached >= size for cached, size in found[False]), found[False]


# -- qserv: what reaches the controller -----------------------------------------------------------------


@honours("qserv.controller", "qserv.auth_key_env", "qserv.api_version")
def test_requests_go_to_the_controller_with_the_key_and_version(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("MY_INGEST_KEY", "from-my-variable")
    raw = tiny(tmp_path)
    raw["qserv"].update(auth_key_env="MY_INGEST_KEY", api_version=54)
    database, _ = registered(raw, tmp_path, fake)
    assert database["auth_key"] == "from-my-variable" and database["version"] == 54
    assert fake.requests and all(r.role == "controller" for r in fake.requests)


@honours("qserv.admin_auth_key_env")
def test_the_admin_key_is_read_from_its_variable(tmp_path, monkeypatch):
    """Kept for `qdask drop` (deleting a database needs Qserv's admin key); the ingest itself does not."""
    monkeypatch.setenv("MY_ADMIN_KEY", "admin-secret")
    raw = tiny(tmp_path)
    raw["qserv"]["admin_auth_key_env"] = "MY_ADMIN_KEY"
    cfg = config(raw, tmp_path)
    assert cfg.qserv.admin_auth_key.get_secret_value() == "admin-secret"
    assert "admin-secret" not in cfg.to_yaml() and "$MY_ADMIN_KEY" in cfg.to_yaml()


@pytest.mark.parametrize(
    "keys, error",
    [
        ({"transport": "url"}, "transport url needs url_base"),
        ({"transport": "url", "url_base": "ftp://host/staging/"}, "url_base must start with file:///"),
        ({"transport": "url", "url_base": "file://host/staging/"}, "an absolute path on the workers"),
        ({"transport": "url", "url_base": "file:staging/"}, "an absolute path on the workers"),
        ({"transport": "url", "url_base": "http:///staging/"}, r"expected http\(s\)://host"),
        ({"url_base": "file:///shared/staging/"}, "url_base is only read with transport: url"),
        ({"transport": "url", "url_base": "file:///s/", "serve_port": 8000}, "serve_port are only read with"),
        ({"upload": "file"}, "upload was replaced by transport"),
        ({"transport": "copy"}, "transport"),
    ],
)
def test_a_bad_transport_is_a_config_error(tmp_path, keys, error):
    raw = tiny(tmp_path)
    raw["qserv"].update(keys)
    with pytest.raises(ConfigError, match=error):
        config(raw, tmp_path)


def test_upload_csv_of_older_configs_is_the_upload_transport(tmp_path):
    raw = tiny(tmp_path)
    raw["qserv"]["upload"] = "csv"
    assert config(raw, tmp_path).qserv.transport == "upload"


def transport(tmp_path, fake, **qserv):
    raw = tiny(tmp_path)
    raw["qserv"].update(controller=fake.url, **qserv)
    return qserv_client(config(raw, tmp_path))


@honours("qserv.timeouts.request")
def test_the_request_timeout_bounds_an_ordinary_call(tmp_path, fake):
    fake.route("GET", "/replication/config", Slow(1.5, {"config": {"databases": []}}))
    with transport(tmp_path, fake, timeouts={"request": 0.3}, retries={"attempts": 1}) as qserv:
        with pytest.raises(QservTransportError, match="ReadTimeout"):
            qserv.database_info("keys")


@honours("qserv.timeouts.load")
def test_the_load_timeout_bounds_calls_that_work_before_answering(tmp_path, fake):
    fake.route("PUT", "/ingest/database/keys", Slow(1.5, {"database": {}}))
    with transport(tmp_path, fake, timeouts={"request": 30, "load": 0.3}, retries={"attempts": 1}) as qserv:
        with pytest.raises(QservTransportError, match="ReadTimeout"):
            qserv.publish_database("keys")


@honours("qserv.timeouts.connect")
def test_the_connect_timeout_is_the_connections_own(tmp_path, fake, mariadb):
    with transport(tmp_path, fake, timeouts={"connect": 0.7}) as qserv:
        assert qserv._http().timeout.connect == 0.7  # the httpx client every request goes through
    raw = tiny(tmp_path)
    raw["qserv"].update(czar=mariadb.dsn, timeouts={"connect": 0.7})
    assert czar_for(config(raw, tmp_path)).connect_timeout == 0.7


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@honours("qserv.retries.attempts")
def test_retries_attempts_counts_every_try(tmp_path):
    raw = tiny(tmp_path)
    raw["qserv"].update(controller=f"http://127.0.0.1:{closed_port()}", retries={"attempts": 3, "backoff": 0})
    with qserv_client(config(raw, tmp_path)) as qserv, pytest.raises(QservTransportError) as info:
        qserv.check_version()
    assert info.value.attempts == 3


def retry_delays(tmp_path, caplog, **retries) -> list[float]:
    raw = tiny(tmp_path)
    raw["qserv"].update(controller=f"http://127.0.0.1:{closed_port()}", retries=retries)
    with caplog.at_level("INFO", logger="qdask.qserv"), qserv_client(config(raw, tmp_path)) as qserv:
        with pytest.raises(QservTransportError):
            qserv.check_version()
    return [float(m) for m in re.findall(r"retrying in ([\d.]+)s", caplog.text)]


@honours("qserv.retries.backoff")
def test_the_first_wait_is_the_backoff(tmp_path, caplog):
    delays = retry_delays(tmp_path, caplog, attempts=2, backoff=0.3)
    assert len(delays) == 1 and 0.1 <= delays[0] <= 0.3  # backoff x a jitter in [0.5, 1)


@honours("qserv.retries.backoff_max")
def test_no_wait_is_longer_than_backoff_max(tmp_path, caplog):
    delays = retry_delays(tmp_path, caplog, attempts=4, backoff=20, backoff_max=0.04)
    assert len(delays) == 3 and max(delays) == 0.0  # logged to 0.1 s: at most 0.04


@honours("qserv.czar", "qserv.czar_password_env")
def test_verify_reaches_the_czar_with_the_password_of_its_variable(tmp_path, mariadb, monkeypatch):
    password = "pa/ss:w#rd"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS 'keys_czar'@'%'")
        cur.execute("CREATE USER 'keys_czar'@'%%' IDENTIFIED BY %s", (password,))
    conn.close()
    monkeypatch.setenv("KEYS_CZAR_PASSWORD", password)
    raw = tiny(tmp_path)
    raw["qserv"].update(
        czar=f"mysql://keys_czar:wrong@127.0.0.1:{mariadb.port}", czar_password_env="KEYS_CZAR_PASSWORD"
    )
    with czar_for(config(raw, tmp_path)).query("SELECT CURRENT_USER()") as rows:
        assert [r[0] for r in rows] == ["keys_czar@%"]


# -- qserv: transactions and uploads (a real load into the stand-in) -------------------------------------


@pytest.fixture(scope="module")
def staged(qserv, tmp_path_factory):
    """case01's fault tables staged once; each test loads a copy of the ledger into its own database."""
    root = tmp_path_factory.mktemp("keys-staged")
    path = write_case01(root / "case01.yaml", qserv, root / "staging", "keys_staged")
    Ingest(config_from_dict(yaml.safe_load(path.read_text()), root), console=Console(file=io.StringIO())).run(
        stage_only=True
    )
    return root / "staging"


def loading(qserv, staged: Path, tmp_path: Path, database: str, **qserv_keys):
    import sqlite3

    path = write_case01(tmp_path / "case01.yaml", qserv, staged, database, **qserv_keys)
    raw = yaml.safe_load(path.read_text())
    raw["staging"]["ledger"] = str(tmp_path / "ledger.sqlite")
    cfg = config_from_dict(raw, tmp_path)
    with sqlite3.connect(staged / "ledger.sqlite") as src, sqlite3.connect(tmp_path / "ledger.sqlite") as dst:
        src.backup(dst)
        dst.execute("UPDATE run SET fingerprint = ?", (fingerprint(cfg),))
    return cfg


@pytest.fixture
def keys_env(qserv, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    yield
    qserv.faults.clear()


def transactions(cfg) -> list[set[int]]:
    """The chunks of each committed transaction."""
    with Ledger(cfg.staging.ledger) as ledger:
        return [{k.chunk_id for k in t.files} for t in ledger.transactions() if t.state == "committed"]


@honours("qserv.max_chunks_per_transaction")
def test_transactions_hold_at_most_max_chunks(qserv, staged, tmp_path, keys_env):
    cfg = loading(qserv, staged, tmp_path, "keys_max_chunks", max_chunks_per_transaction=2)
    Ingest(cfg, console=Console(file=io.StringIO())).run(verify_after=False)
    chunks = [c - {REGULAR_CHUNK} for c in transactions(cfg)]
    assert max(len(c) for c in chunks) == 2 and sum(len(c) for c in chunks) > 4


@honours("qserv.max_chunks_per_transaction", "qserv.max_transactions")
def test_auto_chunks_per_transaction_grow_to_fit_max_transactions(
    qserv, staged, tmp_path, keys_env, monkeypatch
):
    """auto starts at 100 chunks per transaction; case01 has 13 chunks, so the test starts it at 2, where
    its chunked files take more than the 4 transactions allowed."""
    monkeypatch.setattr(run_settings, "AUTO_CHUNKS_PER_TRANSACTION", 2)
    cfg = loading(
        qserv, staged, tmp_path, "keys_auto_chunks", max_chunks_per_transaction="auto", max_transactions=4
    )
    with Ledger(cfg.staging.ledger) as ledger:
        files = ledger.files_to_load()
    assert len(plan_transactions(files, 2, cfg.qserv.max_bytes_per_transaction)) > 4
    Ingest(cfg, console=Console(file=io.StringIO())).run(verify_after=False)
    committed = transactions(cfg)
    chunked = [c for c in committed if c != {REGULAR_CHUNK}]
    assert len(committed) <= 4 and max(len(c) for c in chunked) > 2
    assert sum(len(c) for c in chunked) == len({f.chunk_id for f in files} - {REGULAR_CHUNK})


@honours("qserv.max_bytes_per_transaction")
def test_transactions_hold_at_most_max_bytes(qserv, staged, tmp_path, keys_env):
    cfg = loading(
        qserv, staged, tmp_path, "keys_max_bytes", max_chunks_per_transaction=100, max_bytes_per_transaction=1
    )
    Ingest(cfg, console=Console(file=io.StringIO())).run(verify_after=False)
    partitioned = [c for c in transactions(cfg) if c != {REGULAR_CHUNK}]
    assert len(partitioned) > 1 and all(len(c) == 1 for c in partitioned)  # one chunk each, over 1 byte


@honours("qserv.max_transactions")
def test_a_load_needing_more_than_max_transactions_is_refused(qserv, staged, tmp_path, keys_env):
    cfg = loading(qserv, staged, tmp_path, "keys_max_trans", max_chunks_per_transaction=1, max_transactions=3)
    with pytest.raises(IngestError, match=r"more than qserv.max_transactions = 3"):
        Ingest(cfg, console=Console(file=io.StringIO())).run(verify_after=False)
    assert transactions(cfg) == []  # refused before anything was sent


class CountingClient:
    """The real client, counting uploads in flight (in all and per worker)."""

    def __init__(self, real):
        self.real, self.lock = real, threading.Lock()
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def ingest_csv(self, place, *args, **kwargs):
        with self.lock:
            self.now[place.worker] += 1
            self.now["*"] += 1
            for key in (place.worker, "*"):
                self.most[key] = max(self.most[key], self.now[key])
        try:
            return self.real.ingest_csv(place, *args, **kwargs)
        finally:
            with self.lock:
                self.now[place.worker] -= 1
                self.now["*"] -= 1


def most_in_flight(cfg, qserv) -> Counter[str]:
    qserv.faults.add("delay", match={"path": "/ingest/csv"}, seconds=0.2, times=0)
    with Ledger(cfg.staging.ledger) as ledger, qserv_client(cfg) as real:
        register_catalog(real, cfg, {s.name: s.qserv_schema for s in plan_ingest(cfg)})
        counting = CountingClient(real)
        Loader(counting, ledger, load_settings(cfg, ledger.run().run_id, 100)).run(ledger.files_to_load())
    return counting.most


@honours("qserv.concurrency.per_worker")
def test_uploads_per_worker_are_bounded(qserv, staged, tmp_path, keys_env):
    cfg = loading(qserv, staged, tmp_path, "keys_per_worker", concurrency={"total": 16, "per_worker": 1})
    most = most_in_flight(cfg, qserv)
    assert max(n for w, n in most.items() if w != "*") == 1 and most["*"] > 1


@honours("qserv.concurrency.total")
def test_uploads_in_all_are_bounded(qserv, staged, tmp_path, keys_env):
    cfg = loading(qserv, staged, tmp_path, "keys_total", concurrency={"total": 2, "per_worker": 2})
    assert most_in_flight(cfg, qserv)["*"] == 2


def contribution_urls(cfg) -> list[str]:
    """The `url` Qserv recorded for every contribution of the committed transactions."""
    with Ledger(cfg.staging.ledger) as ledger, qserv_client(cfg) as qserv:
        committed = [t.transaction_id for t in ledger.transactions() if t.state == "committed"]
        return [
            c.raw["url"]
            for tid in committed
            for c in qserv.get_transaction(tid, contributions=True).contributions
        ]


def calls(qserv, path: str):
    """A rule of the stand-in that only counts the requests to `path` (`.fired`)."""
    return qserv.faults.add("delay", match={"path": path}, seconds=0, times=0)


@honours("qserv.transport", "qserv.url_base")
def test_transport_url_sends_each_file_by_its_url_under_url_base(qserv, staged, tmp_path, keys_env):
    """The workers read the files through another name of the staging directory (a symlink), as a shared
    filesystem mounted elsewhere on the workers: every URL Qserv recorded is that name, and no byte went
    through `/ingest/csv`."""
    (tmp_path / "mounted").symlink_to(staged, target_is_directory=True)
    base = f"file://{tmp_path}/mounted/"
    cfg = loading(qserv, staged, tmp_path, "keys_by_url", transport="url", url_base=base)
    csv, by_url = calls(qserv, "/ingest/csv"), calls(qserv, "/ingest/file")
    Ingest(cfg, console=Console(file=io.StringIO())).run(verify_after=False)
    urls = contribution_urls(cfg)
    assert csv.fired == 0 and by_url.fired == len(urls) > 10
    assert all(u.startswith(base + "contributions/") for u in urls), urls[:3]
    with Ledger(cfg.staging.ledger) as ledger:
        assert {base + str(Path(f.path).relative_to(staged)) for f in ledger.chunk_files()} == set(urls)


@honours("qserv.serve_host", "qserv.serve_port")
def test_url_base_serve_serves_the_staging_directory_where_configured(qserv, staged, tmp_path, keys_env):
    port = closed_port()
    cfg = loading(
        qserv,
        staged,
        tmp_path,
        "keys_served",
        transport="url",
        url_base="serve",
        serve_host="127.0.0.1",
        serve_port=port,
    )
    csv = calls(qserv, "/ingest/csv")
    Ingest(cfg, console=Console(file=io.StringIO())).run(verify_after=False)
    urls = contribution_urls(cfg)
    assert csv.fired == 0 and urls
    assert all(u.startswith(f"http://127.0.0.1:{port}/contributions/") for u in urls), urls[:3]
    with pytest.raises(OSError):  # served only while the load ran
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- cluster --------------------------------------------------------------------------------------------


@honours("cluster.kind", "cluster.workers", "cluster.threads_per_worker", "cluster.memory_per_worker")
def test_the_local_cluster_is_the_configured_size(tmp_path):
    raw = tiny(tmp_path)
    raw["cluster"] = {"kind": "local", "workers": 2, "threads_per_worker": 2, "memory_per_worker": "700MiB"}
    with open_client(cluster_spec(config(raw, tmp_path))) as c:
        workers = c.scheduler_info(n_workers=-1)["workers"].values()
        assert sorted((w["nthreads"], w["memory_limit"]) for w in workers) == [(2, 700 << 20)] * 2
    raw["cluster"] = {
        "kind": "kubernetes",
        "kubernetes": {"image": "example.org/qdask:1", "namespace": "nowhere"},
    }
    with pytest.raises(ClusterError, match="DaskCluster"), open_client(cluster_spec(config(raw, tmp_path))):
        pass


@honours("cluster.scheduler_address")
def test_a_running_scheduler_is_used_at_its_address(tmp_path):
    with LocalCluster(n_workers=1, processes=False, protocol="tcp", dashboard_address=":0") as running:
        raw = tiny(tmp_path)
        raw["cluster"] = {"kind": "scheduler", "scheduler_address": running.scheduler_address}
        with open_client(cluster_spec(config(raw, tmp_path))) as c:
            assert c.scheduler.address == running.scheduler_address


KUBERNETES = {
    "image": "example.org/qdask:9",
    "namespace": "ingest-ns",
    "name": "my-ingest",
    "workers": 5,
    "worker": {"cpu": "3", "memory": "6Gi"},
    "scheduler": {"cpu": "2", "memory": "3Gi"},
    "service_account": "ingest-sa",
    "node_selector": {"pool": "big"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ingest", "effect": "NoSchedule"}],
    "env": [{"name": "S3_ENDPOINT", "value": "https://s3.example.org"}],
    "spill_volume_size": "33Gi",
}


def manifest(tmp_path, **changes) -> dict:
    raw = tiny(tmp_path)
    raw["cluster"] = {"kind": "kubernetes", "kubernetes": {**KUBERNETES, **changes}}
    cfg = config(raw, tmp_path)
    resource = kube_spec.cluster_spec(
        cfg.cluster.kubernetes, memory_limit=cluster_spec(cfg).memory_per_worker
    )
    kube_spec.check_cluster_spec(resource)
    return resource


@honours(*(f"cluster.kubernetes.{k}" for k in KUBERNETES))
def test_the_daskcluster_manifest_carries_every_kubernetes_key(tmp_path):
    m = manifest(tmp_path)
    worker, scheduler = m["spec"]["worker"], m["spec"]["scheduler"]
    container, sched = worker["spec"]["containers"][0], scheduler["spec"]["containers"][0]
    assert (m["metadata"]["name"], m["metadata"]["namespace"]) == ("my-ingest", "ingest-ns")
    assert container["image"] == sched["image"] == "example.org/qdask:9" and worker["replicas"] == 5
    assert container["resources"]["limits"] == {"cpu": "3", "memory": "6Gi"}
    assert sched["resources"]["limits"] == {"cpu": "2", "memory": "3Gi"}
    assert worker["spec"]["serviceAccountName"] == "ingest-sa" and worker["spec"]["nodeSelector"] == {
        "pool": "big"
    }
    assert worker["spec"]["tolerations"][0]["key"] == "dedicated"
    assert {"name": "S3_ENDPOINT", "value": "https://s3.example.org"} in container["env"]
    assert {"name": "spill", "emptyDir": {"sizeLimit": "33Gi"}} in worker["spec"]["volumes"]


@honours("cluster.kubernetes.adaptive")
def test_adaptive_bounds_start_at_the_minimum(tmp_path):
    m = manifest(tmp_path, workers=None, adaptive={"minimum": 2, "maximum": 9})
    assert m["spec"]["worker"]["replicas"] == 2

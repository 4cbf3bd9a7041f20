"""A directory in Qserv's dataset layout (lsst/qserv's data/caseNN) read as a qdask config: tables, kinds,
keys, placement columns, dialects and partitioning from Qserv's own JSON files; the YAML written by
``qdask from-qserv`` reads back to the same config; tables qdask cannot express are named, not dropped
silently; and ``qdask ingest DIR`` loads a dataset as given, equal to Qserv's own reference load."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pymysql
import pytest
import yaml
from click.testing import CliRunner

from qdask.cli import main
from qdask.config import load_config
from qdask.config.errors import ConfigError
from qdask.config.qserv_dataset import dataset_config, is_dataset
from qdask.sky import Chunker

ROOT = Path(__file__).resolve().parents[2]
ITEST = ROOT / "tests" / "data" / "qserv-itest"
#: LOAD DATA's defaults, in the statement's own notation (what itest_table.py falls back to).
LOAD_DATA_DEFAULTS = {
    "fields_terminated_by": "\\t",
    "fields_enclosed_by": "",
    "fields_escaped_by": "\\\\",
    "lines_terminated_by": "\\n",
}


def _essentials(cfg) -> dict:
    """What placement and registration depend on, per table (paths and policies aside)."""
    out = {}
    for t in cfg.tables:
        keys = {k: getattr(t, k, None) for k in ("kind", "id", "ra", "dec", "director", "director_key")}
        out[t.name] = {k: str(v) for k, v in keys.items() if v is not None}
    return out


def test_case01_reads_as_the_hand_written_config(shared_data):
    """configs/case01.yaml was written by hand from case01's JSON; the generated config agrees with it on
    every table it holds, and adds RefSrcMatch, which case01's ingest JSON registers as a regular table."""
    generated = load_config(shared_data / "qserv-itest" / "case01")
    written = load_config(ROOT / "configs" / "case01.yaml")
    ours, theirs = _essentials(generated), _essentials(written)
    assert set(ours) - set(theirs) == {"RefSrcMatch"} and ours["RefSrcMatch"] == {"kind": "regular"}
    assert {name: ours[name] for name in theirs} == theirs
    assert generated.database.partitioning == written.database.partitioning
    assert generated.database.charset_name == "latin1"
    for t in generated.tables:  # the dumps' dialect: mysqldump -T (tab, no enclosure, backslash), latin1
        d = t.input.files.text_dialect
        assert (d.fields_terminated_by, d.fields_enclosed_by, d.fields_escaped_by) == ("\t", "", "\\")
        assert d.charset == "latin1" and not d.header


def test_a_child_is_placed_where_the_partitioner_places_it():
    """case02's Source registers its own position (ra, decl) but the partitioner places it by part.pos,
    its Object's position (raObject, declObject); the config places it as the partitioner does."""
    source = load_config(ITEST / "case02").table("Source")
    assert (source.ra, source.dec, source.id) == ("raObject", "declObject", "sourceId")
    assert source.input.files.text_dialect.fields_terminated_by == ","


def test_a_match_table_reads_as_sph_partition_matches_is_configured():
    """case03's RefDeepSrcMatch: both directors and keys from its ingest JSON, each side's position from
    the partitioner's part.pos1/pos2, the flag column part.flags names, and Qserv's ang_sep."""
    match = load_config(ITEST / "case03").table("RefDeepSrcMatch")
    assert match.kind == "match"
    assert (match.director, match.director_key, match.ra, match.dec) == (
        "RefObject",
        "refObjectId",
        "ra",
        "decl",
    )
    assert (match.director2, match.director_key2, match.ra2, match.dec2) == (
        "RunDeepSource",
        "deepSourceId",
        "coord_ra",
        "coord_decl",
    )
    assert (match.flag, match.ang_sep) == ("flags", 0.001)


def test_tables_qdask_cannot_express_are_named_with_the_reason():
    described = dataset_config(ITEST / "case04")
    assert described.kinds == {
        "DeepSource": "director",
        "DeepSourceDupKeys": "director",
        "DeepCoadd": "regular",
    }
    for absent in ("DeepForcedSource", "Science_Ccd_Exposure"):  # their blobs are not vendored
        assert "no data file" in described.skipped[absent]


def test_from_qserv_writes_a_config_that_reads_back_the_same(shared_data, tmp_path):
    dataset = shared_data / "qserv-itest" / "case01"
    out = tmp_path / "conf" / "case01.yaml"
    result = CliRunner().invoke(main, ["from-qserv", str(dataset), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "9 tables of qcase01" in result.output
    text = out.read_text()
    assert text.startswith("# qdask config generated from the Qserv dataset")
    assert "../" in yaml.safe_load(text)["tables"][0]["input"]["files"]["glob"]  # relative to the file
    from_file, from_dir = load_config(out), load_config(dataset)
    assert _essentials(from_file) == _essentials(from_dir)
    assert [t.input.files.text_dialect for t in from_file.tables] == [
        t.input.files.text_dialect for t in from_dir.tables
    ]
    again = CliRunner().invoke(main, ["from-qserv", str(dataset), "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output  # never overwritten silently


def test_a_directory_that_is_not_a_dataset_is_refused(tmp_path):
    (tmp_path / "ingest").mkdir()
    assert not is_dataset(tmp_path)
    with pytest.raises(ConfigError, match="not a Qserv dataset"):
        load_config(tmp_path)
    result = CliRunner().invoke(main, ["plan", "--check", str(tmp_path)])
    assert (
        result.exit_code == 2 and "not a Qserv dataset" in result.output and "Traceback" not in result.output
    )


def _reference_load(mariadb, data: Path, database: str, tables: list[str], tmp: Path) -> None:
    """Qserv's own reference load (itest_load.py `_load_ref_data`): each schema file, then LOAD DATA with
    the dialect of the table's ingest JSON (LOAD DATA's defaults where it says nothing)."""
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {database}")
        cur.execute(f"CREATE DATABASE {database}")
        cur.execute(f"USE {database}")
        for table in tables:
            cur.execute((data / "schema" / f"{table}.schema").read_text())
            spec = json.loads((data / "ingest" / f"{table}.json").read_text())
            plain = tmp / f"{table}.txt"
            (packed,) = [f for f in data.glob(f"{table}.*.gz") if f.suffixes[-2] in (".csv", ".tsv")]
            plain.write_bytes(gzip.decompress(packed.read_bytes()))
            dialect = {**LOAD_DATA_DEFAULTS, **{k: v for k, v in spec.items() if k in LOAD_DATA_DEFAULTS}}
            cur.execute(
                f"LOAD DATA LOCAL INFILE '{plain}' INTO TABLE {table} CHARACTER SET latin1"
                " FIELDS TERMINATED BY '{fields_terminated_by}' ENCLOSED BY '{fields_enclosed_by}'"
                " ESCAPED BY '{fields_escaped_by}' LINES TERMINATED BY '{lines_terminated_by}'".format(
                    **dialect
                )
            )
    conn.close()


def _rows(mariadb, database: str, table: str, columns: list[str], connect=None) -> list[tuple]:
    conn = (connect or mariadb.connect)(database)
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM `{table}`")
        rows = sorted((tuple(r) for r in cur.fetchall()), key=repr)
    conn.close()
    return rows


def _ingest_equals_reference(
    case: str, tables: list[str], qserv, mariadb, tmp_path, monkeypatch, root: Path = ITEST
) -> str:
    """``qdask ingest`` of the dataset directory as given, then every table of `tables` read through the
    czar equals Qserv's reference load of the same files (not empty); returns the command's output."""
    from qdask.qserv.czar import parse_dsn

    data = root / case / "data"
    database = json.loads((data / "ingest" / "database.json").read_text())["database"]
    reference = f"{database}_reference"
    _reference_load(mariadb, data, reference, tables, tmp_path)
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)
    monkeypatch.chdir(tmp_path)  # the staging directory of a dataset is staging/<database> here
    args = ["ingest", str(root / case), "--controller", qserv.controller_url, "--czar", qserv.czar_dsn]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    dsn = parse_dsn(qserv.czar_dsn)

    def czar(db):
        return pymysql.connect(host=dsn.host, port=dsn.port, user=dsn.user, database=db)

    for table in tables:
        conn = mariadb.connect(reference)
        with conn.cursor() as cur:
            cur.execute(f"SHOW COLUMNS FROM `{table}`")
            columns = [r[0] for r in cur.fetchall()]
        conn.close()
        expected = _rows(mariadb, reference, table, columns)
        assert len(expected) > 0 and _rows(mariadb, database, table, columns, connect=czar) == expected, table
    return result.output


def test_ingest_of_a_dataset_directory_equals_qservs_reference_load(qserv, mariadb, tmp_path, monkeypatch):
    """``qdask ingest tests/data/qserv-itest/case02`` (no config written) loads Object and Source as
    given; every row equals Qserv's reference load, and each Source row sits in its Object's chunk."""
    data = ITEST / "case02" / "data"
    _ingest_equals_reference("case02", ["Object", "Source"], qserv, mariadb, tmp_path, monkeypatch)
    assert (tmp_path / "staging" / "qcase02").is_dir()
    conn = mariadb.connect("qcase02")
    with conn.cursor() as cur:
        cur.execute("SELECT s.chunkId, o.chunkId FROM Source s JOIN Object o USING (objectId)")
        pairs = cur.fetchall()
        cur.execute("SELECT objectId, ra_PS, decl_PS, chunkId FROM Object")
        objects = cur.fetchall()
    conn.close()
    assert len(pairs) > 1000 and all(s == o for s, o in pairs)
    layout = json.loads((data / "ingest" / "database.json").read_text())
    chunker = Chunker(layout["num_stripes"], layout["num_sub_stripes"], layout["overlap"])
    located = chunker.locate_all([o[1] for o in objects], [o[2] for o in objects])
    assert located.chunk_id.tolist() == [o[3] for o in objects]  # the chunks Qserv's arithmetic gives


def test_ingest_of_case03_with_its_match_table(qserv, mariadb, tmp_path, monkeypatch):
    """case03 as given: two directors, their match table and two regular tables. Through the czar every
    table equals Qserv's reference load (a match pair once, as Qserv's MatchTablePlugin returns it); the
    stored match rows sit where a row-by-row model of sph-partition-matches puts them, flags included."""
    from tests.sky.test_matches import model

    data = ITEST / "case03" / "data"
    tables = ["RefObject", "RunDeepSource", "RefDeepSrcMatch", "DeepCoadd", "DeepCoadd_Metadata"]
    _ingest_equals_reference("case03", tables, qserv, mariadb, tmp_path, monkeypatch)
    # The stored rows (MariaDB's own view of every chunk, both copies of a split pair) against the model.
    spec = json.loads((data / "ingest" / "database.json").read_text())
    chunker = Chunker(spec["num_stripes"], spec["num_sub_stripes"], 0.001)
    pairs = _rows(
        mariadb,
        "qcase03_reference",
        "RefDeepSrcMatch",
        ["refObjectId", "deepSourceId", "ra", "decl", "coord_ra", "coord_decl"],
    )
    sides = [
        ((r[2], r[3]) if r[2] is not None else None, (r[4], r[5]) if r[4] is not None else None)
        for r in pairs
    ]
    expected_placement = sorted(
        ((pairs[i][0], pairs[i][1], chunk, sub, flag) for i, chunk, sub, flag in model(chunker, sides)),
        key=repr,
    )
    stored = _rows(
        mariadb,
        "qcase03",
        "RefDeepSrcMatch",
        ["refObjectId", "deepSourceId", "chunkId", "subChunkId", "flags"],
    )
    assert stored == expected_placement
    # case03's pairs share a chunk (flag 3) or lack their reference side (refObjectId NULL: flag 2, which
    # the czar still returns); pairs split between chunks are tested in tests/sky and test_match_table.py
    assert {r[4] for r in stored} == {2, 3} and any(r[0] is None for r in stored if r[4] == 2)


def test_ingest_of_case04_with_a_director_of_repeated_ids(qserv, mariadb, tmp_path, monkeypatch):
    """case04's DeepSourceDupKeys is registered with unique_primary_key 0: its repeated ids (500 of 1,000
    rows) are loaded, every copy, indexed as Qserv indexes them, and verify passes (no uniqueness check)."""
    assert load_config(ITEST / "case04").table("DeepSourceDupKeys").unique_primary_key is False
    tables = ["DeepSource", "DeepSourceDupKeys", "DeepCoadd"]
    output = _ingest_equals_reference("case04", tables, qserv, mariadb, tmp_path, monkeypatch)
    assert "duplicate ids" not in output
    conn = mariadb.connect()
    with conn.cursor() as cur:  # the director index: one entry per row, repeated ids included
        cur.execute(
            "SELECT COUNT(*), COUNT(DISTINCT deepSourceId) FROM qserv_qservMeta.qcase04__DeepSourceDupKeys"
        )
        entries, distinct = cur.fetchone()
    conn.close()
    assert (entries, distinct) == (1000, 500)


def test_ingest_of_case01_as_given_includes_refsrcmatch(qserv, mariadb, shared_data, tmp_path, monkeypatch):
    """case01 straight from its Qserv directory: all nine tables, RefSrcMatch included (a regular table in
    case01's ingest JSON), each equal through the czar to Qserv's reference load."""
    ingest = shared_data / "qserv-itest/case01/data/ingest"
    tables = [p.stem for p in sorted(ingest.glob("*.json")) if p.stem not in ("database", "metadata")]
    assert "RefSrcMatch" in tables and len(tables) == 9
    _ingest_equals_reference(
        "case01", tables, qserv, mariadb, tmp_path, monkeypatch, root=shared_data / "qserv-itest"
    )

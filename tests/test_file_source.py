"""File source: case01 TSV dumps against MariaDB's LOAD DATA, Parquet units and batches, CSV, bad inputs."""

from __future__ import annotations

import datetime
import gzip
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qdask.schema import Column, SchemaMismatch, TableSchema, from_ddl, from_qserv_json, select_columns
from qdask.sources.files import detect_format, discover_files, read_file, read_unit
from qdask.sources.units import InputUnit, SourceError


def read_all(path, schema, **kwargs) -> pa.Table:
    batches = list(read_file(path, schema, **kwargs))
    return pa.Table.from_batches(batches, schema=batches[0].schema) if batches else None


@pytest.fixture(scope="module")
def case01_db(mariadb, case01, case01_tables, tmp_path_factory):
    """case01 loaded into MariaDB by MariaDB itself (LOAD DATA, as mysqldump's dumps are meant to be read)."""
    d = case01
    tmp = tmp_path_factory.mktemp("case01")
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS files_case01")
        cur.execute("CREATE DATABASE files_case01")
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("SET SESSION time_zone = '+00:00'")
    conn.select_db("files_case01")
    for table in case01_tables:
        plain = tmp / f"{table}.tsv"
        plain.write_bytes(gzip.decompress((d / f"{table}.tsv.gz").read_bytes()))
        with conn.cursor() as cur:
            cur.execute((d / "schema" / f"{table}.schema").read_text())
            cur.execute(f"LOAD DATA LOCAL INFILE '{plain}' INTO TABLE `{table}` CHARACTER SET latin1")
            assert cur.rowcount > 0
    yield conn
    conn.close()


def _mariadb_rows(conn, table: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM `{table}`")
        return list(cur.fetchall())


@pytest.mark.case01_tables
@pytest.mark.parametrize("schema_from", ["json", "ddl"])
def test_case01_row_counts(case01, case01_db, table, schema_from):
    """Every case01 table reads whole: as many rows as MariaDB's LOAD DATA makes of the same dump."""
    d = case01
    if schema_from == "json":
        schema = from_qserv_json(d / "ingest" / f"{table}.json")
    else:
        schema = from_ddl(d / "schema" / f"{table}.schema")
    path = d / f"{table}.tsv.gz"
    rows = sum(b.num_rows for b in read_file(path, schema, dialect={"charset": "latin1"}))
    with case01_db.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM `{table}`")
        (expected,) = cur.fetchone()
    assert rows == expected
    # ... which is the file's line count, less the newlines that are escaped data (backslash + LF)
    raw = gzip.decompress(path.read_bytes())
    escaped_newlines = sum(1 for i in range(1, len(raw)) if raw[i] == 0x0A and _odd_backslashes(raw, i))
    assert rows == raw.count(b"\n") - escaped_newlines
    if table in ("Filter", "Logs", "Object", "RefSrcMatch", "SimRefObject", "sdqa_Metric", "LeapSeconds"):
        assert escaped_newlines == 0 and rows == raw.count(b"\n")


def _odd_backslashes(raw: bytes, i: int) -> bool:
    k = i
    while k > 0 and raw[k - 1] == 0x5C:
        k -= 1
    return (i - k) % 2 == 1


def _same(ours, theirs, column: Column) -> bool:
    if ours is None or theirs is None:
        return ours is None and theirs is None
    if column.sql_type == "FLOAT":  # MariaDB prints FLOAT with 6 significant digits
        return math.isclose(ours, theirs, rel_tol=2e-6, abs_tol=1e-44)
    if isinstance(theirs, datetime.datetime):
        return ours == theirs
    if column.sql_type.startswith("BINARY("):  # MariaDB pads BINARY(n) with NUL bytes
        return ours.ljust(column.max_length, b"\0") == theirs
    return ours == theirs


@pytest.mark.case01_tables
def test_case01_values_equal_mariadb_load_data(case01, case01_db, table):
    """Every value (escapes \\N, \\0, \\\\, escaped tab and newline; latin1; binary) as MariaDB has it."""
    d = case01
    schema = from_ddl(d / "schema" / f"{table}.schema")
    # small blocks, so that records (and escaped newlines) straddle block boundaries
    ours = read_all(
        d / f"{table}.tsv.gz", schema, dialect={"charset": "latin1"}, batch_bytes=4096
    ).to_pylist()
    theirs = _mariadb_rows(case01_db, table)
    assert len(ours) == len(theirs)
    bad = []
    for i, (row, ref) in enumerate(zip(ours, theirs, strict=True)):
        for c, value in zip(schema.columns, ref, strict=True):
            if not _same(row[c.name], value, c):
                bad.append((i, c.name, row[c.name], value))
    assert bad == []


def test_escapes_decoded_like_load_data(tmp_path, mariadb):
    """A hand-made dump with every escape MySQL writes, compared with LOAD DATA of the same bytes."""
    raw = (
        b"1\t\\N\tplain\n"
        b"2\tN\ttab\\\there\n"
        b"3\t\\\\N\tnew\\\nline\n"
        b"4\ta\\tb\\nc\\rd\\0e\\Zf\\bg\tback\\\\slash\n"
        b"5\t\\Nx\t\n"
        b"6\t\xc3\xa9t\xc3\xa9\t\\N"  # no final newline
    )
    path = tmp_path / "esc.tsv"
    path.write_bytes(raw)
    schema = TableSchema("Esc", (Column("id", "INT", False), Column("a", "VARCHAR(40)"), Column("b", "TEXT")))
    rows = read_all(path, schema, batch_bytes=7).to_pylist()
    assert [(r["a"], r["b"]) for r in rows] == [
        (None, "plain"),
        ("N", "tab\there"),
        ("\\N", "new\nline"),
        ("a\tb\nc\rd\0e\x1af\bg", "back\\slash"),
        ("Nx", ""),
        ("été", None),
    ]
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS files_esc")
        cur.execute("DROP TABLE IF EXISTS files_esc.Esc")
        cur.execute(
            "CREATE TABLE files_esc.Esc (id INT NOT NULL, a VARCHAR(40), b TEXT) CHARACTER SET utf8mb4"
        )
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE files_esc.Esc CHARACTER SET utf8mb4")
        cur.execute("SELECT id, a, b FROM files_esc.Esc ORDER BY id")
        assert [tuple(r.values()) for r in rows] == list(cur.fetchall())
    conn.close()


def test_case01_selection_and_units(case01):
    d = case01
    units = discover_files(str(d / "*.tsv.gz"), "any")
    assert len(units) == 9
    obj = [u for u in units if u.uri.endswith("Object.tsv.gz")][0]
    assert obj.unit_id == f"file:{d / 'Object.tsv.gz'}" and obj.format == "tsv"
    assert obj.options["compression"] == "gzip" and obj.est_bytes == (d / "Object.tsv.gz").stat().st_size
    schema = from_qserv_json(d / "ingest" / "Object.json")
    pairs = select_columns(schema.names, include=["objectId", "ra_PS", "decl_PS"], rename={"decl_PS": "dec"})
    batches = list(read_unit(obj, schema, select=pairs))
    table = pa.Table.from_batches(batches)
    assert table.schema.names == ["objectId", "ra_PS", "dec"]
    assert table.schema.types == [pa.int64(), pa.float64(), pa.float64()]
    assert table.num_rows == 88 and table.column("objectId")[0].as_py() == 90030275138483


# --- Parquet ---------------------------------------------------------------------------------------


def _parquet(tmp_path: Path, rows: int = 10_000, row_group_size: int = 1000) -> tuple[Path, pa.Table]:
    rng = np.random.default_rng(7)
    table = pa.table(
        {
            "objectId": pa.array(np.arange(rows, dtype=np.int64)),
            "ra": pa.array(rng.uniform(50, 75, rows)),
            "flux": pa.array(rng.normal(size=rows).astype(np.float32)),
            "nChild": pa.array(rng.integers(0, 5, rows, dtype=np.int32)),
            "band": pa.array(rng.choice(["g", "r", "i"], rows)).dictionary_encode(),
            "isPrimary": pa.array(rng.random(rows) > 0.5),
        }
    )
    path = tmp_path / "obj.parquet"
    pq.write_table(table, path, row_group_size=row_group_size)
    return path, table


PARQUET_SCHEMA = TableSchema(
    "Obj",
    (
        Column("objectId", "BIGINT", False),
        Column("ra", "DOUBLE"),
        Column("flux", "FLOAT"),
        Column("nChild", "BIGINT"),  # int32 data into BIGINT: widened on read
        Column("band", "CHAR(1)"),
        Column("isPrimary", "BOOLEAN"),
    ),
)


def test_parquet_split_into_row_group_units_and_bounded_batches(tmp_path):
    path, table = _parquet(tmp_path)
    whole = discover_files(str(path), "Obj")
    assert len(whole) == 1 and whole[0].row_groups is None and whole[0].est_rows == 10_000
    units = discover_files(str(tmp_path / "*.parquet"), "Obj", max_unit_bytes=path.stat().st_size // 3)
    assert len(units) >= 3
    assert units[0].row_groups[0] == 0 and units[-1].row_groups[1] == 10
    assert all(a.row_groups[1] == b.row_groups[0] for a, b in zip(units, units[1:], strict=False))
    assert sum(u.est_rows for u in units) == 10_000
    assert units[1].unit_id == f"file:{path}#rg={units[1].row_groups[0]}:{units[1].row_groups[1]}"
    batches = []
    for u in units:
        u = InputUnit.from_dict(u.to_dict())  # as a task gets it back from the ledger
        batches.extend(read_unit(u, PARQUET_SCHEMA, batch_bytes=8 * 6 * 300))
    assert max(b.num_rows for b in batches) <= 300
    got = pa.Table.from_batches(batches)
    assert got.schema.names == PARQUET_SCHEMA.names
    assert got.schema.types == [c.arrow_type for c in PARQUET_SCHEMA.columns]
    assert got.schema.field("nChild").type == pa.int64() and got.schema.field("band").type == pa.string()
    assert got.column("objectId").to_pylist() == table.column("objectId").to_pylist()
    assert got.column("nChild").to_pylist() == table.column("nChild").to_pylist()
    assert got.column("band").to_pylist() == table.column("band").to_pylist()


def test_parquet_schema_mismatch_names_file_and_columns(tmp_path):
    path, _ = _parquet(tmp_path)
    schema = TableSchema(
        "Obj",
        (
            Column("objectId", "BIGINT", False),
            Column("ra", "INT"),  # float data into INT: incompatible
            Column("dec", "DOUBLE"),  # missing
            Column("flux", "FLOAT"),
            Column("nChild", "INT"),
            Column("band", "CHAR(1)"),
        ),
    )
    with pytest.raises(SchemaMismatch) as info:
        list(read_file(path, schema))
    text = str(info.value)
    assert str(path) in text
    assert "column 'ra': expected INT (Arrow int32), found double" in text
    assert "missing column 'dec': expected DOUBLE" in text
    assert "extra column 'isPrimary' of type bool" in text
    assert len(info.value.problems) == 3
    # selecting the columns that do match reads fine; extra columns are then ignored
    ok = list(read_file(path, schema, select=[("objectId", "objectId"), ("flux", "flux")]))
    assert sum(b.num_rows for b in ok) == 10_000


def test_parquet_value_check_not_null(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"id": pa.array([1, None, 3], pa.int64())}), path)
    with pytest.raises(SchemaMismatch, match=rf"(?s){path}.*'id' is NOT NULL but row 1 is NULL"):
        list(read_file(path, TableSchema("T", (Column("id", "BIGINT", False),))))


def test_truncated_and_unreadable_parquet(tmp_path):
    path, _ = _parquet(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=rf"{cut}: not a readable Parquet file \(truncated or corrupt\?\)"):
        discover_files(str(cut), "Obj")
    with pytest.raises(SourceError, match=rf"{cut}: not a readable Parquet file"):
        list(read_file(cut, PARQUET_SCHEMA))
    # footer intact but a data page damaged: fails while reading, naming the file, not silently short
    bad = tmp_path / "bad.parquet"
    body = bytearray(data)
    body[200:4000] = b"\xff" * 3800
    bad.write_bytes(bytes(body))
    with pytest.raises(SourceError, match=rf"{bad}: reading failed after \d+ rows"):
        list(read_file(bad, PARQUET_SCHEMA))
    with pytest.raises(SourceError, match=r"no such file"):
        list(read_file(tmp_path / "missing.parquet", PARQUET_SCHEMA))


# --- text: bad inputs ------------------------------------------------------------------------------

TSV_SCHEMA = TableSchema(
    "T", (Column("id", "BIGINT", False), Column("x", "DOUBLE"), Column("name", "VARCHAR(8)"))
)


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(SourceError, match=rf"{tmp_path}/none.tsv: no such file"):
        list(read_file(tmp_path / "none.tsv", TSV_SCHEMA))
    with pytest.raises(SourceError, match=r"no file matches '.*/\*.tsv'"):
        discover_files(str(tmp_path / "*.tsv"), "T")
    with pytest.raises(SourceError, match="cannot tell the format"):
        detect_format(tmp_path / "data.bin")
    assert detect_format("a/b.TSV.gz") == detect_format("x.tsv", compression="gzip")
    assert detect_format("x.dat", format="csv").kind == "csv"


def test_truncated_gzip(tmp_path):
    data = gzip.compress(b"".join(b"%d\t%d.5\tname%d\n" % (i, i, i % 10) for i in range(20_000)))
    path = tmp_path / "t.tsv.gz"
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(SourceError, match=rf"{path}: the compressed file is truncated"):
        list(read_file(path, TSV_SCHEMA, batch_bytes=4096))
    csv = tmp_path / "t.csv.gz"
    csv.write_bytes(gzip.compress(b"1,2.5,a\n" * 20_000)[:-100])
    with pytest.raises(SourceError, match=rf"{csv}"):
        list(read_file(csv, TSV_SCHEMA))


@pytest.mark.parametrize("block", [4096, 1 << 20])
def test_wrong_number_of_fields_names_the_row(tmp_path, block):
    lines = [b"%d\t%d.5\tn\n" % (i, i) for i in range(1, 500)]
    lines[299] = b"300\t1.5\n"  # one field short
    path = tmp_path / "t.tsv"
    path.write_bytes(b"".join(lines))
    with pytest.raises(SourceError, match=rf"{path}: row 300 has 2 fields, expected 3"):
        list(read_file(path, TSV_SCHEMA, batch_bytes=block))
    path.write_bytes(b"1\t1.5\tn\n\n2\t2.5\tm\n")  # an empty line is a bad row, never skipped
    with pytest.raises(SourceError, match=r"row 2 has 1 fields, expected 3"):
        list(read_file(path, TSV_SCHEMA))


@pytest.mark.parametrize("block", [4096, 1 << 20])
def test_unparsable_value_names_row_and_column(tmp_path, block):
    lines = [b"%d\t%d.5\tn\n" % (i, i) for i in range(1, 500)]
    lines[410] = b"411\tabc\tn\n"
    path = tmp_path / "t.tsv"
    path.write_bytes(b"".join(lines))
    with pytest.raises(SourceError, match=rf"{path}: row 411, column 'x': 'abc' is not a valid double"):
        list(read_file(path, TSV_SCHEMA, batch_bytes=block))
    path.write_bytes(b"1\t1.5\t\xe9t\xe9\n")  # latin1 bytes read as UTF-8
    with pytest.raises(SourceError, match=r"row 1, column 'name': not valid UTF-8"):
        list(read_file(path, TSV_SCHEMA))
    assert read_all(path, TSV_SCHEMA, dialect={"charset": "latin1"}).column("name").to_pylist() == ["été"]


def test_varchar_length_checked_on_read(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"1\t1.5\tshort\n2\t2.5\tmuch too long\n")
    with pytest.raises(SchemaMismatch, match=r"(?s)t.tsv.*'name' \(VARCHAR\(8\)\): row 1 has 13 characters"):
        list(read_file(path, TSV_SCHEMA))


# --- CSV -------------------------------------------------------------------------------------------


def test_csv_is_rfc4180_with_and_without_header(tmp_path):
    """The csv preset: comma, optional quotes doubled inside, CRLF, no escapes; NULL only as unquoted NULL."""
    body = b'1,1.5,"a,b"\r\n2,NULL,NULL\r\n3,3.5,""\r\n4,-1,"""hi"",\\N"\r\n'
    plain = tmp_path / "p.csv.gz"
    plain.write_bytes(gzip.compress(body))
    t = read_all(plain, TSV_SCHEMA, dialect={"header": False})
    assert t.to_pylist() == [
        {"id": 1, "x": 1.5, "name": "a,b"},
        {"id": 2, "x": None, "name": None},
        {"id": 3, "x": 3.5, "name": ""},
        {"id": 4, "x": -1.0, "name": '"hi",\\N'},
    ]
    headed = tmp_path / "h.csv"
    headed.write_bytes(b"id,x,name\r\n" + body)
    assert read_all(headed, TSV_SCHEMA).to_pylist() == t.to_pylist()
    wrong = tmp_path / "w.csv"
    wrong.write_bytes(b"id,y,name\r\n" + body)
    with pytest.raises(
        SchemaMismatch, match=r"(?s)w.csv \(header line\).*missing column 'x'.*extra column 'y'"
    ):
        list(read_file(wrong, TSV_SCHEMA))
    short = tmp_path / "s.csv"
    short.write_bytes(b"1,1.5,a\r\n2,2.5\r\n")
    with pytest.raises(SourceError, match=rf"{short}: row 2 has 2 fields, expected 3"):
        list(read_file(short, TSV_SCHEMA, dialect={"header": False}))
    bad = tmp_path / "b.csv"
    bad.write_bytes(b"1,1.5,a\r\nx,2.5,b\r\n")
    with pytest.raises(SourceError, match=rf"{bad}: row 2, column 'id': 'x' is not a valid int64"):
        list(read_file(bad, TSV_SCHEMA, dialect={"header": False}))


def test_an_empty_field_is_the_empty_string_unless_null_says_otherwise(tmp_path):
    """As in LOAD DATA, an empty field is '' (an error in a number column), never NULL by itself."""
    path = tmp_path / "e.csv"
    path.write_bytes(b"1,,\r\n")
    with pytest.raises(SourceError, match=r"row 1, column 'x': '' is not a valid double"):
        list(read_file(path, TSV_SCHEMA, dialect={"header": False}))
    path.write_bytes(b'1,2.5,\r\n2,3.5,""\r\n')
    rows = read_all(path, TSV_SCHEMA, dialect={"header": False}).to_pylist()
    assert [r["name"] for r in rows] == ["", ""]
    rows = read_all(path, TSV_SCHEMA, dialect={"header": False, "null": [""]}).to_pylist()
    assert [r["name"] for r in rows] == [None, ""]  # an enclosed "" stays the empty string


def test_lf_lines_read_as_crlf_name_the_line_terminator(tmp_path):
    path = tmp_path / "lf.csv"
    path.write_bytes(b"1,1.5,a\n2,2.5,b\n")
    with pytest.raises(SourceError, match=r"row 1 has 5 fields, expected 3.*lines_terminated_by '\\r\\n'"):
        list(read_file(path, TSV_SCHEMA, dialect={"header": False}))
    rows = read_all(path, TSV_SCHEMA, dialect={"header": False, "lines_terminated_by": "\\n"}).to_pylist()
    assert [r["name"] for r in rows] == ["a", "b"]


def test_mostly_clean_dump_with_some_escapes_matches_load_data(tmp_path, mariadb):
    """Rows with escapes among plain rows (the mixed Arrow + Python path) keep their order and values."""
    rng = np.random.default_rng(3)
    lines, expected = [], []
    for i in range(3000):
        x = None if i % 7 == 0 else float(rng.normal())
        if i % 97 == 5:
            raw_s, s = b"x\\ty\\\\z\\0", "x\ty\\z\0"
        elif i % 101 == 7:
            raw_s, s = b"\\N", None
        else:
            raw_s, s = b"s%d" % i, f"s{i}"
        lines.append(b"%d\t%s\t%s\n" % (i, b"\\N" if x is None else repr(x).encode(), raw_s))
        expected.append({"id": i, "x": x, "name": s})
    path = tmp_path / "mixed.tsv"
    path.write_bytes(b"".join(lines))
    schema = TableSchema("M", (Column("id", "BIGINT", False), Column("x", "DOUBLE"), Column("name", "TEXT")))
    assert read_all(path, schema).to_pylist() == expected
    assert read_all(path, schema, batch_bytes=1000).to_pylist() == expected
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS files_esc")
        cur.execute("DROP TABLE IF EXISTS files_esc.M")
        cur.execute("CREATE TABLE files_esc.M (id BIGINT NOT NULL, x DOUBLE, name TEXT) CHARSET utf8mb4")
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE files_esc.M CHARACTER SET utf8mb4")
        cur.execute("SELECT id, x, name FROM files_esc.M ORDER BY id")
        assert [tuple(r.values()) for r in expected] == list(cur.fetchall())
    conn.close()


def test_text_batches_are_bounded_and_selection_on_fast_path(tmp_path):
    """A 20 MB dump read in 256 kB blocks never yields a batch near the file's size."""
    rows = 400_000
    body = b"".join(b"%d\t%d.25\tn%d\n" % (i, i, i % 100) for i in range(rows))
    path = tmp_path / "big.tsv.gz"
    path.write_bytes(gzip.compress(body, compresslevel=1))
    sizes = []
    for batch in read_file(path, TSV_SCHEMA, batch_bytes=256 * 1024, select=[("x", "x"), ("id", "objectId")]):
        assert batch.schema.names == ["x", "objectId"]
        sizes.append((batch.num_rows, batch.nbytes))
    assert sum(n for n, _ in sizes) == rows
    assert len(sizes) >= len(body) // (256 * 1024)
    assert max(b for _, b in sizes) < 1024 * 1024  # the whole file would be ~6.4 MB as Arrow


def test_tsv_with_header_line(tmp_path):
    path = tmp_path / "h.tsv"
    path.write_bytes(b"id\tx\tname\n1\t\\N\ta\n2\t2.5\t\\N\n")
    assert read_all(path, TSV_SCHEMA, dialect={"header": True}).to_pylist() == [
        {"id": 1, "x": None, "name": "a"},
        {"id": 2, "x": 2.5, "name": None},
    ]
    path.write_bytes(b"id\tname\tx\n1\ta\t\\N\n")
    with pytest.raises(SchemaMismatch, match=r"(?s)h.tsv \(header line\).*another order"):
        list(read_file(path, TSV_SCHEMA, dialect={"header": True}))


def test_parquet_widening_casts(tmp_path):
    """Doubles into FLOAT round; one out of FLOAT range is an error, not an infinity; ns times truncate."""
    path = tmp_path / "w.parquet"
    ts = pa.array([1_700_000_000_123_456_789], pa.timestamp("ns"))
    pq.write_table(pa.table({"f": pa.array([0.1], pa.float64()), "t": ts}), path)
    schema = TableSchema("W", (Column("f", "FLOAT"), Column("t", "DATETIME(6)")))
    row = read_all(path, schema).to_pylist()[0]
    assert row["f"] == pytest.approx(0.1, rel=1e-7)
    assert row["t"] == datetime.datetime(2023, 11, 14, 22, 13, 20, 123456)
    pq.write_table(
        pa.table({"f": pa.array([0.5, 1e300], pa.float64()), "t": pa.concat_arrays([ts, ts])}), path
    )
    with pytest.raises(SourceError, match=rf"{path}.*column 'f': row 1 is out of FLOAT range"):
        list(read_file(path, schema))

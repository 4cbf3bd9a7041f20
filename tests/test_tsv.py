"""qdask.tsv against a real MariaDB: files loaded with the very LOAD DATA statement a Qserv worker runs."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import xxhash
from peak_memory import CHILD_SOURCE

from qdask.checksums import file_checksum
from qdask.tsv import (
    MAX_LINE_BYTES,
    QSERV_DIALECT,
    TsvEncodeError,
    load_data_sql,
    write_tsv,
)

TRANS_ID = 7

HOSTILE = [
    "plain",
    "tab\there",
    "new\nline",
    "carriage\rreturn\r\n",
    "back\\slash\\",
    "\\",
    "\\N",
    "N",
    "\\\\N",
    "'single' \"double\" `back`",
    "nul\x00byte",
    "\x00",
    "",
    " leading and trailing spaces ",
    "\\t not a tab \\n not a newline \\0",
    "\x1a ctrl-Z \x08 backspace",
]
UNICODE = ["é à ü ß", "日本語", "emoji 🚀 outside the BMP", "€ euro", "zero\u200bwidth"]
# Every character MariaDB's latin1 (Windows-1252 plus five C1 pass-throughs) can hold, in one value.
LATIN1_ALL = bytes(range(256)).decode("cp1252", errors="ignore") + "\x81\x8d\x8f\x90\x9d"


@pytest.fixture
def db(mariadb):
    """A fresh database on the private server, dropped afterwards."""
    name = f"tsv_{uuid.uuid4().hex[:8]}"
    conn = mariadb.connect()
    conn.cursor().execute(f"CREATE DATABASE {name}")
    conn.select_db(name)
    yield conn
    conn.cursor().execute(f"DROP DATABASE {name}")
    conn.close()


def qserv_load(conn, table: str, columns_ddl: str, path: Path, charset: str) -> tuple[int, list]:
    """Do what a Qserv worker does with a contribution: MyISAM table partitioned by transaction, every
    line prefixed with the transaction id, LOAD DATA with the worker's options, then SHOW WARNINGS."""
    cur = conn.cursor()
    cur.execute(
        f"CREATE TABLE {table} (qserv_trans_id INT NOT NULL, {columns_ddl}) ENGINE=MyISAM "
        f"PARTITION BY LIST (qserv_trans_id) (PARTITION p0 VALUES IN (0), "
        f"PARTITION p{TRANS_ID} VALUES IN ({TRANS_ID}))"
    )
    prefixed = path.with_suffix(".worker")
    with open(path, "rb") as src, open(prefixed, "wb") as dst:
        for line in src:  # splits on b"\n" only, like the worker's reader
            dst.write(f"{TRANS_ID}\t".encode() + line)
    cur.execute("SET SESSION max_error_count=64")
    loaded = cur.execute(load_data_sql(prefixed, table, charset))
    cur.execute("SHOW WARNINGS")
    return loaded, list(cur.fetchall())


def fetch(conn, sql: str) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(sql)
    return list(cur.fetchall())


def test_dialect_is_qservs_default():
    assert QSERV_DIALECT.form_fields() == {
        "fields_terminated_by": "\\t",
        "fields_enclosed_by": "\\0",
        "fields_escaped_by": "\\\\",
        "lines_terminated_by": "\\n",
    }
    assert QSERV_DIALECT.sql_options() == (
        "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
    )
    assert load_data_sql("/x/it's.tsv", "`t`", "latin1") == (
        "LOAD DATA LOCAL INFILE '/x/it\\'s.tsv' INTO TABLE `t` CHARACTER SET latin1 "
        "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
    )


def test_every_type_and_hostile_value_round_trips_utf8mb4(db, tmp_path):
    texts = HOSTILE + UNICODE
    n = len(texts) + 1  # the last row is NULL in every column
    doubles = [
        1.7976931348623157e308,
        -1.7976931348623157e308,
        5e-324,
        -5e-324,
        0.1,
        1 / 3,
        -0.0,
        2.2250738585072014e-308,
        1e22,
        123456789.12345678,
        math.pi,
        -1e-300,
        42.0,
        math.e,
        9007199254740993.0,
        0.30000000000000004,
        1e-7,
        6.02214076e23,
        1.0,
        2.5,
        -7.25,
    ]
    floats32 = np.array(
        [
            3.4028234663852886e38,
            -3.4028234663852886e38,
            1.401298464324817e-45,
            1.1754943508222875e-38,
            0.1,
            1 / 3,
            16777217.0,
            -0.0,
            2.5,
            1e-10,
            7.0,
            65504.0,
            1e30,
            math.pi,
            0.2,
            -1.5,
            3.0,
            100.5,
            1e-40,
            5.5,
            9.75,
        ],
        dtype=np.float32,
    )
    binaries = [t.encode("utf-8") for t in texts[:-2]] + [bytes(range(256)), b"\xe2\t\xe2\\N\x00\n"]
    stamp = dt.datetime(2026, 11, 26, 14, 39, 40, 123456)
    batch = pa.record_batch(
        {
            "k": pa.array(range(n), pa.int32()),
            "i32": pa.array([2**31 - 1, -(2**31)] + list(range(n - 3)) + [None], pa.int32()),
            "i64": pa.array([2**63 - 1, -(2**63)] + list(range(n - 3)) + [None], pa.int64()),
            "u64": pa.array([2**64 - 1, 0] + list(range(n - 3)) + [None], pa.uint64()),
            "d": pa.array(doubles[: n - 1] + [None], pa.float64()),
            "f": pa.array(list(floats32[: n - 1]) + [None], pa.float32()),
            "flag": pa.array([True, False] * ((n - 1) // 2) + [True] * ((n - 1) % 2) + [None]),
            "s": pa.array(texts + [None]),
            "txt": pa.array(list(reversed(texts)) + [None], pa.large_string()),
            "bin": pa.array(binaries + [None], pa.binary()),
            "ts": pa.array(
                [stamp + dt.timedelta(days=k, microseconds=k) for k in range(n - 1)] + [None],
                pa.timestamp("us"),
            ),
            "day": pa.array([dt.date(1000 + 50 * k, 1 + k % 12, 1 + k % 28) for k in range(n - 1)] + [None]),
        }
    )
    path = tmp_path / "all.tsv"
    info = write_tsv([batch.slice(0, 7), batch.slice(7)], path, charset="utf8mb4")
    assert info.rows == n and info.bytes == path.stat().st_size and info.nan_to_null == {}

    ddl = (
        "k INT, i32 INT, i64 BIGINT, u64 BIGINT UNSIGNED, d DOUBLE, f FLOAT, flag BOOL, "
        "s VARCHAR(100) CHARACTER SET utf8mb4, txt TEXT CHARACTER SET utf8mb4, bin VARBINARY(300), "
        "ts DATETIME(6), day DATE"
    )
    loaded, warnings = qserv_load(db, "t", ddl, path, "utf8mb4")
    assert warnings == []
    assert loaded == n
    got = fetch(
        db, "SELECT i32, i64, u64, d, CAST(f AS DOUBLE), flag, s, txt, bin, ts, day FROM t ORDER BY k"
    )
    got = [[row[k] for row in got] for k in range(11)]
    src = batch.to_pydict()
    assert got[0] == src["i32"] and got[1] == src["i64"] and got[2] == src["u64"]
    assert got[3] == src["d"]  # -0.0 compares equal to the 0.0 MariaDB stores (it drops the sign)
    assert [None if v is None else np.float32(v) for v in got[4]] == [
        None if v is None else np.float32(v) for v in src["f"]
    ]
    assert [None if v is None else bool(v) for v in got[5]] == src["flag"]
    assert got[6] == src["s"] and got[7] == src["txt"] and got[8] == src["bin"]
    assert got[9] == src["ts"] and got[10] == src["day"]


def test_latin1_round_trip_of_every_latin1_character(db, tmp_path):
    values = HOSTILE + [LATIN1_ALL, "café € œ Ÿ ‰ ™", "\x81\x8d\x8f\x90\x9d", None]
    binaries = [bytes(range(256))] + [v.encode("utf-8") for v in values[1:-1]] + [None]
    batch = pa.record_batch(
        {
            "k": pa.array(range(len(values)), pa.int32()),
            "s": pa.array(values),
            "b": pa.array(binaries, pa.binary()),
        }
    )
    path = tmp_path / "latin1.tsv"
    info = write_tsv([batch], path, charset="latin1")
    assert info.rows == len(values)
    ddl = "k INT, s VARCHAR(400) CHARACTER SET latin1, b VARBINARY(1000)"
    loaded, warnings = qserv_load(db, "t", ddl, path, "latin1")
    assert warnings == [] and loaded == len(values)
    rows = fetch(db, "SELECT s, b FROM t ORDER BY k")
    assert [r[0] for r in rows] == values and [r[1] for r in rows] == binaries


def test_non_latin1_text_is_refused_naming_column_and_row(tmp_path):
    path = tmp_path / "bad.tsv"
    batches = [pa.record_batch({"name": ["ok", "fine"]}), pa.record_batch({"name": ["ok", "\t日本", None]})]
    message = r"column 'name', row 3: character '日' .* value '\\t日本'"  # the value as given, unescaped
    with pytest.raises(TsvEncodeError, match=message) as err:
        write_tsv(batches, path, charset="latin1")
    assert (err.value.column, err.value.row) == ("name", 3)
    # U+0080 is a C1 control in Python's latin-1 but MariaDB would read byte 0x80 as '€': refused too.
    with pytest.raises(TsvEncodeError, match="U\\+0080"):
        write_tsv([pa.record_batch({"name": ["\x80"]})], path, charset="latin1")
    with pytest.raises(TsvEncodeError, match="outside the Basic Multilingual Plane"):
        write_tsv([pa.record_batch({"name": ["🚀"]})], path, charset="utf8mb3")
    assert list(tmp_path.iterdir()) == []


def test_nan_and_inf_become_null_and_are_counted(db, tmp_path):
    batch = pa.record_batch(
        {
            "k": pa.array(range(6), pa.int32()),
            "d": pa.array([math.nan, math.inf, -math.inf, None, 1.5, -0.0]),
            "f": pa.array([1.0, math.nan, 2.0, math.inf, None, 3.0], pa.float32()),
        }
    )
    path = tmp_path / "nan.tsv"
    info = write_tsv([batch, batch], path)
    assert info.nan_to_null == {"d": 6, "f": 4}
    loaded, warnings = qserv_load(db, "t", "k INT, d DOUBLE, f FLOAT", path, "latin1")
    assert warnings == [] and loaded == 12
    expected = [(None, 1.0), (None, None), (None, 2.0), (None, None), (1.5, None), (0.0, 3.0)]
    assert fetch(db, "SELECT d, f FROM t ORDER BY k") == [row for row in expected for _ in (1, 2)]


def test_random_doubles_and_float32_round_trip_bit_exactly(db, tmp_path):
    rng = np.random.default_rng(2026)
    doubles = rng.integers(0, 2**64 - 1, 20000, dtype=np.uint64, endpoint=True).view(np.float64)
    floats = rng.integers(0, 2**32 - 1, 20000, dtype=np.uint32, endpoint=True).view(np.float32)
    finite = np.isfinite(doubles) & np.isfinite(floats) & (doubles != 0) & (floats != 0)
    doubles, floats = doubles[finite], floats[finite]  # +0/-0: MariaDB keeps no sign
    batch = pa.record_batch({"k": np.arange(len(doubles), dtype=np.int32), "d": doubles, "f": floats})
    path = tmp_path / "rand.tsv"
    write_tsv([batch], path)
    loaded, warnings = qserv_load(db, "t", "k INT, d DOUBLE, f FLOAT", path, "latin1")
    assert warnings == [] and loaded == len(doubles)
    rows = fetch(db, "SELECT d, CAST(f AS DOUBLE) FROM t ORDER BY k")
    assert np.array_equal(np.array([r[0] for r in rows]).view(np.uint64), doubles.view(np.uint64))
    back32 = np.array([r[1] for r in rows]).astype(np.float32)
    assert np.array_equal(back32.view(np.uint32), floats.view(np.uint32))


def test_checksum_rows_and_bytes_are_those_of_the_file(tmp_path):
    batch = pa.record_batch({"a": pa.array(range(1000)), "s": pa.array([f"v\t{k}" for k in range(1000)])})
    path = tmp_path / "c.tsv"
    info = write_tsv([batch, batch.slice(0, 10), batch.slice(0, 0)], path)
    data = path.read_bytes()
    assert info.rows == 1010 == data.count(b"\n")
    assert info.bytes == len(data)
    assert info.checksum == "xxh3_128:" + xxhash.xxh3_128_hexdigest(data) == file_checksum(path)
    assert data.splitlines()[1] == b"1\tv\\t1"
    path.write_bytes(data[:-1])
    assert file_checksum(path) != info.checksum


def test_write_is_atomic_when_the_source_fails(tmp_path):
    path = tmp_path / "chunk_57.txt"
    path.write_bytes(b"previous complete file\n")

    def source():
        for k in range(5):
            yield pa.record_batch({"a": pa.array(range(k * 100000, (k + 1) * 100000))})
        raise OSError("input went away")

    with pytest.raises(OSError, match="input went away"):
        write_tsv(source(), path)
    assert path.read_bytes() == b"previous complete file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk_57.txt"]


def test_columns_select_and_order_fields(tmp_path):
    batch = pa.record_batch({"a": [1, 2], "b": ["x", "y"], "c": [True, False]})
    path = tmp_path / "o.tsv"
    write_tsv([batch], path, columns=["c", "a"])
    assert path.read_bytes() == b"1\t1\n0\t2\n"
    with pytest.raises(KeyError, match="'z'"):
        write_tsv([batch], path, columns=["a", "z"])


def test_refusals_for_values_mariadb_would_alter(tmp_path):
    path = tmp_path / "r.tsv"
    nanos = pa.array([1_000, 1_000_000_001], pa.timestamp("ns"))
    with pytest.raises(TsvEncodeError, match="column 't', row 1: .*nanoseconds"):
        write_tsv([pa.record_batch({"t": nanos})], path)
    whole_micros = pa.array([1_000, None], pa.timestamp("ns", tz="UTC"))
    write_tsv([pa.record_batch({"t": whole_micros})], path)
    assert path.read_bytes() == b"1970-01-01 00:00:00.000001\n\\N\n"
    huge = pa.record_batch({"k": [1, 2], "s": ["small", "x" * MAX_LINE_BYTES]})
    with pytest.raises(TsvEncodeError, match="row 1 is .* bytes long"):
        write_tsv([huge], path)
    with pytest.raises(TsvEncodeError, match="no LOAD DATA text form"):
        write_tsv([pa.record_batch({"l": pa.array([[1, 2]])})], path)


WIDE_MEMORY_PROBE = """
import numpy as np, pyarrow as pa, sys
import qdask.tsv
qdask.tsv.SLICE_BYTES = SLICE_BYTES = 4 * 1024 * 1024  # small, so the text is many slices
from qdask.tsv import write_tsv
rows, cols = 6000, 991
rng = np.random.default_rng(1)
arrays = {}
for k in range(cols):
    kind = k % 4
    if kind == 0: arrays[f"c{k}"] = pa.array(rng.standard_normal(rows))
    elif kind == 1: arrays[f"c{k}"] = pa.array(rng.standard_normal(rows).astype(np.float32))
    elif kind == 2: arrays[f"c{k}"] = pa.array(rng.integers(-2**62, 2**62, rows))
    else: arrays[f"c{k}"] = pa.array(rng.random(rows) < 0.5)
batch = pa.record_batch(arrays)
write_tsv([batch.slice(0, 100)], sys.argv[1])  # warm up: polars' thread pool and allocator
pool = pa.default_memory_pool()
base = pool.bytes_allocated()
rss = mark_peak()
info = write_tsv([batch], sys.argv[1])
rss_extra = peak_since_mark() - rss
print(info.rows, info.bytes, base, pool.max_memory() - base, rss_extra, SLICE_BYTES)
"""


def test_wide_table_memory_is_bounded_by_slices_not_by_the_text(tmp_path):
    """991 columns: the text of a batch is far larger than what encoding holds at once (measured peak)."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD_SOURCE + WIDE_MEMORY_PROBE, str(tmp_path / "wide.tsv")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    rows, size, base, peak_extra, rss_extra, slice_bytes = map(int, out)
    assert rows == 6000 and size == (tmp_path / "wide.tsv").stat().st_size
    assert size > 16 * slice_bytes  # the whole text is far above the bound below
    assert peak_extra < 4 * slice_bytes, (peak_extra, size)  # measured: 0.2 slices (polars), 2 (joins)
    # polars' CSV writer holds its memory outside Arrow's pool: the process' peak RSS growth bounds both
    # (the text is 21.8 slices; the growth measured 2.7-3.8 slices since the child's own mark, peak_memory)
    assert rss_extra < 6 * slice_bytes, (rss_extra, size)


KILLED_WRITER = """
import sys, pyarrow as pa
from qdask.tsv import write_tsv
batch = pa.record_batch({"a": pa.array(range(200_000)), "s": pa.array(["x\\ty"] * 200_000)})
write_tsv((batch for _ in range(100_000)), sys.argv[1])
"""


def test_a_writer_killed_mid_file_leaves_no_file_at_the_final_path(tmp_path):
    path = tmp_path / "chunk_9.txt"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)])
    try:
        while not any(p.stat().st_size > 0 for p in tmp_path.glob(".chunk_9.txt.tmp-*")):
            assert proc.poll() is None, "the writer ended before it could be killed"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9
    assert not path.exists()
    info = write_tsv([pa.record_batch({"a": [1]})], path)  # the re-run writes the whole file
    assert path.read_bytes() == b"1\n" and info.rows == 1


def test_csv_writer_path_writes_the_bytes_the_joins_write(tmp_path):
    """Two encoders, one output: Arrow's CSV writer (the fast path) and the element-wise joins must give the
    same bytes for every type either accepts, NULL, NaN, extremes and escapes included."""
    from qdask.tsv import _column_value, _csv_writable, _data_view, _lines_csv, _lines_joined

    rng = np.random.default_rng(7)
    n = 5000
    floats = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
    floats[:6] = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    batch = pa.record_batch(
        {
            "i64": pa.array([-(2**63), 2**63 - 1, *rng.integers(-(2**62), 2**62, n - 3), None], pa.int64()),
            "u64": pa.array([2**64 - 1, *rng.integers(0, 2**62, n - 1)], pa.uint64()),
            "i8": pa.array(rng.integers(-128, 127, n), pa.int8()),
            "f64": pa.array(floats, mask=rng.random(n) < 0.1),
            "f32": pa.array(rng.standard_normal(n).astype(np.float32)),
            "b": pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.1),
            "s": pa.array(
                [f"é\t\\N{k}\n" if k % 7 == 0 else None if k % 11 == 0 else str(k) for k in range(n)]
            ),
            "d": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=k) for k in range(n)]),
            "t": pa.array(np.arange(n, dtype=np.int64) * 1_000_123, pa.timestamp("us")),
        }
    )
    counts: dict[str, int] = {}
    names = batch.schema.names
    columns = zip(names, batch.columns, strict=True)
    values = [_column_value(c, name, 0, "utf8mb4", counts) for name, c in columns]
    assert counts["f64"] >= 3 and _csv_writable(values)
    pieces = [(bytes(piece), lines) for piece, lines in _lines_csv(values, 3)]
    assert [piece.count(b"\n") for piece, _ in pieces] == [lines for _, lines in pieces]  # each counted
    fast = b"".join(piece for piece, _ in pieces)
    assert fast == bytes(_data_view(_lines_joined(values, 0)))
    assert fast.count(b"\n") == n and b'"' not in fast
    quote = [_column_value(pa.array(['say "hi"', "x"]), "q", 0, "utf8mb4", counts)]
    latin1 = [_column_value(pa.array(["é", "x"]), "l", 0, "latin1", counts)]
    assert not _csv_writable(quote) and not _csv_writable(latin1)  # the joins write these
    path = tmp_path / "mixed.tsv"
    write_tsv([pa.record_batch({"q": ['say "hi"', None], "l": ["é", "x"]})], path, charset="latin1")
    assert path.read_bytes() == b'say "hi"\t\xe9\n\\N\tx\n'


def _edge_doubles() -> np.ndarray:
    """Doubles at the edges of the number text: ±0, subnormals, the normal/subnormal boundary, 2^53±1,
    the extremes, and each power of ten where polars' or pyarrow's notation switches (1e-7..1e-4,
    1e9..1e17, 1e21..1e22), all ±1 ulp, plus integral values and float32's extremes widened."""
    core = [
        0.0,
        -0.0,
        5e-324,
        1e-323,
        2.2250738585072009e-308,
        2.2250738585072014e-308,
        2.0**-1022,
        2.0**53 - 1,
        2.0**53,
        2.0**53 + 2,
        2.0**63,
        2.0**64,
        1.7976931348623157e308,
        0.1,
        1 / 3,
        1.0,
        42.0,
        9999999999.0,
        123456789012345.0,
        1e15 + 0.5,
        4503599627370495.5,
        0.30000000000000004,
        float(np.finfo(np.float32).max),
        float(np.finfo(np.float32).tiny),
        1.401298464324817e-45,
    ]
    core += [10.0**k for k in (-7, -6, -5, -4, 9, 10, 11, 15, 16, 17, 21, 22, -300, 300)]
    with np.errstate(over="ignore"):  # DBL_MAX + 1 ulp is inf (made NULL)
        around = [np.nextafter(x, to) for x in core for to in (-np.inf, np.inf)]
    values = np.array(core + around, dtype=np.float64)
    return np.concatenate([values, -values])


def _doubles_over_every_magnitude(n: int, seed: int) -> np.ndarray:
    """Random bit patterns (every exponent, NaN/inf among them) and values spread over 1e-12..1e20,
    with the edges first."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**64, n // 2, dtype=np.uint64).view(np.float64)
    spread = rng.standard_normal(n - n // 2) * 10.0 ** rng.uniform(-12, 20, n - n // 2)
    values = np.concatenate([bits, spread])
    edges = _edge_doubles()
    values[: len(edges)] = edges
    return values


def _significant_digits(text: pa.Array) -> pa.Array:
    """The significant digits of number texts (sign, point, exponent and leading/trailing zeros cut)."""
    mantissa = pc.replace_substring_regex(text, r"^-|[eE].*$", "")
    digits = pc.replace_substring(mantissa, ".", "")
    return pc.utf8_rtrim(pc.utf8_ltrim(digits, "0"), "0")


def test_double_text_is_the_shortest_text_that_round_trips():
    """float64 is written as polars' text: over a million values (every exponent, every notation edge ±1
    ulp), it parses back to the same bits, has exactly as many significant digits as the shortest
    round-trip text (pyarrow's cast, Python's repr), and both encoders (CSV writer, joins) write it.
    float32 is widened first, so its text is its exact double's. NaN/inf are NULL (``\\N``)."""
    from qdask.tsv import _column_value, _data_view, _field_text, _lines_csv, _lines_joined

    n = 1_000_000
    rng = np.random.default_rng(11)
    doubles = _doubles_over_every_magnitude(n, 11)
    floats = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    batch = pa.record_batch(
        {
            "d": pa.array(doubles, mask=rng.random(n) < 0.05),
            "f": pa.array(floats),
            "i64": pa.array(
                [-(2**63), 2**63 - 1, None, *rng.integers(-(2**63), 2**63 - 1, n - 3)], pa.int64()
            ),
            "u64": pa.array([2**64 - 1, 0, *rng.integers(0, 2**64 - 1, n - 2, dtype=np.uint64)], pa.uint64()),
            "b": pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.1),
        }
    )
    counts: dict[str, int] = {}
    columns = zip(batch.schema.names, batch.columns, strict=True)
    values = [_column_value(c, name, 0, "utf8mb4", counts) for name, c in columns]
    assert counts["d"] > 100 and counts["f"] > 1000  # NaN/inf bit patterns, made NULL
    for value in values[:2]:
        text = _field_text(value).cast(pa.string())
        assert pc.equal(pc.is_null(text), pc.is_null(value)).to_numpy(zero_copy_only=False).all()
        valid = pc.drop_null(text)
        parsed = valid.cast(pa.float64()).to_numpy()
        original = pc.drop_null(value).to_numpy()
        assert np.array_equal(parsed.view(np.uint64), original.view(np.uint64))
        shortest = pc.drop_null(value).cast(pa.string())
        assert _significant_digits(valid).equals(_significant_digits(shortest))
    fast = b"".join(bytes(piece) for piece, _ in _lines_csv(values, 2))
    assert fast == bytes(_data_view(_lines_joined(values, 0)))
    assert fast.count(b"\n") == n


def test_double_text_is_pinned():
    """The text is part of what a run records (each file's checksum, compared on resume and take-over),
    so it must not change under a polars update within the pin: these are polars 2.1's texts."""
    from qdask.tsv import _column_value, _data_view, _lines_csv, _lines_joined

    cases = {
        1.0: b"1.0",
        -0.0: b"-0.0",
        0.5: b"0.5",
        1e-6: b"1e-6",
        1.5e-6: b"1.5e-6",
        1e-5: b"0.00001",
        9999999999.0: b"9999999999.0",
        1e10: b"10000000000.0",
        1.5e15: b"1500000000000000.0",
        1e16: b"1e+16",
        2.0**53 + 2: b"9007199254740994.0",
        5e-324: b"5e-324",
        0.1 + 0.2: b"0.30000000000000004",
        1.7976931348623157e308: b"1.7976931348623157e+308",
        123456.789: b"123456.789",
        float(np.float32(0.1)): b"0.10000000149011612",
    }
    value = _column_value(pa.array(list(cases)), "x", 0, "utf8mb4", {})
    text = b"".join(bytes(piece) for piece, _ in _lines_csv([value], 1))
    assert text.split(b"\n")[:-1] == list(cases.values())
    assert bytes(_data_view(_lines_joined([value], 0))) == text


def test_number_text_round_trips_through_mariadb_bit_exactly(db, tmp_path):
    """What polars writes is what MariaDB stores: every edge double (subnormals, ±0, 2^53±1, each notation
    threshold ±1 ulp, the extremes) and 200,000 others over every magnitude into DOUBLE, float32 (its
    extremes, subnormals, random bit patterns) widened into FLOAT, integer extremes into their columns,
    loaded as a worker loads, without a warning. Each number is checked twice: its bits as read back,
    and, in SQL, equal to the same number written as pyarrow's shortest text (the text before polars)."""
    rng = np.random.default_rng(2027)
    n = 200_000
    doubles = _doubles_over_every_magnitude(n, 5)
    doubles = doubles[np.isfinite(doubles)]
    n = len(doubles)
    f32_edges = np.array(
        [
            np.finfo(np.float32).max,
            np.finfo(np.float32).tiny,
            1.4e-45,
            1.1754942e-38,
            16777217.0,
            3.4028235e38,
            1e-6,
            1e-5,
            1e10,
            1e16,
            0.1,
            -0.0,
            0.0,
        ],
        dtype=np.float32,
    )
    floats = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    floats[: 2 * len(f32_edges)] = np.concatenate([f32_edges, -f32_edges])
    floats[~np.isfinite(floats)] = 1.5
    ints = {
        "i8": (-(2**7), 2**7 - 1, pa.int8()),
        "u8": (0, 2**8 - 1, pa.uint8()),
        "i16": (-(2**15), 2**15 - 1, pa.int16()),
        "i32": (-(2**31), 2**31 - 1, pa.int32()),
        "u32": (0, 2**32 - 1, pa.uint32()),
        "i64": (-(2**63), 2**63 - 1, pa.int64()),
        "u64": (0, 2**64 - 1, pa.uint64()),
    }
    columns = {"k": pa.array(np.arange(n, dtype=np.int32))}
    columns["d"] = pa.array(doubles)
    columns["d_ref"] = pa.array(doubles).cast(pa.string())  # pyarrow's shortest text, written as given
    columns["f"] = pa.array(floats)
    columns["f_ref"] = pa.array(floats).cast(pa.float64()).cast(pa.string())
    for name, (low, high, kind) in ints.items():
        middle = rng.integers(low, high, n - 2, dtype=np.uint64 if low == 0 else np.int64, endpoint=True)
        columns[name] = pa.array([low, high, *middle], kind)
    columns["flag"] = pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.1)
    batch = pa.record_batch(columns)
    path = tmp_path / "numbers.tsv"
    info = write_tsv([batch.slice(0, n // 3), batch.slice(n // 3)], path, charset="latin1")
    assert info.nan_to_null == {}
    text = path.read_bytes()
    assert b"e-6\t" in text and b"0000000.0\t" in text  # polars' notations, absent from pyarrow's
    ddl = (
        "k INT, d DOUBLE, d_ref DOUBLE, f FLOAT, f_ref FLOAT, i8 TINYINT, u8 TINYINT UNSIGNED, "
        "i16 SMALLINT, i32 INT, u32 INT UNSIGNED, i64 BIGINT, u64 BIGINT UNSIGNED, flag BOOL"
    )
    loaded, warnings = qserv_load(db, "t", ddl, path, "latin1")
    assert warnings == [] and loaded == n
    assert fetch(db, "SELECT COUNT(*) FROM t WHERE NOT (d <=> d_ref) OR NOT (f <=> f_ref)") == [(0,)]
    rows = fetch(db, "SELECT d, CAST(f AS DOUBLE), i8, u8, i16, i32, u32, i64, u64, flag FROM t ORDER BY k")
    got_d = np.array([r[0] for r in rows])
    stored = np.where(doubles == 0, 0.0, doubles)  # MariaDB stores -0.0 as 0 (for INSERT too)
    assert np.array_equal(got_d.view(np.uint64), stored.view(np.uint64))
    got_f = np.array([r[1] for r in rows]).astype(np.float32)
    stored_f = np.where(floats == 0, np.float32(0), floats)
    assert np.array_equal(got_f.view(np.uint32), stored_f.view(np.uint32))
    for k, name in enumerate(ints, start=2):
        assert [r[k] for r in rows] == columns[name].to_pylist(), name
    assert [None if r[9] is None else bool(r[9]) for r in rows] == columns["flag"].to_pylist()


@pytest.mark.parametrize(
    "columns",
    [
        {"s": pa.array(["", "a", None])},  # a line that is one empty field: no quotes
        {"n": pa.nulls(3), "f": pa.array([None, None, None], pa.float64())},
        {"f": pa.array([math.nan, -math.inf]), "h": pa.array([1.5, None], pa.float16())},
        {"x": pa.array([1.0]), "i": pa.array([-7], pa.int16())},
        {"dict": pa.array(["a", "b", None]).dictionary_encode(), "b": pa.array([True, None, False])},
    ],
)
def test_csv_writer_path_edge_shapes(columns):
    """Small shapes a CSV writer might treat specially give the joins' bytes too."""
    from qdask.tsv import _column_value, _csv_writable, _data_view, _lines_csv, _lines_joined

    batch = pa.record_batch(columns)
    columns_ = zip(batch.schema.names, batch.columns, strict=True)
    values = [_column_value(c, name, 0, "utf8mb4", {}) for name, c in columns_]
    assert _csv_writable(values)
    fast = b"".join(bytes(piece) for piece, _ in _lines_csv(values, 2))
    assert fast == bytes(_data_view(_lines_joined(values, 0)))

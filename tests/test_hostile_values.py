"""Hostile values through the whole pipeline arrive in Qserv exactly as in the source, or are refused.

Tabs, newlines, backslashes, quotes, the literal string \\N, NUL bytes, non-ASCII text in a latin1 and a
utf8mb4 table, NaN/±inf, extreme doubles and floats, and NULL in every type: each row is read back
through the czar and compared with the source value. NaN and ±inf become NULL (MariaDB cannot hold
them), which is the one documented change.
"""

from __future__ import annotations

import datetime as dt
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq
import pytest

from qdask.config import config_from_dict
from qdask.ingest import Ingest, IngestError

STRINGS = [
    "tab\there",
    "new\nline",
    "cr\rreturn",
    "back\\slash",
    'double"quote',
    "single'quote",
    "\\N",
    "N",
    "",
    None,
    "NULL",
    "\\",
    "trailing\\",
    "nul\x00byte",
    "é ü ß ø",
    "€ sign",
]
UTF8_ONLY = ["日本語", "emoji 🚀", "mixed é 日"]
DOUBLES = [
    math.nan,
    math.inf,
    -math.inf,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    5e-324,
    -0.0,
    0.1,
    1 / 3,
    None,
    123456789.123456789,
    -2.5e-300,
]
FLOATS = [
    np.float32(3.4028235e38),
    np.float32(1.4e-45),
    np.float32(math.nan),
    np.float32(0.1),
    None,
    np.float32(-1.17549435e-38),
    np.float32(16777217.0),
    np.float32(1 / 3),
]

DDL = """CREATE TABLE `{name}` (
  `id` BIGINT NOT NULL,
  `ra` DOUBLE NOT NULL,
  `decl` DOUBLE NOT NULL,
  `text_v` VARCHAR(64) NULL,
  `long_text` {text_type} NULL,
  `d` DOUBLE NULL,
  `f` FLOAT NULL,
  `b` BOOLEAN NULL,
  `i32` INT NULL,
  `i64` BIGINT NULL,
  `bin` VARBINARY(32) NULL,
  `ts` DATETIME(6) NULL
) ENGINE=MyISAM;
"""


def _cycle(values: list, n: int) -> list:
    return [values[i % len(values)] for i in range(n)]


def _table(strings: list, n: int = 64) -> pa.Table:
    rng = np.random.default_rng(7)
    floats = _cycle(FLOATS, n)
    return pa.table(
        {
            "id": pa.array(np.arange(1, n + 1), pa.int64()),
            "ra": pa.array(rng.uniform(60, 62, n)),
            "decl": pa.array(rng.uniform(-36, -34, n)),
            "text_v": pa.array(_cycle(strings, n), pa.string()),
            "long_text": pa.array(_cycle(list(reversed(strings)), n), pa.string()),
            "d": pa.array(_cycle(DOUBLES, n), pa.float64()),
            "f": pa.array([None if v is None else float(v) for v in floats], pa.float32()),
            "b": pa.array(_cycle([True, False, None], n), pa.bool_()),
            "i32": pa.array(_cycle([2**31 - 1, -(2**31), 0, None], n), pa.int32()),
            "i64": pa.array(_cycle([2**63 - 1, -(2**63), -1, None], n), pa.int64()),
            "bin": pa.array(_cycle([b"\x00\x01\t\n\\N", b"", None, bytes(range(200, 232))], n), pa.binary()),
            "ts": pa.array(
                _cycle([dt.datetime(2020, 2, 29, 23, 59, 59, 999999), None, dt.datetime(1970, 1, 1)], n),
                pa.timestamp("us"),
            ),
        }
    )


def _config(tmp_path, qserv, database: str, tables: dict[str, tuple[pa.Table, str, str]]):
    """A config loading each (data, charset, kind) table; director tables may not have TEXT columns."""
    specs = []
    for name, (data, charset, kind) in tables.items():
        pq.write_table(data, tmp_path / f"{name}.parquet")
        text_type = "VARCHAR(255)" if kind == "director" else "TEXT"
        (tmp_path / f"{name}.sql").write_text(DDL.format(name=name, text_type=text_type))
        keys = {"ra": "ra", "dec": "decl"} if kind == "director" else {}
        specs.append(
            {
                "name": name,
                "kind": kind,
                "id": "id",
                **keys,
                "charset_name": charset,
                "collation_name": f"{charset}_bin",
                "input": {"files": {"glob": f"{name}.parquet"}},
                "schema": {"ddl": f"{name}.sql"},
            }
        )
    raw = {
        "database": {
            "name": database,
            "partitioning": {"num_stripes": 340, "num_sub_stripes": 3, "overlap": 0.01667},
        },
        "tables": specs,
        "qserv": {"controller": qserv.controller_url, "czar": qserv.czar_dsn},
        "staging": {"directory": str(tmp_path / "staging")},
        "cluster": {"kind": "local", "workers": 1, "memory_per_worker": "2GiB"},
    }
    return config_from_dict(raw, tmp_path)


@pytest.fixture(autouse=True)
def _auth(qserv, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", qserv.auth_key)


def _expected(value, arrow_type):
    if value is None:
        return None
    if pa.types.is_floating(arrow_type):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if pa.types.is_boolean(arrow_type):
        return int(value)
    return value


def _check_table(qserv, database: str, name: str, source: pa.Table) -> None:
    columns = source.column_names
    select = ", ".join(f"CAST(`{c}` AS DOUBLE)" if c == "f" else f"`{c}`" for c in columns)
    conn = qserv.czar_connect(database)
    with conn.cursor() as cur:
        cur.execute(f"SELECT {select} FROM `{name}` ORDER BY id")
        rows = cur.fetchall()
    conn.close()
    assert len(rows) == source.num_rows
    for row, i in zip(rows, range(source.num_rows), strict=True):
        for j, column in enumerate(columns):
            want = _expected(source[column][i].as_py(), source.schema.field(column).type)
            got = row[j]
            if isinstance(got, bytearray):
                got = bytes(got)
            assert got == want, f"{name}.{column} row id={i + 1}: source {want!r}, Qserv {got!r}"


def test_hostile_values_arrive_exactly_in_utf8mb4_and_latin1_tables(tmp_path, qserv):
    utf8 = _table(STRINGS + UTF8_ONLY)
    latin = _table(STRINGS)
    config = _config(
        tmp_path,
        qserv,
        "qdask_hostile",
        {"Utf8": (utf8, "utf8mb4", "director"), "Latin": (latin, "latin1", "regular")},
    )
    summary = Ingest(config).run()
    assert summary.verify.ok, [c for c in summary.verify.checks if not c.ok]
    for name, data in (("Utf8", utf8), ("Latin", latin)):  # NaN/inf → NULL is reported, per column
        expected = {
            c: int(pa.compute.sum(pa.compute.is_nan(data[c]).fill_null(False)).as_py())
            + int(pa.compute.sum(pa.compute.is_inf(data[c]).fill_null(False)).as_py())
            for c in ("d", "f")
        }
        assert summary.nan_to_null[name] == expected and expected["d"] > 0
    _check_table(qserv, "qdask_hostile", "Utf8", utf8)
    _check_table(qserv, "qdask_hostile", "Latin", latin)


def test_text_a_latin1_table_cannot_hold_is_refused_with_the_column(tmp_path, qserv):
    data = _table(STRINGS + ["日本語"])
    config = _config(tmp_path, qserv, "qdask_hostile_refused", {"Latin": (data, "latin1", "director")})
    with pytest.raises(IngestError) as info:
        Ingest(config).run()
    message = str(info.value)
    assert "text_v" in message or "long_text" in message
    assert "latin1" in message
    conn = qserv.czar_connect()
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'qdask_hostile_refused'")
        assert cur.fetchall() == ()  # nothing reached Qserv
    conn.close()
    assert os.path.isdir(tmp_path / "staging")


def test_text_columns_in_a_director_table_are_refused_at_plan_time(tmp_path, qserv):
    data = _table(STRINGS)
    config = _config(tmp_path, qserv, "qdask_hostile_text", {"Latin": (data, "latin1", "director")})
    (tmp_path / "Latin.sql").write_text(DDL.format(name="Latin", text_type="TEXT"))
    with pytest.raises(IngestError, match="director table Latin: Qserv does not allow TEXT/BLOB.*long_text"):
        Ingest(config).plan()

"""Schemas → Qserv columns from felis, Qserv table JSON, MySQL DDL and Arrow; checks; column selection."""

from __future__ import annotations

import collections
import importlib.resources
from pathlib import Path

import pyarrow as pa
import pytest

from qdask.schema import (
    Column,
    SchemaError,
    SchemaMismatch,
    TableSchema,
    check_arrow_schema,
    check_batch_values,
    felis_table,
    from_arrow,
    from_ddl,
    from_qserv_json,
    is_compatible,
    select_columns,
)

# --- felis -----------------------------------------------------------------------------------------


def test_dp02_object_resolves_to_991_columns_plus_chunk_columns():
    t = felis_table("dp02_dc2", "Object", partitioned=True)
    assert len(t.columns) == 991
    cols = t.ingest_columns()
    assert len(cols) == 993
    assert cols[-2:] == [
        {"name": "chunkId", "type": "INT NOT NULL"},
        {"name": "subChunkId", "type": "INT NOT NULL"},
    ]
    assert cols[0] == {"name": "objectId", "type": "BIGINT"}
    # felis datatypes map one-to-one to MySQL types as felis' MySQL dialect compiles them
    expected = {"double": "DOUBLE", "float": "FLOAT", "boolean": "BOOLEAN", "int": "INT", "long": "BIGINT"}
    for c in t.columns:
        if c.datatype in expected:
            assert c.sql_type == expected[c.datatype], c
        else:
            assert c.datatype == "char" and c.sql_type == f"CHAR({c.length})"
    counts = collections.Counter(c.sql_type for c in t.columns)
    assert counts["DOUBLE"] == 489 and counts["BOOLEAN"] == 462
    assert t.arrow_schema().field("objectId").type == pa.int64()
    assert t.arrow_schema().field("detect_isPrimary").type == pa.bool_()


def test_felis_by_path_and_unknown_table():
    path = Path(str(importlib.resources.files("lsst.sdm.schemas") / "dp02_dc2.yaml"))
    by_path = felis_table(path, "Source")
    by_name = felis_table("dp02_dc2", "Source")
    assert [c.mysql_type for c in by_path.columns] == [c.mysql_type for c in by_name.columns]
    assert not by_name.partitioned and by_name.ingest_columns()[-1]["name"] != "subChunkId"
    with pytest.raises(SchemaError, match=r"no table 'Nope'.*ForcedSource"):
        felis_table("dp02_dc2", "Nope")
    with pytest.raises(SchemaError, match="neither a YAML file nor one of lsst-sdm-schemas"):
        felis_table("no_such_schema", "Object")


def test_dp02_object_columns_are_valid_mysql(schema_db):
    """MariaDB itself accepts all 993 columns exactly as /ingest/table would send them."""
    found = schema_db.create_like_qserv("Object", felis_table("dp02_dc2", "Object", partitioned=True))
    assert len(found) == 993
    assert found[0][:3] == ("objectId", "bigint(20)", "YES")
    assert found[-1][:3] == ("subChunkId", "int(11)", "NO")


# --- case01: JSON vs DDL ---------------------------------------------------------------------------


@pytest.mark.case01_tables
def test_case01_json_and_ddl_agree(case01, table):
    d = case01
    js = from_qserv_json(d / "ingest" / f"{table}.json")
    ddl = from_ddl(d / "schema" / f"{table}.schema", partitioned=js.partitioned)
    assert js.name == ddl.name == table
    assert js.partitioned == (table in ("Object", "Source"))
    assert js.names == ddl.names
    assert [c.mysql_type for c in js.columns] == [c.mysql_type for c in ddl.columns]
    assert js.ingest_columns() == ddl.ingest_columns()
    if js.partitioned:
        assert js.ingest_columns()[-2:] == [
            {"name": "chunkId", "type": "INT NOT NULL"},
            {"name": "subChunkId", "type": "INT NOT NULL"},
        ]
        assert js.extras["director_table"] is not None


@pytest.mark.case01_tables
@pytest.mark.parametrize("source", ["json", "ddl"])
def test_case01_schemas_create_the_columns_of_the_original_ddl(case01, schema_db, table, source):
    """Columns read from Qserv's table JSON, and from the DDL by the parser, create in MariaDB the same
    types, nullability and defaults as case01's original DDL itself (mysqldump output: backticks, int(11),
    AUTO_INCREMENT, KEY lines, ENGINE and AUTO_INCREMENT table options, '0000-00-00' defaults)."""
    path = case01 / "schema" / f"{table}.schema"
    read = from_qserv_json(case01 / "ingest" / f"{table}.json") if source == "json" else from_ddl(path)
    schema_db.execute(path.read_text().replace(f"`{table}`", f"`orig_{table}`"))
    ours = schema_db.create_like_qserv(f"{source}_{table}", read)
    orig = schema_db.columns(f"orig_{table}")
    assert ours[: len(orig)] == orig
    schema_db.execute(f"DROP TABLE `orig_{table}`")


def test_qserv_json_rejects_bad_bodies(tmp_path):
    base = {"table": "T", "is_partitioned": 0, "schema": [{"name": "a", "type": "INT"}]}
    assert from_qserv_json(base).ingest_columns() == [{"name": "a", "type": "INT"}]
    with pytest.raises(SchemaError, match="regular .* has a 'chunkId' column"):
        from_qserv_json(
            {**base, "schema": [{"name": "a", "type": "INT"}, {"name": "chunkId", "type": "INT"}]}
        )
    with pytest.raises(SchemaError, match="reserved by Qserv"):
        from_qserv_json({**base, "schema": [{"name": "qserv_trans_id", "type": "INT"}]})
    with pytest.raises(SchemaError, match="schema entry 0 is not"):
        from_qserv_json({**base, "schema": [{"name": "a"}]})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SchemaError, match=f"cannot read Qserv table JSON {bad}"):
        from_qserv_json(bad)


# --- Arrow -----------------------------------------------------------------------------------------


def test_schema_inferred_from_arrow():
    arrow = pa.schema(
        [
            pa.field("i8", pa.int8()),
            pa.field("i16", pa.int16()),
            pa.field("i32", pa.int32(), nullable=False),
            pa.field("i64", pa.int64()),
            pa.field("u32", pa.uint32()),
            pa.field("f32", pa.float32()),
            pa.field("f64", pa.float64()),
            pa.field("b", pa.bool_()),
            pa.field("s", pa.string()),
            pa.field("band", pa.string()),
            pa.field("bin", pa.binary()),
            pa.field("ts", pa.timestamp("ns")),
            pa.field("d", pa.date32()),
            pa.field("dec", pa.decimal128(12, 3)),
        ]
    )
    t = from_arrow(arrow, "T", partitioned=True, max_lengths={"band": 1})
    assert [c["type"] for c in t.ingest_columns()] == [
        "TINYINT",
        "SMALLINT",
        "INT NOT NULL",
        "BIGINT",
        "INT UNSIGNED",
        "FLOAT",
        "DOUBLE",
        "BOOLEAN",
        "TEXT",
        "VARCHAR(1)",
        "BLOB",
        "DATETIME(6)",
        "DATE",
        "DECIMAL(12,3)",
        "INT NOT NULL",
        "INT NOT NULL",
    ]
    # the inferred schema accepts the data it was inferred from
    check_arrow_schema(arrow, t, "inferred")
    with pytest.raises(SchemaError, match=r"'l': no MySQL type for Arrow type list<item: int32>"):
        from_arrow(pa.schema([pa.field("l", pa.list_(pa.int32()))]), "T")


@pytest.mark.parametrize(
    ("arrow", "sql", "ok"),
    [
        (pa.int32(), "BIGINT", True),
        (pa.int64(), "INT", False),
        (pa.uint32(), "BIGINT", True),
        (pa.uint64(), "BIGINT", False),
        (pa.uint64(), "BIGINT UNSIGNED", True),
        (pa.int8(), "TINYINT UNSIGNED", False),
        (pa.float32(), "INT", False),
        (pa.float64(), "FLOAT", True),
        (pa.int64(), "DOUBLE", True),
        (pa.bool_(), "BOOLEAN", True),
        (pa.bool_(), "TINYINT", True),
        (pa.float64(), "BOOLEAN", False),
        (pa.string(), "VARCHAR(10)", True),
        (pa.int32(), "VARCHAR(10)", False),
        (pa.binary(), "VARCHAR(10)", False),
        (pa.string(), "BLOB", True),
        (pa.timestamp("ns"), "DATETIME(6)", True),
        (pa.string(), "DATETIME", False),
        (pa.decimal128(5, 2), "DECIMAL(10,2)", True),
        (pa.decimal128(5, 3), "DECIMAL(10,2)", False),
        (pa.float64(), "DECIMAL(10,2)", False),
        (pa.dictionary(pa.int8(), pa.string()), "CHAR(1)", True),
        (pa.null(), "DOUBLE", True),
    ],
)
def test_compatibility(arrow, sql, ok):
    assert is_compatible(arrow, Column("c", sql)) is ok


def test_null_type_does_not_fit_not_null_column():
    assert not is_compatible(pa.null(), Column("c", "DOUBLE", nullable=False))


def test_mismatch_names_source_and_every_column():
    schema = TableSchema("T", (Column("id", "BIGINT", False), Column("ra", "DOUBLE"), Column("n", "INT")))
    found = pa.schema([("id", pa.int32()), ("n", pa.float64()), ("junk", pa.string())])
    with pytest.raises(SchemaMismatch) as info:
        check_arrow_schema(found, schema, "/data/file_7.parquet")
    err = info.value
    text = str(err)
    assert text.startswith("/data/file_7.parquet: columns do not match")
    assert len(err.problems) == 3
    assert "missing column 'ra': expected DOUBLE" in text
    assert "column 'n': expected INT (Arrow int32), found double" in text
    assert "extra column 'junk' of type string" in text
    check_arrow_schema(
        found.remove(2).set(1, pa.field("n", pa.int16())).append(pa.field("ra", pa.float32())), schema, "ok"
    )


def test_value_checks_not_null_and_lengths():
    schema = TableSchema(
        "T", (Column("id", "BIGINT", False), Column("x", "DOUBLE", False), Column("band", "VARCHAR(1)"))
    )
    good = pa.record_batch({"id": [1, 2], "x": [0.5, 1.0], "band": ["g", None]})
    check_batch_values(good, schema, "f")
    with pytest.raises(SchemaMismatch, match=r"'x' is NOT NULL but row 11 is NULL or NaN"):
        check_batch_values(
            pa.record_batch({"id": [1, 2], "x": [0.5, float("nan")]}), schema, "f", row_offset=10
        )
    with pytest.raises(
        SchemaMismatch, match=r"(?s)f: .*'band' \(VARCHAR\(1\)\): row 1 has 2 characters, more than 1"
    ):
        check_batch_values(pa.record_batch({"band": ["g", "gr"]}), schema, "f")
    # characters, not bytes: 'é' is one character in two UTF-8 bytes
    check_batch_values(pa.record_batch({"band": ["é"]}), schema, "f")


# --- selection -------------------------------------------------------------------------------------


def test_select_columns_include_exclude_rename():
    cols = ["objectId", "coord_ra", "coord_dec", "g_psfFlux", "r_psfFlux", "detect_isPrimary"]
    assert select_columns(cols) == [(c, c) for c in cols]
    assert select_columns(cols, include=["coord_dec", "objectId"]) == [
        ("objectId", "objectId"),
        ("coord_dec", "coord_dec"),
    ]
    assert select_columns(cols, exclude=["g_psfFlux", "r_psfFlux"], rename={"coord_ra": "ra"}) == [
        ("objectId", "objectId"),
        ("coord_ra", "ra"),
        ("coord_dec", "coord_dec"),
        ("detect_isPrimary", "detect_isPrimary"),
    ]
    with pytest.raises(SchemaError, match=r"include names unknown columns \['nope'\].*exclude names unknown"):
        select_columns(cols, include=["nope"], exclude=["nada"])
    with pytest.raises(SchemaError, match=r"rename names columns that are not selected: \['g_psfFlux'\]"):
        select_columns(cols, exclude=["g_psfFlux"], rename={"g_psfFlux": "g"})
    with pytest.raises(SchemaError, match=r"several columns would be named \['coord_dec'\]"):
        select_columns(cols, rename={"coord_ra": "coord_dec"})
    with pytest.raises(SchemaError, match="keeps no columns"):
        select_columns(cols, include=["objectId"], exclude=["objectId"])


def test_table_schema_select_keeps_types_and_renames():
    t = felis_table("dp02_dc2", "Object", partitioned=True)
    small = t.select(
        include=["objectId", "coord_ra", "coord_dec", "refExtendedness"], rename={"coord_ra": "ra"}
    )
    assert small.names == ["objectId", "coord_dec", "ra", "refExtendedness"]  # the schema's order
    assert [c["type"] for c in small.ingest_columns()] == [
        "BIGINT",
        "DOUBLE",
        "DOUBLE",
        t.column("refExtendedness").sql_type,
        "INT NOT NULL",
        "INT NOT NULL",
    ]
    assert small.column("ra").description == t.column("coord_ra").description


PEER_SCHEMAS = ["apdb", "cdb_latiss", "dp03_10yr", "dp02_obscore", "sso_base"]
FELIS_BASE = {
    "boolean": "BOOLEAN",
    "byte": "TINYINT",
    "short": "SMALLINT",
    "int": "INT",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "char": "CHAR",
    "string": "VARCHAR",
    "text": "LONGTEXT",
    "timestamp": "DATETIME",
}


def test_peer_schemas_resolve_and_create_in_mariadb(schema_db):
    """Every table of several lsst-sdm-schemas peers (text, timestamps, strings) is valid MariaDB DDL."""
    from felis.datamodel import Schema

    created = 0
    for name in PEER_SCHEMAS:
        path = Path(str(importlib.resources.files("lsst.sdm.schemas") / f"{name}.yaml"))
        for ftable in Schema.from_uri(str(path), context={"id_generation": True}).tables:
            t = felis_table(name, ftable.name)
            assert t.names == [c.name for c in ftable.columns]
            for c, fc in zip(t.columns, ftable.columns, strict=True):
                if fc.mysql_datatype is None:
                    assert c.sql_type.split("(")[0] == FELIS_BASE[fc.datatype.value], (name, c)
                if fc.datatype.value in ("char", "string"):
                    assert c.max_length == fc.length
                c.arrow_type  # noqa: B018 - every type has an Arrow type
            assert len(schema_db.create_like_qserv(f"{name}_{ftable.name}", t)) == len(t.columns)
            created += 1
    assert created >= 25

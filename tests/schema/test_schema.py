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
    normalize_type,
    select_columns,
)


def _column_types(conn, db: str, table: str) -> list[tuple[str, str, str]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        return list(cur.fetchall())


def _create_like_qserv(conn, table: str, schema: TableSchema) -> None:
    """CREATE TABLE the way a Qserv worker does: qserv_trans_id first, then the /ingest/table columns."""
    cols = ", ".join(f"`{c['name']}` {c['type']}" for c in schema.ingest_columns())
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{table}` (`qserv_trans_id` INT NOT NULL, {cols}) ENGINE=MyISAM")


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


def test_dp02_object_columns_are_valid_mysql(mariadb):
    """MariaDB itself accepts all 993 columns exactly as /ingest/table would send them."""
    t = felis_table("dp02_dc2", "Object", partitioned=True)
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS schema_felis")
    conn.select_db("schema_felis")
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS Object")
    _create_like_qserv(conn, "Object", t)
    found = _column_types(conn, "schema_felis", "Object")
    assert len(found) == 994
    assert found[1] == ("objectId", "bigint(20)", "YES")
    assert found[-1] == ("subChunkId", "int(11)", "NO")
    conn.close()


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


def test_case01_types_equal_in_mariadb(case01, case01_tables, mariadb):
    """Normalised columns create the same MariaDB column types as case01's original DDL."""
    d = case01
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS schema_case01")
        cur.execute("CREATE DATABASE schema_case01")
        cur.execute("SET SESSION sql_mode = ''")  # case01 has a '0000-00-00 00:00:00' default
    conn.select_db("schema_case01")
    for table in case01_tables:
        js = from_qserv_json(d / "ingest" / f"{table}.json")
        _create_like_qserv(conn, table, js)
        with conn.cursor() as cur:
            cur.execute(
                (d / "schema" / f"{table}.schema").read_text().replace(f"`{table}`", f"`orig_{table}`")
            )
        ours = _column_types(conn, "schema_case01", table)[1:]  # without qserv_trans_id
        orig = _column_types(conn, "schema_case01", f"orig_{table}")
        n = len(orig)
        assert ours[:n] == orig, table
    conn.close()


# --- DDL parsing -----------------------------------------------------------------------------------


def test_ddl_parser_handles_modifiers_comments_and_keys():
    ddl = """
    /*!40101 SET @saved_cs_client = @@character_set_client */;
    -- a comment
    CREATE TABLE IF NOT EXISTS `db`.`T` (
      `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT COMMENT 'the id, it''s unique',
      `price` decimal(10,2) DEFAULT '0.00',
      `kind` enum('a','b,c') NOT NULL DEFAULT 'a',
      name varchar(64) CHARACTER SET latin1 COLLATE latin1_bin DEFAULT NULL,
      `ts` datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
      `flag` tinyint(1) DEFAULT NULL,
      `r` real,
      PRIMARY KEY (`id`),
      UNIQUE KEY `u` (`name`, `kind`),
      CONSTRAINT `fk` FOREIGN KEY (`id`) REFERENCES `other` (`id`)
    ) ENGINE=MyISAM AUTO_INCREMENT=7 DEFAULT CHARSET=latin1;
    CREATE TABLE `U` (`x` int);
    """
    t = from_ddl(ddl, "T")
    assert t.names == ["id", "price", "kind", "name", "ts", "flag", "r"]
    types = [c.mysql_type for c in t.columns]
    assert types == [
        "BIGINT UNSIGNED NOT NULL",
        "DECIMAL(10,2) DEFAULT '0.00'",
        "ENUM('a','b,c') NOT NULL DEFAULT 'a'",
        "VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_bin",
        "DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)",
        "TINYINT",
        "DOUBLE",
    ]
    assert t.column("id").description == "the id, it's unique"
    assert t.column("id").arrow_type == pa.uint64()
    assert t.column("price").arrow_type == pa.decimal128(10, 2)
    assert from_ddl(ddl, "U").names == ["x"]
    with pytest.raises(SchemaError, match=r"several tables \['T', 'U'\]"):
        from_ddl(ddl)


@pytest.mark.parametrize(
    ("ddl", "message"),
    [
        ("CREATE TABLE t (a frobnicate(3) NOT NULL)", r"column 'a'.*unknown MySQL type 'frobnicate'"),
        ("CREATE TABLE t (a int NOT NULL banana)", r"column 'a'.*cannot understand 'banana'"),
        ("CREATE TABLE t (a varchar(x))", r"column 'a'.*bad arguments 'x'"),
        ("CREATE TABLE t (a int NOT NULL DEFAULT NULL)", r"NOT NULL with DEFAULT NULL"),
        ("CREATE TABLE t (a int", r"no closing parenthesis"),
        ("SELECT 1", r"no CREATE TABLE statement"),
    ],
)
def test_ddl_parser_errors_are_clear(ddl, message):
    with pytest.raises(SchemaError, match=message):
        from_ddl(ddl)


def test_normalize_type_spellings():
    assert normalize_type("bigint(20)") == "BIGINT"
    assert normalize_type("INTEGER(11) unsigned") == "INT UNSIGNED"
    assert normalize_type("bool") == "BOOLEAN"
    assert normalize_type("double precision") == "DOUBLE"
    assert normalize_type("float(30)") == "DOUBLE"
    assert normalize_type("char") == "CHAR(1)"
    assert normalize_type("numeric(5)") == "DECIMAL(5,0)"
    assert normalize_type("datetime(0)") == "DATETIME"
    with pytest.raises(SchemaError, match="unexpected text 'NOT NULL'"):
        normalize_type("int NOT NULL")


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


def test_peer_schemas_resolve_and_create_in_mariadb(mariadb):
    """Every table of several lsst-sdm-schemas peers (text, timestamps, strings) is valid MariaDB DDL."""
    from felis.datamodel import Schema

    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS schema_peers")
        cur.execute("CREATE DATABASE schema_peers")
    conn.select_db("schema_peers")
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
            _create_like_qserv(conn, f"{name}_{ftable.name}", t)
            assert len(_column_types(conn, "schema_peers", f"{name}_{ftable.name}")) == len(t.columns) + 1
            created += 1
    assert created >= 25
    conn.close()

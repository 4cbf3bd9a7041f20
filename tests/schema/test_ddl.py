"""The one MySQL DDL parser (qdask.schema.ddl, on sqlglot): Qserv's schema files, mysqldump, type synonyms.

MariaDB is the referee: a table created from our reading of a statement must have the same column types,
nullability and defaults as the table MariaDB creates from the statement itself (for Qserv's case01
schema files, see tests/schema/test_schema.py).
"""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from qdask.schema import (
    SchemaError,
    from_ddl,
    normalize_type,
    parse_column_definition,
)
from qdask.schema.ddl import create_tables, parse_type


def test_the_mysql_isms_of_qservs_files(case01, case01_tables):
    for table in case01_tables:
        [statement] = create_tables((case01 / "schema" / f"{table}.schema").read_text())
        assert statement.name == table
    logs = from_ddl(case01 / "schema" / "Logs.schema")
    assert len(logs.columns) == 24  # PRIMARY KEY (`id`) and KEY `a` (`RUNID`) are not columns
    assert logs.column("id").mysql_type == "INT NOT NULL"  # AUTO_INCREMENT dropped: Qserv tables have no keys
    assert logs.column("timereceived").mysql_type == "TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"
    assert logs.column("LEVEL").mysql_type == "INT DEFAULT '9999'"
    # reserved words as (backquoted) column names
    assert [logs.column(n).sql_type for n in ("COMMENT", "DATE", "TIMESTAMP", "STATUS")] == [
        "TEXT",
        "VARCHAR(30)",
        "BIGINT",
        "VARCHAR(80)",
    ]
    ccd = from_ddl(case01 / "schema" / "Science_Ccd_Exposure.schema")
    assert ccd.column("obsStart").mysql_type == "TIMESTAMP NOT NULL DEFAULT '0000-00-00 00:00:00'"
    assert ccd.column("poly").sql_type == "BINARY(120)" and ccd.column("poly").max_length == 120
    metric = from_ddl(case01 / "schema" / "sdqa_Metric.schema")  # UNIQUE KEY line, AUTO_INCREMENT=54
    assert metric.names == ["sdqa_metricId", "metricName", "physicalUnits", "dataType", "definition"]


MYSQLDUMP = """-- MySQL dump 10.13  Distrib 5.1.73, for redhat-linux-gnu (x86_64)
/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40103 SET TIME_ZONE='+00:00' */;
DROP TABLE IF EXISTS `Dump`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
# a hash comment; CREATE TABLE `NotMe` (x int)
CREATE TABLE `db`.`Dump` (
  `id` bigint(20) unsigned zerofill NOT NULL AUTO_INCREMENT COMMENT 'it''s the (id), unique; really',
  `key` int(11) DEFAULT NULL,
  `we``ird` varchar(8) CHARACTER SET latin1 COLLATE latin1_bin DEFAULT 'a,b)c',
  `kind` enum('x','y;z','(') NOT NULL DEFAULT 'x',
  `ts` datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  `twice` int GENERATED ALWAYS AS (`key` * 2) VIRTUAL,
  `hidden` int INVISIBLE,
  PRIMARY KEY (`id`),
  UNIQUE KEY `u` (`key`, `kind`),
  KEY `k` (`ts`) USING BTREE COMMENT 'an index',
  FULLTEXT KEY `f` (`we``ird`),
  CONSTRAINT `fk` FOREIGN KEY (`key`) REFERENCES `other` (`id`) ON DELETE CASCADE,
  CONSTRAINT `positive` CHECK (`key` > 0)
) ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=latin1 COMMENT='a table; with (parentheses)'
  PARTITION BY HASH (`id`) PARTITIONS 4;
/*!40101 SET character_set_client = @saved_cs_client */;
LOCK TABLES `Dump` WRITE;
INSERT INTO `Dump` VALUES (1,2,'x;y','x','2020-01-01 00:00:00.000000',4,5);
UNLOCK TABLES;
CREATE TABLE Other LIKE `db`.`Dump`;
CREATE INDEX i ON Dump (`key`);
"""


def test_a_mysqldump_file_with_everything_around_the_table():
    """Comments (--, #, /*!…*/), other statements, quotes, semicolons and parentheses inside strings,
    keys, indexes, constraints and table options: only the column definitions are read."""
    assert [t.name for t in create_tables(MYSQLDUMP)] == ["Dump"]
    t = from_ddl(MYSQLDUMP)
    assert t.names == ["id", "key", "we`ird", "kind", "ts", "twice", "hidden"]
    assert [c.mysql_type for c in t.columns] == [
        "BIGINT UNSIGNED NOT NULL",  # ZEROFILL implies UNSIGNED
        "INT",
        "VARCHAR(8) CHARACTER SET latin1 COLLATE latin1_bin DEFAULT 'a,b)c'",
        "ENUM('x','y;z','(') NOT NULL DEFAULT 'x'",
        "DATETIME(6) ON UPDATE CURRENT_TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)",
        "INT GENERATED ALWAYS AS (`key` * 2) VIRTUAL",
        "INT INVISIBLE",
    ]
    assert t.column("id").description == "it's the (id), unique; really"


def test_the_mysqldump_table_as_read_creates_the_same_columns_in_mariadb(schema_db):
    """A column definition as we keep it is valid MariaDB and means what the original meant."""
    schema_db.execute(
        "CREATE TABLE orig_Dump (`id` bigint(20) unsigned NOT NULL, `key` int(11) DEFAULT NULL, "
        "`we``ird` varchar(8) CHARACTER SET latin1 COLLATE latin1_bin DEFAULT 'a,b)c', "
        "`kind` enum('x','y;z','(') NOT NULL DEFAULT 'x', "
        "`ts` datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), "
        "`twice` int GENERATED ALWAYS AS (`key` * 2) VIRTUAL, `hidden` int INVISIBLE)"
    )
    assert schema_db.create_like_qserv("Dump", from_ddl(MYSQLDUMP)) == schema_db.columns("orig_Dump")


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


# MySQL's type synonyms, several of which sqlglot's MySQL dialect reads differently (INT8 as TINYINT,
# REAL as FLOAT) or not at all (INT3, MIDDLEINT, NATIONAL CHAR/VARCHAR).
SYNONYMS = [
    "INT1", "INT2", "INT3", "INT4", "INT8", "MIDDLEINT", "INTEGER", "BOOL", "REAL", "DOUBLE PRECISION",
    "FLOAT(30)", "FLOAT(10)", "DEC(5,2)", "NUMERIC(7)", "FIXED(4,1)", "DECIMAL", "NATIONAL CHAR(3)",
    "NCHAR(2)", "NATIONAL VARCHAR(5)", "NVARCHAR(4)", "CHARACTER VARYING(6)", "CHAR VARYING(3)", "CHARACTER",
    "TINYINT(1)", "SMALLINT(6) ZEROFILL", "BIGINT(20) UNSIGNED", "DOUBLE UNSIGNED", "YEAR", "BIT(3)",
    "DATETIME(0)", "TIME(3)", "TIMESTAMP(6)", "TEXT", "MEDIUMBLOB", "VARBINARY(10)", "SET('a','b')",
]  # fmt: skip


def _no_width(column_type: str) -> str:
    """An integer type without its display width (tinyint(1) → tinyint): the width means nothing, and the
    canonical spelling drops it."""
    return re.sub(r"int\(\d+\)", "int", column_type)


def test_type_synonyms_mean_what_mariadb_makes_of_them(schema_db):
    for table, types in (("orig_types", SYNONYMS), ("types", [normalize_type(t) for t in SYNONYMS])):
        schema_db.execute(
            f"CREATE TABLE {table} (" + ", ".join(f"c{i} {t}" for i, t in enumerate(types)) + ")"
        )
    ours = [(n, _no_width(t)) for n, t, _, _ in schema_db.columns("types")]
    theirs = [(n, _no_width(t)) for n, t, _, _ in schema_db.columns("orig_types")]
    assert ours == [(n, t.replace(" zerofill", "")) for n, t in theirs]  # ZEROFILL is a display option
    assert [normalize_type(t) for t in ("INT8", "REAL", "MIDDLEINT", "NATIONAL CHAR(3)")] == [
        "BIGINT",
        "DOUBLE",
        "MEDIUMINT",
        "CHAR(3)",
    ]


def test_canonical_types_are_fixed_points():
    for t in SYNONYMS:
        canonical = normalize_type(t)
        assert normalize_type(canonical) == canonical
        assert parse_type(canonical) == parse_type(canonical.lower())


def test_qserv_json_column_definitions_on_the_same_parser():
    col = parse_column_definition(
        "ts", "timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"
    )
    assert col.mysql_type == "TIMESTAMP ON UPDATE CURRENT_TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"
    assert parse_column_definition("x", " float DEFAULT NULL").mysql_type == "FLOAT"  # case01 JSON spacing
    assert parse_column_definition("s", "varchar(3) COMMENT 'a \\'b\\''").description == "a 'b'"
    assert parse_column_definition("n", "int(11) NULL").nullable


@pytest.mark.parametrize(
    ("ddl", "message"),
    [
        ("CREATE TABLE t (a frobnicate(3) NOT NULL)", r"column 'a'.*unknown MySQL type 'frobnicate'"),
        ("CREATE TABLE t (a int NOT NULL banana)", r"column 'a'.*cannot understand 'banana'"),
        ("CREATE TABLE t (a varchar(x))", r"column 'a'.*bad arguments 'x'"),
        ("CREATE TABLE t (a int NOT NULL DEFAULT NULL)", r"NOT NULL with DEFAULT NULL"),
        ("CREATE TABLE t (a int", r"no closing parenthesis"),
        ("SELECT 1", r"no CREATE TABLE statement"),
        ("CREATE TABLE t (a float unsigned)", r"column 'a': Cannot convert FLOAT to unsigned.*deprecated"),
        ("CREATE TABLE t (a int AS (b + 1) PERSISTENT)", r"column 'a': cannot understand 'PERSISTENT'"),
        ("CREATE TABLE t (a int CHECK (a > 0))", r"column 'a': cannot understand 'CHECK \(a > 0\)'"),
        ("CREATE TABLE t (a varchar(3) BINARY)", r"column 'a': cannot understand 'BINARY'"),
        ("CREATE TABLE t (a geometry)", r"column 'a': unknown MySQL type 'geometry'"),
        ("CREATE TABLE t (a int DEFAULT 'x)", r"cannot read the SQL"),
        ("CREATE TABLE t (a int, b)", r"column 'b': no type"),
        ("CREATE TABLE t LIKE u", r"no CREATE TABLE statement"),
        ("CREATE TABLE t AS (SELECT 1 AS a)", r"no CREATE TABLE statement"),
        ("CREATE TABLE t (a int); CREATE TABLE u (b int) ; SELECT '(' ", r"several tables \['t', 'u'\]"),
    ],
)
def test_constructs_not_read_are_clear_errors(ddl, message):
    with pytest.raises(SchemaError, match=message):
        from_ddl(ddl)


def test_a_named_table_is_found_and_others_are_not_parsed():
    ddl = "CREATE TABLE bad (a frobnicate); CREATE TABLE good (b int NOT NULL)"
    assert from_ddl(ddl, "good").ingest_columns() == [{"name": "b", "type": "INT NOT NULL"}]
    with pytest.raises(SchemaError, match=r"no CREATE TABLE nope; found \['bad', 'good'\]"):
        from_ddl(ddl, "nope")

"""Qserv's SQL rules (qdask.emulator.czar.rules): every refusal rule with Qserv's error text, the proxy's
routing and white-space squeezing, and the error as a MySQL client receives it from the front end."""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest

from qdask.emulator.czar.proxy import Kind, Route, czar_kind, proxy_text, route
from qdask.emulator.czar.rules import RULES, ParseRefusal, parse_select

PE = "ParseException:"
NEAR = PE + 'Error parsing query, near "{}"'
UNHANDLED = PE + 'qserv can not parse query, near "{}"'
QP = "Query processing error: QI=?: Failed to instantiate query: "

# rule → (statement, the czar's error text). Statements are as the proxy passes them on.
CASES: dict[str, tuple[str, str]] = {
    "syntax": ("SELECT foo from Filter f limit 5 garbage query !#$%!#$",
               PE + 'Failed to instantiate query: "SELECT foo from Filter f limit 5 garbage query !#$%!#$"'),
    "ParenthesisSelect": ("(SELECT x FROM T)", UNHANDLED.format("(SELECT x FROM T)")),
    "UnionSelect": ("SELECT x FROM T UNION SELECT y FROM U",
                    UNHANDLED.format("SELECT x FROM T UNION SELECT y FROM U")),
    "LockClause": ("SELECT x FROM T FOR UPDATE", UNHANDLED.format("FOR UPDATE")),
    "TableSourceNested": ("SELECT x FROM (T,U)", UNHANDLED.format("(T,U)")),
    "SubqueryTableItem": ("SELECT x FROM (SELECT x FROM T) AS s", UNHANDLED.format("(SELECT x FROM T) AS s")),
    "IndexHint": ("SELECT x FROM T USE INDEX (i)", UNHANDLED.format("USE INDEX (i)")),
    "StraightJoin": ("SELECT x FROM T STRAIGHT_JOIN U", UNHANDLED.format("STRAIGHT_JOIN U")),
    "OuterJoin": ("SELECT x FROM T LEFT JOIN U ON T.a=U.b", UNHANDLED.format("LEFT JOIN U ON T.a=U.b")),
    "SelectIntoVariables": ("SELECT x INTO @v FROM T", UNHANDLED.format("INTO @v")),
    "BooleanLiteral": ("SELECT x FROM T WHERE flag=TRUE", UNHANDLED.format("TRUE")),
    "HexadecimalLiteral": ("SELECT x FROM T WHERE a=0x1F", UNHANDLED.format("0x1F")),
    "PasswordFunctionCall": ("SELECT PASSWORD('x') FROM T", UNHANDLED.format("PASSWORD('x')")),
    "IsExpression": ("SELECT x FROM T WHERE a IS TRUE", UNHANDLED.format("a IS TRUE")),
    "SoundsLikePredicate": ("SELECT x FROM T WHERE a SOUNDS LIKE b", UNHANDLED.format("a SOUNDS LIKE b")),
    "SubqueryComparasionPredicate": ("SELECT x FROM T WHERE a > ALL(SELECT y FROM U)",
                                     UNHANDLED.format("a > ALL(SELECT y FROM U)")),
    "RegexpPredicate": ("SELECT x FROM T WHERE a REGEXP 'x'", UNHANDLED.format("a REGEXP 'x'")),
    "UnaryExpressionAtom": ("SELECT -x FROM T", UNHANDLED.format("-x")),
    "CollateExpressionAtom": ("SELECT x COLLATE latin1_bin FROM T", UNHANDLED.format("x COLLATE latin1_bin")),
    "SubqueryExpessionAtom": ("SELECT(SELECT 1 FROM U) FROM T", UNHANDLED.format("(SELECT 1 FROM U)")),
    "MysqlVariableExpressionAtom": ("SELECT x FROM T WHERE a=@v", UNHANDLED.format("@v")),
    "NestedRowExpressionAtom": ("SELECT x FROM T WHERE a=ROW(1,2)", UNHANDLED.format("ROW(1,2)")),
    "IntervalExpressionAtom": ("SELECT x FROM T WHERE d > INTERVAL 1 DAY",
                               UNHANDLED.format("INTERVAL 1 DAY")),
    "ExistsExpessionAtom": ("SELECT x FROM T WHERE EXISTS(SELECT 1 FROM U)",
                            UNHANDLED.format("EXISTS(SELECT 1 FROM U)")),
    "BinaryExpressionAtom": ("SELECT BINARY x FROM T", UNHANDLED.format("BINARY x")),
    "DataTypeFunctionCall": ("SELECT CAST(ra AS DOUBLE) FROM T", UNHANDLED.format("CAST(ra AS DOUBLE)")),
    "ValuesFunctionCall": ("SELECT VALUES(a) FROM T", UNHANDLED.format("VALUES(a)")),
    "CaseFunctionCall": ("SELECT COUNT(*) AS n,SUM(CASE WHEN(typeId=3) THEN 1 ELSE 0 END) AS g FROM Object",
                         UNHANDLED.format("CASE WHEN(typeId=3) THEN 1 ELSE 0 END")),
    "CharFunctionCall": ("SELECT CHAR(65) FROM T", UNHANDLED.format("CHAR(65)")),
    "PositionFunctionCall": ("SELECT POSITION('a' IN b) FROM T", UNHANDLED.format("POSITION('a' IN b)")),
    "SubstrFunctionCall": ("SELECT SUBSTRING(a FROM 2) FROM T", UNHANDLED.format("SUBSTRING(a FROM 2)")),
    "TrimFunctionCall": ("SELECT TRIM(BOTH 'x' FROM y) FROM T", UNHANDLED.format("TRIM(BOTH 'x' FROM y)")),
    "WeightFunctionCall": ("SELECT WEIGHT_STRING(a) FROM T", UNHANDLED.format("WEIGHT_STRING(a)")),
    "ExtractFunctionCall": ("SELECT EXTRACT(YEAR FROM d) FROM T", UNHANDLED.format("EXTRACT(YEAR FROM d)")),
    "GetFormatFunctionCall": ("SELECT GET_FORMAT(DATE,'USA') FROM T",
                              UNHANDLED.format("GET_FORMAT(DATE,'USA')")),
    "SimpleFunctionCall": ("SELECT x FROM T WHERE a=CURRENT_DATE", UNHANDLED.format("CURRENT_DATE")),
    "with rollup": ("SELECT objectId FROM T GROUP BY objectId WITH ROLLUP",
                    NEAR.format("FROM T GROUP BY objectId WITH ROLLUP") + ", WITH is not supported"),
    "partition": ("SELECT x FROM T PARTITION(p0)",
                  NEAR.format("T PARTITION(p0)") + ", PARTITION is not supported"),
    "variable assignment": ("SELECT @a :=x FROM T", NEAR.format("@a :=x") + ", LOCAL_ID is not supported"),
    "natural outer join": ("SELECT x FROM T NATURAL LEFT OUTER JOIN U",
                           NEAR.format("NATURAL LEFT OUTER JOIN U") + ", OUTER join is not handled."),
    "order by function": (  # testCControl.cc:81-84
        "SELECT objectId,iE1_SG,ABS(iE1_SG) FROM Object WHERE iE1_SG between -0.1 and 0.1 "
        "ORDER BY ABS(iE1_SG)",
        NEAR.format("ABS(iE1_SG)") + ", qserv does not support functions in ORDER BY."),
    "group by ASC": ("SELECT objectId FROM T GROUP BY objectId ASC",
                     NEAR.format("objectId ASC") + ", ASC is not supported"),
    "group by DESC": ("SELECT x FROM T GROUP BY x DESC", NEAR.format("x DESC") + ", DESC is not supported"),
    "offset": ("SELECT objectId FROM T LIMIT 3 OFFSET 2",
               NEAR.format("LIMIT 3 OFFSET 2") + ", offset is not supported"),
    "aggregator": ("SELECT COUNT(DISTINCT objectId) FROM T",
                   NEAR.format("COUNT(DISTINCT objectId)") + ", aggregator is not supported"),
    "separator": ("SELECT GROUP_CONCAT(x SEPARATOR ',') FROM T",
                  NEAR.format("GROUP_CONCAT(x SEPARATOR ',')") + ", separator is not supported"),
    "functionArgs": ("SELECT GROUP_CONCAT(x) FROM T",
                     NEAR.format("GROUP_CONCAT(x)") + ", functionArgs (plural) is not supported"),
    "escape": ("SELECT x FROM T WHERE a LIKE 'x' ESCAPE '!'",
               NEAR.format("a LIKE 'x' ESCAPE '!'") + ", ESCAPE is not supported."),
    "underscore": ("SELECT count(*) AS n,AVG(ra_PS),AVG(decl_PS),_chunkId FROM Object GROUP BY _chunkId;",
                   NEAR.format("_chunkId") + ", Identifiers in Qserv may not start with an underscore."),
    "nested qserv function": ("SELECT x FROM T WHERE(qserv_areaspec_box(0,0,1,1))",
                              NEAR.format("(qserv_areaspec_box(0,0,1,1))")
                              + ", Qserv functions may not appear in nested contexts."),
    "aggregate argument": ("SELECT SUM(a+b) FROM T", NEAR.format("a+b")),
    "no arguments": ("SELECT PI() FROM T", NEAR.format("PI()")),
    "xor": ("SELECT x FROM T WHERE a XOR b", NEAR.format("XOR")),
    "having logic": ("SELECT x FROM T GROUP BY x HAVING a > 1 AND b > 1",
                     NEAR.format("FROM T GROUP BY x HAVING a > 1 AND b > 1")),
    "not value": ("SELECT x FROM T WHERE NOT a", NEAR.format("NOT a")),
    "bit operand": ("SELECT x FROM T WHERE f(x) & 1=1", NEAR.format("f(x)")),
    "boolean operand": ("SELECT x FROM T t WHERE t.a=(1 > 0)", NEAR.format("t.a=(1 > 0)")),
    "in subquery": ("SELECT x FROM T WHERE a IN(SELECT b FROM U)", NEAR.format("SELECT b FROM U")),
    "restrictor placement": ("SELECT x FROM T WHERE NOT qserv_areaspec_box(0,0,1,1)",
                             NEAR.format("qserv_areaspec_box(0,0,1,1)")),
    "nested list": ("SELECT x FROM T WHERE(a,b)=(1,2)", NEAR.format("(a,b)")),
    "restrictor": ("SELECT x FROM T WHERE qserv_areaspec_circle(1,2)",
                   PE + "AreaRestrictorCircle requires 4 parameters."),  # sic: AreaRestrictor.cc:78
    **{f"select {word}": (f"SELECT {word} x FROM T",
                          NEAR.format(word) + ", " + RULES[f"select {word}"].message)
       for word in ("ALL", "DISTINCTROW", "HIGH_PRIORITY", "STRAIGHT_JOIN", "SQL_SMALL_RESULT",
                    "SQL_BIG_RESULT", "SQL_BUFFER_RESULT", "SQL_CACHE", "SQL_NO_CACHE",
                    "SQL_CALC_FOUND_ROWS")},
    **{name: (f"SELECT {name}(x) FROM T", NEAR.format(f"{name}(x)") + f", {name} is not supported")
       for name in ("BIT_AND", "BIT_OR", "BIT_XOR", "STD", "STDDEV", "STDDEV_POP", "STDDEV_SAMP", "VAR_POP",
                    "VAR_SAMP", "VARIANCE")},
    **{name: (f"SELECT {name}(x,1) FROM T", NEAR.format(name) + f", {name} is not supported")
       for name in ("ASCII", "CURDATE", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "CURTIME",
                    "DATE_ADD", "DATE_SUB", "IF", "INSERT", "LOCALTIME", "LOCALTIMESTAMP", "MID", "NOW",
                    "REPLACE", "SUBSTR", "SUBSTRING", "SYSDATE", "TRIM", "UTC_DATE", "UTC_TIME",
                    "UTC_TIMESTAMP")},
}  # fmt: skip


def test_every_rule_has_a_case_and_a_line_in_the_docs():
    assert set(CASES) == set(RULES)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "czar.md").read_text()
    rows = {line.split("|")[1].strip() for line in docs.splitlines() if line.startswith("| ")}
    assert set(RULES) <= rows


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_refuses_with_qservs_text(rule):
    statement, text = CASES[rule]
    with pytest.raises(ParseRefusal) as refused:
        parse_select(statement)
    assert refused.value.rule.name == rule
    assert refused.value.text == text
    assert ".h:" in RULES[rule].source or ".cc:" in RULES[rule].source


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT COUNT(*),SUM(objectId),MIN(ra_PS),MAX(decl_PS),AVG(ra_PS) FROM db.Object",
        "SELECT chunkId,COUNT(*) AS n FROM Object GROUP BY chunkId",
        "SELECT objectId,COUNT(*) AS n FROM Object GROUP BY objectId HAVING n > 1 LIMIT 10",
        "SELECT DISTINCT filterId FROM Source ORDER BY filterId DESC",
        "SELECT o.objectId,s.sourceId FROM Object o JOIN Source s USING(objectId) WHERE o.objectId IN(1,2)",
        "SELECT objectId FROM Object WHERE 1=qserv_areaspec_box(0,0,3,10) ORDER BY objectId",
        "SELECT objectId FROM Object WHERE QsErV_ArEaSpEc_BoX(0,0,3,10) AND ra_PS > -1",
        "SELECT objectId FROM Object WHERE objectId & 1=1 OR objectId % 3=1 && ra_PS DIV 2 > 1",
        "SELECT scisql_fluxToAbMag(zFlux_PS) AS mag,ra_PS + 0.0 AS ra FROM Object WHERE zFlux_PS IS NOT NULL",
        "SELECT x FROM T WHERE a NOT BETWEEN 1 AND 2 AND b NOT LIKE 'x%' AND c NOT IN(1) AND d <=> NULL",
    ],
)
def test_qserv_accepts(statement):
    parse_select(statement)


def test_restrictors_are_collected_with_their_arguments():
    parsed = parse_select("SELECT x FROM T WHERE qserv_areaspec_box(0.1,-6,4,6) AND x > 1")
    [box] = parsed.restrictors
    assert (box.shape, box.texts, box.values, box.scisql) == (
        "box",
        ("0.1", "-6", "4", "6"),
        (0.1, -6.0, 4.0, 6.0),
        "scisql_s2PtInBox",
    )
    for spec, message in [
        ("poly(0,0,1,0,1)", "AreaRestrictorPoly requires an even number"),
        ("box(0,0,1,'a')", "The argument 'a' must be convertable to a number."),
        ("hull(1,2,3)", "Unhandled restrictor function: qserv_areaspec_hull"),
    ]:
        statement = f"SELECT x FROM T WHERE qserv_areaspec_{spec}"
        with pytest.raises(ParseRefusal, match=message):
            parse_select(statement)


def test_proxy_squeezes_white_space_and_a_comment_as_lua_does():
    assert proxy_text("\t SELECT a , b\n\nFROM  t WHERE x = ( 1 )") == "SELECT a,b FROM t WHERE x=(1)"
    assert proxy_text("/* hint */SELECT 1") == "SELECT 1"
    assert proxy_text("SELECT /* c */ 1") == "SELECT / 1"  # removeLeadingComment keeps the '/' (sic)
    assert proxy_text("SELECT 'a , b'") == "SELECT 'a,b'"  # string literals are squeezed too


@pytest.mark.parametrize(
    "statement, way",
    [
        ("SHOW TABLES", Route.LOCAL),
        ("SHOW FULL PROCESSLIST", Route.QSERV),
        ("SET NAMES utf8", Route.LOCAL),
        ("SET GLOBAL QSERV_ROW_COUNTER_OPTIMIZATION=0", Route.QSERV),
        ("DESCRIBE Object", Route.LOCAL),
        ("SELECT 1", Route.LOCAL),
        ("SELECT COUNT(*) FROM Object", Route.QSERV),
        ("INSERT INTO t VALUES(1)", Route.DISALLOWED),
        ("CREATE TABLE t(a INT)", Route.DISALLOWED),
        ("load data infile 'x' into table t", Route.DISALLOWED),
        ("EXPLAIN SELECT 1 FROM t", Route.NOT_SUPPORTED),
        ("FLUSH TABLES", Route.NOT_SUPPORTED),
        ("KILL 12", Route.KILL),
        ("DROP TABLE t", Route.QSERV),
        ("DELETE FROM t", Route.QSERV),
    ],
)
def test_proxy_routes_as_mysql_proxy_lua(statement, way):
    assert route(proxy_text(statement)) is way


def test_czar_classifies_like_user_query_type():
    assert czar_kind("SELECT a FROM t") is Kind.SELECT
    assert czar_kind("SELECT * FROM QSERV_RESULT(12)") is Kind.SELECT_RESULT
    assert czar_kind("SUBMIT SELECT a FROM t") is Kind.SUBMIT
    assert czar_kind("show full processlist") is Kind.PROCESSLIST
    assert czar_kind("CALL QSERV_RESULT_DELETE(1)") is Kind.CALL
    assert czar_kind("DROP TABLE t") is Kind.INVALID
    assert czar_kind("WITH x AS (SELECT 1) SELECT * FROM x") is Kind.INVALID


@pytest.mark.parametrize(
    "sql, code, message",
    [
        (
            "SELECT COUNT(DISTINCT objectId) FROM Object",
            4110,
            "Query processing error: QI=?: Failed to instantiate query: ParseException:Error parsing query, "
            'near "COUNT(DISTINCT objectId)", aggregator is not supported',
        ),
        ("INSERT INTO Object(objectId) VALUES (1)", 4003, "Sorry, this type of queries is not supported."),
        ("UPDATE Object SET ra_PS=0", 4003, "Sorry, this type of queries is not supported."),
        ("TRUNCATE TABLE Object", 4003, "Sorry, this type of queries is not supported."),
        ("GRANT ALL ON *.* TO x", 4003, "Sorry, this type of queries is not supported in DC3b."),
        ("DROP TABLE Object", 4110, QP + "Invalid or unsupported query: DROP TABLE Object"),
        ("DELETE FROM Object", 4110, QP + "Invalid or unsupported query: DELETE FROM Object"),
        (
            "SELECT x FROM NoSuchTable",
            4110,
            QP + "NoSuchTable(css):Table 'czar_case01.NoSuchTable' does not exist. "
            "[in function getPartTableParams at src/css/CssAccess.cc:481]",
        ),
        (
            "SELECT objectId FROM Filter WHERE qserv_areaspec_box(0,0,1,1)",
            4110,
            QP + "AnalysisError:Spatial restrictor without partitioned table.",
        ),
        (
            "SELECT o1.objectId FROM Object o1,Object o2",
            4110,
            QP + "AnalysisError:Query involves partitioned "
            "table joins that Qserv does not know how to evaluate using only partition-local data",
        ),
        (
            "SELECT filterId,filterId FROM Filter",
            4110,
            QP + "AnalysisError:Duplicate names detected in "
            "select expression, rewrite SQL query using alias: [1] '`filterid`' at positions: 1 2",
        ),
        (
            "SELECT foobar FROM Filter",
            4120,
            "Unable to return query results:\n[1054] Unknown column 'foobar' in 'SELECT'",
        ),
    ],
)
def test_refusals_reach_the_client_as_qservs_errors(sql, code, message, czar_case01, czar_connect):
    with czar_connect("czar_case01") as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.MySQLError) as refused:
            cur.execute(sql)
        assert refused.value.args == (code, message)
        assert refused.value.sqlstate == "Proxy"  # mysqlProxy.lua:55
        cur.execute("SELECT COUNT(*) AS n FROM Object")  # the catalog is untouched, the session goes on
        assert cur.fetchall() == ((88,),)


def test_mariadb_errors_of_local_statements_pass_through(czar_case01, czar_connect):
    with czar_connect("czar_case01") as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.MySQLError) as refused:
            cur.execute("DESCRIBE NoSuchTable")
        assert refused.value.args[0] == 1146 and refused.value.sqlstate == "42S02"

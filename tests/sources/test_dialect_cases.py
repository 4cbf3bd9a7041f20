"""Every ``LOAD DATA`` option and escape on hand-written bytes, and RFC 4180 files, each read by qdask and by
MariaDB's ``LOAD DATA`` with the same options, compared value for value.

Outcomes: "same" (MariaDB loads cleanly; qdask reads the same rows, also in tiny blocks), "nothing" (both
read no row), "damaged"
(MariaDB warns; qdask refuses), "stricter" (MariaDB loads without a warning what is not the file's data,
e.g. the rest of the file as one field after a quote that never closes; qdask refuses, naming why).
"""

from __future__ import annotations

import pytest
from dialect_referee import Referee, qdask_rows, same_rows

from qdask.sources.units import SourceError
from qdask.text_dialect import TextDialect

TWO = "a VARBINARY(64), b VARCHAR(64)"
THREE = "a VARBINARY(64), b VARBINARY(64), c VARBINARY(64)"

# name: (bytes, dialect options on the mysql preset, columns, outcome)
CASES = {
    "every escape sequence": (b"\\0\\b\\n\\r\\t\\Z|\\q\\\\|\\\t|\\\n|\\,\t\\N\n", {}, TWO, "same"),
    "escaped delimiter is data (Qserv's patch=159\\,0)": (
        b"patch=159\\,0,x\n",
        {"fields_terminated_by": ","},
        TWO,
        "same",
    ),
    "escaped newline is data": (b"a\\\nb\tc\n", {}, TWO, "same"),
    "escaped enclosure inside and outside an enclosure": (
        b'"say \\"hi\\"",\\"raw\n',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"'},
        TWO,
        "same",
    ),
    "\\N whole is NULL, inside is N": (b"\\N\tx\\Ny\n", {}, TWO, "same"),
    "enclosed \\N is NULL, enclosed empty is the empty string": (
        b'"\\N",""\n',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"'},
        TWO,
        "same",
    ),
    "unenclosed NULL is NULL when fields can be enclosed": (
        b'NULL,"NULL"\nNU\\LL,x\n',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"'},
        TWO,
        "same",
    ),
    "NULL is text without an enclosure": (b"NULL\tNULL\n", {}, TWO, "same"),
    "a lone escape character ends the file": (b"a\tb\\", {}, TWO, "same"),
    "no escapes: backslashes are data": (b"a\\tb\t\\N\n", {"fields_escaped_by": ""}, TWO, "same"),
    "doubled enclosure characters": (
        b'"a""b","""",""\n',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"'},
        THREE,
        "same",
    ),
    "a stray quote inside an enclosed field is data": (
        b'"a"b",c\n"x,"y",z\n',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"'},
        TWO,
        "same",
    ),
    "a quote inside an unenclosed field is data": (
        b'5\'3",x\nab"c,d\n',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"'},
        TWO,
        "same",
    ),
    "newlines and delimiters inside an enclosed field": (
        b'"line1\nline2,x",y\n',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"'},
        TWO,
        "same",
    ),
    "CRLF inside an enclosed field with CRLF lines": (
        b'"a\r\nb",c\r\n"",d\r\n',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"', "lines_terminated_by": "\\r\\n"},
        TWO,
        "same",
    ),
    "CR before LF is data with LF lines": (b"a\r\tb\r\n", {}, TWO, "same"),
    "CR lines": (b"a,b\rc,d\r", {"fields_terminated_by": ",", "lines_terminated_by": "\\r"}, TWO, "same"),
    "lines starting by skips text before the prefix": (
        b"junk\n>>a,b\nmore junk >>c,d\n>>e,>>f\n",
        {"fields_terminated_by": ",", "lines_starting_by": ">>"},
        TWO,
        "same",
    ),
    "self-overlapping multi-character terminator": (
        b"a|||b||c\nd||e|||f\n",
        {"fields_terminated_by": "||"},
        THREE,
        "same",
    ),
    "field terminator that starts the line terminator": (
        b"a,b,\nc,d,\n",
        {"fields_terminated_by": ",", "lines_terminated_by": ",\\n"},
        TWO,
        "same",
    ),
    "escape character equal to the enclosure": (
        b'"a""b",c""d\n"e",f\n',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"', "fields_escaped_by": '"'},
        TWO,
        "same",
    ),
    "the file ends after a field terminator": (
        b"a,b,c\nd,e,",
        {"fields_terminated_by": ","},
        THREE,
        "damaged",
    ),
    "one empty field too many at the end of a line": (
        b"a,b,\nc,d,\n",
        {"fields_terminated_by": ","},
        TWO,
        "same",
    ),
    "an empty line is one empty field": (b"x\n\ny\n", {}, "a VARBINARY(8)", "same"),
    "tab inside an enclosed field with tab terminators": (
        b'"a\tb"\tc\n',
        {"fields_enclosed_by": '"'},
        TWO,
        "same",
    ),
    "enclosed last field at the end of the file": (
        b'a,"b"',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"'},
        TWO,
        "same",
    ),
    "latin1 text, MariaDB's cp1252 with C1 controls": (
        b"\x80\x81\xe9\x9d\tx\n",
        {"charset": "latin1"},
        "a VARBINARY(8), b VARCHAR(8)",
        "same",
    ),
    "latin1 bytes into a text column": (b"x\t\x80\x81\xe9\x9d\xff\n", {"charset": "latin1"}, TWO, "same"),
    "utf8mb4 text": (b"\xf0\x9f\x98\x80\t\xc3\xa9t\xc3\xa9\n", {}, "a VARCHAR(8), b VARCHAR(8)", "same"),
    "a 4-byte character in a utf8mb3 file": (
        b"x\t\xf0\x9f\x98\x80\n",
        {"charset": "utf8mb3"},
        "a VARCHAR(8), b VARCHAR(8) CHARACTER SET utf8mb3",
        "damaged",
    ),
    "invalid UTF-8": (b"x\t\xe9t\xe9\n", {}, TWO, "damaged"),
    "an empty field in a number column": (b"1,\n", {"fields_terminated_by": ","}, "a INT, b INT", "damaged"),
    "too few fields": (b"a\tb\nc\n", {}, TWO, "damaged"),
    "too many fields": (b"a\tb\tc\nd\te\n", {}, TWO, "damaged"),
    "an enclosure never closed": (
        b'a,"b\nc,d\n',
        {"fields_terminated_by": ",", "fields_enclosed_by": '"'},
        TWO,
        "stricter",
    ),
    "too many fields on a last line without a newline": (b"a\tb\nc\td\te", {}, TWO, "stricter"),
    "ignore lines with an escaped newline and an unclosed quote": (
        b'skip \\\nstill skipped\n"skip\nskip"\na\tb\n',
        {"ignore_lines": 3, "fields_enclosed_by": '"'},
        TWO,
        "same",
    ),
    "ignore more lines than the file has": (b"a\tb\n", {"ignore_lines": 5}, TWO, "nothing"),
}

# RFC 4180 files: the csv preset (comma, optional double quotes, no escapes, CRLF, a header line).
RFC4180 = {
    "rfc4180 example": b'a,b,c\r\n"aaa","b\r\nbb","ccc"\r\nzzz,yyy,xxx\r\n',
    "rfc4180 without a final CRLF": b"a,b,c\r\naaa,bbb,ccc\r\nzzz,yyy,xxx",
    "rfc4180 doubled quotes and spaces": b'a,b,c\r\n"a ""b"" c", lead,"trail "\r\n,"",NULL\r\n',
    "rfc4180 backslashes are data": b'a,b,c\r\n\\N,"\\",\\,\r\n',
}


def _check(referee: Referee, tmp_path, raw: bytes, dialect: TextDialect, columns: str, outcome: str):
    path = tmp_path / "case.txt"
    path.write_bytes(raw)
    loaded = referee.load(path, columns, dialect)
    if outcome == "nothing":
        assert loaded.rows == [] and loaded.warnings == () and qdask_rows(path, columns, dialect) == []
        return
    if outcome != "same":
        assert bool(loaded.warnings) == (outcome == "damaged"), loaded
        with pytest.raises(SourceError):
            qdask_rows(path, columns, dialect)
        return
    assert loaded.warnings == () and loaded.rows
    schema = referee.schema(columns)
    for block in (1 << 20, 1, 2, 3, 5, 8):
        ours = qdask_rows(path, columns, dialect, batch_bytes=block)
        assert same_rows(ours, loaded.rows, schema), (block, ours, loaded.rows)


@pytest.mark.parametrize("name", list(CASES))
def test_hand_written_bytes_read_as_mariadb_loads_them(referee, tmp_path, name):
    raw, options, columns, outcome = CASES[name]
    _check(referee, tmp_path, raw, TextDialect.from_options("mysql", **options), columns, outcome)


@pytest.mark.parametrize("name", list(RFC4180))
def test_rfc4180_files_read_as_mariadb_loads_them(referee, tmp_path, name):
    _check(referee, tmp_path, RFC4180[name], TextDialect.preset("csv"), THREE, "same")


def test_an_enclosure_never_closed_is_named(tmp_path):
    path = tmp_path / "open.csv"
    path.write_bytes(b'a,b\nc,"d\ne,f\n')
    dialect = TextDialect.from_options("mysql", fields_terminated_by=",", fields_enclosed_by='"')
    with pytest.raises(SourceError, match=r"open.csv: row 2: the file ends inside an enclosed field"):
        qdask_rows(path, TWO, dialect)


def test_mandatory_and_optional_enclosure_read_alike(referee, tmp_path):
    """``OPTIONALLY`` only changes what MariaDB writes; both read a mixed file the same way."""
    raw = b'"a",b\nc,"d"\n"NULL",NULL\n'
    rows = set()
    for optionally in (False, True):
        dialect = TextDialect.from_options(
            "mysql", fields_terminated_by=",", fields_enclosed_by='"', fields_optionally_enclosed=optionally
        )
        _check(referee, tmp_path, raw, dialect, TWO, "same")
        path = tmp_path / "case.txt"
        rows.add(tuple(qdask_rows(path, TWO, dialect)))
    assert len(rows) == 1


NUMBER_TEXTS = (
    " 1.5|1.5 |\t42| 42|42 |+5|1e3|.5|5.|-0|-2.5|2.5e-1|0x10|1,5|| |nan|NaN|inf|-Infinity|1.5e|00012|1e400|"
    "-1e-400|3.4028235e38|3.4028234e38|1e39|9223372036854775807|9223372036854775808|-9223372036854775808.4|"
    "127|128|-129|5.0|0.1|2.2250738585072014e-308|4.9e-324|-1"
).split("|")
NUMBER_TYPES = ["DOUBLE", "FLOAT", "BIGINT", "INT", "TINYINT", "INT UNSIGNED"]


@pytest.mark.parametrize("sql_type", NUMBER_TYPES)
def test_number_texts_read_as_mariadb_stores_them(referee, tmp_path, sql_type):
    """A number text MariaDB stores without a warning reads as MariaDB's value, and so does one whose only
    fault is whitespace after the number; any other text MariaDB would store changed is refused."""
    columns = f"v {sql_type}"
    dialect = TextDialect.from_options("mysql", fields_terminated_by=";")  # a tab and a comma are values here
    outcomes = {"same": 0, "spaces after": 0, "refused": 0}

    def load(text: str):
        path = tmp_path / "v.txt"
        path.write_bytes(text.encode() + b"\n")
        return path, referee.load(path, columns, dialect)

    for text in NUMBER_TEXTS:
        path, loaded = load(text)
        if loaded.warnings and (text == text.rstrip() or load(text.rstrip())[1].warnings):
            outcomes["refused"] += 1
            with pytest.raises(SourceError, match="is not a valid"):
                qdask_rows(path, columns, dialect)
            continue
        outcomes["spaces after" if loaded.warnings else "same"] += 1
        path, loaded = load(text)
        assert qdask_rows(path, columns, dialect) == loaded.rows, (sql_type, text, loaded.rows)
    assert outcomes["same"] >= 8 and outcomes["refused"] >= 8 and outcomes["spaces after"] >= 1, outcomes

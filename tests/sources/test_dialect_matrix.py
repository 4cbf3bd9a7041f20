"""Files MariaDB writes (``SELECT … INTO OUTFILE``) in every ``LOAD DATA`` dialect, from a table of hostile
values, read by qdask and compared value for value with MariaDB's own ``LOAD DATA`` of the same file.

The rule the referee imposes: when MariaDB loads a file cleanly (no warning), qdask reads exactly the same
rows; when MariaDB can only load it with warnings (a dialect that cannot carry the values: no escape and no
enclosure around a tab, say), qdask refuses it rather than load damaged rows. Each dialect's expected
outcome is stated, so that neither rule can hold vacuously.
"""

from __future__ import annotations

import bz2
import datetime
import gzip
from pathlib import Path

import pytest
from dialect_referee import Referee, qdask_rows, same_rows

from qdask.sources.units import SourceError
from qdask.text_dialect import MARIADB_LATIN1, TextDialect

TEXTS = [
    "",
    "plain",
    "tab\there",
    "comma,here",
    'quote"here',
    "single'quote",
    "back\\slash",
    "new\nline",
    "cr\rhere",
    "crlf\r\nhere",
    "\\N",
    "N",
    "NULL",
    "null",
    '"',
    '""',
    '"quoted"',
    "'",
    "\\",
    "ends\\",
    ",",
    "\t",
    "\n",
    "\r",
    "|",
    "||",
    "a|||b",
    "EOL",
    "xEOL\ny",
    ">>",
    "x>>y",
    "^",
    "^N",
    "é",
    "€uro",
    "Ωmega",
    "😀 grin",
    "space ",
    " lead",
    "\x00nul",
    "\x1a",
    "\b",
    "a\\,b",
    "patch=159,0",
    "\\0\\t\\n",
    "\"',\t\n\r\\|^",
]
DOUBLES = [
    0.0,
    -0.0,
    0.1,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    5e-324,
    2.2250738585072014e-308,
    1e-300,
    -123456.789,
    None,
]
FLOATS = [0.0, 3.4028234663852886e38, 1.401298464324817e-45, 1.1754943508222875e-38, 0.1, -2.5, None]
INTS = [0, -9223372036854775808, 9223372036854775807, 42, None]
TIMES = [
    datetime.datetime(1970, 1, 1),
    datetime.datetime(2038, 1, 19, 3, 14, 7, 999999),
    datetime.datetime(1000, 1, 1, 0, 0, 0, 1),
    None,
]
# ASCII only: INTO OUTFILE … CHARACTER SET converts binary values too (a byte invalid in it becomes "?")
BINARY = [b"", b"\x00\x7f", b"\t\n\r\\\"',", b"\\N", b"NULL", bytes(range(128))[::5], None]

COLUMNS = (
    "id INT NOT NULL, s VARCHAR(64) CHARACTER SET utf8mb4, l VARCHAR(64) CHARACTER SET latin1, "
    "b VARBINARY(64), d DOUBLE, f FLOAT, n BIGINT, t DATETIME(6)"
)
_LATIN1 = set(MARIADB_LATIN1)


def _latin1(text: str | None) -> bool:
    return text is not None and set(text) <= _LATIN1


def hostile_rows() -> list[tuple]:
    """Every hostile text once (and every other value cycled beside them), then a row of NULLs."""
    rows = []
    for i, text in enumerate(TEXTS):
        rows.append(
            (
                i,
                text,
                text if _latin1(text) else None,
                BINARY[i % len(BINARY)],
                DOUBLES[i % len(DOUBLES)],
                FLOATS[i % len(FLOATS)],
                INTS[i % len(INTS)],
                TIMES[i % len(TIMES)],
            )
        )
    rows.append((len(TEXTS), None, None, None, None, None, None, None))
    return rows


@pytest.fixture(scope="module")
def hostile(referee: Referee) -> Referee:
    """Table ``hostile`` on the referee, holding `hostile_rows()`."""
    referee.execute("DROP TABLE IF EXISTS hostile", f"CREATE TABLE hostile ({COLUMNS}) CHARACTER SET utf8mb4")
    with referee.conn.cursor() as cur:
        cur.executemany("INSERT INTO hostile VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", hostile_rows())
    return referee


#: name → (dialect options, which rows, expected outcome). Outcomes: "round-trip" (MariaDB loads cleanly
#: what it wrote), "damaged" (MariaDB warns: the dialect cannot carry these values, qdask must refuse).
DIALECTS = {
    "mysql default": ({}, "all", "round-trip"),
    "comma": ({"fields_terminated_by": ","}, "all", "round-trip"),
    "comma, optionally enclosed": (
        {"fields_terminated_by": ",", "fields_enclosed_by": '"', "fields_optionally_enclosed": True},
        "all",
        "round-trip",
    ),
    "comma, enclosed": ({"fields_terminated_by": ",", "fields_enclosed_by": '"'}, "all", "round-trip"),
    "single quote, optionally": (
        {"fields_terminated_by": ";", "fields_enclosed_by": "'", "fields_optionally_enclosed": True},
        "all",
        "round-trip",
    ),
    "pipe, CRLF": ({"fields_terminated_by": "|", "lines_terminated_by": "\\r\\n"}, "all", "round-trip"),
    "CR lines, enclosed": (
        {"fields_terminated_by": ",", "fields_enclosed_by": '"', "lines_terminated_by": "\\r"},
        "all",
        "round-trip",
    ),
    "multi-character terminators": (
        {"fields_terminated_by": "||", "lines_terminated_by": "EOL\\n"},
        "all",
        "round-trip",
    ),
    "caret escape": ({"fields_terminated_by": ",", "fields_escaped_by": "^"}, "all", "round-trip"),
    "lines starting by": (
        {"fields_terminated_by": ",", "fields_enclosed_by": '"', "lines_starting_by": ">>"},
        "all",
        "round-trip",
    ),
    "no escape, enclosed, plain values": (
        {"fields_terminated_by": ",", "fields_enclosed_by": '"', "fields_escaped_by": ""},
        "plain",
        "round-trip",
    ),
    "no escape, enclosed, hostile values": (
        {"fields_terminated_by": ",", "fields_enclosed_by": '"', "fields_escaped_by": ""},
        "all",
        "damaged",
    ),
    "no escape, no enclosure, hostile values": ({"fields_escaped_by": ""}, "all", "damaged"),
    "latin1 file": ({"charset": "latin1"}, "latin1", "round-trip"),
    "latin1 file, comma, enclosed": (
        {"fields_terminated_by": ",", "fields_enclosed_by": '"', "charset": "latin1"},
        "latin1",
        "round-trip",
    ),
}


def _where(rows: str) -> str:
    ids = [r[0] for r in hostile_rows()]
    if rows == "latin1":
        ids = [r[0] for r in hostile_rows() if r[1] is None or _latin1(r[1])]
    elif rows == "plain":  # values without a terminator, a quote or a backslash
        bad = set(',\t\n\r"\\')
        ids = [r[0] for r in hostile_rows() if r[1] is None or not (set(r[1]) & bad)]
        ids = [i for i in ids if i not in _binary_rows_with(bad)]
    return f"WHERE id IN ({', '.join(map(str, ids))})"


def _binary_rows_with(chars: set[str]) -> set[int]:
    return {r[0] for r in hostile_rows() if r[3] is not None and set(r[3].decode("latin1")) & chars}


def _no_float(schema):
    return type(schema)(schema.name, tuple(c for c in schema.columns if c.name != "f"))


def check_against_referee(path: Path, dialect: TextDialect, referee: Referee, outcome: str, original=None):
    loaded = referee.load(path, COLUMNS, dialect)
    schema = referee.schema(COLUMNS)
    if outcome == "damaged":
        assert loaded.warnings, "MariaDB loaded the file cleanly: not a damaged case"
        with pytest.raises(SourceError):
            qdask_rows(path, COLUMNS, dialect)
        return
    assert loaded.warnings == ()
    for block in (1 << 20, 97):  # one block, and blocks that cut records, escapes and terminators apart
        ours = qdask_rows(path, COLUMNS, dialect, batch_bytes=block)
        assert same_rows(ours, loaded.rows, schema), [
            (a, b) for a, b in zip(ours, loaded.rows, strict=False) if not same_rows([a], [b], schema)
        ][:3]
    if original is not None:  # INTO OUTFILE writes FLOAT with 6 significant digits: f is not compared
        assert same_rows(
            [r[:5] + r[6:] for r in loaded.rows], [r[:5] + r[6:] for r in original], _no_float(schema)
        )


@pytest.mark.parametrize("name", list(DIALECTS))
def test_a_mariadb_written_file_reads_as_mariadb_loads_it(hostile, tmp_path, name):
    options, rows, outcome = DIALECTS[name]
    dialect = TextDialect.from_options("mysql", **options)
    path = hostile.dump(f"SELECT * FROM hostile {_where(rows)} ORDER BY id", tmp_path / "out.txt", dialect)
    with hostile.conn.cursor() as cur:
        cur.execute(f"SELECT id, s, l, b, d, CAST(f AS DOUBLE), n, t FROM hostile {_where(rows)} ORDER BY id")
        original = [tuple(r) for r in cur.fetchall()]
    check_against_referee(path, dialect, hostile, outcome, original if outcome == "round-trip" else None)


@pytest.mark.parametrize("compression", ["gzip", "bz2"])
def test_compressed_files_read_as_the_plain_ones(hostile, tmp_path, compression):
    dialect = TextDialect.from_options("mysql", fields_terminated_by=",", fields_enclosed_by='"')
    plain = hostile.dump("SELECT * FROM hostile ORDER BY id", tmp_path / "out.csv", dialect)
    packed = tmp_path / f"out.csv.{'gz' if compression == 'gzip' else 'bz2'}"
    packed.write_bytes((gzip.compress if compression == "gzip" else bz2.compress)(plain.read_bytes()))
    assert qdask_rows(packed, COLUMNS, dialect) == qdask_rows(plain, COLUMNS, dialect)
    check_against_referee(packed, dialect, hostile, "round-trip")


def test_a_header_line_is_checked_and_skipped_as_ignore_1_lines(hostile, tmp_path):
    dialect = TextDialect.from_options("mysql", header=True)
    body = hostile.dump("SELECT * FROM hostile ORDER BY id", tmp_path / "body.tsv", dialect).read_bytes()
    path = tmp_path / "headed.tsv"
    path.write_bytes(b"id\ts\tl\tb\td\tf\tn\tt\n" + body)
    check_against_referee(path, dialect, hostile, "round-trip")
    path.write_bytes(b"id\ts\tl\tb\td\tf\tnn\tt\n" + body)
    with pytest.raises(Exception, match="missing column 'n'"):
        qdask_rows(path, COLUMNS, dialect)


def test_ignore_lines_skips_lines_as_mariadb_does(hostile, tmp_path):
    """IGNORE n LINES honours escapes (an escaped newline does not end a line) but not enclosures."""
    dialect = TextDialect.from_options("mysql", fields_enclosed_by='"', ignore_lines=3)
    body = hostile.dump("SELECT * FROM hostile ORDER BY id", tmp_path / "body.tsv", dialect).read_bytes()
    path = tmp_path / "skipped.tsv"
    path.write_bytes(b'junk with an escaped \\\nnewline\n"quoted\nnewline"\n' + body)
    check_against_referee(path, dialect, hostile, "round-trip")


def test_random_dialects_read_as_mariadb_loads_them(hostile, tmp_path):
    """Forty dialects drawn from every option's values (a fixed seed), each written by MariaDB from the
    hostile table and read both ways: clean loads equal, damaged ones refused."""
    import random

    rng = random.Random(20260601)
    outcomes = {"same": 0, "damaged": 0}
    while sum(outcomes.values()) < 40:
        options = {
            "fields_terminated_by": rng.choice([",", "\\t", "|", "||", ";;", "ab"]),
            "fields_enclosed_by": rng.choice(["", '"', "'", "|"]),
            "fields_optionally_enclosed": rng.choice([True, False]),
            "fields_escaped_by": rng.choice(["\\\\", "", "^", '"']),
            "lines_terminated_by": rng.choice(["\\n", "\\r\\n", "\\r", "EOL\\n", "|\\n"]),
            "lines_starting_by": rng.choice(["", "", ">>"]),
            "charset": rng.choice(["utf8mb4", "latin1"]),
        }
        try:
            dialect = TextDialect.from_options("mysql", **options)
        except ValueError:
            continue  # refused by the one validation (test_dialect_config.py holds config and plan to it)
        path = hostile.dump(
            f"SELECT * FROM hostile {_where('latin1' if dialect.charset == 'latin1' else 'all')} ORDER BY id",
            tmp_path / "random.txt",
            dialect,
        )
        outcome = "damaged" if hostile.load(path, COLUMNS, dialect).warnings else "same"
        outcomes[outcome] += 1
        check_against_referee(path, dialect, hostile, "round-trip" if outcome == "same" else "damaged")
    assert outcomes["same"] >= 15 and outcomes["damaged"] >= 5, outcomes

"""The three ways a text block is read agree, memory stays bounded, and runaway records are refused.

`qdask.sources.text_serial` follows MariaDB's reader step by step (and is held against MariaDB by
test_dialect_cases.py); here the vectorised split (`text_scan`) and pyarrow's parser are held against it.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from dialect_referee import Referee, qdask_rows, same_rows
from test_dialect_cases import CASES, RFC4180

import qdask.sources.text as text_module
from qdask.schema import Column, TableSchema
from qdask.sources.text import read_text
from qdask.sources.text_scan import Fields, Scan
from qdask.sources.text_serial import split_serial
from qdask.sources.units import SourceError
from qdask.text_dialect import TextDialect

CORPUS = {
    name: (raw, TextDialect.from_options("mysql", **opts))
    for name, (raw, opts, _, out) in CASES.items()
    if out == "same"
}
CORPUS.update({name: (raw, TextDialect.preset("csv")) for name, raw in RFC4180.items()})


def _records(fields: Fields) -> list[list[bytes | None]]:
    values = [
        None if null else bytes(fields.data[a:b])
        for a, b, null in zip(fields.offsets[:-1], fields.offsets[1:], fields.null, strict=True)
    ]
    ends = np.cumsum(fields.counts)
    return [values[e - c : e] for c, e in zip(fields.counts, ends, strict=True)]


def test_the_vectorised_split_equals_the_serial_one():
    """Wherever the scan decides (regular quoting), its fields are the serial reader's, byte for byte."""
    decided = 0
    for name, (raw, dialect) in CORPUS.items():
        start = 0
        if dialect.header:  # the header line is the serial reader's in both
            start = split_serial(raw, 0, dialect, final=True, budget=1)[1]
        serial, end = split_serial(raw, start, dialect, final=True, budget=len(raw) + 1)
        assert end == len(raw), name
        scan = Scan(raw, start, dialect, final=True)
        if scan.irregular and scan.end == start:
            continue
        decided += 1
        ours = scan.fields()
        assert _records(ours) == _records(serial)[: ours.records], name
        assert list(ours.open_end) == list(serial.open_end[: ours.records]), name
    assert decided >= len(CORPUS) * 2 // 3  # most of the corpus is regular


def _mixed_file(rows: int, seed: int = 5) -> tuple[bytes, list[tuple]]:
    """Comma-separated, optionally quoted, backslash escapes in a few records: every path gets blocks."""
    rng = np.random.default_rng(seed)
    lines, expected = [], []
    for i in range(rows):
        kind = rng.integers(0, 50)
        if kind == 0:
            raw, value = b'"a,\\"b\\"\nc"', 'a,"b"\nc'  # escapes inside an enclosure: the scan
        elif kind == 1:
            raw, value = b'x"y', 'x"y'  # a quote inside an unenclosed field: the serial reader
        elif kind == 2:
            raw, value = b"\\N", None
        else:
            raw, value = b'"s%d"' % i if kind % 2 else b"s%d" % i, f"s{i}"
        x = float(rng.normal())
        lines.append(b"%d,%r,%s\n" % (i, x, raw))
        expected.append((i, x, value))
    return b"".join(lines), expected


def test_a_large_mixed_file_in_small_blocks_reads_as_mariadb_loads_it(referee: Referee, tmp_path):
    raw, expected = _mixed_file(20_000)
    path = tmp_path / "mixed.csv"
    path.write_bytes(raw)
    dialect = TextDialect.from_options("mysql", fields_terminated_by=",", fields_enclosed_by='"')
    columns = "id BIGINT NOT NULL, x DOUBLE, s TEXT"
    loaded = referee.load(path, columns, dialect)
    assert loaded.warnings == () and loaded.rows == expected
    schema = referee.schema(columns)
    for block in (4096, 64 * 1024):
        assert same_rows(qdask_rows(path, columns, dialect, batch_bytes=block), expected, schema)


def test_batches_stay_bounded_whatever_the_file_size():
    raw, _ = _mixed_file(60_000)
    schema = TableSchema("T", (Column("id", "BIGINT", False), Column("x", "DOUBLE"), Column("s", "TEXT")))
    dialect = TextDialect.from_options("mysql", fields_terminated_by=",", fields_enclosed_by='"')
    sizes = [
        b.nbytes
        for b in read_text(
            "f", io.BytesIO(raw), dialect, schema, [(n, n) for n in schema.names], block_bytes=64 * 1024
        )
    ]
    assert len(sizes) >= len(raw) // (64 * 1024)
    assert max(sizes) < 256 * 1024 < pa.Table.from_pydict({"r": [raw]}).nbytes


def test_a_record_longer_than_the_limit_is_refused_naming_the_terminator(monkeypatch):
    monkeypatch.setattr(text_module, "MAX_RECORD_BYTES", 1 << 16)
    schema = TableSchema("T", (Column("a", "TEXT"), Column("b", "TEXT")))
    raw = b"a\tb\n" + b"x" * (1 << 18) + b"\tb\n"
    with pytest.raises(SourceError, match=r"f: row 2 is longer than .*is the line terminator '\\n'"):
        list(read_text("f", io.BytesIO(raw), TextDialect(), schema, [("a", "a")], block_bytes=4096))
    dialect = TextDialect.from_options("csv", header=False)  # CRLF lines in a file of LF lines
    with pytest.raises(SourceError, match=r"row 1 is longer than"):
        list(
            read_text("f", io.BytesIO(b"a,b\n" * (1 << 16)), dialect, schema, [("a", "a")], block_bytes=4096)
        )


def test_lines_without_the_prefix_are_dropped_as_they_stream(monkeypatch):
    """A long stretch without the LINES STARTING BY prefix is skipped, not held."""
    monkeypatch.setattr(text_module, "MAX_RECORD_BYTES", 1 << 16)
    schema = TableSchema("T", (Column("a", "TEXT"), Column("b", "TEXT")))
    raw = b"noise\n" * (1 << 16) + b">>a\tb\n" + b"noise\n" * 1000 + b">>c\td\n"
    dialect = TextDialect.from_options("mysql", lines_starting_by=">>")
    batches = read_text("f", io.BytesIO(raw), dialect, schema, [("a", "a"), ("b", "b")], block_bytes=4096)
    assert [tuple(r.values()) for b in batches for r in b.to_pylist()] == [("a", "b"), ("c", "d")]

"""Read throughput of qdask's text reader per dialect, against pyarrow's CSV parser on the same bytes.

    .venv/bin/python -m benchmarks.bench_text_read [--rows N] [--repeat R]

Four files of the same 40-column rows (`benchmarks.bench_tsv.make_table`: ids, doubles with NaN, floats,
flags; two string columns in all but the first), each read whole by `qdask.sources.files.read_file`:

* ``tsv numbers``: MySQL's default dialect, no string column: the pyarrow path;
* ``tsv strings``: the same with the string columns, whose tabs, backslashes and ``\\N`` texts are escaped
  in about a third of the rows: the vectorised path;
* ``qserv csv``: the same bytes with commas for tabs (Qserv's itest dialect: comma, ``\\N``, escapes);
* ``rfc4180``: pyarrow's own CSV writer (quoted strings, doubled quotes, LF lines, booleans as 0/1; its
  empty fields and ``nan`` read as NULL through the dialect's ``null`` spellings).

pyarrow's ``read_csv`` of the same bytes on one thread (its own quoting rules, no ``LOAD DATA`` escapes, so
not the same values) is the floor. The best of ``--repeat`` runs is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from benchmarks.bench_tsv import make_table
from qdask.schema import from_arrow
from qdask.sources.files import read_file
from qdask.text_dialect import TextDialect
from qdask.tsv import write_tsv


def _files(rows: int, tmp: Path) -> list[tuple[str, Path, TextDialect, pa.Schema]]:
    numbers, strings = make_table(rows, 40, strings=0), make_table(rows, 40, strings=2)
    write_tsv(numbers.to_batches(), tmp / "numbers.tsv", charset="utf8mb4")
    write_tsv(strings.to_batches(), tmp / "strings.tsv", charset="utf8mb4")
    (tmp / "qserv.csv").write_bytes((tmp / "strings.tsv").read_bytes().replace(b"\t", b","))
    options = pacsv.WriteOptions(include_header=False)
    as_mysql = [c.cast(pa.int8()) if pa.types.is_boolean(c.type) else c for c in strings.columns]  # 0/1
    pacsv.write_csv(pa.table(as_mysql, names=strings.column_names), tmp / "rfc.csv", write_options=options)
    mysql, comma = TextDialect(), TextDialect.from_options("mysql", fields_terminated_by=",")
    rfc = TextDialect.from_options("csv", header=False, lines_terminated_by="\\n", null=["", "nan"])
    return [
        ("tsv numbers", tmp / "numbers.tsv", mysql, numbers.schema),
        ("tsv strings", tmp / "strings.tsv", mysql, strings.schema),
        ("qserv csv", tmp / "qserv.csv", comma, strings.schema),
        ("rfc4180", tmp / "rfc.csv", rfc, strings.schema),
    ]


def _floor(path: Path, dialect: TextDialect, schema: pa.Schema) -> int:
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=schema.names, use_threads=False),
        parse_options=pacsv.ParseOptions(
            delimiter=dialect.fields_terminated_by,
            quote_char=dialect.enclosure or False,
            newlines_in_values=True,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict(zip(schema.names, schema.types, strict=True)),
            null_values=["\\N", ""],
            strings_can_be_null=True,
        ),
    )
    return table.num_rows


def best(fn, repeat: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = fn()
        times.append(time.perf_counter() - start)
    return min(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"# bench_text_read  pyarrow {pa.__version__}  numpy {np.__version__}  python "
        f"{platform.python_version()}  cpus {os.cpu_count()}"
    )
    print("| file | dialect | MB | rows | qdask s | qdask MB/s | pyarrow floor s | qdask / floor |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        for name, path, dialect, arrow_schema in _files(args.rows, Path(tmp)):
            schema = from_arrow(arrow_schema, "T")
            ours, rows = best(
                lambda p=path, s=schema, d=dialect: sum(
                    b.num_rows for b in read_file(p, s, dialect=d, check_values=False)
                ),
                args.repeat,
            )
            floor, _ = best(lambda p=path, d=dialect, s=arrow_schema: _floor(p, d, s), args.repeat)
            mb = path.stat().st_size / 1e6
            clause = dialect.load_data_options().replace("CHARACTER SET utf8mb4 ", "")
            print(
                f"| {name} | `{clause}` | {mb:.1f} | {rows} | {ours:.3f} | {mb / ours:.0f} | {floor:.3f} | "
                f"{ours / floor:.2f} |"
            )


if __name__ == "__main__":
    main()

"""One table of file formats: the config accepts exactly the names the reader reads, and reads them alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from qdask.config import ConfigError, config_from_dict, match_files
from qdask.formats import COMPRESSION_SUFFIXES, FORMAT_BY_EXTENSION, format_from_name, strip_compression
from qdask.schema import Column, TableSchema
from qdask.sources.files import detect_format, read_file
from qdask.sources.units import SourceError
from qdask.text_dialect import TextDialect

# every extension, and every text one compressed (a compressed Parquet file is refused by both, below)
NAMES = [
    f"data{ext}{suffix}"
    for ext, fmt in FORMAT_BY_EXTENSION.items()
    for suffix in ("", *((*COMPRESSION_SUFFIXES, ".GZ", ".BZ2") if fmt != "parquet" else ()))
]


@pytest.mark.parametrize("name", NAMES)
def test_config_and_reader_infer_the_same_format_and_compression(tmp_path, name, one_table_config):
    cfg = config_from_dict(one_table_config(f"*/{name}"), tmp_path, check_paths=False)
    files = cfg.table("T").input.files
    found = detect_format(tmp_path / "x" / name)
    assert (files.format, files.compression) == (found.kind, found.compression or "none")
    assert files.format == FORMAT_BY_EXTENSION[strip_compression(name)[0][4:]]
    assert files.compression == COMPRESSION_SUFFIXES.get("." + name.lower().rsplit(".", 1)[-1], "none")


def test_gzipped_parquet_is_refused_by_both(one_table_config):
    with pytest.raises(SourceError, match="compress internally"):
        detect_format("data.parquet.gz")
    with pytest.raises(ConfigError, match="compression must be auto or none"):
        config_from_dict(one_table_config("data.parquet.gz"), check_paths=False)


def test_an_unknown_extension_is_refused_by_both_naming_the_known_ones(one_table_config):
    assert format_from_name("x.dat") is None and format_from_name("dir.tsv/x") is None
    with pytest.raises(SourceError, match="cannot tell the format"):
        detect_format("x.dat.gz")
    with pytest.raises(ConfigError) as info:
        config_from_dict(one_table_config("x.dat.gz"), check_paths=False)
    assert ".tab" in str(info.value) and "set format to parquet, csv or tsv" in str(info.value)


def test_a_tab_file_is_accepted_by_the_config_and_read(tmp_path, one_table_config):
    """``*.tab`` used to be read by the reader but refused by the config."""
    (tmp_path / "t.tab").write_text("1\tg\n2\t\\N\n")
    cfg = config_from_dict(one_table_config("*.tab"), tmp_path)
    files = cfg.table("T").input.files
    assert (files.format, files.text_dialect) == ("tsv", TextDialect.preset("mysql"))
    [path] = match_files(files)
    schema = TableSchema("T", (Column("id", "INT", nullable=False), Column("band", "CHAR(1)")))
    rows = [r for batch in read_file(path, schema) for r in batch.to_pylist()]
    assert rows == [{"id": 1, "band": "g"}, {"id": 2, "band": None}]


def test_globs_skip_hidden_names_and_directories(tmp_path, one_table_config):
    for rel in ("a.tsv", ".hidden.tsv", "sub/b.tsv", ".cache/c.tsv", "dir.tsv/d.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("1\n")
    cfg = config_from_dict(one_table_config("**/*.tsv"), tmp_path)
    assert match_files(cfg.table("T").input.files) == [tmp_path / "a.tsv", tmp_path / "sub" / "b.tsv"]
    # a hidden directory written out in the glob is followed (data under ~/.local, say)
    cfg = config_from_dict(one_table_config(".cache/*.tsv"), tmp_path)
    assert match_files(cfg.table("T").input.files) == [tmp_path / ".cache" / "c.tsv"]
    with pytest.raises(ConfigError, match="no file matches"):
        config_from_dict(one_table_config("*hidden.tsv"), tmp_path)  # a wildcard never matches a hidden name


def test_the_documented_extensions_are_the_table():
    readme = " ".join((Path(__file__).resolve().parents[1] / "configs" / "README.md").read_text().split())
    assert "(.parquet/.parq/.pq," in readme
    assert ".csv, .tsv/.txt/.tab, each optionally .gz, .gzip or .bz2)" in readme
    assert set(FORMAT_BY_EXTENSION) == {".parquet", ".parq", ".pq", ".csv", ".tsv", ".txt", ".tab"}

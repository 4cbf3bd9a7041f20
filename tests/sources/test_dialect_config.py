"""The text dialect in the config: ``qdask plan --check`` refuses exactly what ``qdask plan`` refuses (one
validation, `TextDialect`, serves both), errors say how to write it, and the printed config reads back."""

from __future__ import annotations

import itertools

import pytest
import yaml
from click.testing import CliRunner

from qdask.cli import main
from qdask.config import ConfigError, config_from_dict
from qdask.text_dialect import TextDialect

#: One key at a time from the format's preset, each with values LOAD DATA allows and ones it does not.
SINGLE = {
    "fields_terminated_by": ["\\t", ",", "|", "||", "<>", "", "\\\\", "é", 5],
    "fields_enclosed_by": ["", '"', "'", "ab", "\\t", ","],
    "fields_optionally_enclosed": [True, False, "maybe"],
    "fields_escaped_by": ["\\\\", "\\", "", "^", "xy", ","],
    "lines_terminated_by": ["\\n", "\\r\\n", "\\r", "EOL\\n", "", "\\t"],
    "lines_starting_by": ["", ">>", "\\\\"],
    "ignore_lines": [0, 1, 3, -1, "two"],
    "header": [True, False],
    "null": [[], [""], ["NA", "null"], ["a\tb"], "NA", [1]],
    "charset": ["utf8mb4", "utf8mb3", "utf8", "latin1", "ascii", "koi8r"],
    "preset": ["mysql", "tsv", "csv", "excel"],
}
#: Pairs of keys whose values only clash together.
PAIRS = [
    ("header", [True], "ignore_lines", [0, 2]),
    ("fields_escaped_by", ["|", "^"], "fields_terminated_by", ["|", ","]),
    ("fields_enclosed_by", ['"', "|"], "lines_terminated_by", ["|\\n", "\\n"]),
    ("fields_enclosed_by", ['"'], "fields_escaped_by", ['"', "\\\\"]),
    ("fields_terminated_by", [",", "\\n"], "lines_terminated_by", ["\\n", ","]),
]


def _matrix() -> list[tuple[str, object]]:
    specs: list[tuple[str, object]] = [("tsv", None), ("csv", None), ("tsv", "csv"), ("csv", "nonsense")]
    for fmt in ("tsv", "csv"):
        specs += [(fmt, {key: value}) for key, values in SINGLE.items() for value in values]
        for k1, v1s, k2, v2s in PAIRS:
            specs += [(fmt, {k1: a, k2: b}) for a, b in itertools.product(v1s, v2s)]
    return specs


MATRIX = _matrix()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("dialect-config")
    (root / "t.tsv").write_bytes(b"1\tx\n")
    (root / "t.csv").write_bytes(b"id,s\r\n1,x\r\n")
    (root / "t.sql").write_text("CREATE TABLE T (id INT NOT NULL, s VARCHAR(8))")
    return root


def _config(root, fmt: str, dialect) -> dict:
    files = {"glob": f"t.{fmt}"}
    if dialect is not None:
        files["dialect"] = dialect
    return {
        "database": {
            "name": "db",
            "partitioning": {"num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.01},
        },
        "tables": [{"name": "T", "kind": "regular", "input": {"files": files}, "schema": {"ddl": "t.sql"}}],
        "qserv": {"controller": "http://127.0.0.1:25081", "czar": "mysql://qsmaster@127.0.0.1:4040"},
        "staging": {"directory": str(root / "staging")},
    }


def test_plan_check_refuses_exactly_what_plan_refuses(workspace):
    runner = CliRunner()
    refused = accepted = data_refused = 0
    for i, (fmt, dialect) in enumerate(MATRIX):
        path = workspace / f"c{i}.yaml"
        path.write_text(yaml.safe_dump(_config(workspace, fmt, dialect), allow_unicode=True))
        check = runner.invoke(main, ["plan", "--check", str(path)])
        plan = runner.invoke(main, ["plan", str(path)])
        # plan also reads the files; a file the dialect reads into other columns is a data refusal (exit 1),
        # which --check (config only) cannot see. Config refusals (exit 2) must agree exactly.
        assert (check.exit_code == 2) == (plan.exit_code == 2), (fmt, dialect, check.output, plan.output)
        if plan.exit_code == 1:
            assert check.exit_code == 0 and "qdask plan stopped: file:" in plan.output, (dialect, plan.output)
            data_refused += 1
        if check.exit_code:
            refused += 1
            assert check.exit_code == 2 and "dialect" in check.output, (dialect, check.output)
        else:
            accepted += 1
    assert refused >= 25 and accepted >= 60  # both sides of the matrix are walked
    print(f"refused {refused}, accepted {accepted}, of which the data refused {data_refused}")
    assert data_refused < accepted // 2  # the data files suit most dialects: the comparison is real


def test_the_resolved_config_reads_back_to_the_same_dialect(workspace):
    """``plan --check`` prints every dialect key; that text, loaded again, is the same dialect."""
    for fmt, dialect in MATRIX:
        try:
            cfg = config_from_dict(_config(workspace, fmt, dialect), workspace)
        except ConfigError:
            continue
        files = cfg.table("T").input.files
        printed = yaml.safe_load(cfg.to_yaml())["tables"][0]["input"]["files"]["dialect"]
        again = config_from_dict(_config(workspace, fmt, printed), workspace).table("T").input.files
        assert again.text_dialect == files.text_dialect, (fmt, dialect, printed)


def test_dialect_errors_name_the_key_and_the_rule(workspace):
    def problem(fmt, dialect=None, **files):
        raw = _config(workspace, fmt, dialect)
        raw["tables"][0]["input"]["files"].update(files)
        with pytest.raises(ConfigError) as info:
            config_from_dict(raw, workspace)
        return str(info.value)

    assert "fields_enclosed_by 'ab': at most one character" in problem("csv", {"fields_enclosed_by": "ab"})
    assert "fields_terminated_by is empty" in problem("tsv", {"fields_terminated_by": ""})
    assert "holds the escape character" in problem("tsv", {"fields_terminated_by": "\\\\,"})
    assert "charset 'koi8r': expected one of" in problem("tsv", {"charset": "koi8r"})
    assert "did you mean 'fields_terminated_by'" in problem("tsv", {"field_terminated_by": ","})
    assert "write dialect: {fields_terminated_by: ','}" in problem("tsv", delimiter=",")
    assert "write dialect: {null: ['']}" in problem("csv", null_marker="")
    assert "\\N is NULL whenever dialect.fields_escaped_by is set" in problem("tsv", null_marker="\\N")
    assert "write dialect: {charset: 'latin1'}" in problem("tsv", encoding="latin1")
    assert "only applies to csv/tsv" in problem("tsv", {"charset": "latin1"}, format="parquet")


def test_sql_notation_and_yaml_escapes_mean_the_same_characters(workspace):
    """``'\\t'`` (backslash t, as in LOAD DATA) and ``"\\t"`` (a real tab) are both a tab."""
    as_sql = {"fields_terminated_by": "\\t", "fields_escaped_by": "\\\\", "lines_terminated_by": "\\r\\n"}
    as_chars = {"fields_terminated_by": "\t", "fields_escaped_by": "\\", "lines_terminated_by": "\r\n"}
    dialects = [
        config_from_dict(_config(workspace, "tsv", d), workspace).table("T").input.files.text_dialect
        for d in (as_sql, as_chars)
    ]
    assert dialects[0] == dialects[1] == TextDialect(lines_terminated_by="\r\n")

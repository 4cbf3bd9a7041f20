"""The bad-input corpus: every failure a user can cause or meet ends `qdask ingest` with one clear message
naming the file, key or URL, its exit code, no traceback, the input untouched, nothing loaded and nothing
published — and (for each class of fault a user fixes outside qdask) the same command, re-run once the
cause is fixed, resumes and loads every row exactly once.

Each case is one `qdask ingest` (in this process, through the command's own error handling) of a small
director/child/regular catalog against the session's Qserv stand-in, with one thing wrong. Most fail at
plan or preflight, before a Dask cluster starts; the few that fail in a stage run it on a local cluster.
Other parts of the corpus: tests/faults/test_bad_input.py (bad rows and key policies),
tests/faults/test_interrupt.py (Ctrl-C), tests/test_cli_errors.py (how errors are printed).
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import http.server
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from qdask.cli import main
from qdask.ledger import FileStatus
from qdask.qserv import QservClient

ROWS = 40  # director rows; the child has two per director row, the regular table 5 rows
LAYOUT = {"num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.01667}


# -- the catalog --------------------------------------------------------------------------------------------


def write_inputs(data: Path) -> None:
    """A director (d.parquet), its child (c.parquet) and a regular table (r.parquet), all valid."""
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    ids = np.arange(1, ROWS + 1, dtype=np.int64) + 2**62
    ra, dec = rng.uniform(10, 11, ROWS), rng.uniform(-1, 1, ROWS)
    director = {"id": ids, "ra": ra, "dec": dec, "flux": rng.normal(size=ROWS)}
    pq.write_table(pa.table(director), data / "d.parquet")
    pq.write_table(
        pa.table(
            {
                "cid": np.arange(2 * ROWS, dtype=np.int64),
                "did": np.repeat(ids, 2),
                "ra": np.repeat(ra, 2),
                "dec": np.repeat(dec, 2),
            }
        ),
        data / "c.parquet",
    )
    pq.write_table(pa.table({"rid": np.arange(5, dtype=np.int64), "name": list("abcde")}), data / "r.parquet")


def base_config(root: Path, data: Path, qserv, database: str) -> dict:
    """The catalog's config (plain data), pointed at the stand-in; no retries, so a fault shows at once."""

    def files(name: str) -> dict:
        return {"files": {"glob": str(data / name)}}

    return {
        "database": {"name": database, "partitioning": dict(LAYOUT)},
        "tables": [
            {"name": "D", "kind": "director", "id": "id", "ra": "ra", "dec": "dec",
             "input": files("d.parquet"), "schema": {"infer": True}},
            {"name": "C", "kind": "child", "director": "D", "director_key": "did", "ra": "ra", "dec": "dec",
             "id": "cid", "input": files("c.parquet"), "schema": {"infer": True}},
            {"name": "R", "kind": "regular", "id": "rid", "input": files("r.parquet"),
             "schema": {"infer": True}},
        ],
        "qserv": {
            "controller": qserv.controller_url,
            "czar": qserv.czar_dsn,
            "retries": {"attempts": 1},
            "timeouts": {"connect": 2},
        },
        "staging": {"directory": str(root / "staging")},
        "cluster": {"kind": "local", "workers": 1, "memory_per_worker": "1GiB"},
    }  # fmt: skip


def digest(folder: Path) -> str:
    """A digest of every file under `folder` (the input must be left untouched by a failed run)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path).encode() + path.read_bytes())
    return h.hexdigest()


# -- servers that are not a Qserv controller ---------------------------------------------------------------


class _NotQserv(http.server.BaseHTTPRequestHandler):
    """/html/…: a web page; /e500/…: HTTP 500; /json/…: JSON that is no Qserv envelope."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        kind = self.path.split("/")[1]
        status, ctype, body = {
            "html": (200, "text/html", b"<html><body>Welcome to nginx!</body></html>"),
            "e500": (500, "text/plain", b"Internal Server Error"),
            "json": (200, "application/json", b'{"hello": "world"}'),
        }.get(kind, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST = do_GET  # noqa: N815

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def not_qserv() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotQserv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the cases ----------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a case's change may use: the test's directory, the inputs, the stand-in and the fake servers."""

    root: Path
    data: Path
    qserv: object
    not_qserv: str
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)


Change = Callable[[dict, Ctx], None]


@dataclass(frozen=True)
class Case:
    id: str
    change: Change
    code: int
    says: tuple[str, ...]  # fragments of the message; {root}, {data}, {controller}, {czar} are filled in


def table(raw: dict, name: str) -> dict:
    return next(t for t in raw["tables"] if t["name"] == name)


def parquet(ctx: Ctx, name: str, columns: dict) -> str:
    """Write a Parquet file of `columns` into the case's own input folder; returns its path."""
    folder = ctx.root / "in"
    folder.mkdir(exist_ok=True)
    pq.write_table(pa.table(columns), folder / name)
    return str(folder / name)


def director_with(ctx: Ctx, raw: dict, **extra) -> None:
    """The director's file with extra (or replaced) columns."""
    t = pq.read_table(ctx.data / "d.parquet").to_pydict()
    t.update(extra)
    table(raw, "D")["input"]["files"]["glob"] = parquet(ctx, "d.parquet", t)


def child_with(ctx: Ctx, raw: dict, **extra) -> None:
    t = pq.read_table(ctx.data / "c.parquet").to_pydict()
    t.update(extra)
    table(raw, "C")["input"]["files"]["glob"] = parquet(ctx, "c.parquet", t)


def regular_text(ctx: Ctx, raw: dict, text: bytes, name: str = "r.tsv", **files) -> None:
    """The regular table read from a text file (with a DDL schema)."""
    folder = ctx.root / "in"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(text)
    r = table(raw, "R")
    r["input"] = {"files": {"glob": str(folder / name), **files}}
    (folder / "r.sql").write_text("CREATE TABLE R (rid BIGINT NOT NULL, name VARCHAR(8))")
    r["schema"] = {"ddl": str(folder / "r.sql")}


def cfg(path: str, value) -> Change:
    """Set a config key (dotted path; tables by name: tables.D.id)."""

    def change(raw: dict, ctx: Ctx) -> None:
        parts = path.split(".")
        node = raw
        for i, part in enumerate(parts[:-1]):
            if i > 0 and parts[i - 1] == "tables":
                node = next(t for t in node if t["name"] == part)
            else:
                node = node.setdefault(part, {})
        node[parts[-1]] = value(ctx) if callable(value) else value

    return change


def both(*changes: Change) -> Change:
    def change(raw: dict, ctx: Ctx) -> None:
        for c in changes:
            c(raw, ctx)

    return change


def env(**values: str) -> Change:
    def change(raw: dict, ctx: Ctx) -> None:
        ctx.env.update(values)

    return change


def args(*extra: str) -> Change:
    def change(raw: dict, ctx: Ctx) -> None:
        ctx.args.extend(extra)

    return change


def text_file(content: str) -> Change:
    """Replace the whole config file's text."""

    def change(raw: dict, ctx: Ctx) -> None:
        raw.clear()
        raw["__text__"] = content

    return change


def ddl(table_name: str, sql: str) -> Change:
    """The table's schema from a DDL file holding `sql`."""

    def change(raw: dict, ctx: Ctx) -> None:
        ctx.root.mkdir(parents=True, exist_ok=True)
        (ctx.root / f"{table_name}.sql").write_text(sql)
        table(raw, table_name)["schema"] = {"ddl": str(ctx.root / f"{table_name}.sql")}

    return change


def data_names(*names: str) -> Change:
    """The director's file with extra columns of these names (schema inferred from the data)."""
    return lambda raw, ctx: director_with(ctx, raw, **{n: list(range(ROWS)) for n in names})


# fmt: off
CONFIG_CASES = [
    Case("yaml-syntax", text_file("database: {name: x\n"), 2, ("config.yaml",)),
    Case("yaml-list", text_file("- 1\n- 2\n"), 2, ("config.yaml",)),
    Case("yaml-empty", text_file(""), 2, ("config.yaml",)),
    Case("unknown-key", cfg("database.nmae", "x"), 2, ("nmae",)),
    Case("database-name-dash", cfg("database.name", "my-db"), 2, ("database.name", "my-db")),
    Case("database-name-long", cfg("database.name", "d" * 60), 2, ("database.name",)),
    Case("table-name-space", cfg("tables.R.name", "R 2"), 2, ("'R 2'",)),
    Case("controller-credentials", cfg("qserv.controller", "http://u:pw@127.0.0.1:1"), 2, ("credentials",)),
    Case("controller-scheme", cfg("qserv.controller", "ftp://127.0.0.1:1"), 2, ("qserv.controller",)),
    Case("czar-scheme", cfg("qserv.czar", "postgres://u@127.0.0.1:1"), 2, ("qserv.czar",)),
    Case("child-unknown-director", cfg("tables.C.director", "Nope"), 2, ("Nope",)),
    Case("orphans-on-director", cfg("tables.D.policies", {"orphans": "stop"}), 2, ("policies.orphans",)),
    Case("negative-overlap", cfg("database.partitioning.overlap", -1), 2, ("overlap",)),
    Case("zero-stripes", cfg("database.partitioning.num_stripes", 0), 2, ("num_stripes",)),
    Case("id-excluded", cfg("tables.D.columns", {"exclude": ["id"]}), 2, ("'id'", "removed")),
    Case("duplicate-table", lambda raw, ctx: raw["tables"].append(copy.deepcopy(raw["tables"][2])), 2,
         ("R",)),
    Case("workers-zero", args("--workers", "0"), 2, ("--workers",)),
]

PLAN_CASES = [
    Case("glob-matches-nothing", cfg("tables.R.input.files.glob", lambda c: str(c.root / "none*.parquet")), 2,
         ("none*.parquet", "no file matches")),
    Case("parquet-truncated", lambda raw, ctx: _truncated(raw, ctx), 1, ("d.parquet", "truncated")),
    Case("parquet-not-parquet", lambda raw, ctx: _not_parquet(raw, ctx), 1, ("d.parquet",)),
    Case("id-misspelled", cfg("tables.D.id", "idd"), 1, ("'idd'", "did you mean 'id'")),
    Case("ra-missing", cfg("tables.D.ra", "ra_nope"), 1, ("'ra_nope'",)),
    Case("director-key-missing", cfg("tables.C.director_key", "oid"), 1, ("'oid'",)),
    Case("data-name-dash", data_names("flux-g"), 1, ("'flux-g'", "column name", "columns.rename")),
    Case("data-name-space", data_names("flux g"), 1, ("'flux g'",)),
    Case("data-name-non-ascii", data_names("flüx"), 1, ("'flüx'",)),
    Case("data-name-digit-first", data_names("1flux"), 1, ("'1flux'",)),
    Case("data-name-65-chars", data_names("f" * 65), 1, ("f" * 65,)),
    Case("data-name-dot", data_names("flux.g"), 1, ("'flux.g'",)),
    Case("data-name-backtick", data_names("flux`g"), 1, ("flux`g",)),
    Case("data-name-reserved", data_names("qserv_trans_id"), 1, ("qserv_trans_id", "reserved")),
    Case("data-name-chunkid", data_names("chunkId"), 1, ("chunkId",)),
    Case("data-names-case", data_names("Flux"), 1, ("Flux",)),
    Case("director-key-float", lambda raw, ctx: child_with(
        ctx, raw, did=[float(v) for v in pq.read_table(ctx.data / "c.parquet")["did"].to_pylist()]), 1,
        ("director_key column 'did' is double", "2^53", "Int64")),
    Case("director-key-uint64", lambda raw, ctx: child_with(
        ctx, raw, did=pa.array(pq.read_table(ctx.data / "c.parquet")["did"].to_pylist(), pa.uint64())), 1,
        ("'did' is uint64",)),
    Case("id-uint64", lambda raw, ctx: director_with(
        ctx, raw, id=pa.array(pq.read_table(ctx.data / "d.parquet")["id"].to_pylist(), pa.uint64())), 1,
        ("'id' is uint64",)),
    Case("ddl-uint64-into-bigint", both(
        ddl("D", "CREATE TABLE D (id BIGINT, ra DOUBLE, `dec` DOUBLE, flux BIGINT)"),
        lambda raw, ctx: director_with(ctx, raw, flux=pa.array(range(ROWS), pa.uint64()))), 1,
        ("'flux'", "BIGINT", "uint64")),
    Case("ddl-float-into-bigint",
         ddl("D", "CREATE TABLE D (id BIGINT, ra DOUBLE, `dec` DOUBLE, flux BIGINT)"), 1,
         ("'flux'", "BIGINT", "double")),
    Case("ddl-string-into-double", both(
        ddl("D", "CREATE TABLE D (id BIGINT, ra DOUBLE, `dec` DOUBLE, flux DOUBLE)"),
        lambda raw, ctx: director_with(ctx, raw, flux=["x"] * ROWS)), 1, ("'flux'", "DOUBLE", "string")),
    Case("ddl-missing-column", ddl("D", "CREATE TABLE D (id BIGINT, ra DOUBLE, `dec` DOUBLE, mag DOUBLE)"), 1,
         ("'mag'",)),
    Case("ddl-unparsable", ddl("D", "CREATE TABLE D (id BIGINTEGRAL"), 1, ("D.sql", "parenthesis")),
    Case("qserv-json-missing", cfg("tables.R.schema", lambda c: {"qserv_json": str(c.root / "nope.json")}), 2,
         ("nope.json",)),
    Case("csv-infer", lambda raw, ctx: _csv_infer(raw, ctx), 1, ("r.csv", "infer")),
    Case("director-text-column", both(
        ddl("D", "CREATE TABLE D (id BIGINT, ra DOUBLE, `dec` DOUBLE, flux TEXT)"),
        lambda raw, ctx: director_with(ctx, raw, flux=["x"] * ROWS)), 1, ("TEXT/BLOB", "flux")),
]

PREFLIGHT_CASES = [
    Case("controller-down", cfg("qserv.controller", lambda c: f"http://127.0.0.1:{closed_port()}"), 1,
         ("{controller}", "cannot be reached")),
    Case("controller-html", cfg("qserv.controller", lambda c: c.not_qserv + "/html"), 1,
         ("{controller}/meta/version", "not JSON")),
    Case("controller-500", cfg("qserv.controller", lambda c: c.not_qserv + "/e500"), 1,
         ("{controller}/meta/version", "HTTP 500")),
    Case("controller-not-envelope", cfg("qserv.controller", lambda c: c.not_qserv + "/json"), 1,
         ("{controller}/meta/version", "envelope")),
    Case("controller-is-a-worker",
         cfg("qserv.controller", lambda c: next(iter(c.qserv.worker_urls.values()))), 1,
         ("{controller}/meta/version", "replication-controller")),
    Case("controller-version", cfg("qserv.api_version", 99), 1, ("{controller}", "99")),
    Case("auth-key-wrong", env(QSERV_AUTH_KEY="not-the-key"), 1,
         ("{controller}", "auth key", "QSERV_AUTH_KEY")),
    Case("auth-key-unset", env(QSERV_AUTH_KEY=""), 1, ("{controller}", "QSERV_AUTH_KEY")),
    Case("auth-key-other-env", both(cfg("qserv.auth_key_env", "MY_QSERV_KEY"), env(MY_QSERV_KEY="nope")), 1,
         ("MY_QSERV_KEY",)),
    Case("czar-down", cfg("qserv.czar", lambda c: f"mysql://qsmaster@127.0.0.1:{closed_port()}"), 1,
         ("czar", "mysql://qsmaster@127.0.0.1:")),
    Case("czar-wrong-database", cfg("qserv.czar", lambda c: c.qserv.czar_dsn.rstrip("/") + "/other_db"), 1,
         ("other_db", "qserv.czar")),
    Case("staging-is-a-file", lambda raw, ctx: _staging_file(raw, ctx), 1, ("{root}/staging-file",)),
    Case("staging-under-sys", cfg("staging.directory", "/sys/qdask-staging"), 1, ("/sys/qdask-staging",)),
]

RUNTIME_CASES = [
    Case("text-not-a-number", lambda raw, ctx: regular_text(ctx, raw, b"1\ta\nx2\tb\n"), 1,
         ("r.tsv", "'x2'")),
    Case("text-too-long", lambda raw, ctx: regular_text(ctx, raw, b"1\tabcdefghijk\n"), 1, ("r.tsv", "name")),
    Case("text-null-in-not-null", lambda raw, ctx: regular_text(ctx, raw, b"\\N\ta\n"), 1, ("r.tsv", "rid")),
    Case("text-gzip-truncated", lambda raw, ctx: regular_text(ctx, raw, _half_gzip(), name="r.tsv.gz"), 1,
         ("r.tsv.gz", "runcated")),
    Case("text-wrong-field-count", lambda raw, ctx: regular_text(ctx, raw, b"1\ta\n2\tb\textra\n"), 1,
         ("r.tsv",)),
    Case("invalid-position-stop", both(
        lambda raw, ctx: director_with(ctx, raw, ra=[float("nan")] + [10.5] * (ROWS - 1)),
        cfg("tables.D.policies", {"invalid_positions": "stop"})), 1, ("invalid positions", "ra")),
    Case("duplicate-ids-stop", lambda raw, ctx: director_with(
        ctx, raw, id=[2**62 + 1] + [2**62 + i for i in range(1, ROWS)]), 1,
        ("duplicate ids", str(2**62 + 1))),
    Case("orphans-stop", both(lambda raw, ctx: child_with(
        ctx, raw, did=[2**62 + 100] + pq.read_table(ctx.data / "c.parquet")["did"].to_pylist()[1:]),
        cfg("tables.C.policies", {"orphans": "stop"})), 1, ("orphans", str(2**62 + 100))),
    Case("disk-full-partition", env(QDASK_KILL_AT="partition.batch:*", QDASK_FAULT_MODE="enospc"), 1,
         ("{root}/staging", "no space left", "ENOSPC")),
    Case("disk-full-collect", env(QDASK_KILL_AT="collect.task:*", QDASK_FAULT_MODE="enospc"), 1,
         ("{root}/staging", "no space left")),
    Case("too-many-transactions",
         both(cfg("qserv.max_transactions", 1), cfg("qserv.max_chunks_per_transaction", 1)), 1,
         ("qserv.max_transactions",)),
]
# fmt: on


def _half_gzip() -> bytes:
    """A gzip stream of 20,000 distinct rows, cut in the middle (a copy that stopped half-way)."""
    z = gzip.compress(b"".join(b"%d\tn%d\n" % (i, i % 1000) for i in range(20_000)))
    return z[: len(z) // 2]


def _truncated(raw: dict, ctx: Ctx) -> None:
    data = (ctx.data / "d.parquet").read_bytes()
    folder = ctx.root / "in"
    folder.mkdir(exist_ok=True)
    (folder / "d.parquet").write_bytes(data[: len(data) // 2])
    table(raw, "D")["input"]["files"]["glob"] = str(folder / "d.parquet")


def _not_parquet(raw: dict, ctx: Ctx) -> None:
    folder = ctx.root / "in"
    folder.mkdir(exist_ok=True)
    (folder / "d.parquet").write_text("id,ra,dec\n1,2,3\n")
    table(raw, "D")["input"]["files"]["glob"] = str(folder / "d.parquet")


def _csv_infer(raw: dict, ctx: Ctx) -> None:
    regular_text(ctx, raw, b"1,a\n", name="r.csv", format="csv")
    table(raw, "R")["schema"] = {"infer": True}


def _staging_file(raw: dict, ctx: Ctx) -> None:
    (ctx.root / "staging-file").write_text("not a directory\n")
    raw["staging"]["directory"] = str(ctx.root / "staging-file")


CASES = CONFIG_CASES + PLAN_CASES + PREFLIGHT_CASES + RUNTIME_CASES


# -- running a case --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("corpus") / "in"
    write_inputs(data)
    return data


@dataclass
class Result:
    code: int
    output: str
    exception: BaseException | None
    config: dict
    ctx: Ctx


def run_case(case: Case, root: Path, inputs: Path, qserv, not_qserv: str, database: str) -> Result:
    root.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(root, inputs, qserv, not_qserv, env={"QSERV_AUTH_KEY": qserv.auth_key})
    raw = base_config(root, inputs, qserv, database)
    case.change(raw, ctx)
    path = root / "config.yaml"
    path.write_text(raw["__text__"] if "__text__" in raw else yaml.safe_dump(raw, sort_keys=False))
    environ = {k: v for k, v in ctx.env.items()}
    result = CliRunner().invoke(main, ["ingest", str(path), *ctx.args], env=environ)
    return Result(result.exit_code, result.output, result.exception, raw, ctx)


def check_failed_cleanly(case: Case, result: Result, root: Path, qserv, database: str) -> None:
    """Exit code, one message naming what is wrong, no traceback, nothing loaded or published."""
    out = result.output
    assert isinstance(result.exception, SystemExit), f"not a clean stop: {result.exception!r}\n{out[-3000:]}"
    assert result.code == case.code, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    if case.code == 1:
        assert out.count("qdask ingest stopped:") == 1, out[-3000:]
    controller = result.config.get("qserv", {}).get("controller", "")
    for fragment in case.says:
        text = fragment.format(root=root, data=result.ctx.data, controller=controller, czar=qserv.czar_dsn)
        assert text in out, f"{text!r} not in:\n{out[-3000:]}"
    with QservClient(qserv.controller_url, qserv.auth_key) as client:
        info = client.database_info(database)
    assert not (info and info.get("is_published")), f"database {database} was published by a failed run"
    ledger = root / "staging" / "ledger.sqlite"
    if ledger.is_file() and ledger.stat().st_size:  # read only: the staging may be read-only or full
        with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro&immutable=1", uri=True)) as db:
            with contextlib.suppress(sqlite3.DatabaseError):  # a ledger the disk refused half-way
                loaded = db.execute("SELECT COUNT(*) FROM chunk_files WHERE status = ?", (FileStatus.LOADED,))
                assert loaded.fetchone()[0] == 0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_input_stops_with_one_clear_message(case, qserv, inputs, not_qserv, tmp_path):
    database = "corpus_" + case.id.replace("-", "_")[:40]
    before = digest(inputs)
    result = run_case(case, tmp_path, inputs, qserv, not_qserv, database)
    check_failed_cleanly(case, result, tmp_path, qserv, database)
    assert digest(inputs) == before  # no row lost: the input is untouched


def test_the_corpus_has_at_least_60_cases():
    assert len(CASES) >= 60, len(CASES)


# -- fixed, then resumed ----------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `path` (the suite runs as root, as the containers it runs in do)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def exact(qserv, database: str, inputs: Path) -> None:
    """Every row of the catalog in Qserv exactly once, with its id."""
    want = {
        "D": sorted(pq.read_table(inputs / "d.parquet")["id"].to_pylist()),
        "C": sorted(pq.read_table(inputs / "c.parquet")["cid"].to_pylist()),
        "R": sorted(pq.read_table(inputs / "r.parquet")["rid"].to_pylist()),
    }
    keys = {"D": "id", "C": "cid", "R": "rid"}
    with qserv.czar_connect(database) as conn, conn.cursor() as cur:
        for name, ids in want.items():
            cur.execute(f"SELECT {keys[name]} FROM {name}")
            assert sorted(r[0] for r in cur.fetchall()) == ids, name


#: (id, the fault, what the message names, the fix): each fault stops the run cleanly, and once fixed
#: outside qdask the same command resumes.
# fmt: off
RESUMED = [
    ("disk-full-partition", env(QDASK_KILL_AT="partition.batch=c.parquet:*", QDASK_FAULT_MODE="enospc"),
     ("{root}/staging", "ENOSPC"), "env"),
    ("disk-full-collect", env(QDASK_KILL_AT="collect.task=D:*", QDASK_FAULT_MODE="enospc"),
     ("{root}/staging", "ENOSPC"), "env"),
    ("controller-down", cfg("qserv.controller", lambda c: f"http://127.0.0.1:{closed_port()}"),
     ("cannot be reached",), "config"),
    ("czar-down", cfg("qserv.czar", lambda c: f"mysql://qsmaster@127.0.0.1:{closed_port()}"), ("czar",),
     "config"),
    ("auth-key-wrong", env(QSERV_AUTH_KEY="not-the-key"), ("QSERV_AUTH_KEY",), "env"),
    ("staging-read-only", lambda raw, ctx: remount(ctx.root / "staging", "ro"),
     ("{root}/staging", "read-only"), "remount,rw"),
    ("staging-too-small", lambda raw, ctx: remount(ctx.root / "staging", "size=12k"), ("{root}/staging",),
     "remount,size=64m"),
]
# fmt: on


@pytest.mark.parametrize(("name", "fault", "says", "fix"), RESUMED, ids=[r[0] for r in RESUMED])
def test_a_fault_fixed_outside_qdask_then_the_same_command_resumes(
    name, fault, says, fix, qserv, inputs, not_qserv, tmp_path
):
    database = "corpus_resumed_" + name.replace("-", "_")
    with tmpfs(tmp_path / "staging", "64m"):
        case = Case(name, fault, 1, says)
        result = run_case(case, tmp_path, inputs, qserv, not_qserv, database)
        check_failed_cleanly(case, result, tmp_path, qserv, database)
        if fix.startswith("remount"):
            remount(tmp_path / "staging", fix.removeprefix("remount,"))
        nothing = Case(name, lambda raw, ctx: None, 0, ())
        again = run_case(nothing, tmp_path, inputs, qserv, not_qserv, database)
        assert again.code == 0 and isinstance(again.exception, SystemExit | None), again.output[-3000:]
        assert "Traceback" not in again.output
        exact(qserv, database, inputs)


def test_a_published_database_is_refused_before_anything_is_staged(qserv, inputs, not_qserv, tmp_path):
    """A catalog already published takes no more rows: a run with a new staging directory (or one lost)
    is refused by preflight, naming the database and the controller, before partition."""
    database = "corpus_published"
    first = run_case(
        Case("first", lambda raw, ctx: None, 0, ()), tmp_path / "a", inputs, qserv, not_qserv, database
    )
    assert first.code == 0, first.output[-3000:]
    case = Case(
        "published", lambda raw, ctx: None, 1, (f"database {database} is already published", "{controller}")
    )
    result = run_case(case, tmp_path / "b", inputs, qserv, not_qserv, database)
    assert isinstance(result.exception, SystemExit) and result.code == 1, result.output[-3000:]
    assert "Traceback" not in result.output and result.output.count("qdask ingest stopped:") == 1
    for fragment in case.says:
        assert fragment.format(controller=qserv.controller_url) in result.output, result.output[-3000:]
    assert not (tmp_path / "b" / "staging" / "shards").exists()  # found before partition
    exact(qserv, database, inputs)  # and the published catalog is as it was

    # the czar gone after publish: `qdask verify` says so, naming the DSN, with no verdict and no traceback
    czar = f"mysql://qsmaster@127.0.0.1:{closed_port()}"
    down = CliRunner().invoke(
        main,
        ["verify", str(tmp_path / "a" / "config.yaml"), "--czar", czar],
        env={"QSERV_AUTH_KEY": qserv.auth_key},
    )
    assert isinstance(down.exception, SystemExit) and down.exit_code == 1, down.output[-3000:]
    assert f"qdask verify stopped: verify could not query the czar at {czar}" in down.output
    assert "Traceback" not in down.output

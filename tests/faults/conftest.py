"""Shared pieces of the fault suite: case01 configs on disk, `qdask ingest` as a killable process, and a
ground truth to hold the final catalog against.

Ground truth is independent of qdask's own bookkeeping: the case01 TSV dumps loaded by a plain MariaDB
client (as Qserv's integration tests do), and the chunk of every row computed from its position. The
final database is checked through the czar (every row of every table, as a multiset, so a duplicate or a
loss shows) and on every stand-in worker (rows per chunk and per overlap chunk, and each worker's copy of
each regular table), since a duplicate in an overlap table or in one worker's copy of a regular table is
invisible through the czar.

Size knob: ``QDASK_FAULT_SOAK=N`` multiplies the random-time kills of the soak test (default 1, CI).
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from qdask.config import load_config
from qdask.qserv.czar import quote_identifier, quote_qualified
from qdask.sky import Chunker

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
QDASK = Path(sys.executable).parent / "qdask"
ALL_TABLES = [
    "Object",
    "Source",
    "Filter",
    "LeapSeconds",
    "Logs",
    "Science_Ccd_Exposure",
    "SimRefObject",
    "sdqa_Metric",
]
#: The tables of the fault runs: the director, its child and two regular tables (the other case01 tables
#: add time, not cases; `tables=ALL_TABLES` takes them all).
TABLES = ["Object", "Source", "Filter", "LeapSeconds"]
PARTITIONED = {"Object": ("ra_PS", "decl_PS", True), "Source": ("raObject", "declObject", False)}
SOAK = int(os.environ.get("QDASK_FAULT_SOAK", "1"))


def write_case01(
    path: Path,
    qserv,
    staging: Path,
    database: str,
    *,
    tables: list[str] = TABLES,
    memory: str = "2GiB",
    **qserv_overrides,
) -> Path:
    """configs/case01.yaml with absolute paths, pointed at the stand-in; small transactions by default
    (3 chunks each) so that a kill can fall between commits. Returns the config path."""
    raw = yaml.safe_load((CONFIGS / "case01.yaml").read_text())
    raw["tables"] = [t for t in raw["tables"] if t["name"] in tables]
    for table in raw["tables"]:
        table["input"]["files"]["glob"] = str((CONFIGS / table["input"]["files"]["glob"]).resolve())
        table["schema"]["qserv_json"] = str((CONFIGS / table["schema"]["qserv_json"]).resolve())
    raw["database"]["name"] = database
    raw["qserv"].update(controller=qserv.controller_url, czar=qserv.czar_dsn, max_chunks_per_transaction=3)
    raw["qserv"].update(qserv_overrides)
    raw["staging"] = {"directory": str(staging)}
    raw["cluster"] = {"kind": "local", "workers": 2, "memory_per_worker": memory}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@dataclass
class Outcome:
    """One `qdask` process: exit code (-9 when SIGKILLed), output, and the fault points that fired."""

    returncode: int
    output: str
    fired: list[str] = field(default_factory=list)
    seconds: float = 0.0
    pid: int = 0

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


class Runner:
    """Runs `qdask` commands as real processes in their own session, with the stand-in's keys."""

    def __init__(self, qserv, fault_dir: Path):
        self.qserv = qserv
        self.fault_dir = fault_dir
        fault_dir.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("QDASK_")}
        self.env.update(
            QSERV_AUTH_KEY=qserv.auth_key,
            QSERV_ADMIN_AUTH_KEY=qserv.admin_auth_key,
            QDASK_FAULT_DIR=str(fault_dir),
            PYTHONUNBUFFERED="1",
        )
        self.env.pop("PYTEST_CURRENT_TEST", None)

    def _log(self) -> list[str]:
        path = self.fault_dir / "kills.log"
        return path.read_text().splitlines() if path.exists() else []

    def run(
        self,
        *args: str,
        kill_at: str | None = None,
        kill_after: float | None = None,
        mode: str | None = None,
        timeout: float = 300,
        env_key: str | None = None,
    ) -> Outcome:
        """`qdask ARGS`; `kill_at` sets QDASK_KILL_AT, `kill_after` SIGKILLs the whole process group after
        that many seconds (as a pod kill would). Left-over processes of the group are always killed."""
        env = dict(self.env)
        if env_key is not None:
            env["QSERV_AUTH_KEY"] = env_key
        if kill_at:
            env["QDASK_KILL_AT"] = kill_at
        if mode:
            env["QDASK_FAULT_MODE"] = mode
        before = len(self._log())
        start = time.monotonic()
        proc = subprocess.Popen(
            [str(QDASK), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.fault_dir,
        )
        try:
            output, _ = proc.communicate(timeout=kill_after if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            if kill_after is None:
                _kill_group(proc.pid)
                raise
            _kill_group(proc.pid)
            output, _ = proc.communicate(timeout=60)
        seconds = time.monotonic() - start
        _kill_group(proc.pid)  # the Dask workers of a killed driver die with it, as in a killed pod
        return Outcome(
            proc.returncode, output.decode(errors="replace"), self._log()[before:], seconds, proc.pid
        )

    def ingest(self, config: Path, **kw) -> Outcome:
        return self.run("ingest", str(config), **kw)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    for _ in range(100):  # wait until the group is gone, so the next run does not race its files
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def load_plain(
    mariadb, data: Path, tmp: Path, name: str = "faults_plain_case01", *, tables: list[str] = TABLES
) -> str:
    """The case01 dumps of `tables` (in `data`) loaded by a plain client into database `name`."""
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"USE {name}")
        for table in tables:
            cur.execute((data / "schema" / f"{table}.schema").read_text())
            path = tmp / f"{table}.tsv"
            with gzip.open(data / f"{table}.tsv.gz") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
            cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} CHARACTER SET latin1")
    conn.close()
    return name


@pytest.fixture(scope="session")
def plain_case01(mariadb, shared_data, tmp_path_factory):
    """The case01 dumps of `TABLES` loaded by a plain client into database `faults_plain_case01`."""
    return load_plain(
        mariadb, shared_data / "qserv-itest" / "case01" / "data", tmp_path_factory.mktemp("plain")
    )


class Truth:
    """What the final catalog must hold, from the plain load: rows per table and chunk counts."""

    def __init__(self, mariadb, plain: str):
        self.mariadb, self.plain = mariadb, plain
        self.columns = {t: _columns(mariadb, plain, t) for t in TABLES}
        self.rows = {t: Counter(_rows(mariadb, plain, t, self.columns[t])) for t in TABLES}
        chunker = Chunker(85, 12, 0.01667)
        self.chunks: dict[tuple[str, bool], Counter] = {}
        for table, (ra, dec, director) in PARTITIONED.items():
            pos = _rows(mariadb, plain, table, [ra, dec])
            located = (chunker if director else Chunker(85, 12, 0.0)).locate_all(
                [p[0] for p in pos], [p[1] for p in pos]
            )
            self.chunks[(table, False)] = Counter(located.chunk_id.tolist())
            self.chunks[(table, True)] = Counter(located.overlap_chunk_id.tolist()) if director else Counter()

    def problems(self, qserv, database: str) -> list[str]:
        """Every way the published `database` differs from the truth (empty when exact)."""
        found = []
        for table in TABLES:
            got = Counter(_rows(self.mariadb, database, table, self.columns[table]))
            if got != self.rows[table]:
                extra, lost = got - self.rows[table], self.rows[table] - got
                found.append(
                    f"czar {table}: {sum(extra.values())} extra/duplicate, {sum(lost.values())} lost"
                )
        conn = self.mariadb.connect()
        try:
            with conn.cursor() as cur:
                workers = [
                    f"{qserv.config.instance}_w{i}__{database}" for i in range(1, len(qserv.worker_urls) + 1)
                ]
                for (table, overlap), want in self.chunks.items():
                    got = Counter()
                    stem = f"{table}FullOverlap_" if overlap else f"{table}_"
                    for wdb in workers:
                        cur.execute(
                            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (wdb,)
                        )
                        for (name,) in cur.fetchall():
                            rest = name[len(stem) :] if name.startswith(stem) else ""
                            if rest.isdigit() and int(rest) != 1234567890:
                                cur.execute(f"SELECT COUNT(*) FROM {quote_qualified(wdb, name)}")
                                n = cur.fetchone()[0]
                                if n:
                                    got[int(rest)] += n
                    if got != want:
                        differ = sorted(c for c in set(got) | set(want) if got[c] != want[c])
                        found.append(
                            f"workers {stem}<chunk> rows differ (chunk: found/expected): "
                            + ", ".join(f"{c}: {got[c]}/{want[c]}" for c in differ[:8])
                        )
                for table in TABLES:
                    if table in PARTITIONED:
                        continue
                    for wdb in workers:
                        cur.execute(f"SELECT COUNT(*) FROM {quote_qualified(wdb, table)}")
                        n = cur.fetchone()[0]
                        if n != sum(self.rows[table].values()):
                            found.append(
                                f"{wdb}.{table}: {n} rows, expected {sum(self.rows[table].values())}"
                            )
        finally:
            conn.close()
        return found


@pytest.fixture(scope="session")
def truth(mariadb, plain_case01) -> Truth:
    return Truth(mariadb, plain_case01)


@pytest.fixture
def runner(qserv, tmp_path) -> Runner:
    yield Runner(qserv, tmp_path / "faults")
    qserv.faults.clear()
    for name in list(qserv.faults.down_workers):
        qserv.set_worker_down(name, False)


def _columns(mariadb, database: str, table: str) -> list[str]:
    conn = mariadb.connect(database)
    with conn.cursor() as cur:
        cur.execute(f"SHOW COLUMNS FROM {quote_identifier(table)}")
        names = [r[0] for r in cur.fetchall() if r[0] != "qserv_trans_id"]
    conn.close()
    return names


def _rows(mariadb, database: str, table: str, columns: list[str]) -> list[tuple]:
    conn = mariadb.connect(database)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(quote_identifier(c) for c in columns)} FROM {quote_identifier(table)}"
        )
        rows = list(cur.fetchall())
    conn.close()
    return rows


def verify_in_process(config: Path):
    """`qdask verify` of the config, in this process (its report)."""
    from qdask.ingest import Ingest

    return Ingest(load_config(config)).verify()

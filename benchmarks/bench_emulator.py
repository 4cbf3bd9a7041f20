"""Throughput and memory of the Qserv stand-in's ``/ingest/csv`` against a plain ``LOAD DATA LOCAL INFILE``.

    .venv/bin/python -m benchmarks.bench_emulator [--size-mb 1024] [--repeat 1] [--keep DIR]

One TSV file of ``--size-mb`` (LSST-like rows: ids, doubles, floats, a string, chunkId/subChunkId) is
loaded into the same private MariaDB three ways, each into a fresh MyISAM table of the same columns:

1. through the stand-in: ``POST /ingest/csv`` (multipart, streamed by httpx from the file) to a worker
   running in its own process (``qdask emulator serve``), which preprocesses the rows into its temp
   file and runs the worker's ``LOAD DATA INFILE`` into the transaction's partition;
2. ``LOAD DATA LOCAL INFILE`` from pymysql (the Python client streams the file in 16 KiB packets);
3. ``LOAD DATA LOCAL INFILE`` from the ``mariadb`` command-line client (C);
4. ``LOAD DATA INFILE`` (server-side read, as the worker's own statement): MariaDB's floor, so the ratio
   against it is the stand-in's whole overhead (HTTP upload, row preprocessing, temp file, bookkeeping).

Rows/s are wall-clock, end to end. The stand-in's resident memory (RSS of its process, sampled every
20 ms) is recorded before and during uploads of a quarter of the file and of the whole file: flat means
the peak does not grow with the file size. Results are appended to ``benchmarks/results/emulator.md``
with ``--record``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from qdask.mariadb import PrivateMariaDB

COLUMNS = [
    ("id", "BIGINT NOT NULL"),
    ("ra", "DOUBLE NOT NULL"),
    ("decl", "DOUBLE NOT NULL"),
    ("psFlux", "DOUBLE"),
    ("psFluxErr", "FLOAT"),
    ("x", "FLOAT"),
    ("y", "FLOAT"),
    ("flags", "INT"),
    ("band", "CHAR(1)"),
    ("chunkId", "INT NOT NULL"),
    ("subChunkId", "INT NOT NULL"),
]
CHUNK = 7480  # a valid chunk of the 85/12 layout
BATCH = 200_000


def make_tsv(path: Path, size_mb: int, seed: int = 0) -> int:
    """Write about ``size_mb`` MiB of TSV rows (5 % ``\\N``); returns the number of rows.

    One batch of random column values is formatted once and repeated with fresh, unique ids.
    """
    rng = np.random.default_rng(seed)
    n = BATCH
    flux = rng.normal(1e3, 50, n)
    cols = [
        np.char.mod("%.12f", rng.uniform(0, 360, n)),
        np.char.mod("%.12f", rng.uniform(-90, 90, n)),
        np.where(rng.random(n) < 0.05, "\\N", np.char.mod("%.9g", flux)),
        np.char.mod("%.6g", rng.random(n)),
        np.char.mod("%.6g", rng.uniform(0, 4096, n)),
        np.char.mod("%.6g", rng.uniform(0, 4096, n)),
        rng.integers(0, 1 << 20, n).astype(str),
        rng.choice(np.array(list("ugrizy")), n),
        np.full(n, str(CHUNK)),
        rng.integers(0, 144, n).astype(str),
    ]
    rest = cols[0]
    for c in cols[1:]:
        rest = np.char.add(np.char.add(rest, "\t"), c)
    rest = rest.tolist()
    target = size_mb * 1024 * 1024
    written = rows = 0
    with open(path, "wb") as out:
        while written < target:
            base = 10**15 + rows
            block = "".join(f"{base + i}\t{r}\n" for i, r in enumerate(rest)).encode()
            if written + len(block) > target:
                keep = block[: target - written]
                block = keep[: keep.rfind(b"\n") + 1]
            out.write(block)
            written += len(block)
            rows += block.count(b"\n")
            if not block:
                break
    return rows


class RssSampler:
    """Samples a process's RSS in a thread; ``peak`` since the last ``reset``."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            rss = sum(p.memory_info().rss for p in [self.proc])
            self.peak = max(self.peak, rss)
            time.sleep(0.02)

    def reset(self) -> int:
        time.sleep(0.05)
        now = self.proc.memory_info().rss
        self.peak = now
        return now

    def stop(self):
        self._stop.set()
        self._thread.join()


def start_emulator(
    dsn: str, *, workers: int = 1, auth_key: str = "bench", instance: str = "bench"
) -> tuple[subprocess.Popen, str, dict[str, str]]:
    """The stand-in in its own process (`qdask emulator serve`); returns it, the controller URL and every
    line it printed as {name: url} (controller, czar, one per worker)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qdask.cli",
            "emulator",
            "serve",
            "--workers",
            str(workers),
            "--mariadb",
            dsn,
            "--port",
            "0",
            "--auth-key",
            auth_key,
            "--instance",
            instance,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    urls: dict[str, str] = {}
    while len(urls) < 2 + workers:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the stand-in did not start (exit {proc.poll()})")
        m = re.match(r"(\S+)\s+(\S+)", line)
        if m:
            urls[m.group(1)] = m.group(2)
    return proc, urls["controller"], urls


def api(client: httpx.Client, method: str, url: str, body: dict, **params) -> dict:
    body = {"auth_key": "bench", "version": 55, **body}
    answer = client.request(method, url, json=body, params=params).json()
    if answer["success"] != 1:
        raise RuntimeError(answer)
    return answer


def upload(client: httpx.Client, controller: str, db: str, path: Path) -> tuple[float, dict]:
    """One transaction, one /ingest/csv of the whole file, commit; returns (seconds, contribution)."""
    tid = api(client, "POST", controller + "/ingest/trans", {"database": db})["databases"][db][
        "transactions"
    ][0]["id"]
    loc = api(client, "POST", controller + "/ingest/chunk", {"transaction_id": tid, "chunk": CHUNK})[
        "location"
    ]
    url = f"http://{loc['http_host']}:{loc['http_port']}/ingest/csv"
    form = {
        "transaction_id": str(tid),
        "table": "Obj",
        "chunk": str(CHUNK),
        "overlap": "0",
        "auth_key": "bench",
        "version": "55",
    }
    with open(path, "rb") as f:
        t0 = time.perf_counter()
        answer = client.post(
            url, data=form, files={"file": (path.name, f, "text/tab-separated-values")}
        ).json()
        seconds = time.perf_counter() - t0
    if answer["success"] != 1:
        raise RuntimeError(answer["error"])
    api(client, "PUT", controller + f"/ingest/trans/{tid}", {}, abort=0)
    return seconds, answer["contrib"]


def baseline_pymysql(server: PrivateMariaDB, path: Path, table: str) -> tuple[float, int]:
    conn = server.connect("bench_plain")
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} ({', '.join(f'`{n}` {t}' for n, t in COLUMNS)}) ENGINE=MyISAM")
        t0 = time.perf_counter()
        cur.execute(
            f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} FIELDS TERMINATED BY '\\t'"
            " ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
        )
        seconds = time.perf_counter() - t0
        loaded = cur.rowcount
    conn.close()
    return seconds, loaded


def baseline_server_side(server: PrivateMariaDB, path: Path, table: str) -> tuple[float, int]:
    """``LOAD DATA INFILE`` (no LOCAL): the server reads the file, as a Qserv worker's statement does."""
    conn = server.connect("bench_plain")
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} ({', '.join(f'`{n}` {t}' for n, t in COLUMNS)}) ENGINE=MyISAM")
        t0 = time.perf_counter()
        cur.execute(
            f"LOAD DATA INFILE '{path}' INTO TABLE {table} FIELDS TERMINATED BY '\\t'"
            " ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
        )
        seconds = time.perf_counter() - t0
        loaded = cur.rowcount
    conn.close()
    return seconds, loaded


def baseline_cli(server: PrivateMariaDB, path: Path, table: str) -> tuple[float, int] | None:
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        return None
    conn = server.connect("bench_plain")
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} ({', '.join(f'`{n}` {t}' for n, t in COLUMNS)}) ENGINE=MyISAM")
    t0 = time.perf_counter()
    subprocess.run(
        [
            client,
            "--no-defaults",
            "-h127.0.0.1",
            f"-P{server.port}",
            "-uroot",
            "--local-infile=1",
            "bench_plain",
            "-e",
            f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} FIELDS TERMINATED BY '\\t'"
            " ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'",
        ],
        check=True,
    )
    seconds = time.perf_counter() - t0
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        loaded = cur.fetchone()[0]
    conn.close()
    return seconds, loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the TSV file (MiB)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each method; the best is reported")
    parser.add_argument("--keep", type=Path, default=None, help="directory for the TSV (default: a temp dir)")
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/results")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-emulator-", dir=args.keep))
    big, quarter = work / "big.tsv", work / "quarter.tsv"
    t0 = time.perf_counter()
    nrows = make_tsv(big, args.size_mb)
    qrows = make_tsv(quarter, max(1, args.size_mb // 4), seed=1)
    print(f"generated {big.stat().st_size / 2**20:.0f} MiB, {nrows} rows in {time.perf_counter() - t0:.1f}s")

    with PrivateMariaDB() as server:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE bench_plain")
        proc, controller, _urls = start_emulator(server.dsn)
        sampler = RssSampler(proc.pid)
        try:
            client = httpx.Client(timeout=None)
            db = "benchdb"
            api(
                client,
                "POST",
                controller + "/ingest/database",
                {
                    "database": db,
                    "num_stripes": 85,
                    "num_sub_stripes": 12,
                    "overlap": 0.01667,
                    "auto_build_secondary_index": 0,
                },
            )
            api(
                client,
                "POST",
                controller + "/ingest/table",
                {
                    "database": db,
                    "table": "Obj",
                    "is_partitioned": 1,
                    "director_table": "",
                    "director_key": "id",
                    "latitude_key": "decl",
                    "longitude_key": "ra",
                    "schema": [{"name": n, "type": t} for n, t in COLUMNS],
                },
            )
            rss_idle = sampler.reset()
            _, qc = upload(client, controller, db, quarter)
            rss_quarter = sampler.peak
            assert qc["num_rows_loaded"] == qrows, qc
            emu = []
            rss_full = 0
            for _ in range(args.repeat):
                sampler.reset()
                seconds, c = upload(client, controller, db, big)
                rss_full = max(rss_full, sampler.peak)
                assert c["num_rows"] == nrows and c["num_rows_loaded"] == nrows and c["num_warnings"] == 0, c
                emu.append(seconds)
            plain = []
            for i in range(args.repeat):
                seconds, loaded = baseline_pymysql(server, big, f"plain_py_{i}")
                assert loaded == nrows
                plain.append(seconds)
            server_side = []
            for i in range(args.repeat):
                seconds, loaded = baseline_server_side(server, big, f"plain_srv_{i}")
                assert loaded == nrows
                server_side.append(seconds)
            cli = []
            for i in range(args.repeat):
                result = baseline_cli(server, big, f"plain_cli_{i}")
                if result:
                    assert result[1] == nrows
                    cli.append(result[0])
        finally:
            sampler.stop()
            proc.terminate()
            proc.wait(30)
    shutil.rmtree(work, ignore_errors=True)

    best_emu, best_py = min(emu), min(plain)
    mib = args.size_mb
    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — {mib} MiB, {nrows:,} rows, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
        "",
        f"Command: `.venv/bin/python -m benchmarks.bench_emulator --size-mb {mib} --repeat {args.repeat}`",
        "",
        "| method | seconds | rows/s | MiB/s | ratio stand-in / method |",
        "|---|---|---|---|---|",
        f"| stand-in `POST /ingest/csv` (1 worker) | {best_emu:.1f} | {nrows / best_emu:,.0f} | "
        f"{mib / best_emu:.1f} | — |",
        f"| `LOAD DATA LOCAL INFILE` via pymysql | {best_py:.1f} | {nrows / best_py:,.0f} | "
        f"{mib / best_py:.1f} | {best_py / best_emu:.2f} |",
    ]
    best_srv = min(server_side)
    lines.append(
        f"| `LOAD DATA INFILE` (server reads the file) | {best_srv:.1f} | {nrows / best_srv:,.0f} | "
        f"{mib / best_srv:.1f} | {best_srv / best_emu:.2f} |"
    )
    if cli:
        best_cli = min(cli)
        lines.append(
            f"| `LOAD DATA LOCAL INFILE` via `mariadb` CLI | {best_cli:.1f} | {nrows / best_cli:,.0f} | "
            f"{mib / best_cli:.1f} | {best_cli / best_emu:.2f} |"
        )
    lines += [
        "",
        f"Stand-in RSS: idle {rss_idle / 2**20:.0f} MiB; peak during a {mib // 4} MiB upload "
        f"{rss_quarter / 2**20:.0f} MiB; peak during the {mib} MiB upload {rss_full / 2**20:.0f} MiB.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        out = Path(__file__).parent / "results" / "emulator.md"
        if not out.exists():
            out.write_text(
                "# Qserv stand-in: /ingest/csv throughput and memory\n\n"
                "Produced by `benchmarks/bench_emulator.py` (see its docstring for the method).\n\n"
            )
        with open(out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

"""Verify's uniqueness check of a large child's own id: MariaDB's GROUP BY against qdask's merge of the
staged ids (issue 14).

    .venv/bin/python -m benchmarks.bench_unique_ids [--rows 8000000] [--chunks 900] [--units 40]

Input: `--rows` int64 ids (a child's own id, as DP0.2 Source's sourceId), shuffled, ten of them repeated,
dealt to `--chunks` chunk tables and, independently, to `--units` input units (a unit spans many chunks,
as a tract does).

* *GROUP BY*: the ids LOAD DATA'd into one MyISAM table per chunk of a private MariaDB, and the statement
  verify sends above the bound no more (`STATEMENTS["duplicate keys"]`) run over a MERGE table of them.
  That is one server doing the whole table: a lower bound of a czar's cost, which also gathers every
  chunk's partial groups from the workers and merges them.
* *staged*: in a fresh process, each unit's ids are read from a Parquet shard (zstd, as staging writes
  them), sorted and saved as `qdask.stages.staged_ids.sorted_unit_ids` does, and merged by
  `qdask.stages.staged_ids.repeated_ids`; its peak RSS is reported.

Printed: wall and CPU seconds of each, the ratio GROUP BY / staged (> 1: the merge is faster), and that
both found the same repeated ids. Then the merge alone over many small unit files (`--many` units; ids
by unit range, as a tract's, and shuffled) against `np.unique` of all the ids in memory, the unbounded
way: the price of bounded memory and no open files.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.suite.worker_probes import peak_rss
from qdask.mariadb import PrivateMariaDB
from qdask.stages.staged_ids import repeated_ids
from qdask.stages.verify import SHOWN, statement


def make_ids(rows: int, seed: int = 11) -> np.ndarray:
    """`rows` shuffled ids, unique but for ten values each written twice."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(rows, dtype=np.int64) * 7919 + 10**15)
    ids[-10:] = ids[:10]
    return ids


def group_by(ids: np.ndarray, chunks: int, work: Path) -> tuple[float, float, set[int]]:
    """Wall and server CPU seconds of verify's GROUP BY over a MERGE table of one MyISAM table per chunk."""
    server = PrivateMariaDB(base_dir=work / "mariadb").start()
    try:
        conn = server.connect()
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE bench")
            cur.execute("USE bench")
            names = []
            for chunk, part in enumerate(np.array_split(ids, chunks)):
                name = f"Source_{chunk}"
                names.append(name)
                cur.execute(f"CREATE TABLE {name} (sourceId BIGINT NOT NULL) ENGINE=MyISAM")
                text = work / f"{name}.tsv"
                np.savetxt(text, part, fmt="%d")
                cur.execute(f"LOAD DATA LOCAL INFILE '{text}' INTO TABLE {name}")
                text.unlink()
            cur.execute(
                f"CREATE TABLE Source (sourceId BIGINT NOT NULL) ENGINE=MERGE UNION=({','.join(names)})"
            )
            cpu0 = _server_cpu(server)
            t0 = time.perf_counter()
            cur.execute(statement("duplicate keys", table="bench.Source", key="sourceId"))
            found = {int(r[0]) for r in cur.fetchall()}
            wall = time.perf_counter() - t0
            cpu = _server_cpu(server) - cpu0
        conn.close()
    finally:
        server.stop()
    return wall, cpu, found


def _server_cpu(server: PrivateMariaDB) -> float:
    import psutil

    assert server._proc is not None
    times = psutil.Process(server._proc.pid).cpu_times()
    return times.user + times.system


def staged(units: list[Path], scratch: Path) -> dict:
    """The staged check in this (fresh) process: read, sort, save each unit's ids, then merge them."""
    start_rss = peak_rss() / 2**20
    t0, c0 = time.perf_counter(), time.process_time()
    paths = []
    for unit in units:
        ids = np.sort(pq.read_table(unit, columns=["sourceId"]).column(0).to_numpy())
        paths.append(scratch / f"{unit.stem}.npy")
        np.save(paths[-1], ids)
        del ids
    t1, c1 = time.perf_counter(), time.process_time()
    found = repeated_ids(paths, SHOWN)
    return {
        "read_sort_save": (t1 - t0, c1 - c0),
        "merge": (time.perf_counter() - t1, time.process_time() - c1),
        "found": {v for v, _ in found.examples},
        "maxrss_mib": peak_rss() / 2**20,
        "start_rss_mib": start_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8_000_000)
    parser.add_argument("--chunks", type=int, default=900)
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--many", type=int, default=2000)
    args = parser.parse_args()
    print(f"# {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args}")
    with tempfile.TemporaryDirectory(prefix="bench-unique-") as tmp:
        work = Path(tmp)
        ids = make_ids(args.rows)
        units = []
        for i, part in enumerate(
            np.array_split(ids[np.random.default_rng(3).permutation(len(ids))], args.units)
        ):
            units.append(work / f"unit{i:04d}.parquet")
            pq.write_table(pa.table({"sourceId": part}), units[-1], compression="zstd")
        (work / "scratch").mkdir()
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            result = pool.apply(staged, (units, work / "scratch"))
        (read_wall, read_cpu), (merge_wall, merge_cpu) = result["read_sort_save"], result["merge"]
        stage_wall, stage_cpu = read_wall + merge_wall, read_cpu + merge_cpu
        print(
            f"staged: read+sort+save {read_wall:.2f} s wall / {read_cpu:.2f} CPU s, merge {merge_wall:.2f} / "
            f"{merge_cpu:.2f}; peak RSS {result['start_rss_mib']:.0f} -> {result['maxrss_mib']:.0f} MiB "
            f"(ids: {ids.nbytes / 2**20:.0f} MiB)"
        )
        wall, cpu, found = group_by(ids, args.chunks, work)
        print(f"GROUP BY over {args.chunks} chunk tables: {wall:.2f} s wall / {cpu:.2f} server CPU s")
        same = found == result["found"] == {int(v) for v in ids[:10]}
        print(f"same repeated ids found: {same}")
        print(f"ratio GROUP BY / staged: wall {wall / stage_wall:.2f}, CPU {cpu / stage_cpu:.2f}")
        for shape in ("by range", "shuffled"):
            merge_many(ids if shape == "shuffled" else np.sort(ids), args.many, work / "many", shape)


def merge_many(ids: np.ndarray, units: int, work: Path, shape: str) -> None:
    """`repeated_ids` over `units` sorted files against `np.unique` of every id at once."""
    work.mkdir(exist_ok=True)
    paths = []
    for i, part in enumerate(np.array_split(ids, units)):
        paths.append(work / f"{i:05d}.npy")
        np.save(paths[-1], np.sort(part))
    t0, c0 = time.perf_counter(), time.process_time()
    found = repeated_ids(paths, SHOWN)
    merge = (time.perf_counter() - t0, time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    values, counts = np.unique(np.concatenate([np.load(p) for p in paths]), return_counts=True)
    whole = (time.perf_counter() - t0, time.process_time() - c0)
    assert found.ids == int((counts > 1).sum())
    print(
        f"{units} files, ids {shape}: merge {merge[0]:.2f} s / {merge[1]:.2f} CPU s, np.unique of all "
        f"{whole[0]:.2f} / {whole[1]:.2f}; ratio unique / merge: CPU {whole[1] / merge[1]:.2f}"
    )


if __name__ == "__main__":
    main()

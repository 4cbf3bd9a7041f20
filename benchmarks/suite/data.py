"""Inputs and configs of the suite: demo Butler repositories (cached by size), narrow copies, ingest configs.

The 991-column catalog is the demo repository's `objectTable_tract` (one file per tract, as DP0.2 stored
it). The narrow catalogs are the same rows cut to the first 40 (and 3) Object columns, written once as
plain Parquet files (snappy, as the demo files are), so that every tool compared reads whole files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from qdask.config import IngestConfig, config_from_dict
from qdask.demo import make_demo_repo, tract_box
from qdask.demo_run import DEMO_CONFIG

KEYS = ["objectId", "coord_ra", "coord_dec"]


def demo_repo(root: Path, *, tracts: int, rows_per_patch: int, patches_per_tract: int = 4) -> Path:
    """A demo repository for these parameters under `root`, built once and reused by later runs."""
    path = Path(root) / f"repo-t{tracts}-p{patches_per_tract}-r{rows_per_patch}"
    done = path / ".complete"
    if not done.exists():
        shutil.rmtree(path, ignore_errors=True)
        make_demo_repo(
            path, tracts=tracts, rows_per_patch=rows_per_patch, patches_per_tract=patches_per_tract
        )
        done.write_text("ok\n")
    return path


def object_files(repo: Path) -> list[Path]:
    """The objectTable_tract Parquet files of a demo repository, in tract order."""
    return sorted((Path(repo) / "DC2" / "runs" / "demo" / "objectTable_tract").rglob("*.parq"))


def narrow_files(repo: Path, width: int, rows: int) -> tuple[Path, list[str]]:
    """A `rows`-row catalog of the first `width` Object columns (keys first), one plain Parquet file per
    tract of `repo`; cached. Values of the other columns repeat the tract file's rows; objectIds are
    unique and positions uniform in the tract's box, so chunks are touched as real data would touch them.
    """
    files = object_files(repo)
    schema = pq.read_schema(files[0])
    names = [n for n in schema.names if not n.startswith("__")]
    columns = KEYS + [n for n in names if n not in KEYS][: width - len(KEYS)]
    out = Path(repo).parent / f"{Path(repo).name}-narrow{width}-{rows}"
    done = out / ".complete"
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        rng = np.random.default_rng(7)
        per_file = -(-rows // len(files))
        next_id = 1
        for i, f in enumerate(files):
            template = pq.read_table(f, columns=columns)
            box = tract_box(i)
            n_file = min(per_file, rows - i * per_file)
            with pq.ParquetWriter(
                out / f"{f.stem}.parquet", template.schema.remove_metadata(), compression="snappy"
            ) as w:
                for start in range(0, n_file, 262_144):
                    n = min(262_144, n_file - start)
                    idx = pa.array(np.arange(n) % template.num_rows)
                    t = template.take(idx).replace_schema_metadata(None)
                    t = t.set_column(0, "objectId", pa.array(np.arange(next_id, next_id + n), pa.int64()))
                    t = t.set_column(1, "coord_ra", pa.array(rng.uniform(box[0], box[1], n)))
                    t = t.set_column(2, "coord_dec", pa.array(rng.uniform(box[2], box[3], n)))
                    w.write_table(t.cast(template.schema.remove_metadata()))
                    next_id += n
        done.write_text(json.dumps(columns) + "\n")
    return out, columns


def local_path(uri: str) -> Path:
    return Path(urlparse(uri).path) if uri.startswith("file:") else Path(uri)


def _raw_demo() -> dict:
    return yaml.safe_load(DEMO_CONFIG.read_text())


def ingest_config(
    *,
    staging: Path,
    database: str,
    repo: Path | None = None,
    files: Path | None = None,
    columns: list[str] | None = None,
    tables: tuple[str, ...] = ("Object", "ForcedSource", "CcdVisit"),
    workers: int = 2,
    memory_per_worker: str = "2GiB",
    controller: str = "http://127.0.0.1:9",
    czar: str = "mysql://qsmaster@127.0.0.1:9/x",
) -> IngestConfig:
    """configs/demo.yaml adapted: its repository or a directory of plain Object files, a column subset,
    a subset of its tables, the stand-in's endpoints, a staging directory and a cluster size."""
    raw = _raw_demo()
    raw["database"]["name"] = database
    raw["tables"] = [t for t in raw["tables"] if t["name"] in tables]
    for table in raw["tables"]:
        if files is not None and table["name"] == "Object":
            table["input"] = {"files": {"glob": str(Path(files) / "*.parquet")}}
        elif repo is not None:
            table["input"]["butler"]["repo"] = str(repo)
        if columns is not None and table["name"] == "Object":
            table["columns"] = {"include": list(columns)}
    raw["qserv"].update(controller=controller, czar=czar)
    raw["staging"] = {"directory": str(staging)}
    raw["cluster"].update(workers=workers, memory_per_worker=memory_per_worker)
    return config_from_dict(raw, DEMO_CONFIG.parent)


def dense_files(repo: Path, side_deg: float = 0.5) -> Path:
    """The 991-column Object rows of `repo` moved into one `side_deg` square box (positions uniform in it),
    as plain Parquet files (one per tract file, snappy); cached. The demo's tracts hold ~100x fewer rows per
    chunk than DP0.2's (~1.3 M objects per tract); this puts the same rows into a few chunks, so per-chunk
    costs weigh on each row about as much as they would on DP0.2."""
    files = object_files(repo)
    out = Path(repo).parent / f"{Path(repo).name}-dense{side_deg:g}"
    done = out / ".complete"
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        rng = np.random.default_rng(11)
        ra0, _, dec0, _ = tract_box(0)
        for f in files:
            pf = pq.ParquetFile(f)
            schema = pf.schema_arrow.remove_metadata()
            with pq.ParquetWriter(out / f"{f.stem}.parquet", schema, compression="snappy") as w:
                for batch in pf.iter_batches(batch_size=8192):
                    t = pa.Table.from_batches([batch]).replace_schema_metadata(None)
                    n = t.num_rows
                    for name, lo in (("coord_ra", ra0 + 0.5), ("coord_dec", dec0 + 0.5)):
                        i = t.schema.get_field_index(name)
                        values = pa.array(rng.uniform(lo, lo + side_deg, n)).cast(t.schema.field(i).type)
                        t = t.set_column(i, name, values)
                    w.write_table(t.cast(schema))
        done.write_text("ok\n")
    return out

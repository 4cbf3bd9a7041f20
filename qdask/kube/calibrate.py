"""Measure a partition task's peak memory against `qdask.kube.memory`'s estimate (the docstring's table).

    python -m qdask.kube.calibrate COLUMNS ROWS ROW_GROUP SELECTED [--dir /tmp/qdask-calibrate]

writes (once) a director-table Parquet file of ``COLUMNS`` random float64 columns plus id/ra/dec over a
10 x 10 degree box, runs the stage's `partition_task` on it in this process selecting ``SELECTED`` of
them, samples the RSS every 5 ms, and prints the peak over the baseline next to the model's estimate.
Run each case in a fresh process (the first run of a shape only writes its file).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qdask.kube.calibrate", description=__doc__)
    for name in ("columns", "rows", "row_group", "selected"):
        parser.add_argument(name, type=int)
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "qdask-calibrate"))
    args = parser.parse_args(argv)

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(args.dir) / f"cal_{args.columns}_{args.rows}_{args.row_group}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        n = args.rows
        data = {"id": np.arange(n), "ra": rng.uniform(0, 10, n), "dec": rng.uniform(-5, 5, n)}
        data.update({f"c{i}": rng.random(n) for i in range(args.columns)})
        pq.write_table(pa.table(data), path, row_group_size=args.row_group, compression="zstd")
        print(f"wrote {path}; run again in a fresh process to measure")
        return 0

    import psutil

    from qdask.kinds import TableKind
    from qdask.kube.memory import unit_footprint
    from qdask.schema import CHUNK_COLUMNS, from_arrow
    from qdask.sources.units import InputUnit
    from qdask.stages.partition import TablePlan, partition_task

    schema = from_arrow(pq.read_schema(path), "T")
    names = ["id", "ra", "dec"] + [f"c{i}" for i in range(args.selected)]
    fields = [pa.field(n, schema.column(n).arrow_type) for n in names]
    fields += [pa.field(c.name, c.arrow_type, nullable=False) for c in CHUNK_COLUMNS]
    layout = (340, 3, 0.01667)
    plan = TablePlan("T", TableKind.DIRECTOR, pa.schema(fields), ra="ra", dec="dec", layout=layout)
    unit = InputUnit(unit_id="u", table="T", uri=str(path), format="parquet")
    model = unit_footprint(unit, names, layout=layout, ra="ra", dec="dec")
    assert model is not None, "a Parquet unit has a footprint"
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak, stop = [base], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    thread = threading.Thread(target=watch)
    thread.start()
    with tempfile.TemporaryDirectory() as d:
        result = partition_task(unit, plan, schema, d + "/s", d + "/q")
    stop.set()
    thread.join()
    mib = 2**20
    print(
        f"selected columns {len(names)}, unit {sum(model.selected_bytes) // mib} MiB, "
        f"shard files {len(result.shards)} (model {model.chunks}): measured peak "
        f"{(peak[0] - base) // mib} MiB, model {model.peak() // mib} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

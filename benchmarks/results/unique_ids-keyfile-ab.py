"""Ad hoc (`unique_ids.md`): `repeated_ids` over N sorted unit files with an older `KeyFile` (np.load per
read, loaded from the file given) and with the tree's (one pread per slice), alternated in one process.

    git show d17d22c:qdask/stages/keys.py > /tmp/keys_old.py
    PYTHONPATH=$PWD .venv/bin/python benchmarks/results/unique_ids-keyfile-ab.py 8000000 2000 /tmp/keys_old.py
"""

import importlib.util
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import qdask.stages.keys as new_keys
import qdask.stages.staged_ids as staged_ids


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    rows, units, old_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    spec = importlib.util.spec_from_file_location("keys_old", old_path)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    sys.modules["keys_old"] = old
    spec.loader.exec_module(old)
    ids = np.random.default_rng(3).permutation(np.arange(rows, dtype=np.int64) * 7919)
    ids[-10:] = ids[:10]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for u, part in enumerate(np.array_split(ids, units)):
            paths.append(Path(tmp) / f"{u}.npy")
            np.save(paths[-1], np.sort(part))
        for label, cls in [("np.load per read", old.KeyFile), ("pread", new_keys.KeyFile)] * 2:
            staged_ids.KeyFile = cls
            c0, t0 = cpu(), time.perf_counter()
            found = staged_ids.repeated_ids(paths, 10)
            print(
                f"{rows:,} ids, {units} files, {label}: {time.perf_counter() - t0:.2f} s wall, "
                f"{cpu() - c0:.2f} CPU s, {found.ids} repeated"
            )


if __name__ == "__main__":
    main()

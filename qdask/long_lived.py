"""Objects that live as long as the process, taken out of the garbage collector's full passes.

CPython's cyclic collector visits every tracked container in each full pass. A qdask driver or worker holds
200-350 thousand of them once its imports are done (dask, distributed, pyarrow, polars), and its work
allocates enough containers to start full passes again and again: perf counted ~0.9 CPU s of a driver's
~3.5, and ~0.3 of each worker's ~8.5, inside the collector when staging 5M x 43
(benchmarks/results/hats.md). `gc.freeze` moves every object alive now into a permanent generation that no
pass visits; what the work allocates afterwards is collected as before. The cost: a cycle among the frozen
objects that later becomes garbage is never reclaimed, which is why the collector runs once just before.

After the freeze the young generation holds 20,000 objects instead of 700. A driver that stages 105k small
files (all-sky) keeps ledger records and task results alive, and each burst of them that outlives a young
pass counts towards the next full pass: its collector took 2.3 s (29 full passes) with 700, 0.6 s (one
full pass) with 20,000, measured with `gc.callbacks` (benchmarks/results/hats.md).

Only processes qdask owns are frozen: `qdask ingest`'s (the CLI, whose set-up runs under `setting_up`)
and the workers of the local cluster it starts (their preload, `qdask.cluster.dask_setup`); a program that
imports qdask as a library decides for its own process.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

YOUNG_OBJECTS = 20_000  # allocations between young passes once set-up is over (CPython's default: 700)
_frozen: set[str] = set()
_lock = threading.Lock()


def freeze_long_lived(role: str) -> bool:
    """Once per process and `role`: collect what is garbage now, then freeze every survivor. Called where a
    process has done its set-up (imports). True when it froze, False when `role` already had."""
    with _lock:
        if role in _frozen:
            return False
        _frozen.add(role)
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])
        return True


@contextlib.contextmanager
def setting_up(role: str) -> Iterator[None]:
    """A process's set-up (imports, planning) with no collector passes, which would walk the objects the
    imports leave again and again (~0.4 CPU s of the driver's imports, perf); then `freeze_long_lived`."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        freeze_long_lived(role)
        if enabled:
            gc.enable()

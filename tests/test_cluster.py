"""Where the Dask work runs: what a local worker process is started with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qdask.cluster import WORKER_MALLOC_ENV, ClusterSpec, open_client


def _allocator_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in WORKER_MALLOC_ENV}


def test_local_workers_keep_freed_memory_for_reuse_and_an_operators_value_wins(monkeypatch):
    """Dask's nanny would start workers with MALLOC_TRIM_THRESHOLD_=65536 (every large buffer a fresh
    mapping, its pages faulted in again); qdask's workers get its own thresholds, unless the operator's
    environment says otherwise."""
    for name in WORKER_MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    with open_client(ClusterSpec(kind="local", workers=1, memory_per_worker=1 << 30)) as client:
        assert client.submit(_allocator_env, pure=False).result() == WORKER_MALLOC_ENV
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    with open_client(ClusterSpec(kind="local", workers=1, memory_per_worker=1 << 30)) as client:
        assert client.submit(_allocator_env, pure=False).result()["MALLOC_TRIM_THRESHOLD_"] == "131072"


HUGE_PAGES_AFTER_AN_ARROW_BUFFER = """
import numpy as np, pyarrow as pa, pyarrow.compute as pc
keep = pc.add(pa.array(np.arange(1 << 24)), 1)  # 128 MiB from Arrow's memory pool
rollup = open("/proc/self/smaps_rollup").read().splitlines()
print([int(line.split()[1]) for line in rollup if line.startswith("AnonHugePages")][0])
"""


def _huge_page_kib(env: dict[str, str] | None = None) -> int:
    """KiB of huge pages in a fresh process (this one's environment, or `env`) holding an Arrow buffer."""
    argv = [sys.executable, "-c", HUGE_PAGES_AFTER_AN_ARROW_BUFFER]
    return int(subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout)


def test_local_workers_arrow_buffers_are_not_backed_by_huge_pages():
    """mimalloc (Arrow's pool) asks for transparent huge pages unless told not to: every first touch then
    zeroes 2 MiB. A worker's environment tells it not to; a process without it (the control) gets them
    where the kernel gives huge pages on request (`madvise`)."""
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    with open_client(ClusterSpec(kind="local", workers=1, memory_per_worker=1 << 30)) as client:
        in_worker = client.submit(_huge_page_kib, pure=False).result()
    control = _huge_page_kib({**os.environ, "MIMALLOC_ALLOW_THP": "1"})
    assert in_worker == 0 or "[always]" in mode, in_worker  # "always": the kernel backs large maps itself
    if "[madvise]" in mode:
        assert control > 64 << 10, control

"""Where the Dask work runs: what a local worker process is started with."""

from __future__ import annotations

import os

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

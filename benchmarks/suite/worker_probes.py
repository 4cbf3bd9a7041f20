"""Functions the benchmarks run on Dask workers (`client.run`), in a module of their own.

A function is sent to a worker by reference, so the worker imports the module defining it: defined in
`common` (which imports all of `qdask.ingest`), each probe made every worker import the whole driver, CPU
seconds charged to the run being measured. Here they cost the worker psutil alone.
"""

from __future__ import annotations

import resource

import psutil


def worker_rss() -> int:
    """The worker's resident memory now, in bytes."""
    return psutil.Process().memory_info().rss


def worker_maxrss() -> int:
    """The worker's largest resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

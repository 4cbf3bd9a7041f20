"""Functions the benchmarks run on Dask workers (`client.run`) and the peak-memory probe, on their own.

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


def peak_rss() -> int:
    """This process's largest resident memory so far, in bytes: `VmHWM`, the mark of its own address space.

    Not `ru_maxrss`: when exec replaces an address space, Linux keeps the old one's mark for the new
    program (fs/exec.c, `setmax_mm_hiwater_rss`), so a process started by a larger one reports at least its
    parent's peak (the 1.2 GiB "driver spike" of `bench_allsky` at 16x was the parent's, which had written
    the inputs). Where /proc is missing, `ru_maxrss` is the upper bound left."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

"""A process's peak resident memory from a mark on, for the memory tests that measure a child process.

`ru_maxrss` cannot serve there. When exec replaces a process's address space, Linux keeps the old one's
high-water mark in the new program's (fs/exec.c, `setmax_mm_hiwater_rss`). A child started by `subprocess`
therefore reports at least its parent's peak, and in a long pytest session the growth it measures reads 0
whatever it does. `VmHWM` belongs to the child's own address space, and writing 5 to
/proc/self/clear_refs resets it to the resident size of the moment.

A child gets these functions as source: put `CHILD_SOURCE` before its own code.
"""

from __future__ import annotations

import inspect


def mark_peak() -> int:
    """Reset the peak to the resident size now, where the kernel allows it; return that size in bytes.
    Where it does not, the peak read later is the process's whole life's, an upper bound of the growth."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status_bytes("VmRSS")


def peak_since_mark() -> int:
    """The largest resident size since `mark_peak`, in bytes."""
    return _status_bytes("VmHWM")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


#: The functions above as source, to run in a child (``python -c CHILD_SOURCE + code``).
CHILD_SOURCE = "\n".join(inspect.getsource(f) for f in (mark_peak, peak_since_mark, _status_bytes)) + "\n"

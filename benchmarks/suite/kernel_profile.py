"""Where a process tree's CPU goes, the kernel's share included, with Linux perf.

py-spy (`benchmarks.suite.spy`) sees Python frames and leaves the kernel out; on this machine a third of a
staging run's CPU is system time, and CPython's collector hides inside whichever frame allocated. ``perf
record -g`` of the command (its children inherit it) samples every thread at `RATE` Hz, user and kernel;
`summary` counts, per process, the samples whose innermost function falls in each of `CATEGORIES`, then
its top functions. Needs ``perf`` (Debian's linux-perf) and ``kernel.perf_event_paranoid`` ≤ 1, or root.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
from pathlib import Path

RATE = 499  # samples per second (not a multiple of the kernel's tick)
#: Innermost functions that say what a sample was doing, by name prefix.
CATEGORIES = {
    "collector (CPython gc)": (
        "gc_collect_main",
        "visit_decref",
        "visit_reachable",
        "PyObject_IS_GC",
        "dict_traverse",
        "subtype_traverse",
        "list_traverse",
        "tupletraverse",
        "func_traverse",
    ),
    "new pages zeroed": ("clear_page",),
    "page-cache copies": ("copy_folio_from_iter", "_copy_to_iter", "copy_page_to_iter"),
}
HEADER = re.compile(r"^\s*(\d+)/(\d+)\s*$")


def perf() -> str:
    found = shutil.which("perf")
    if found is None:
        raise SystemExit("perf is not installed (Debian: apt-get install linux-perf)")
    return found


def record(argv: list[str], out: Path, env: dict[str, str] | None = None, rate: int = RATE) -> None:
    """Run `argv` under perf, its whole tree sampled `rate` times a second with call chains, into `out`."""
    command = [perf(), "record", "-e", "cpu-clock", "-F", str(rate), "-g", "-o", str(out), "--", *argv]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def summary(data: Path, rate: int = RATE, top: int = 15) -> str:
    """Per process of a perf recording: CPU seconds, seconds per category, then the top innermost
    functions (the process started first is the driver; the later ones its workers and nannies)."""
    script = subprocess.run(
        [perf(), "script", "-i", str(data), "-F", "pid,tid,ip,sym"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return summarize(script, rate, top)


def summarize(script: str, rate: int = RATE, top: int = 15) -> str:
    """`summary` of the text ``perf script -F pid,tid,ip,sym`` prints: each sample a ``pid/tid`` line,
    then its call chain, innermost first, one ``address function+offset`` line per frame."""
    samples: collections.Counter[int] = collections.Counter()
    leaf: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    pid, first = 0, False
    for line in script.splitlines():
        head = HEADER.match(line)
        if head:
            pid, first = int(head.group(1)), True
            samples[pid] += 1
            continue
        fields = line.split(None, 1)
        if first and len(fields) == 2:
            leaf[pid][fields[1].split("+")[0]] += 1
            first = False
    driver = min(samples, default=0)
    out = []
    for p, n in samples.most_common():
        if n < rate // 10:  # under 0.1 s: a helper process
            continue
        role = "driver" if p == driver else "worker (or nanny)"
        out.append(f"== process {p} ({role}): {n / rate:.2f} CPU s")
        for name, prefixes in CATEGORIES.items():
            hits = sum(c for f, c in leaf[p].items() if f.startswith(prefixes))
            out.append(f"   {hits / rate:7.2f}  {name}")
        out.append("   innermost functions:")
        out += [f"   {c / rate:7.2f}  {f[:150]}" for f, c in leaf[p].most_common(top)]
        out.append("")
    return "\n".join(out)

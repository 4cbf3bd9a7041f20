"""Sampling profiles of a whole process tree (the driver and its Dask workers) with py-spy.

cProfile sees one thread of one process; a qdask run is a driver (with the scheduler's thread) and worker
processes. ``py-spy record --subprocesses --format raw`` samples every thread of every process of the tree
without changing the code; `summary` turns its collapsed stacks into a per-process text: busy seconds
(waiting frames left out: selects, locks, sleeps), the frames where time is spent (self), and the calls
that hold it (inclusive). py-spy is in the ``bench`` extra; it needs ptrace (a container may need
``--cap-add SYS_PTRACE``).
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

RATE = 100  # samples per second
#: A sampled thread whose innermost frame is one of these is waiting, not working.
IDLE = (
    "Condition.wait",
    "EpollSelector.select",
    "select (",
    "Connection._recv",
    "Popen.poll",
    "Event.wait",
    "_wait_for_tstate_lock",
    "Queue.get",
    "sleep",
    "poll (",
)
PROCESS = re.compile(r'process (\d+):"')
#: Where a process's command line ends and its frames begin: a command line may hold quotes, ';' and
#: newlines (a ``python -c`` script), a frame is ``name (file:line)``.
FRAMES = re.compile(r'";(?=[^;"]+ \([^;]*\)(;|$))')
#: Where one sample's record ends: its count, then the next record's first process.
RECORD = re.compile(r"(?<=\d)\n(?=process \d+:\")")


def py_spy() -> str:
    """The py-spy executable beside this Python, or on PATH."""
    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install py-spy (the bench extra has it)")
    return found


def record(argv: list[str], out: Path, env: dict[str, str] | None = None, rate: int = RATE) -> None:
    """Run `argv` under py-spy, every process of its tree sampled `rate` times a second, into `out`."""
    command = [py_spy(), "record", "--subprocesses", "--nonblocking", "--rate", str(rate)]
    command += ["--format", "raw", "-o", str(out), "--", *argv]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame(text: str) -> str:
    """``function (file:line)`` → ``function (file)``: a function's lines counted together."""
    name, _, where = text.partition(" (")
    return f"{name} ({where.split(':')[0]})" if where else name


def summary(raw: Path, rate: int = RATE, top: int = 20) -> str:
    """Per process of a raw py-spy profile: busy seconds, then the top frames by own and inclusive time
    (the process py-spy started is the driver; its children are the workers and nannies)."""
    busy: collections.Counter[str] = collections.Counter()
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    held: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    roots = set()
    for record in RECORD.split(raw.read_text().strip()):
        stack, _, count = record.rpartition(" ")
        found = list(PROCESS.finditer(stack))
        start = FRAMES.search(stack, found[-1].end()) if found else None
        if start is None or not count.isdigit():
            continue
        frames = [f for f in stack[start.end() :].split(";") if f]
        if not frames or any(idle in frames[-1] for idle in IDLE):
            continue
        pid, n = found[-1].group(1), int(count)
        roots.add(found[0].group(1))
        busy[pid] += n
        own[pid][_frame(frames[-1])] += n
        for frame in {_frame(f) for f in frames}:
            held[pid][frame] += n
    out = []
    for pid, n in busy.most_common():
        role = "driver" if pid in roots else "worker (or nanny)"
        out.append(f"== process {pid} ({role}): {n / rate:.2f} s busy")
        out.append("   own time:")
        out += [f"   {c / rate:7.2f}  {f}" for f, c in own[pid].most_common(top)]
        out.append("   inclusive:")
        out += [f"   {c / rate:7.2f}  {f}" for f, c in held[pid].most_common(top * 2)]
        out.append("")
    return "\n".join(out)

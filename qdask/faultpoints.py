"""Named points where the recovery tests kill the process that reaches them (SIGKILL, no clean-up).

The pipeline calls ``reached(name[, detail])`` at the places where a stop is most dangerous (after a
Qserv transaction starts but before the ledger knows it, between a contribution and its commit, during
a commit, ...). Nothing happens unless the environment variable ``QDASK_KILL_AT`` names the point, so
the cost in production is one dictionary lookup. Grammar (items separated by commas)::

    NAME[=TEXT]:N[+SECONDS][!]     kill at the N-th hit of NAME (counted per process)
    NAME[=TEXT]:*                  kill at every hit (a task that always kills its worker)

``=TEXT`` counts only hits whose detail contains TEXT; ``+SECONDS`` kills that long after the hit,
from a timer thread, so the process dies while the next request is in flight; ``!`` fires at most once
across all processes sharing ``QDASK_FAULT_DIR`` (a Dask task retried on another worker then succeeds).
``MODE`` may be changed from ``kill`` with ``QDASK_FAULT_MODE``: ``oom`` makes the process allocate
memory until its nanny (or the kernel) kills it, as a real out-of-memory kill would; ``interrupt``
sends SIGINT to the whole process group, as Ctrl-C in a terminal does (the driver and its local Dask
workers all receive it), and the process goes on; ``hold`` stops the process there, alive, until a file
``release`` appears in ``QDASK_FAULT_DIR`` (so a test can order two processes: hold one at a point, act,
release it), then removes the file (each hold takes one release) and goes on; ``enospc`` raises
``OSError(ENOSPC)`` there, as a write to a full disk would (the process goes on, and must handle it).
When ``QDASK_FAULT_DIR`` is set, every firing appends ``pid name detail`` to ``kills.log`` there
(fsynced) before the process dies, so a test can tell which point was actually hit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ENV = "QDASK_KILL_AT"
DIR_ENV = "QDASK_FAULT_DIR"
MODE_ENV = "QDASK_FAULT_MODE"


@dataclass(frozen=True)
class _Rule:
    text: str
    name: str
    detail: str | None
    nth: int | None  # None: every hit
    delay: float
    once: bool


_parsed: dict[str, list[_Rule]] = {}
_hits: dict[_Rule, int] = {}
_lock = threading.Lock()
_quiet = threading.local()


def parse(spec: str) -> list[_Rule]:
    """The rules of a ``QDASK_KILL_AT`` value; a malformed item raises ``ValueError`` naming it."""
    rules = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            where, when = item.rsplit(":", 1)
            name, _, detail = where.partition("=")
            once = when.endswith("!")
            when = when.rstrip("!")
            count, _, delay = when.partition("+")
            nth = None if count == "*" else int(count)
            if nth is not None and nth < 1:
                raise ValueError
            rules.append(_Rule(item, name, detail or None, nth, float(delay or 0), once))
        except ValueError:
            expected = "NAME[=TEXT]:N[+SECONDS][!] or NAME:*"
            raise ValueError(f"{ENV}: cannot read {item!r} (expected {expected})") from None
    return rules


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No fault point fires in this thread meanwhile: for stage code run outside its stage (the plan's
    estimate runs a sample through partition and collect in the driver; a kill meant for a collect task
    must not hit it)."""
    _quiet.active = getattr(_quiet, "active", 0) + 1
    try:
        yield
    finally:
        _quiet.active -= 1


def armed() -> bool:
    """Whether any point may fire here (``QDASK_KILL_AT`` set, not `quiet`): a loop passing a point per
    item (thousands of chunk files) skips building the items' details when not."""
    return bool(os.environ.get(ENV)) and not getattr(_quiet, "active", 0)


def reached(name: str, detail: str = "") -> None:
    """Kill this process here if ``QDASK_KILL_AT`` says so; otherwise return at once."""
    spec = os.environ.get(ENV)
    depth: int = getattr(_quiet, "active", 0)
    if not spec or depth:
        return
    rules = _parsed.get(spec)
    if rules is None:
        rules = _parsed[spec] = parse(spec)
    for rule in rules:
        if rule.name != name or (rule.detail is not None and rule.detail not in detail):
            continue
        with _lock:
            _hits[rule] = _hits.get(rule, 0) + 1
            due = rule.nth is None or _hits[rule] == rule.nth
        if due and (not rule.once or _claim(rule)):
            _log(name, detail)
            if rule.delay:
                threading.Timer(rule.delay, _die).start()
            else:
                _die()


def _claim(rule: _Rule) -> bool:
    """True for the first process to fire a ``!`` rule (a marker file in ``QDASK_FAULT_DIR``)."""
    folder = os.environ.get(DIR_ENV)
    if not folder:
        return True
    marker = Path(folder) / ("fired-" + "".join(c if c.isalnum() else "_" for c in rule.text))
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _hold() -> None:
    """Wait until ``QDASK_FAULT_DIR/release`` exists (forever without a fault directory: a test bug)."""
    release = Path(os.environ.get(DIR_ENV) or "/nonexistent") / "release"
    while not release.exists():
        time.sleep(0.05)
    release.unlink(missing_ok=True)


def _log(name: str, detail: str) -> None:
    folder = os.environ.get(DIR_ENV)
    if not folder:
        return
    fd = os.open(Path(folder) / "kills.log", os.O_CREAT | os.O_APPEND | os.O_WRONLY)
    try:
        os.write(fd, f"{os.getpid()} {name} {detail}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _die() -> None:
    mode = os.environ.get(MODE_ENV)
    if mode == "hold":
        _hold()
        return
    if mode == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (injected by QDASK_KILL_AT)")
    if mode == "interrupt":
        os.killpg(os.getpgrp(), signal.SIGINT)
        return
    if mode == "oom":
        hog = []
        while True:  # ~300 MB/s, every page touched so it is resident, until something kills us
            block = bytearray(16 << 20)
            block[::4096] = b"x" * len(block[::4096])
            hog.append(block)
            time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)

"""Fault injection for recovery tests, switchable at run time (Python API or the controller's admin route).

A fault is a rule: what to do (``kind``), which events it applies to (``match``: equality on
``worker``, ``table``, ``chunk``, ``overlap``, ``transaction_id``, ``database``, ``url``, ``method``;
``path`` is a prefix), which matching event fires first (``nth``, 1-based) and how many times it fires
(``times``, 0 = forever). Python: ``faults.add(kind, match=..., nth=..., times=..., seconds=...)``,
``faults.remove(id)``, ``faults.clear()``, ``faults.list()``. HTTP (controller, not part of Qserv's
API): ``POST /emulator/faults`` with the same fields as JSON, ``GET``/``DELETE /emulator/faults``,
``DELETE /emulator/faults/:id``.

Kinds and what they leave behind (what a real Qserv would leave):

* ``read_failed`` — the contribution fails while its input is read: status ``READ_FAILED``,
  ``retry_allowed=1``, the destination table untouched.
* ``load_failed`` — the rows are loaded into partition ``p<T>``, then the contribution reports
  ``LOAD_FAILED`` (``retry_allowed=0``): like a MyISAM load that broke midway, only aborting the
  transaction removes what was written.
* ``drop_upload`` — the connection is closed while a ``/ingest/csv`` body is being received: nothing
  loaded, the contribution ends ``READ_FAILED``.
* ``drop_response`` — the contribution is fully loaded (``FINISHED``) but the connection is closed
  instead of answering: the client sees a lost answer and must abort.
* ``delay`` — sleep ``seconds`` before handling a matching request (any service, matched on path).
* ``fail_commit`` / ``fail_abort`` — the commit (abort) job fails: ``FINISH_FAILED`` (``ABORT_FAILED``).
* worker down/up — not a rule but a switch (``Emulator.set_worker_down``, or ``kind: worker_down`` /
  ``worker_up`` on the admin route): the worker's listener is closed (connections refused) or reopened
  on the same port; controller jobs needing it fail with an error naming the worker.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass, field

RULE_KINDS = (
    "read_failed",
    "load_failed",
    "drop_upload",
    "drop_response",
    "delay",
    "fail_commit",
    "fail_abort",
)


@dataclass
class Fault:
    kind: str
    match: dict = field(default_factory=dict)
    nth: int = 1
    times: int = 1
    seconds: float = 0.0
    id: int = 0
    seen: int = 0
    fired: int = 0

    def to_json(self) -> dict:
        return asdict(self)


class FaultInjector:
    """The active fault rules, shared by the controller and the workers (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self.down_workers: set[str] = set()

    def add(
        self, kind: str, *, match: dict | None = None, nth: int = 1, times: int = 1, seconds: float = 0.0
    ) -> Fault:
        """Install a rule; returns it (its ``id`` removes it)."""
        if kind not in RULE_KINDS:
            raise ValueError(f"unknown fault kind '{kind}', expected one of {', '.join(RULE_KINDS)}")
        if nth < 1 or times < 0:
            raise ValueError("nth must be >= 1 and times >= 0")
        fault = Fault(kind, dict(match or {}), nth, times, float(seconds), next(self._ids))
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def fire(self, kinds: tuple[str, ...], event: dict) -> Fault | None:
        """The first rule of one of ``kinds`` that matches ``event`` and is due now (counts the event)."""
        with self._lock:
            for f in self._faults:
                if f.kind not in kinds or not _matches(f.match, event):
                    continue
                f.seen += 1
                if f.seen < f.nth or (f.times and f.fired >= f.times):
                    continue
                f.fired += 1
                return f
        return None

    def mark_worker(self, name: str, down: bool) -> None:
        """Record a worker as down/up; the server closes/reopens its listener (see ``Emulator``)."""
        if down:
            self.down_workers.add(name)
        else:
            self.down_workers.discard(name)


def _matches(match: dict, event: dict) -> bool:
    for key, want in match.items():
        have = event.get(key)
        if key == "path":
            if have is None or not str(have).startswith(str(want)):
                return False
        elif have is None or str(have) != str(want):
            return False
    return True

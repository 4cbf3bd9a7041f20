"""The run's own account beside the ledger, ``ledger.run.json`` (next to ``ledger.sqlite``, in staging by
default): what `qdask status` and the run report show that the ledger does not hold.

The ledger records facts about the data (units, shards, chunk files, transactions) and is what a resumed
run trusts. This record keeps the rest: each invocation of the ingest (when, how it ended, the time and
work of each stage, the workers' memory over time), when the catalog was published, the last
verification, and the key policies (``duplicate_ids``, ``orphans``) the staged chunk files were collected
under, so that a policy changed between runs is applied rather than ignored. It is replaced atomically on
every change; losing it loses history, never data.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Invocation", "RunRecord", "StageRecord", "now"]

log = logging.getLogger(__name__)

SUFFIX = ".run.json"
KEPT_INVOCATIONS = 50  # older ones are dropped: the record stays small however often a run is resumed


def now() -> str:
    """The current time, UTC, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class StageRecord:
    """One stage of one invocation: how long it took and what it did (items, rows, bytes)."""

    name: str
    seconds: float
    items: int = 0
    rows: int = 0
    bytes: int = 0


@dataclass
class Invocation:
    """One `qdask ingest` (or `qdask.ingest()`): its stages, outcome and workers' memory samples."""

    started: str
    ended: str | None = None
    outcome: str = "running"
    workers: int | None = None
    stages: list[StageRecord] = field(default_factory=list)
    memory: list[tuple[float, str, int, int | None]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Invocation:
        stages = [StageRecord(**s) for s in data.get("stages", [])]
        memory = [(float(t), str(w), int(used), limit) for t, w, used, limit in data.get("memory", [])]
        outcome, workers = data.get("outcome", "?"), data.get("workers")
        return cls(data["started"], data.get("ended"), outcome, workers, stages, memory)


@dataclass
class RunRecord:
    """The record of one ledger, as read (empty when missing) and as this run changes it."""

    path: Path
    invocations: list[Invocation] = field(default_factory=list)
    published: dict[str, Any] | None = None
    verified: dict[str, Any] | None = None
    key_policies: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def path_for(ledger: Path) -> Path:
        """Where the record of the ledger at `ledger` lives: beside it, ``<stem>.run.json``."""
        return Path(ledger).with_suffix(SUFFIX)

    @classmethod
    def load(cls, ledger: Path) -> RunRecord:
        """The record of the ledger at `ledger` (an empty one when there is none or it is unreadable)."""
        path = cls.path_for(ledger)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            log.warning("run record %s is unreadable (%s); starting a new one", path, exc)
            return cls(path)
        return cls(
            path,
            [Invocation.from_dict(i) for i in data.get("invocations", [])],
            data.get("published"),
            data.get("verified"),
            dict(data.get("key_policies", {})),
        )

    def save(self) -> None:
        """Write the record atomically (a temporary file renamed over the old one)."""
        self.invocations = self.invocations[-KEPT_INVOCATIONS:]
        data = {
            "invocations": [asdict(i) for i in self.invocations],
            "published": self.published,
            "verified": self.verified,
            "key_policies": self.key_policies,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)

    @property
    def current(self) -> Invocation | None:
        return self.invocations[-1] if self.invocations else None

    def begin(self, workers: int | None = None) -> Invocation:
        """Start recording a new invocation."""
        invocation = Invocation(now(), workers=workers)
        self.invocations.append(invocation)
        self.save()
        return invocation

    def stage(self, name: str, seconds: float, *, items: int = 0, rows: int = 0, bytes: int = 0) -> None:
        """Record a stage of the current invocation."""
        if self.current is None:
            self.begin()
        assert self.current is not None
        self.current.stages.append(StageRecord(name, round(seconds, 3), items, rows, bytes))
        self.save()

    def end(self, outcome: str, memory: list[tuple[float, str, int, int | None]] | None = None) -> None:
        """Close the current invocation with its outcome (and the workers' memory samples)."""
        if self.current is None:
            return
        self.current.ended, self.current.outcome = now(), outcome
        if memory is not None:
            self.current.memory = list(memory)
        self.save()

    def rate(self, stage: str, per: str = "rows") -> tuple[float, Invocation] | None:
        """The latest measured rate of `stage` (``rows`` or ``bytes`` per second, over all workers), with
        the invocation that measured it; None when no run recorded that stage with work done."""
        for invocation in reversed(self.invocations):
            done = [s for s in invocation.stages if s.name == stage and getattr(s, per) > 0 and s.seconds > 0]
            if done:
                return sum(getattr(s, per) for s in done) / sum(s.seconds for s in done), invocation
        return None

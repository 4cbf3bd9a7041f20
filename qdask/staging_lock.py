"""One run per staging directory: an exclusive lock on a file beside the ledger, held for the run's life.

Two `qdask ingest` (or an ingest and a `qdask reset`) on the same staging directory would both write its
ledger and its files; the second one to start refuses at once, naming the holder (pid, host, since when).
The lock is a `flock` on ``<ledger>.lock``: the kernel releases it when the holding process dies, however
it dies (SIGKILL, OOM, a lost pod), so a stale lock never blocks a re-run. The file itself stays; its text
(who held it last) is only for the message. `flock` locks belong to the open file, not the process, so
two runs in one process (the Python API) exclude each other too; the descriptor is not inherited by the
Dask worker processes (Python opens files close-on-exec and Dask starts workers with spawn).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from qdask.errors import QdaskError


class StagingBusy(QdaskError):
    """Another qdask process holds the staging directory; nothing was done."""


def lock_path(ledger_path: Path) -> Path:
    """The lock file of a ledger: beside it, ``<ledger>.lock``."""
    return ledger_path.with_name(ledger_path.name + ".lock")


class StagingLock:
    """`with StagingLock(ledger_path, what="ingest"):` — held for the block, refused (`StagingBusy`) when
    another process (or another holder in this one) has it."""

    def __init__(self, ledger_path: Path, *, what: str = "ingest"):
        self.path = lock_path(Path(ledger_path))
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise StagingBusy(
                f"the staging directory {self.path.parent} is in use by another qdask process "
                f"({_describe(holder)}); wait for it to end, or give this run another staging directory "
                f"(--staging). The lock is {self.path}; it is released when its holder exits, however it "
                "exits."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.what,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> StagingLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "it has not written its name yet"
    command, pid, host = holder.get("command", "?"), holder.get("pid", "?"), holder.get("host", "?")
    return f"`qdask {command}`, pid {pid} on host {host}, since {holder.get('since', '?')}"

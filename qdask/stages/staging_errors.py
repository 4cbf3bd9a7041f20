"""A write to staging that the disk refuses (full, over quota, read-only, permissions) as one clear error
naming the staging directory, instead of a bare ``OSError`` from deep inside a task.

Tasks wrap their writes in `staging_writes(root)`; the driver reports the `StagingWriteError` with the
unit or chunk, and since a task records nothing until it has finished, the same command re-run after
freeing space resumes where the run stopped.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from qdask.errors import QdaskError

__all__ = ["DISK_ERRORS", "StagingWriteError", "as_staging_error", "describe_os_error", "staging_writes"]

#: The errors a disk (not qdask) causes, and what to tell the user about each.
DISK_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def describe_os_error(exc: OSError) -> str:
    """An OS error as a short reason: 'the file system is read-only (EROFS)'."""
    code = exc.errno or 0
    name = errno.errorcode.get(code, str(code))
    return f"{DISK_ERRORS.get(code, exc.strerror or str(exc))} ({name})"


class StagingWriteError(QdaskError):
    """The staging directory refused a write; nothing of the task was recorded."""


@contextlib.contextmanager
def staging_writes(root: str | Path) -> Iterator[None]:
    """Turn a disk's refusal of a write under `root` into a `StagingWriteError` naming `root`."""
    try:
        yield
    except OSError as exc:
        error = as_staging_error(exc, root)
        if error is None:
            raise
        raise error from None


def as_staging_error(exc: BaseException, root: str | Path) -> StagingWriteError | None:
    """The `StagingWriteError` a disk's refusal seen by the driver stands for (an `OSError` of
    `DISK_ERRORS`, or SQLite's 'disk is full' / 'readonly database' from the ledger); None otherwise."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
        where = f" ({exc.filename})" if exc.filename else ""
        reason = describe_os_error(exc)
    elif isinstance(exc, sqlite3.OperationalError) and any(
        text in str(exc) for text in ("disk is full", "readonly database", "disk I/O error")
    ):
        where, reason = " (the ledger)", f"SQLite: {exc}"
    else:
        return None
    return StagingWriteError(
        f"staging directory {root} refused a write{where}: {reason}; free space there (or fix its "
        "permissions) and re-run the same command to resume"
    )

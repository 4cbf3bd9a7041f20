"""Where qdask's log records go when it runs as a command (`--log-level`, `--log-file`).

The package logs through `logging` (loggers ``qdask.*``) and, as a library, installs only a
`NullHandler`. The command sends those records to stderr at `--log-level` (default: warning, so a
terminal shows the progress display and problems only). With `--log-file` they go to that file instead,
at `--log-level` (default: info: each stage's start and end with counts and time; `debug` adds each unit,
chunk file and transaction), and stderr keeps the warnings. Lines on stderr are written to whatever
`sys.stderr` is at that moment, so they appear above rich's live bars instead of tearing them.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["LEVELS", "setup_logging"]

LEVELS = ("debug", "info", "warning", "error")
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _CurrentStderr(logging.Handler):
    """A handler writing to the current `sys.stderr` (rich redirects it while live bars are shown)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging's own convention
            self.handleError(record)


def setup_logging(level: str | None = None, file: str | Path | None = None) -> None:
    """Route the ``qdask`` loggers to stderr (and to `file`); calling it again replaces what it set."""
    logger = logging.getLogger("qdask")
    for handler in [h for h in logger.handlers if getattr(h, "qdask_command", False)]:
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = []
    stderr = _CurrentStderr()
    stderr.setLevel("WARNING" if file is not None else (level or "warning").upper())
    handlers.append(stderr)
    if file is not None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setLevel((level or "info").upper())
        handlers.append(to_file)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.qdask_command = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(min(h.level for h in handlers))

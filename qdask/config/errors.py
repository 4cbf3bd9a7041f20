"""The error a bad configuration raises: every problem, each as ``file:line: key.path: what was expected``."""

from __future__ import annotations

import os
from collections.abc import Mapping

from qdask.errors import QdaskUsageError

__all__ = ["ConfigError", "MultiProblem"]


class ConfigError(QdaskUsageError, ValueError):
    """An invalid configuration: every problem with the file, the key path and what was expected.

    `problems` is a list of ``(key_path, message)``; `str()` gives one line per problem, prefixed with
    the file (and line, when known), so the CLI can print it as is.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | None,
        problems: list[tuple[str, str]],
        lines: Mapping[str, int] | None = None,
    ) -> None:
        self.source = str(source) if source is not None else "<config>"
        self.problems = problems
        self.lines = dict(lines or {})
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.source}: invalid configuration ({len(self.problems)} problem"
        head += "s)" if len(self.problems) != 1 else ")"
        out = [head]
        for key, message in self.problems:
            line = self.lines.get(key)
            where = f"{self.source}:{line}" if line else self.source
            out.append(f"  {where}: {key}: {message}" if key else f"  {where}: {message}")
        return "\n".join(out)


class MultiProblem(ValueError):
    """Several problems found by one cross-field check, each ``"sub.key.path: message"`` relative to the
    model that raised it; loading turns each into its own located problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))

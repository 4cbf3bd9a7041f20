"""`qdask ingest` in a real terminal (a pty, as a user's shell gives it): the live bars with rows, rate
and time remaining, and Ctrl-C typed at the terminal (the line discipline sends SIGINT to the whole
foreground process group: the driver and its Dask workers) ending the run with one line."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import termios
import time

import pytest

from tests.faults.conftest import QDASK, write_case01
from tests.operator.conftest import qdask_env

INTERRUPTED = (
    "qdask ingest interrupted: everything finished so far is recorded; re-run the same command to resume"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def in_terminal(args: list[str], env: dict, *, type_ctrl_c_after: str | None = None, timeout: float = 300):
    """Run `qdask ARGS` on a pty of 40x150; type Ctrl-C once the output shows `type_ctrl_c_after`.
    Returns (everything the terminal showed, exit status)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
        os.execve(str(QDASK), [str(QDASK), *args], env)
    shown, typed = b"", False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        if (
            type_ctrl_c_after
            and not typed
            and type_ctrl_c_after in ANSI.sub("", shown.decode(errors="replace"))
        ):
            os.write(fd, b"\x03")
            typed = True
    else:
        os.kill(pid, 9)
        pytest.fail(f"qdask did not end in {timeout} s:\n{shown.decode(errors='replace')[-3000:]}")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return shown.decode(errors="replace"), os.waitstatus_to_exitcode(status)


@pytest.fixture
def slow_uploads(qserv):
    """Every contribution upload held 0.3 s by the stand-in, so the load stage lasts long enough to watch."""
    qserv.faults.add("delay", match={"path": "/ingest/csv"}, seconds=0.3, times=0)
    yield
    qserv.faults.clear()


def test_the_live_bars_show_rows_rate_and_time_remaining(qserv, tmp_path, slow_uploads):
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "op_tty_bars")
    shown, status = in_terminal(["ingest", str(config), "--no-verify"], {**qdask_env(qserv), "TERM": "xterm"})
    assert status == 0, shown[-3000:]
    assert "\x1b[" in shown  # redrawn in place: a live display, not lines
    text = ANSI.sub("", shown)
    for stage in ("partition", "collect", "load"):
        final = re.findall(
            rf"{stage} +━+ +(\d+)/(\d+) +([\d,]+) rows +([\d,]+|-) rows/s +\d+:\d\d:\d\d ETA", text
        )
        assert final and final[-1][0] == final[-1][1], stage  # the bar ends full, with its rows and rate
    loading = re.findall(r"load +━+ +(\d+)/(\d+) .*? rows/s +\d+:\d\d:\d\d ETA (\d+:\d\d:\d\d|-:--:--)", text)
    assert any(done != total for done, total, _ in loading)  # seen while it ran, not only at the end
    assert "Dask dashboard: http://" in text and "catalog rows loaded" in text


def test_ctrl_c_at_the_terminal_ends_with_one_line_saying_how_to_resume(qserv, tmp_path, slow_uploads):
    config = write_case01(tmp_path / "case01.yaml", qserv, tmp_path / "staging", "op_tty_ctrl_c")
    env = {**qdask_env(qserv), "TERM": "xterm"}
    shown, status = in_terminal(["ingest", str(config)], env, type_ctrl_c_after="load ")
    assert status == 130, shown[-3000:]
    lines = [line.strip() for line in ANSI.sub("", shown).splitlines() if line.strip()]
    assert lines[-1] == INTERRUPTED
    assert "Traceback" not in shown and "KeyboardInterrupt" not in shown
    qserv.faults.clear()
    again, status = in_terminal(["ingest", str(config)], env)
    assert status == 0, again[-3000:]
    assert "resuming run" in ANSI.sub("", again)

"""The demo from a clean start: its Butler repository is built whole or not at all (Ctrl-C never leaves a
half-built one to be reused), and a wheel of qdask installed in a clean virtual environment runs
`qdask demo` to a verified catalog (slow: the one test that installs qdask from scratch)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.conftest import QDASK

ROOT = Path(__file__).resolve().parents[2]


def test_an_interrupted_repository_build_leaves_nothing_to_reuse(tmp_path):
    repo = tmp_path / "demo-run" / "repo"
    build = subprocess.Popen(
        [str(QDASK), "demo-repo", str(repo), "--tracts", "3", "--rows-per-patch", "3000"],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while (
        not list(repo.parent.glob("qdask-demo-repo-building-*/butler.yaml")) and time.monotonic() < deadline
    ):
        time.sleep(0.05)  # the registry exists: Butler datasets are being written
    assert list(repo.parent.glob("qdask-demo-repo-building-*/butler.yaml")), "the build never started"
    os.killpg(build.pid, signal.SIGINT)  # Ctrl-C
    output, _ = build.communicate(timeout=120)
    assert build.returncode == 130, output
    assert output.strip().splitlines()[-1] == "qdask demo-repo interrupted: nothing else was done"
    assert not repo.exists() and list(repo.parent.iterdir()) == []  # no repository, no leftovers


@pytest.mark.timeout(3600)
def test_a_wheel_installed_in_a_clean_venv_runs_the_demo(tmp_path):
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("QDASK_")
    }
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = dist.glob("qdask-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    work.mkdir()
    demo = subprocess.run(
        [
            str(venv / "bin" / "qdask"),
            "demo",
            "--workdir",
            str(work / "demo"),
            "--tracts",
            "1",
            "--rows-per-patch",
            "50",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=1800,
    )
    assert demo.returncode == 0, demo.stderr[-5000:]
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import qdask; print(qdask.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )
    assert where.stdout.startswith(str(venv))  # the installed wheel ran, not the source tree
    assert "all" in demo.stderr and "DIFFERS" not in demo.stdout and "cone search" in demo.stdout
    assert (work / "demo" / "staging" / "report.html").is_file()

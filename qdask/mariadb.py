"""A private MariaDB server in a directory of its own, for the tests, the benchmarks and `qdask demo`.

It runs Debian's `mariadbd` with no option files, on a free loopback port, as the current user, with
`root` and no password, so nothing on the machine's own server is touched and nothing leaks between runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from qdask.errors import QdaskError

SERVER_CANDIDATES = ("mariadbd", "/usr/sbin/mariadbd", "mysqld", "/usr/sbin/mysqld")
INSTALL_CANDIDATES = ("mariadb-install-db", "/usr/bin/mariadb-install-db", "mysql_install_db")


class MariaDBNotFound(QdaskError, RuntimeError):
    """MariaDB's server programs are not installed (run scripts/setup.sh, which installs them)."""


def _find(candidates: tuple[str, ...]) -> str:
    for name in candidates:
        path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if path:
            return path
    raise MariaDBNotFound(
        f"none of {', '.join(candidates)} was found; install MariaDB "
        "(Debian: apt-get install mariadb-server) or run scripts/setup.sh"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PrivateMariaDB:
    """A throw-away MariaDB server: `start()` creates and boots it, `stop()` shuts it down and removes it."""

    base_dir: Path | None = None
    port: int = 0
    extra_args: tuple[str, ...] = ()
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _owns_dir: bool = field(default=False, init=False, repr=False)

    @property
    def dsn(self) -> str:
        """The server's address as `mysql://root@127.0.0.1:PORT` (no password)."""
        return f"mysql://root@127.0.0.1:{self.port}"

    def connect(self, database: str | None = None, **kwargs) -> pymysql.connections.Connection:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            password="",
            database=database,
            local_infile=True,
            autocommit=True,
            **kwargs,
        )

    def start(self, timeout: float = 60.0) -> PrivateMariaDB:
        server, installer = _find(SERVER_CANDIDATES), _find(INSTALL_CANDIDATES)
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="qdask-mariadb-"))
            self._owns_dir = True
        datadir, sockpath = self.base_dir / "data", self.base_dir / "mysqld.sock"
        datadir.mkdir(parents=True, exist_ok=True)
        # Temporary tables of its own, so nothing that cleans the machine's /tmp can pull them away
        # mid-statement (seen: "Error on delete of '/tmp/#sql-temptable-….MAI'").
        tmpdir = self.base_dir / "tmp"
        tmpdir.mkdir(exist_ok=True)
        user_args = ["--user=root"] if os.geteuid() == 0 else []
        if not (datadir / "mysql").exists():
            subprocess.run(
                [
                    installer,
                    "--no-defaults",
                    f"--datadir={datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    *user_args,
                ],
                check=True,
                capture_output=True,
            )
        self.port = self.port or free_port()
        log = open(self.base_dir / "server.log", "ab")  # noqa: SIM115 (kept open for the server's lifetime)
        self._proc = subprocess.Popen(
            [
                server,
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={sockpath}",
                f"--tmpdir={tmpdir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base_dir / 'mysqld.pid'}",
                "--skip-log-bin",
                "--local-infile=1",
                "--secure-file-priv=",
                "--max-connections=500",
                "--skip-name-resolve",
                *user_args,
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"mariadbd exited with {self._proc.returncode}; see {self.base_dir}/server.log"
                )
            try:
                self.connect().close()
                return self
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"mariadbd did not accept connections in {timeout}s") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._owns_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PrivateMariaDB:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""Start the whole stand-in: controller, N workers and czar on one MariaDB server, in one event loop.

``Emulator`` is the asyncio object (used by ``qdask emulator serve``); ``EmulatorThread`` runs it in
a background thread for synchronous callers (tests, benchmarks, ``qdask demo``)::

    with EmulatorThread("mysql://root@127.0.0.1:3306", workers=3) as qserv:
        qserv.controller_url      # http://127.0.0.1:PORT   (Qserv's controller REST API)
        qserv.czar_dsn            # mysql://qsmaster@127.0.0.1:PORT (Qserv's czar front end, Qserv's SQL)
        qserv.faults.add("load_failed", match={"chunk": 7480})
        qserv.set_worker_down("worker-2", True)

Workers register their host and HTTP port with the controller's worker registry (persisted), which is
where location services read them from, as in Qserv.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import tempfile
import threading
from dataclasses import dataclass, field

from aiohttp import web

from qdask.emulator.controller import Controller
from qdask.emulator.controller.context import ControllerContext
from qdask.emulator.czar.analysis import Catalog
from qdask.emulator.czar.databases import Czar
from qdask.emulator.czar.frontend import DEFAULT_USER, Account, CzarFrontend
from qdask.emulator.faults import FaultInjector
from qdask.emulator.protocol import Keys
from qdask.emulator.records import Host, Worker
from qdask.emulator.state import State
from qdask.emulator.storage import Dsn, SqlPool, WorkerStorage, server_reads
from qdask.emulator.worker import WorkerNode

log = logging.getLogger("qdask.emulator")


@dataclass
class EmulatorConfig:
    """Everything that defines one stand-in. ``instance`` namespaces its MariaDB databases:
    ``<instance>_replica`` (controller records), ``<instance>_w<i>__<db>`` (worker data),
    ``<instance>_qservMeta`` (director index, row counters); czar databases are ``<czar_prefix><db>``,
    queried through the czar front end on ``czar_port`` (0: any free port; Qserv's is 4040) as
    ``czar_user``/``czar_password``; scisql's functions live in ``<instance>_scisql``."""

    dsn: str
    workers: int = 3
    host: str = "127.0.0.1"
    port: int = 0
    worker_ports: list[int] = field(default_factory=list)
    auth_key: str = ""
    admin_auth_key: str = "admin"
    instance: str = "qserv"
    czar_prefix: str = ""
    tmp_dir: str | None = None
    load_local: bool | None = None  # None: server-side LOAD DATA INFILE when possible, else LOCAL
    czar_port: int = 0
    czar_user: str = DEFAULT_USER
    czar_password: str = ""


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class Emulator:
    """The running stand-in (asyncio). ``await start()`` / ``await stop()``."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self.keys = Keys(config.auth_key, config.admin_auth_key)
        self.faults = FaultInjector()
        self.dsn = Dsn.parse(config.dsn)
        self.pool: SqlPool | None = None
        self.state: State | None = None
        self.nodes: dict[str, WorkerNode] = {}
        self.controller: Controller | None = None
        self._runners: list[web.AppRunner] = []
        self._worker_runners: dict[str, web.AppRunner] = {}
        self._worker_sites: dict[str, web.TCPSite] = {}
        self._own_tmp = False
        self.controller_port = 0
        self.frontend: CzarFrontend | None = None

    @property
    def controller_url(self) -> str:
        return f"http://{self.config.host}:{self.controller_port}"

    @property
    def worker_urls(self) -> dict[str, str]:
        return {n: f"http://{self.config.host}:{w.port}" for n, w in self.nodes.items()}

    @property
    def czar_dsn(self) -> str:
        """Where clients query the catalogs: the czar front end (see czar/frontend.py)."""
        assert self.frontend is not None, "the stand-in is not started"
        return self.frontend.dsn

    @property
    def meta_db(self) -> str:
        return f"{self.config.instance}_qservMeta"

    @property
    def scisql_db(self) -> str:
        return f"{self.config.instance}_scisql"

    def _middleware(self, server: str):
        @web.middleware
        async def delay(request: web.Request, handler):
            fault = self.faults.fire(
                ("delay",),
                {"server": server, "worker": server, "method": request.method, "path": request.path},
            )
            if fault is not None:
                await asyncio.sleep(fault.seconds)
            return await handler(request)

        return delay

    async def _serve(self, routes, server: str, port: int) -> tuple[web.AppRunner, web.TCPSite, int]:
        app = web.Application(middlewares=[self._middleware(server)], client_max_size=1 << 40)
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, port, reuse_address=True)
        await site.start()
        actual = int(runner.addresses[-1][1])
        return runner, site, actual

    async def start(self) -> Emulator:
        cfg = self.config
        self.pool = SqlPool(self.dsn)
        if cfg.tmp_dir is None:
            cfg.tmp_dir = tempfile.mkdtemp(prefix="qdask-emulator-")
            self._own_tmp = True
        load_local = cfg.load_local
        if load_local is None:
            load_local = not (self.dsn.is_local and await self.pool.run(server_reads, cfg.tmp_dir))
        state = self.state = State(self.pool, f"{cfg.instance}_replica")
        await self.pool.run(lambda conn: state.open())
        czar = Czar(state, self.pool, self.nodes, cfg.czar_prefix)
        storages: dict[str, WorkerStorage] = {}
        context = ControllerContext(state, self.pool, storages, self.keys, self.faults, czar, self.meta_db)
        self.controller = Controller(context, self.set_worker_down)
        await self.pool.aexecute(f"CREATE DATABASE IF NOT EXISTS `{self.meta_db}`")
        for i in range(1, cfg.workers + 1):
            name = f"worker-{i}"
            port = cfg.worker_ports[i - 1] if i - 1 < len(cfg.worker_ports) else 0
            known = state.workers.get(name)
            previous = known.http_loader_port if known else 0
            if port == 0 and previous and _port_free(cfg.host, previous):
                port = previous  # a restarted stand-in keeps its workers where clients knew them
            loader_port = known.loader_port if known and _port_free(cfg.host, known.loader_port) else 0
            storage = storages[name] = WorkerStorage(f"{cfg.instance}_w{i}__", load_local)
            node = WorkerNode(
                name, cfg.host, 0, state, self.pool, storage, self.keys, self.faults, cfg.tmp_dir
            )
            runner, site, node.port = await self._serve(node.routes(), name, port)
            self._worker_runners[name], self._worker_sites[name] = runner, site
            self.nodes[name] = node
            await node.open_loader(loader_port)
            host = Host(cfg.host, "localhost")
            await state.save(
                Worker(name, True, False, host, node.loader_port, cfg.tmp_dir, host, node.port, cfg.tmp_dir)
            )
        port = cfg.port
        previous = self.controller_port
        runner, _site, self.controller_port = await self._serve(
            self.controller.routes(), "controller", port or previous
        )
        self._runners.append(runner)
        for node in self.nodes.values():
            node.start_async()
            await node.resume()
        self.frontend = CzarFrontend(
            self.dsn,
            catalog=lambda: Catalog.from_state(
                state, czar_prefix=cfg.czar_prefix, meta_db=self.meta_db, scisql_db=self.scisql_db
            ),
            scisql_db=self.scisql_db,
            czar_prefix=cfg.czar_prefix,
            host=cfg.host,
            port=cfg.czar_port,
            account=Account(cfg.czar_user, cfg.czar_password),
        )
        await self.frontend.start()
        log.info(
            "Qserv stand-in: controller %s, workers %s, czar %s",
            self.controller_url,
            self.worker_urls,
            self.czar_dsn,
        )
        return self

    async def set_worker_down(self, name: str, down: bool) -> None:
        """Fault: close (``down``) or reopen a worker's listeners (HTTP, binary loader) on the same ports."""
        node = self.nodes[name]
        self.faults.mark_worker(name, down)
        site = self._worker_sites.get(name)
        if down and site is not None:
            await site.stop()
            self._worker_sites.pop(name)
            await node.close_loader()
        elif not down and site is None:
            site = web.TCPSite(self._worker_runners[name], self.config.host, node.port, reuse_address=True)
            await site.start()
            self._worker_sites[name] = site
            await node.open_loader(node.loader_port)

    async def stop(self) -> None:
        if self.frontend is not None:
            await self.frontend.stop()
        for node in self.nodes.values():
            await node.close()
        for runner in [*self._runners, *self._worker_runners.values()]:
            await runner.cleanup()
        self._runners.clear()
        self._worker_runners.clear()
        self._worker_sites.clear()
        if self.pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.pool.close)
        if self._own_tmp and self.config.tmp_dir:
            shutil.rmtree(self.config.tmp_dir, ignore_errors=True)
            self.config.tmp_dir = None


class EmulatorThread:
    """An :class:`Emulator` on its own event loop in a background thread, driven synchronously.

    Attributes after :meth:`start`: ``controller_url``, ``worker_urls`` ({name: url}), ``czar_dsn``,
    ``auth_key``, ``admin_auth_key``, ``faults`` (a :class:`FaultInjector`), ``state``.
    """

    def __init__(self, dsn: str, **options):
        self.config = EmulatorConfig(dsn=dsn, **options)
        self.emulator: Emulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.faults = FaultInjector()

    @property
    def _running(self) -> Emulator:
        if self.emulator is None:
            raise RuntimeError("the stand-in is not started")
        return self.emulator

    # properties for the callers
    @property
    def controller_url(self) -> str:
        return self._running.controller_url

    @property
    def worker_urls(self) -> dict[str, str]:
        return self._running.worker_urls

    @property
    def czar_dsn(self) -> str:
        return self._running.czar_dsn

    @property
    def auth_key(self) -> str:
        return self.config.auth_key

    @property
    def admin_auth_key(self) -> str:
        return self.config.admin_auth_key

    @property
    def state(self) -> State:
        state = self._running.state
        assert state is not None
        return state

    def czar_connect(self, database: str | None = None):
        """A direct pymysql connection (autocommit) to the MariaDB behind the czar, optionally on a
        catalog's czar database — for inspecting the stand-in, bypassing Qserv's SQL rules."""
        return self._running.dsn.connect(None if database is None else self.config.czar_prefix + database)

    def call(self, coro, timeout: float = 120):
        """Run a coroutine on the stand-in's loop and wait for its result."""
        if self._loop is None:
            raise RuntimeError("the stand-in is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> EmulatorThread:
        ready = threading.Event()
        loop = self._loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_forever()

        thread = self._thread = threading.Thread(target=run, name="qserv-emulator", daemon=True)
        thread.start()
        ready.wait()
        self.emulator = Emulator(self.config)
        self.emulator.faults = self.faults
        self.faults.down_workers.clear()
        self.call(self.emulator.start())
        self.config.port = self.emulator.controller_port
        self.config.worker_ports = [n.port for n in self.emulator.nodes.values()]
        assert self.emulator.frontend is not None
        self.config.czar_port = self.emulator.frontend.port
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self.call(self._running.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._loop.close()
        self._loop = None

    def restart(self) -> EmulatorThread:
        """Stop and start again on the same ports and MariaDB state (a controller/worker restart)."""
        self.stop()
        return self.start()

    def set_worker_down(self, name: str, down: bool = True) -> None:
        """Make worker ``name`` unreachable (connections refused) or reachable again."""
        self.call(self._running.set_worker_down(name, down))

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def serve_forever(config: EmulatorConfig, on_ready=None) -> None:
    """Run until SIGINT or SIGTERM, then stop in order (used by ``qdask emulator serve``).

    The signal only sets an event: the stop runs while every task is still alive. Raising out of the
    signal handler instead cancelled all tasks at once, and the stop, run inside that cancellation,
    sometimes never finished (3 hangs in 31 runs of `test_serve_on_a_given_mariadb`; none in 25 since)."""
    emulator = Emulator(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await emulator.start()
    if on_ready:
        on_ready(emulator)
    try:
        await stopping.wait()
    finally:
        await emulator.stop()

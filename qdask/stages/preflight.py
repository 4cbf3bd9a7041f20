"""Preflight: what must hold before any staging work, checked in seconds, each failure naming its URL, key
or path — instead of being found after partition and collect.

In order:

1. **staging** — the directory takes a file (written, synced, removed: a read-only or full file system,
   or missing permissions, show here) and has room for what is left to stage (the plan's estimate of
   shard and contribution bytes, `qdask.estimate`, for the units not yet partitioned).
2. **controller** — ``GET /meta/version`` answers a Qserv envelope from a ``replication-controller``
   whose API window holds the version qdask speaks (src/http/MetaModule.cc; the window check is
   `Transport.check_version`). Down, HTML, HTTP 500 or another service: refused, naming the URL.
3. **auth key** — ``PUT /ingest/config`` with the key and no ``database``: Qserv checks the key before it
   reads a parameter (src/http/Module.cc:38-42 `enforceAuthorization`, then src/replica/contr/
   HttpIngestConfigModule.cc:141 `body().required("database")`), so a wrong key is refused and a right one
   ends at the missing parameter; nothing is changed either way.
4. **database** — already published while this run still has rows to load: a catalog another staging
   directory loaded is refused; to the one this staging directory loaded, new tables are added with
   ``--published`` and the administrator's key (checked here, `qdask.extend`), and rows for a table Qserv
   shows published are refused (Qserv cannot append to a published table), before anything is staged.
5. **czar** — the czar accepts a connection (host, port, user, password), and a DSN that names a
   database names this config's.

Checks 2-5 talk to Qserv and are skipped for ``--stage-only``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
from dask.utils import format_bytes

from qdask.config import IngestConfig
from qdask.errors import QdaskError
from qdask.extend import Catalog, check, check_admin_key, loaded_here, pending_tables
from qdask.ledger import Ledger
from qdask.qserv import QservClient, QservError
from qdask.qserv.czar import Czar, describe_error
from qdask.qserv.errors import QservAuthError, QservProtocolError, QservTransportError, QservVersionError
from qdask.runrecord import RunRecord
from qdask.stages.plan import TableSetup
from qdask.stages.staging_errors import describe_os_error

log = logging.getLogger(__name__)

__all__ = ["PreflightError", "Work", "check_staging", "preflight", "work_left"]


#: The estimate's budgets here: a quick look (the plan's own are larger), enough for a disk-space check.
ESTIMATE_SAMPLE_ROWS = 2_000
ESTIMATE_SCAN_ROWS = 200_000


class PreflightError(QdaskError):
    """A check before staging failed: nothing was staged or sent; fix the cause and re-run."""


@dataclass(frozen=True)
class Work:
    """What the run has left to do, from the ledger: staging (bytes still to write) and loading."""

    staging_bytes: int  # estimated shard + contribution bytes still to write (0: staging is done)
    to_load: bool  # rows still to load into Qserv (anything not yet loaded)
    pending: Mapping[str, int] = field(default_factory=dict)  # tables with rows to load (`extend`)
    loaded_here: bool = False  # this staging directory loaded rows into Qserv


def work_left(config: IngestConfig, ledger: Ledger, setups: Sequence[TableSetup], record: RunRecord) -> Work:
    """What the ledger says is left: the staging bytes of the units still to partition (the plan's
    estimate, scaled to their share of the input bytes; a small scan, as `qdask plan` does), and whether
    anything is still to load."""
    todo = ledger.units_to_partition()
    to_load = bool(todo or ledger.chunks_to_collect() or ledger.files_to_load())
    pending, here = pending_tables(ledger, setups), loaded_here(ledger)
    if not todo:
        return Work(0, to_load, pending, here)
    from qdask.estimate import estimate

    try:
        found = estimate(
            config, setups, record, sample_rows=ESTIMATE_SAMPLE_ROWS, scan_rows=ESTIMATE_SCAN_ROWS
        )
    except Exception as exc:  # noqa: BLE001 - advisory: a bad input is reported by partition, by unit
        log.info("preflight: no staging estimate (%s); the free space is not checked", exc)
        return Work(0, to_load, pending, here)
    total = sum(u.est_bytes or 0 for s in setups for u in s.units)
    left = sum(u.est_bytes or 0 for u in todo)
    share = left / total if total else 1.0
    return Work(round(found.staging_bytes * share), to_load, pending, here)


def preflight(
    config: IngestConfig,
    client: QservClient,
    czar: Czar,
    work: Work,
    *,
    stage_only: bool = False,
    published: bool = False,
) -> list[str]:
    """Run the checks in order; return one line per check passed, or raise `PreflightError` (or
    `extend.ExtendRefused`). `published`: new tables may be added to a published catalog."""
    passed = [check_staging(Path(config.staging.directory), work.staging_bytes)]
    if stage_only:
        return passed
    passed.append(check_controller(client))
    passed.append(check_auth_key(client, config.qserv.auth_key_env))
    passed.append(check_database(client, config, work, published=published))
    passed.append(check_czar(czar, config.database.name))
    return passed


# -- staging ----------------------------------------------------------------------------------------------


def check_staging(directory: Path, needed: int) -> str:
    """The staging directory exists (or is created), takes a file, and has `needed` bytes free."""
    probe = directory / f".qdask-preflight-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"qdask preflight\n")
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise PreflightError(
            f"staging directory {directory} cannot be written: {describe_os_error(exc)}. Give a writable "
            "directory (staging.directory or --staging) and re-run the same command."
        ) from None
    available = shutil.disk_usage(directory).free
    if needed > available:
        raise PreflightError(
            f"staging directory {directory} has {format_bytes(available)} free, but staging what is left "
            f"needs about {format_bytes(needed)} (the plan's estimate of shards and contribution files; "
            "`qdask plan CONFIG` shows it). Free space there, or choose a larger staging directory, and "
            "re-run the same command."
        )
    need = f", {format_bytes(needed)} needed" if needed else ""
    return f"staging {directory}: writable, {format_bytes(available)} free{need}"


# -- Qserv ------------------------------------------------------------------------------------------------


def check_controller(client: QservClient) -> str:
    """The controller answers ``/meta/version`` as a Qserv controller whose window holds our version."""
    url = client.controller_url
    try:
        info = client.check_version()
    except QservTransportError as exc:
        raise PreflightError(
            f"the Qserv controller at {url} cannot be reached ({exc.error}). Check qserv.controller (or "
            "--controller) and that the Replication controller is running, then re-run."
        ) from None
    except QservVersionError as exc:
        raise PreflightError(
            f"the Qserv controller at {url} does not speak this qdask's API: {exc.error}"
        ) from None
    except QservProtocolError as exc:
        raise PreflightError(
            f"{url}/meta/version did not answer as a Qserv Replication controller ({exc.error}). Is "
            "qserv.controller the controller's URL (http://host:25081 by default), not a proxy or another "
            "service?"
        ) from None
    except QservError as exc:
        raise PreflightError(f"the Qserv controller at {url} refused /meta/version: {exc.error}") from None
    window = f"[{info.min_version if info.min_version is not None else '?'}, {info.version}]"
    return f"controller {url}: API versions {window}, speaking {client.version}"


def check_auth_key(client: QservClient, key_env: str) -> str:
    """Qserv accepts the auth key: ``PUT /ingest/config`` without ``database`` (see the module doc)."""
    url = client.controller_url
    try:
        client.call("PUT", "/ingest/config", since=14, auth=True, body={})
    except QservAuthError:
        raise PreflightError(
            f"the Qserv controller at {url} refused the auth key (taken from ${key_env}, empty when unset): "
            f"set {key_env} to the instance's auth_key and re-run."
        ) from None
    except QservTransportError as exc:
        raise PreflightError(f"the Qserv controller at {url} cannot be reached ({exc.error})") from None
    except QservError:
        pass  # the key passed; the call then stopped at its missing `database`, as intended
    else:
        log.debug("preflight: PUT /ingest/config without a database succeeded at %s", url)
    return f"auth key (${key_env}): accepted by {url}"


def check_database(client: QservClient, config: IngestConfig, work: Work, *, published: bool = False) -> str:
    """A database Qserv shows published takes no rows from another staging directory; the one this
    staging directory loaded takes new tables with `published` and the admin key (`extend.check`)."""
    url = client.controller_url
    database = config.database.name
    try:
        catalog = Catalog.read(client, database)
    except QservTransportError as exc:
        raise PreflightError(f"the Qserv controller at {url} cannot be reached ({exc.error})") from None
    except QservError as exc:
        raise PreflightError(
            f"the Qserv controller at {url} cannot list its databases: {exc.error}"
        ) from None
    if not catalog.registered:
        return f"database {database}: not registered yet at {url}"
    if work.loaded_here and (added := check(catalog, config, work.pending, allowed=published)):
        q = config.qserv
        check_admin_key(client, q.admin_auth_key_env, q.admin_auth_key.get_secret_value())
        return f"{added}; administrator's key (${q.admin_auth_key_env}) accepted by {url}"
    if catalog.published and work.to_load:
        raise PreflightError(
            f"database {database} is already published at {url}, and this run has rows still to load: Qserv "
            "cannot add rows to a published catalog. Use another database name (database.name), or drop "
            "the published one first; nothing was staged or sent."
        )
    state = "published" if catalog.published else "registered, not published"
    return f"database {database}: {state} at {url}"


def check_czar(czar: Czar, database: str) -> str:
    """The czar accepts a connection, and a DSN naming a database names this one."""
    dsn = czar.dsn
    if dsn.database is not None and dsn.database != database:
        raise PreflightError(
            f"the czar DSN {dsn} names database {dsn.database!r}, but this config loads {database!r}: "
            f"fix qserv.czar (or --czar), e.g. mysql://{dsn.user}@{dsn.host}:{dsn.port}/{database}"
        )
    try:  # no database: before publish the czar does not know this one yet
        Czar(dataclasses.replace(dsn, database=None), connect_timeout=czar.connect_timeout).connect().close()
    except pymysql.MySQLError as exc:
        raise PreflightError(
            f"the czar at {dsn} does not accept a connection ({describe_error(exc)}). Check qserv.czar "
            "(or --czar) and qserv.czar_password_env, and that the czar is running."
        ) from None
    except OSError as exc:
        raise PreflightError(f"the czar at {dsn} cannot be reached ({exc})") from None
    return f"czar {dsn}: accepts connections"

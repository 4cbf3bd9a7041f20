"""Adding tables to a catalog Qserv already published, by Qserv's documented path, and refusing up front
what Qserv cannot do.

Qserv's path (lsst/qserv src/replica; the contract qserv-ingest-api.md §2, §3.10): an administrator
un-publishes the database with ``PUT /replication/config/database/:db`` (``publish=0``,
``admin_auth_key``: contr/HttpConfigurationModule.cc `_unpublishDatabase`). That flips the database's
flag only: its tables stay published ("Do not unpublish individual tables", config/Configuration.cc
`_publishDatabase`). New
tables are registered (``POST /ingest/table`` refuses a published database: HttpIngestModule.cc
`_addTable`), loaded in transactions and committed, then ``PUT /ingest/database/:db`` publishes again.
Publishing skips every table already published (`_createMissingChunkTables`, `_removeMySQLPartitions`,
`_publishDatabaseInMaster`, the director-index consolidation and the row counters all ``continue`` on
``table.isPublished``), and so does a commit's director-index update (HttpIngestTransModule.cc): the
published tables' rows and director indexes are never touched. A worker refuses a contribution to a
published table, so rows cannot be appended to one: a run that would (new input files of a published
table) is refused before anything is staged.

In qdask the user adds the table to the config and runs ``qdask ingest CONFIG --published`` with the
administrator's key in ``$qserv.admin_auth_key_env``. The ledger accepts a config that only gained
tables (`open_run`); what it recorded for the published tables stays, so only the new tables are staged
and loaded. The run un-publishes right before loading (`reopen`) and publishes again as every run does.
A run stopped in between resumes with the same command: the database is then unpublished, and the run
goes on as any resumed run (its transactions' contexts still name it, `stages.ownership`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from qdask import faultpoints
from qdask.config import IngestConfig
from qdask.errors import QdaskUsageError
from qdask.ledger import FileStatus, FingerprintMismatch, Ledger, LedgerError, Run
from qdask.qserv import QservClient, QservError
from qdask.run_settings import qserv_client
from qdask.runrecord import RunRecord, now
from qdask.stages.plan import TableSetup

log = logging.getLogger(__name__)

__all__ = [
    "Catalog",
    "ExtendRefused",
    "check",
    "check_admin_key",
    "directors_to_index",
    "loaded_here",
    "open_run",
    "pending_tables",
    "published_record",
    "refuse_early",
    "reopen",
    "unpublished",
]


class ExtendRefused(QdaskUsageError):
    """What the run would do to a published catalog Qserv cannot do, or may do only with the admin key."""


@dataclass(frozen=True)
class Catalog:
    """The database as Qserv shows it: registered, published, and each table's own published flag."""

    database: str
    url: str
    registered: bool = False
    published: bool = False
    tables: Mapping[str, bool] = field(default_factory=dict)  # table → published

    @classmethod
    def read(cls, client: QservClient, database: str) -> Catalog:
        """``GET /replication/config``: the database object and its tables (``is_published`` each)."""
        info = client.database_info(database)
        if info is None:
            return cls(database, client.controller_url)
        tables = {str(t["name"]): bool(t.get("is_published")) for t in info.get("tables", [])}
        return cls(database, client.controller_url, True, bool(info.get("is_published")), tables)

    @property
    def published_tables(self) -> set[str]:
        return {name for name, published in self.tables.items() if published}


def open_run(ledger: Ledger, config: IngestConfig, fingerprint: Callable[[IngestConfig], str]) -> Run:
    """The ledger's run of `config`. A config that only gained tables since the ledger's run was opened
    (every table the ledger holds units of is still there, with the same fingerprint) is accepted, and
    becomes the run's config; any other change raises `FingerprintMismatch` as before."""
    given = fingerprint(config)
    try:
        return ledger.open_run(given)
    except FingerprintMismatch as exc:
        known = {u.table for u in ledger.units()}
        names = [t.name for t in config.tables]
        added = [name for name in names if name not in known]
        if not known or not added or not known <= set(names):
            raise
        before = config.model_copy(update={"tables": [t for t in config.tables if t.name in known]})
        if fingerprint(before) != exc.stored:
            raise LedgerError(
                f"the config gained table(s) {', '.join(added)}, but also changed table(s) the staging "
                f"directory {ledger.path.parent} holds already ({', '.join(sorted(known))}): a table "
                "staged (or loaded, or published) cannot change under the same ledger. Add the new "
                "table(s) to the config as it was"
            ) from exc
        ledger.refingerprint(exc.stored, given)
        log.info("the config gained table(s) %s; the ledger's run now follows it", ", ".join(added))
        return ledger.open_run(given)


def _spec(spec: Mapping) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


def pending_tables(ledger: Ledger, setups: Iterable[TableSetup]) -> dict[str, int]:
    """Tables that have rows still to load, with how many of their input units are new (or changed)
    against the ledger: planned units it does not hold as they are, and whatever it still has to
    partition, collect or load. Only reads."""
    recorded = {u.unit_id: (u.table, _spec(u.spec)) for u in ledger.units()}
    pending: dict[str, int] = {}
    for setup in setups:
        for unit in setup.units:
            if recorded.get(unit.unit_id) != (unit.table, _spec(unit.to_dict())):
                pending[unit.table] = pending.get(unit.table, 0) + 1
    left = [u.table for u in ledger.units_to_partition()]
    left += [k.table for k in ledger.chunks_to_collect()] + [f.table for f in ledger.files_to_load()]
    for table in left:
        pending.setdefault(table, 0)
    return pending


def loaded_here(ledger: Ledger) -> bool:
    """Whether this staging directory loaded rows into Qserv (a catalog it may extend)."""
    return bool(ledger.chunk_files(status=FileStatus.LOADED))


def check(
    catalog: Catalog,
    config: IngestConfig,
    pending: Mapping[str, int],
    *,
    allowed: bool,
) -> str | None:
    """Refuse (`ExtendRefused`) rows for a table Qserv shows published, and new tables for a published
    database without ``--published`` (`allowed`) and the admin key; else a line saying what is added (None
    when the database is not published, or nothing is added)."""
    db = catalog.database
    appended = sorted(t for t in pending if catalog.tables.get(t))
    if appended:
        new = sum(pending[t] for t in appended)
        inputs = f" ({new} input unit(s) it has not loaded)" if new else ""
        raise ExtendRefused(
            f"table(s) {', '.join(appended)} of database {db} are published in Qserv at {catalog.url}, and "
            f"this run has rows to load into them{inputs}: Qserv cannot append rows to a published table. "
            "Take the new input out of the config (or load it as a new table), or drop the catalog "
            "(`qdask drop CONFIG --published`) and ingest it whole; nothing was staged or sent."
        )
    if not catalog.published:
        return None
    adding = sorted(set(pending) | {t.name for t in config.tables if t.name not in catalog.tables})
    if not adding:
        return None
    env = config.qserv.admin_auth_key_env
    if not allowed:
        raise ExtendRefused(
            f"database {db} is published at {catalog.url}, and this config adds table(s) "
            f"{', '.join(adding)} to it. Qserv takes new tables into a published catalog only after an "
            "administrator un-publishes it (its published tables and their rows are left as they "
            f"are): re-run with --published and the administrator's key in ${env}. Nothing was "
            "staged or sent."
        )
    if not config.qserv.admin_auth_key.get_secret_value():
        raise ExtendRefused(
            f"database {db} is published: adding table(s) {', '.join(adding)} un-publishes it first, "
            f"which Qserv allows only with the administrator's key; set ${env}. Nothing was staged or sent."
        )
    return f"database {db} is published: table(s) {', '.join(adding)} are added (un-publish, load, publish)"


def refuse_early(
    config: IngestConfig, ledger: Ledger, setups: Iterable[TableSetup], *, allowed: bool
) -> None:
    """`check`, before the ledger records the run's units: a catalog this staging directory loaded is
    looked up in Qserv, and what it cannot take is refused with nothing written. A Qserv that cannot be
    asked now is left to preflight (which names the controller's problem); a staging directory that did
    not load the catalog is preflight's to refuse."""
    if not loaded_here(ledger):
        return
    try:
        with qserv_client(config) as client:
            catalog = Catalog.read(client, config.database.name)
            if check(catalog, config, pending_tables(ledger, setups), allowed=allowed):
                q = config.qserv
                check_admin_key(client, q.admin_auth_key_env, q.admin_auth_key.get_secret_value())
    except QservError as exc:
        log.info("the catalog's state in Qserv not read before planning (%s); preflight asks again", exc)


def check_admin_key(client: QservClient, env: str, key: str) -> None:
    """Qserv accepts the administrator's key: ``PUT /ingest/config`` with it and no ``database`` ends at the
    missing parameter (src/http/BaseModule.cc `_enforceKeyAuthorization` checks ``admin_auth_key`` first,
    before any parameter), a wrong key at authorization; nothing is changed either way."""
    from qdask.qserv.errors import QservAuthError

    try:
        client.call("PUT", "/ingest/config", since=14, body={"admin_auth_key": key})
    except QservAuthError:
        raise ExtendRefused(
            f"the Qserv controller at {client.controller_url} refused the administrator's key (taken from "
            f"${env}): set it to the instance's admin_auth_key and re-run. Nothing was staged or sent."
        ) from None
    except QservError:
        pass  # the key passed; the call stopped at its missing `database`


def reopen(client: QservClient, config: IngestConfig, ledger: Ledger) -> list[str]:
    """Un-publish the database when it is published and this run has tables to add (files to load, or
    tables Qserv does not have): the step before registering and loading them. Idempotent: a lost answer
    is settled by asking Qserv again. Returns notes."""
    db = config.database.name
    catalog = Catalog.read(client, db)
    if not catalog.published:
        return []
    missing = [t.name for t in config.tables if t.name not in catalog.tables]
    if not ledger.files_to_load() and not missing:
        return []
    faultpoints.reached("unpublish.sending", db)
    try:
        client.unpublish_database(db, admin_key=config.qserv.admin_auth_key)
    except QservError:
        if Catalog.read(client, db).published:
            raise
    faultpoints.reached("unpublish.answered", db)
    note = f"database {db} un-published to add table(s) (its published tables are left as they are)"
    log.info(note)
    return [note]


def unpublished(client: QservClient, database: str, tables: Iterable[str]) -> list[str]:
    """Of `tables`, those Qserv does not show published: the ones this run loads (verify before publish
    counts only them; a published table's row counters are left as they are)."""
    published = Catalog.read(client, database).published_tables
    return [t for t in tables if t not in published]


def directors_to_index(config: IngestConfig, record: RunRecord) -> list[str]:
    """The directors whose index a publish (re)builds when commits do not build it: every director but
    those a finished publish of this staging directory indexed already (`published_record`). Their tables
    are published since, and take no row more, so their index stays whole: a catalog that gained tables
    leaves it untouched, as Qserv's publish does."""
    done = set((record.published or {}).get("indexed", []))
    return [d.name for d in config.directors if d.name not in done]


def published_record(config: IngestConfig, record: RunRecord) -> dict:
    """What the run record keeps of a finished publish: when the catalog was first published, and the
    directors whose index is whole (all of them, once publish returned)."""
    first = record.published or {"at": now(), "database": config.database.name}
    return {**first, "indexed": [d.name for d in config.directors]}

"""The catalog's lifecycle in Qserv beyond one ingest: `qdask drop` deletes the database.

Qserv deletes a database with ``DELETE /ingest/database/:database`` (its tables on every worker, its
director indexes and row counters, its entry in the czar): with the ingest key while it is unpublished,
and only with the administrator's key once published (src/replica/contr/HttpIngestModule.cc,
_deleteDatabase: "deleting published databases requires administrator's privileges"). qdask asks for an
explicit ``--published`` before deleting a catalog users may be querying, and refuses at once, before
sending anything, when the admin key is not set. The staging directory is kept and its ledger is told
that nothing is loaded any more, so the same `qdask ingest` then loads every staged file again.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from qdask.config import IngestConfig
from qdask.errors import QdaskError, QdaskUsageError
from qdask.ledger import Ledger
from qdask.runrecord import RunRecord
from qdask.staging_lock import StagingLock

log = logging.getLogger(__name__)


class DropError(QdaskError):
    """The database could not be deleted; the message says why."""


@dataclass(frozen=True)
class Dropped:
    """What `drop` did: the database deleted, whether it was published, staged files to load again."""

    database: str
    was_published: bool
    files_to_reload: int


def drop(config: IngestConfig, *, published: bool = False) -> Dropped:
    """Delete `config`'s database from Qserv, under the staging lock (no run of this staging directory is
    going on); a published one only with `published=True` and the admin key ($qserv.admin_auth_key_env)."""
    from qdask.run_settings import qserv_client  # the driver's client settings, imported when needed

    db = config.database.name
    ledger_path = Path(config.staging.ledger or Path(config.staging.directory) / "ledger.sqlite")
    lock = StagingLock(ledger_path, what="drop") if ledger_path.exists() else contextlib.nullcontext()
    with lock:
        with qserv_client(config) as qserv:
            info = qserv.database_info(db)
            if info is None:
                raise DropError(f"database {db} is not registered in Qserv at {config.qserv.controller}")
            is_published = bool(info.get("is_published"))
            admin = None
            if is_published:
                if not published:
                    raise QdaskUsageError(
                        f"database {db} is published: users may be querying it. Add --published to delete "
                        f"it anyway (Qserv requires the administrator's key for that, read from "
                        f"${config.qserv.admin_auth_key_env})"
                    )
                admin = config.qserv.admin_auth_key
                if not admin.get_secret_value():
                    raise QdaskUsageError(
                        f"database {db} is published: Qserv deletes it only with the administrator's key; "
                        f"set ${config.qserv.admin_auth_key_env}"
                    )
            qserv.delete_database(db, admin_key=admin)
        log.info("drop: database %s deleted (published: %s)", db, is_published)
        reload = 0
        if ledger_path.exists():
            with Ledger(ledger_path) as ledger:
                reload = ledger.forget_loads()
            record = RunRecord.load(ledger_path)
            if record.published:
                record.published = None
                record.save()
    return Dropped(db, is_published, reload)

"""Who owns a Qserv database being loaded: kept in Qserv itself, in every transaction's `context`.

Each transaction qdask starts carries its run's identity (`Identity`: run id, host, staging directory,
ledger) and the contribution files it holds (`stages.load.transaction_context`). Qserv keeps the context
with the transaction (``POST /ingest/trans`` takes any JSON object as ``context``; ``GET /ingest/trans``
returns it with ``include_context=1``: src/replica/contr/HttpIngestTransModule.cc, _beginTransaction and
_getTransactions; stored in the MEDIUMBLOB ``transaction.context``), so the database itself tells which run
loaded what, whatever happened to that run's staging directory.

Rules, applied before a run loads anything and again after each transaction it begins:

* a run loads only beside transactions it owns: its own, or those it adopted (recorded in its ledger).
  Committed or open transactions of another run — or without a qdask identity — make it refuse, naming
  the owner (`refuse_foreign`);
* two runs that start at the same time both begin a transaction before either sees the other: after
  each begin, the run whose oldest live transaction has the lower id wins, and the other aborts the
  transaction it just began (nothing was sent in it) and stops (`check_race`). Qserv numbers transactions
  in the order it creates them, and a created transaction is listed before its id is returned, so the
  loser always sees the winner's transaction and the winner never waits for the loser;
* a run whose staging directory was lost is replaced, on request (`qdask ingest --take-over`), by a run
  that rebuilds the ledger from the committed transactions' contexts (`take_over`): their files are
  recorded as loaded when the newly staged file is the same (rows and checksum), their open transactions
  are aborted, and only what is missing is loaded.
"""

from __future__ import annotations

import logging
import socket
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from qdask.checksums import same_content
from qdask.errors import QdaskError
from qdask.ledger import REGULAR_CHUNK, ChunkKey, Ledger, LedgerError
from qdask.qserv import QservClient
from qdask.qserv.models import TransactionInfo
from qdask.stages.load import abort_transaction
from qdask.staging_lock import StagingBusy, StagingLock

log = logging.getLogger(__name__)

#: Qserv transaction states that hold no rows and never will.
DEAD = frozenset({"ABORTED", "START_FAILED"})
COMMITTED = "FINISHED"


class OwnershipError(QdaskError):
    """Another run owns the database (or won a race to it); nothing of this run was loaded beside it."""


@dataclass(frozen=True)
class Identity:
    """A run as its transactions' contexts name it."""

    run_id: str
    host: str = "?"
    staging: str = "?"
    ledger: str = "?"

    @classmethod
    def here(cls, run_id: str, staging: Path, ledger: Path) -> Identity:
        return cls(run_id, socket.gethostname(), str(Path(staging).resolve()), str(Path(ledger).resolve()))

    def to_context(self) -> dict:
        return {"run": self.run_id, "host": self.host, "staging": self.staging, "ledger": self.ledger}

    def __str__(self) -> str:
        return f"run {self.run_id} (host {self.host}, staging directory {self.staging})"


def place_text(key: ChunkKey) -> str:
    """`Object chunk 57 overlap`, `Filter` (a regular table)."""
    if key.chunk_id == REGULAR_CHUNK:
        return key.table
    return f"{key.table} chunk {key.chunk_id}" + (" overlap" if key.overlap else "")


def owner(info: TransactionInfo) -> Identity | None:
    """The run that began a transaction, from its context; None when it carries no qdask identity."""
    context = info.context if isinstance(info.context, dict) else {}
    run = context.get("qdask_run")
    if not isinstance(run, str) or not run:
        return None
    found = context.get("qdask_owner")
    found = found if isinstance(found, dict) else {}
    return Identity(
        run,
        str(found.get("host", "?")),
        str(found.get("staging", "?")),
        str(found.get("ledger", "?")),
    )


class Owners:
    """What this run owns in `database`: its own transactions and the ones it adopted (all recorded in its
    ledger), plus those it begins meanwhile (`mine`). Qserv is listed without contexts (one small answer);
    only a transaction not known here is read with its context, so a long load stays cheap."""

    def __init__(self, client: QservClient, ledger: Ledger, database: str, identity: Identity):
        self.client, self.ledger, self.database, self.identity = client, ledger, database, identity
        self.known: set[int] = set()
        self.runs = {identity.run_id}
        self.refresh()

    def refresh(self) -> None:
        """Re-read the ledger (after adopting transactions)."""
        for t in self.ledger.transactions():
            self.known.add(t.transaction_id)
            run = t.context.get("qdask_run") if isinstance(t.context, dict) else None
            if isinstance(run, str):
                self.runs.add(run)

    def mine(self, transaction_id: int) -> None:
        self.known.add(transaction_id)

    def live(self) -> list[TransactionInfo]:
        """Every transaction of the database that holds rows or may still (not aborted, started)."""
        return [t for t in self.client.list_transactions(self.database) if t.state not in DEAD]

    def foreign(self, live: list[TransactionInfo] | None = None) -> list[TransactionInfo]:
        """The live transactions this run does not own, with their contexts."""
        found = []
        for t in self.live() if live is None else live:
            if t.id in self.known:
                continue
            info = self.client.get_transaction(t.id, include_context=True)
            who = owner(info)
            if who is not None and who.run_id in self.runs:
                self.known.add(t.id)  # begun by this run, not recorded (settled by `load.recover`)
                continue
            found.append(info)
        return found


def describe(transactions: list[TransactionInfo]) -> str:
    """Per owner: who, how many committed and open transactions, which ids."""
    groups: dict[Identity | None, list[TransactionInfo]] = defaultdict(list)
    for t in transactions:
        groups[owner(t)].append(t)
    lines = []
    for who, items in groups.items():
        committed = sum(t.state == COMMITTED for t in items)
        ids = ", ".join(str(t.id) for t in sorted(items, key=lambda t: t.id)[:8])
        ids += " …" if len(items) > 8 else ""
        whose = str(who) if who is not None else "no qdask run (their context carries no qdask identity)"
        lines.append(
            f"{whose}: {committed} committed and {len(items) - committed} open transaction(s) ({ids})"
        )
    return "\n  ".join(lines)


def refuse_foreign(owners: Owners, *, take_over: bool = False) -> None:
    """Refuse (`OwnershipError`) to load beside transactions this run does not own; with `take_over`,
    only those of no qdask run are refused (the others are adopted by `take_over`)."""
    database, identity = owners.database, owners.identity
    others = owners.foreign()
    if not others or (take_over and all(owner(t) is not None for t in others)):
        return
    if take_over:
        raise OwnershipError(
            f"database {database} holds transactions that no qdask run owns:\n  {describe(others)}\n"
            "--take-over adopts only transactions a qdask run began. Nothing was loaded by this run; "
            f"`qdask drop CONFIG` deletes the database to start over."
        )
    same_staging = any((o := owner(t)) is not None and o.staging == identity.staging for t in others)
    lost = (
        "Those transactions were begun from this same staging directory by a run whose ledger is gone: if "
        "that staging directory was lost, `qdask ingest CONFIG --take-over` rebuilds the ledger from what "
        "Qserv recorded and loads only what is missing."
        if same_staging
        else "If that run is still going, let it finish (or resume it from its own staging directory); if "
        "its staging directory is lost, `qdask ingest CONFIG --take-over` adopts what it committed and "
        "loads only what is missing."
    )
    raise OwnershipError(
        f"database {database} is being loaded by another run; this run ({identity.run_id}) does not load "
        f"beside it, so that no row is loaded twice:\n  {describe(others)}\n{lost} "
        "Or `qdask drop CONFIG` deletes the database to start over. Nothing was loaded by this run."
    )


def check_race(owners: Owners, tid: int) -> None:
    """After beginning transaction `tid` (nothing sent in it yet): stop (`OwnershipError`) if another run
    loads the database and began first; the caller then aborts `tid`."""
    database, identity = owners.database, owners.identity
    owners.mine(tid)
    infos = owners.live()
    others = owners.foreign(infos)
    if not others:
        return
    theirs = {t.id for t in others}
    mine = [t.id for t in infos if t.id not in theirs] + [tid]
    first_other = min(t.id for t in others)
    if any(t.state == COMMITTED for t in others) or first_other < min(mine):
        raise OwnershipError(
            f"another run began loading database {database} before this one ({identity.run_id}, which "
            f"began transaction {tid}):\n  {describe(others)}\n"
            f"It began first (transaction {first_other} < {min(mine)}), so this run stops and aborts its "
            "transaction: nothing of it was loaded. The database is that run's; this staging directory is "
            "not needed for it (`qdask reset CONFIG` removes it)."
        )
    log.warning(
        "run %s: another run began loading database %s after this one (transaction %d > %d): it stops",
        identity.run_id,
        database,
        first_other,
        min(mine),
    )


def take_over(owners: Owners) -> list[str]:
    """Adopt every transaction of another qdask run in `database` (`--take-over`): abort its open ones,
    record its committed ones in this ledger with their files as loaded (each must match the file staged
    here: same rows and checksum). Returns notes; refuses (`OwnershipError`) when the other run is still
    going on this host, or when what it committed is not what this run staged."""
    client, ledger, database, identity = owners.client, owners.ledger, owners.database, owners.identity
    others = owners.foreign()
    if not others:
        return []
    refuse_foreign(owners, take_over=True)  # refuses transactions of no qdask run
    for who in {o for t in others if (o := owner(t)) is not None}:
        _check_gone(who, identity)
    notes = []
    for t in others:
        if t.state != COMMITTED:
            abort_transaction(client, ledger, t.id, recorded=False)
            notes.append(f"transaction {t.id} of {owner(t)} was left {t.state}; aborted (--take-over)")
    adopted: dict[str, int] = defaultdict(int)
    for t in owners.foreign():
        if t.state != COMMITTED:
            raise OwnershipError(
                f"transaction {t.id} of {owner(t)} is {t.state} after it was aborted; re-run with "
                "--take-over once Qserv settles it"
            )
        _adopt(ledger, database, t)
        owners.refresh()
        adopted[str(owner(t))] += 1
    for run, n in adopted.items():
        note = f"took over {n} committed transaction(s) of {run}: their files are recorded as loaded"
        log.info(note)
        notes.append(note)
    return notes


def _check_gone(other: Identity, identity: Identity) -> None:
    """Refuse to take over a run that still holds its staging lock on this host."""
    if other.host != identity.host or other.ledger in ("?", identity.ledger):
        return
    ledger = Path(other.ledger)
    if not ledger.parent.is_dir():
        return
    try:
        with StagingLock(ledger, what="take-over check"):
            pass
    except StagingBusy as exc:
        raise OwnershipError(f"cannot take over {other}: it is still running. {exc}") from None


def _adopt(ledger: Ledger, database: str, info: TransactionInfo) -> None:
    """Record committed transaction `info` of another run, and its files as loaded."""
    context = info.context if isinstance(info.context, dict) else {}
    staged = {f.key: f for f in ledger.chunk_files()}
    keys, problems = [], []
    for item in context.get("files") or []:
        key = ChunkKey(str(item["table"]), int(item["chunk"]), bool(item["overlap"]))
        mine = staged.get(key)
        where = place_text(key)
        if mine is None:
            problems.append(f"{where}: committed with {item.get('rows')} row(s), not staged by this run")
        elif mine.rows != item.get("rows") or not same_content(
            mine.path, mine.checksum, item.get("checksum")
        ):
            problems.append(
                f"{where}: committed with {item.get('rows')} row(s) (checksum {item.get('checksum')}), "
                f"staged here with {mine.rows} (checksum {mine.checksum})"
            )
        else:
            keys.append(key)
    if problems:
        raise OwnershipError(
            f"cannot take over transaction {info.id} of {owner(info)}: what it committed is not what this "
            "run staged:\n  " + "\n  ".join(problems[:10]) + "\nThe input or the config changed since; "
            "`qdask drop CONFIG` deletes the database to load it again from scratch."
        )
    try:
        ledger.transaction_started(info.id, database, keys, context)
        ledger.transaction_state(info.id, "committed")
    except LedgerError as exc:
        raise OwnershipError(f"cannot take over transaction {info.id}: {exc}") from exc

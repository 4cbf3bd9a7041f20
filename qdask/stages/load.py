"""Load stage: staged contribution files → Qserv super-transactions, every row exactly once.

Files are grouped into transactions of bounded size (chunks and bytes); each transaction is started,
recorded in the ledger *before* anything is sent, its chunks allocated in bulk, its files streamed to
their workers under bounded concurrency (in total and per worker) — streamed by the driver with
`/ingest/csv` (transport `upload`), or named by URL with `/ingest/file` for the worker to read itself
(transport `url`: the driver sends no bytes) — every answer
checked (status, bytes, rows, rows loaded, no warnings), then committed — while the next transaction's
files are already being sent (one commit in flight at a time: a commit's director index build and the
drain of its last uploads no longer leave the upload slots idle). The rules of the contract
(§6 of the ingest API) decide what a failure costs: `retry_allowed` → resend within the transaction;
anything that may have touched the tables or whose outcome is unknown → abort and redo the whole
transaction in a new one. A stop at any point is undone on the next run by `recover`, which settles every
transaction this run left open — including one Qserv started but the ledger never heard of.
"""

from __future__ import annotations

import logging
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from qdask import faultpoints
from qdask.checksums import CONTRIBUTION_ALGORITHM, algorithm_of, file_checksum, formatted, new_digest
from qdask.config.qserv import SERVE
from qdask.errors import QdaskError
from qdask.ledger import REGULAR_CHUNK, ChunkFile, Ledger
from qdask.ledger import Contribution as LedgerContribution
from qdask.qserv import (
    ContributionCheckError,
    ContributionInfo,
    Location,
    QservClient,
    QservError,
    QservTransportError,
    Recovery,
    check_contribution,
    classify,
)
from qdask.stages.load_server import StagingFileServer

log = logging.getLogger(__name__)

FINAL_STATES = {"FINISHED", "ABORTED"}
#: Warnings a worker reports in full with a contribution (any one refuses it; these are shown): Qserv's
#: own default (`loader-max-warnings`), sent so a worker configured otherwise reports as many.
MAX_NUM_WARNINGS = 64


class LoadError(QdaskError, RuntimeError):
    """The load cannot go on now; the ledger is consistent and a re-run resumes where this one stopped."""


class StagedFileCorrupt(LoadError):
    """A staged file no longer matches its checksum: it must be collected again before loading."""

    def __init__(self, file: ChunkFile, found: str = "no longer matches its recorded checksum"):
        self.file = file
        super().__init__(f"{file.path} {found}; it will be collected again")


def staged_file_problem(file: ChunkFile, *, content: bool = True) -> str | None:
    """Why a staged file cannot be sent as recorded (missing, other size, other checksum), or None.
    With ``content=False`` only what a stat tells (the upload hashes the bytes as it sends them)."""
    path = Path(file.path)
    try:
        info = path.stat()
    except FileNotFoundError:
        return "is missing"
    if not stat.S_ISREG(info.st_mode):
        return "is missing"
    if info.st_size != file.bytes:
        return f"has {info.st_size} bytes, not the {file.bytes} recorded"
    if (
        content
        and file_checksum(path, algorithm_of(file.checksum) or CONTRIBUTION_ALGORITHM) != file.checksum
    ):
        return "no longer matches its recorded checksum"
    return None


class _SentDigest:
    """Hashes a file as the upload sends it (one hashlib object per attempt; the last one counts)."""

    def __init__(self, checksum: str):
        self.algorithm = algorithm_of(checksum) or CONTRIBUTION_ALGORITHM
        self.last: Any = None

    def __call__(self) -> Any:
        self.last = new_digest(self.algorithm)
        return self.last

    def checksum(self) -> str:
        return formatted(self.last, self.algorithm) if self.last is not None else ""


class _Redo(Exception):
    """Internal: the transaction must be aborted and its files loaded again in a new one."""


@dataclass(frozen=True)
class LoadSettings:
    """Limits and identity of one load: where, how big a transaction, how parallel, how persistent."""

    database: str
    run_id: str
    charsets: dict[str, str]  # table → charset_name declared with each contribution
    max_chunks_per_transaction: int = 100
    max_bytes_per_transaction: int = 10 << 30
    concurrency_total: int = 8
    concurrency_per_worker: int = 2
    retries_in_transaction: int = 3
    redo_attempts: int = 3
    retry_backoff: float = 1.0
    owner: dict | None = None  # who loads: run, host, staging (`stages.ownership.Identity`), in each context
    transport: Literal["upload", "url"] = "upload"  # /ingest/csv (bytes through the driver) | /ingest/file
    url_base: str | None = None  # transport url: what the workers read the staging directory as
    staging_root: str | None = None  # transport url: the staging directory `url_base` stands for
    serve_host: str = "127.0.0.1"  # url_base "serve": where the driver's file server listens
    serve_port: int = 0  # ... and on which port (0: any free one)


def contribution_url(settings: LoadSettings, file: ChunkFile) -> str:
    """The URL a worker reads `file` from: `url_base` + the file's path under the staging directory.
    Nothing is quoted in a ``file://`` URL (Qserv's http::Url takes the path as written, src/http/Url.cc);
    an ``http(s)://`` path is percent-encoded."""
    if settings.url_base is None or settings.staging_root is None:
        raise LoadError("transport url needs url_base and the staging directory")
    try:
        relative = Path(file.path).relative_to(settings.staging_root).as_posix()
    except ValueError:
        raise LoadError(
            f"{file.path} is not under the staging directory {settings.staging_root}, which url_base "
            f"{settings.url_base} stands for"
        ) from None
    base = settings.url_base if settings.url_base.endswith("/") else settings.url_base + "/"
    return base + (relative if base.startswith("file://") else quote(relative))


@dataclass
class LoadSummary:
    transactions_committed: int = 0
    transactions_aborted: int = 0
    contributions: int = 0
    rows: int = 0
    bytes: int = 0
    retries: int = 0
    notes: list[str] = field(default_factory=list)


def plan_transactions(files: Iterable[ChunkFile], max_chunks: int, max_bytes: int) -> list[list[ChunkFile]]:
    """Group files into transactions: whole chunks (all tables, home and overlap) up to the limits.

    Regular tables' files form transactions of their own. A single chunk larger than `max_bytes` still
    gets a transaction (it cannot be split).
    """
    files = sorted(files, key=lambda f: (f.chunk_id, f.table, f.overlap))
    regular = [f for f in files if f.chunk_id == REGULAR_CHUNK]
    groups: list[list[ChunkFile]] = []
    current: list[ChunkFile] = []
    chunks = size = 0
    for _, same_chunk in groupby((f for f in files if f.chunk_id != REGULAR_CHUNK), key=lambda f: f.chunk_id):
        members = list(same_chunk)
        extra = sum(f.bytes for f in members)
        if current and (chunks + 1 > max_chunks or size + extra > max_bytes):
            groups.append(current)
            current, chunks, size = [], 0, 0
        current += members
        chunks, size = chunks + 1, size + extra
    if current:
        groups.append(current)
    for file in regular:
        if (
            groups
            and groups[-1][0].chunk_id == REGULAR_CHUNK
            and sum(f.bytes for f in groups[-1]) + file.bytes <= max_bytes
        ):
            groups[-1].append(file)
        else:
            groups.append([file])
    return groups


def chunks_to_fit(files: list[ChunkFile], start: int, max_bytes: int, budget: int) -> int | None:
    """The fewest chunks per transaction, from `start` up, whose plan takes at most `budget` transactions;
    None if no count does (the byte limit or the regular tables alone need more). A larger limit never
    makes more transactions (each is filled as far as it goes), so a search by halving finds it."""

    def fits(n: int) -> bool:
        return len(plan_transactions(files, n, max_bytes)) <= budget

    most = max(start, len({f.chunk_id for f in files}))
    low, high = start, start
    while not fits(high):  # doubling first: the answer is usually near the start, and each try is a plan
        if high == most:
            return None
        low, high = high + 1, min(2 * high, most)
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if not fits(middle) else (low, middle)
    return low


def transaction_context(run_id: str, files: Iterable[ChunkFile], owner: dict | None = None) -> dict:
    """What qdask records in a transaction's `context`: the run (and its `owner`: host, staging), and each
    file's rows and checksum, so that Qserv alone tells who loaded what (`stages.ownership`)."""
    return {
        "qdask_run": run_id,
        **({"qdask_owner": owner} if owner else {}),
        "files": [
            {
                "table": f.table,
                "chunk": f.chunk_id,
                "overlap": int(f.overlap),
                "rows": f.rows,
                "checksum": f.checksum,
            }
            for f in files
        ],
    }


def recover(client: QservClient, ledger: Ledger, database: str, run_id: str) -> list[str]:
    """Settle every transaction this run left open, so their files can be loaded again; returns notes.

    A transaction Qserv finished is recorded committed (the commit answer was lost); anything else is
    aborted. Transactions Qserv started for this run but the ledger never recorded (a stop between
    `POST /ingest/trans` and the ledger write) are found by their context and aborted too.
    """
    notes = []
    known = set()
    for t in ledger.transactions():
        known.add(t.transaction_id)
        if t.state != "started":
            continue
        state = client.get_transaction(t.transaction_id).state
        if state == "FINISHED":
            ledger.transaction_state(t.transaction_id, "committed")
            notes.append(f"transaction {t.transaction_id} had been committed; recorded")
        else:
            faultpoints.reached("recover.aborting", str(t.transaction_id))
            _abort(client, ledger, t.transaction_id, recorded=True)
            notes.append(
                f"transaction {t.transaction_id} was left {state}; aborted, its files will be redone"
            )
    for info in client.list_transactions(database, include_context=True):
        context = info.context if isinstance(info.context, dict) else {}
        if info.id in known or info.state in FINAL_STATES or context.get("qdask_run") != run_id:
            continue
        _abort(client, ledger, info.id, recorded=False)
        notes.append(
            f"transaction {info.id} ({info.state}) was started by this run but never recorded; aborted"
        )
    return notes


def _abort(
    client: QservClient, ledger: Ledger, transaction_id: int, *, recorded: bool, attempts: int = 3
) -> None:
    for attempt in range(attempts):
        try:
            state = client.abort_transaction(transaction_id).state
        except QservError as exc:  # already aborted, or an abort that failed (ABORT_FAILED may be re-issued)
            state = client.get_transaction(transaction_id).state
            if state not in ("ABORTED", "FINISHED") and attempt + 1 == attempts:
                raise LoadError(f"transaction {transaction_id} could not be aborted: {exc}") from exc
        if state == "ABORTED":
            break
        if state == "FINISHED":  # committed after all: its rows are in and must stay recorded as such
            if recorded:
                ledger.transaction_state(transaction_id, "committed")
            return
        time.sleep(0.5 * (attempt + 1))
    else:
        raise LoadError(f"transaction {transaction_id} did not reach ABORTED")
    if recorded:
        ledger.transaction_state(transaction_id, "aborted")


def abort_transaction(client: QservClient, ledger: Ledger, transaction_id: int, *, recorded: bool) -> None:
    """Abort a transaction until Qserv shows it ABORTED (or FINISHED: then it stays committed); `recorded`:
    the ledger knows it and is told. `LoadError` when Qserv does not let it end."""
    _abort(client, ledger, transaction_id, recorded=recorded)


class Loader:
    """Loads staged files into Qserv, one transaction at a time, uploads within it in parallel."""

    def __init__(
        self,
        client: QservClient,
        ledger: Ledger,
        settings: LoadSettings,
        on_file: Callable[[ChunkFile], None] | None = None,
        on_begun: Callable[[int], None] | None = None,
    ):
        """`on_begun(transaction_id)` runs once each transaction is recorded, before anything is sent: it
        may raise to stop the load (the transaction is then aborted), e.g. when another run owns the
        database (`stages.ownership.check_race`)."""
        self.client, self.ledger, self.settings = client, ledger, settings
        self.on_file = on_file or (lambda file: None)
        self.on_begun = on_begun or (lambda tid: None)
        self._worker_slots: dict[str, threading.Semaphore] = {}
        self._slots_lock = threading.Lock()
        self._thread_ledgers = threading.local()  # a Ledger holds one sqlite connection: one per thread
        self._opened_ledgers: list[Ledger] = []
        self._pool: ThreadPoolExecutor | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._answers: dict[int, list[tuple[ChunkFile, Location, Any, bool]]] = {}  # tid → accepted uploads
        self._answers_lock = threading.Lock()
        self.summary = LoadSummary()

    def run(self, files: list[ChunkFile]) -> LoadSummary:
        """Load every file; raise `LoadError` on what a re-run must resume (after settling Qserv)."""
        s = self.settings
        pending = [
            (group, 0)
            for group in plan_transactions(files, s.max_chunks_per_transaction, s.max_bytes_per_transaction)
        ]
        try:
            with (
                self._served(),
                ThreadPoolExecutor(max_workers=s.concurrency_total, thread_name_prefix="qdask-load") as pool,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdask-commit") as committer,
            ):
                self._pool, self._committer = pool, committer
                self._run_groups(pending)
        finally:  # only once no upload thread runs: a connection closed under a running thread crashes
            for ledger in self._opened_ledgers:
                ledger.close()
            self._opened_ledgers.clear()
        return self.summary

    @contextmanager
    def _served(self) -> Iterator[None]:
        """With `url_base` "serve": the staging directory served over HTTP while the load runs, its URL
        the one sent to the workers (then set back, so a next `run` serves again)."""
        s = self.settings
        if s.transport != "url" or s.url_base != SERVE:
            yield
            return
        if s.staging_root is None:
            raise LoadError("url_base serve needs the staging directory")
        with StagingFileServer(s.staging_root, s.serve_host, s.serve_port) as server:
            log.info("load: serving %s to the Qserv workers at %s", s.staging_root, server.url_base)
            self.settings = replace(s, url_base=server.url_base)
            try:
                yield
            finally:
                self.settings = s

    def _run_groups(self, pending: list[tuple[list[ChunkFile], int]]) -> None:
        """Send the transactions one after the other; each one's commit runs while the next one's files
        are sent, and is settled (a redo queued, a failure raised) before the next commit starts."""
        assert self._committer is not None, "transactions run inside Loader.run"
        committing: tuple[Future, list[ChunkFile], int] | None = None
        sent: tuple[int, list[ChunkFile], int] | None = None
        try:
            while pending or committing is not None:
                sent = None
                if pending:
                    group, redone = pending.pop(0)
                    try:
                        sent = (self._send(group), group, redone)
                    except _Redo as exc:
                        self._redo(pending, group, redone, exc)
                if committing is not None:
                    self._settle(committing, pending)
                    committing = None
                if sent is not None:
                    tid, group, redone = sent
                    committing = (self._committer.submit(self._commit, tid), group, redone)
                    sent = None
        except BaseException:
            if committing is not None:  # its outcome is in the ledger; a re-run settles what is left
                wait([committing[0]])
            if sent is not None:  # sent, never committed (the previous commit failed): leave Qserv clean
                try:
                    self._write_answers(sent[0], self.ledger)
                    _abort(self.client, self.ledger, sent[0], recorded=True)
                except Exception as abort_exc:  # noqa: BLE001 - the original failure is the one to report
                    log.warning("abort of transaction %s failed: %s", sent[0], abort_exc)
            raise

    def _redo(
        self, pending: list[tuple[list[ChunkFile], int]], group: list[ChunkFile], redone: int, exc
    ) -> None:
        self.summary.transactions_aborted += 1
        if redone + 1 > self.settings.redo_attempts:
            raise LoadError(
                f"gave up after {redone + 1} attempts at a transaction of {len(group)} file(s): {exc}"
            ) from exc
        self.summary.notes.append(f"transaction redone: {exc}")
        pending.append((group, redone + 1))

    def _settle(
        self, committing: tuple[Future, list[ChunkFile], int], pending: list[tuple[list[ChunkFile], int]]
    ) -> None:
        future, group, redone = committing
        try:
            future.result()
        except _Redo as exc:
            self._redo(pending, group, redone, exc)
            return
        for file in group:
            self.on_file(file)

    def _send(self, files: list[ChunkFile]) -> int:
        """Begin a transaction, record it, allocate its chunks and send its files; its id. Anything that
        fails here aborts it (`_Redo`: then its files are loaded again in a new one)."""
        s = self.settings
        context = transaction_context(s.run_id, files, s.owner)
        transaction = self.client.begin_transaction(s.database, context=context)
        tid = transaction.id
        faultpoints.reached("transaction.begun", str(tid))
        self.ledger.transaction_started(tid, s.database, [f.key for f in files], context)
        faultpoints.reached("transaction.recorded", str(tid))
        try:
            self.on_begun(tid)
            targets = self._locations(tid, files)
            faultpoints.reached("transaction.allocated", str(tid))
            self._upload_all(tid, targets)
        except _Redo:
            self._write_answers(tid, self.ledger)
            _abort(self.client, self.ledger, tid, recorded=True)
            raise
        except BaseException:
            try:  # a stop we cannot recover from here: leave Qserv clean if we can, else `recover` will
                self._write_answers(tid, self.ledger)
                _abort(self.client, self.ledger, tid, recorded=True)
            except Exception as abort_exc:  # noqa: BLE001 - the original failure is the one to report
                log.warning("abort of transaction %s failed: %s", tid, abort_exc)
            raise
        return tid

    def _locations(self, tid: int, files: list[ChunkFile]) -> list[tuple[ChunkFile, Location]]:
        chunks = sorted({f.chunk_id for f in files if f.chunk_id != REGULAR_CHUNK})
        by_chunk = self.client.allocate_chunks(chunks, transaction_id=tid) if chunks else {}
        regular = (
            self.client.regular_locations(transaction_id=tid)
            if len(chunks) < len({f.chunk_id for f in files})
            else []
        )
        targets = []
        for file in files:
            places = regular if file.chunk_id == REGULAR_CHUNK else [by_chunk[file.chunk_id]]
            targets += [(file, place) for place in places]
        return targets

    def _slot(self, worker: str) -> threading.Semaphore:
        with self._slots_lock:
            return self._worker_slots.setdefault(
                worker, threading.Semaphore(self.settings.concurrency_per_worker)
            )

    def _upload_all(self, tid: int, targets: list[tuple[ChunkFile, Location]]) -> None:
        failures: list[BaseException] = []
        assert self._pool is not None, "uploads run inside Loader.run"
        futures = [self._pool.submit(self._upload, tid, file, place) for file, place in targets]
        try:
            for future in as_completed(futures):  # wait for all: nothing may be in flight at abort/commit
                if (error := future.exception()) is not None:
                    failures.append(error)
        except BaseException:  # interrupted (Ctrl-C): start no more uploads, let those in flight end
            for future in futures:
                future.cancel()
            wait(futures)
            raise
        if failures:
            fatal = [f for f in failures if not isinstance(f, _Redo)]
            raise fatal[0] if fatal else failures[0]

    def _upload(self, tid: int, file: ChunkFile, place: Location) -> None:
        s = self.settings
        # checked at every upload: never load what was not staged. Sent by the driver: a stat before
        # sending, the bytes as they are sent (one read). Read by the worker: the whole file hashed before
        # its URL is sent. A file altered since it was written is refused before its contribution is
        # recorded, and its transaction aborted, so its rows are never committed
        by_url = s.transport == "url"
        problem = staged_file_problem(file, content=by_url)
        if problem is not None:
            raise StagedFileCorrupt(file, problem)
        url = contribution_url(s, file) if by_url else None
        for attempt in range(s.retries_in_transaction + 1):
            failure: QservError | ContributionCheckError | None = None
            with self._slot(place.worker):  # held while sending only: the ledger is written after
                try:
                    faultpoints.reached("upload.sending", f"{file.table}:{file.chunk_id}")
                    answer = self._send_file(tid, file, place, url)
                    check_contribution(answer, expected_rows=file.rows, expected_bytes=file.bytes)
                except (QservError, ContributionCheckError) as exc:
                    failure = exc
            if failure is None:
                faultpoints.reached("upload.answered", f"{file.table}:{file.chunk_id}")
                with self._answers_lock:  # written with the commit (`_write_answers`), in one thread
                    self._answers.setdefault(tid, []).append((file, place, answer, attempt > 0))
                faultpoints.reached("upload.recorded", f"{file.table}:{file.chunk_id}")
                self.summary.contributions += 1
                self.summary.rows += file.rows
                self.summary.bytes += file.bytes
                return
            assert failure is not None
            recovery = classify(failure)
            contribution = getattr(failure, "contribution", None)
            self._record(
                self._ledger(), tid, file, place, contribution, retry=attempt > 0, error=str(failure)
            )
            if recovery is Recovery.RETRY_IN_TRANSACTION and attempt < s.retries_in_transaction:
                self.summary.retries += 1
                time.sleep(s.retry_backoff * 2**attempt)
                continue
            if recovery is Recovery.FATAL:
                raise LoadError(f"{file.path} → {place.worker}: {failure}") from failure
            if recovery is Recovery.RETRY_WITH_BACKOFF:  # the client's own retries are exhausted
                raise LoadError(
                    f"worker {place.worker} is unreachable ({failure}); re-run the same command to resume"
                ) from failure
            raise _Redo(f"{file.path} → {place.worker}: {failure}") from failure

    def _send_file(self, tid: int, file: ChunkFile, place: Location, url: str | None) -> ContributionInfo:
        """One contribution request for `file` at `place`: its URL (`/ingest/file`) when given, else its
        bytes (`/ingest/csv`, hashed as they are sent: `StagedFileCorrupt` if they were not the staged
        ones). Returns the worker's answer, not yet checked."""
        s = self.settings
        target: dict[str, Any] = {  # the same fields either way
            "chunk": 0 if file.chunk_id == REGULAR_CHUNK else file.chunk_id,
            "overlap": file.overlap,
            "charset_name": s.charsets[file.table],
            "max_num_warnings": MAX_NUM_WARNINGS,
        }
        if url is not None:
            return self.client.ingest_file(place, tid, file.table, url, **target)
        sent = _SentDigest(file.checksum)
        answer = self.client.ingest_csv(place, tid, file.table, file.path, digest=sent, **target)
        if sent.checksum() != file.checksum:
            raise StagedFileCorrupt(file)
        return answer

    def _write_answers(self, tid: int, ledger: Ledger) -> None:
        """Record the accepted contributions of transaction `tid` (they are kept until its commit, so no
        upload thread waits on the ledger's write lock and fsync; `loaded_rows` reads them only for
        committed transactions, and they are written before the commit)."""
        with self._answers_lock:
            answers = self._answers.pop(tid, [])
        for file, place, answer, retry in answers:
            self._record(ledger, tid, file, place, answer, retry=retry)

    def _ledger(self) -> Ledger:
        if threading.current_thread() is threading.main_thread():
            return self.ledger
        if not hasattr(self._thread_ledgers, "ledger"):
            self._thread_ledgers.ledger = Ledger(self.ledger.path)
            self._opened_ledgers.append(self._thread_ledgers.ledger)
        return self._thread_ledgers.ledger

    @staticmethod
    def _record(
        ledger: Ledger,
        tid: int,
        file: ChunkFile,
        place: Location,
        answer,
        *,
        retry: bool,
        error: str | None = None,
    ) -> None:
        ledger.record_contribution(
            LedgerContribution(
                transaction_id=tid,
                file=file.key,
                worker=place.worker,
                status=getattr(answer, "status", None) or "FAILED",
                qserv_id=getattr(answer, "id", None),
                num_rows=getattr(answer, "num_rows", None),
                num_rows_loaded=getattr(answer, "num_rows_loaded", None),
                num_bytes=getattr(answer, "num_bytes", None),
                num_warnings=getattr(answer, "num_warnings", None),
                warnings=list(getattr(answer, "warnings", []) or []) or None,
                error=error,
            ),
            retry=retry,
        )

    def _commit(self, tid: int) -> None:
        """Record the transaction's answers, commit it, record the outcome (in the commit thread, with its
        own ledger connection); `_Redo` when Qserv did not finish it."""
        ledger = self._ledger()
        self._write_answers(tid, ledger)
        try:
            faultpoints.reached("commit.sending", str(tid))
            state = self.client.commit_transaction(tid).state
            faultpoints.reached("commit.answered", str(tid))
        except (QservError, QservTransportError) as exc:
            state = self.client.get_transaction(tid).state  # the outcome decides, not the lost answer
            if state != "FINISHED":
                _abort(self.client, ledger, tid, recorded=True)
                raise _Redo(f"commit of transaction {tid} failed ({exc})") from exc
        if state != "FINISHED":
            _abort(self.client, ledger, tid, recorded=True)
            raise _Redo(f"transaction {tid} ended {state} instead of FINISHED")
        ledger.transaction_state(tid, "committed")
        faultpoints.reached("commit.recorded", str(tid))
        self.summary.transactions_committed += 1

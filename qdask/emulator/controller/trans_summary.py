"""The ``contrib`` section of a transaction report: selectors and the summary of
``HttpIngestTransModule::_getTransactionContributions`` (``HttpIngestTransModule.cc:584-760``).

Pure functions over contribution records. Only FINISHED contributions feed the sums; failed retries are
counted whatever the status (and, as in Qserv, twice for a finished regular-table contribution).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from qdask.emulator.contract import ContribStatus, TransactionState
from qdask.emulator.protocol import InvalidParam
from qdask.emulator.records import Contribution

GIB = float(1 << 30)
SUMS = ("data_size_gb", "num_failed_retries", "num_warnings", "num_rows", "num_rows_loaded")


E = TypeVar("E", TransactionState, ContribStatus)


def _selector(text: str, kind: type[E], negatable: tuple[str, str], error: str) -> set[E]:
    """``!<one of negatable>`` for all but that one, else a comma list (empty: no filter)."""
    if text[1:] in negatable and text.startswith("!"):
        return set(kind) - {kind(text[1:])}
    out = set()
    for name in filter(None, text.split(",")):
        try:
            out.add(kind(name))
        except ValueError:
            raise InvalidParam(error.format(name=name)) from None
    return out


def state_selector(text: str) -> set[TransactionState]:
    """``_parseTransStateSelector`` (``HttpIngestTransModule.cc:762-779``)."""
    unknown = "DatabaseServices::string2state  unknown transaction state: '{name}'"
    return _selector(text, TransactionState, ("STARTED", "FINISHED"), unknown)


def status_selector(text: str) -> set[ContribStatus]:
    """``_parseContribStatusSelector`` (``HttpIngestTransModule.cc:781-800``)."""
    return _selector(
        text,
        ContribStatus,
        ("IN_PROGRESS", "FINISHED"),
        "DatabaseServices::str2status  unknown status name: {name}",
    )


def _counters(*extra: str) -> dict[str, float]:
    return dict.fromkeys((*SUMS, *extra), 0)


def _add(obj: dict, c: Contribution) -> None:
    obj["data_size_gb"] += c.num_bytes / GIB
    obj["num_warnings"] += c.num_warnings
    obj["num_rows"] += c.num_rows
    obj["num_rows_loaded"] += c.num_rows_loaded


def summarize(contribs: Iterable[Contribution], is_partitioned: Callable[[str], bool]) -> dict:
    """The ``summary`` object over ``contribs``; ``is_partitioned(table)`` tells chunk from regular files."""
    totals = _counters()
    by_status = dict.fromkeys((s.value for s in ContribStatus), 0)
    tables: dict[str, dict] = {}
    workers: dict[str, dict] = {}
    files = {"num_regular_files": 0, "num_chunk_files": 0, "num_chunk_overlap_files": 0}
    first, last = None, 0
    for c in contribs:
        by_status[c.status.value] += 1
        finished = c.status is ContribStatus.FINISHED
        table = tables.setdefault(c.table, _counters("num_files"))
        worker = workers.setdefault(
            c.worker, _counters("num_chunk_overlap_files", "num_chunk_files", "num_regular_files")
        )
        if is_partitioned(c.table):
            target = table.setdefault("overlap", _counters("num_files")) if c.overlap else table
            kind = "num_chunk_overlap_files" if c.overlap else "num_chunk_files"
        else:
            target, kind = table, "num_regular_files"
            if finished:
                target["num_failed_retries"] += c.num_failed_retries
        if finished:
            _add(target, c)
            target["num_files"] += 1
            worker[kind] += 1
            files[kind] += 1
            _add(worker, c)
            _add(totals, c)
            first = c.create_time if first is None else min(first, c.create_time)
            last = max(last, c.load_time)
        target["num_failed_retries"] += c.num_failed_retries
        totals["num_failed_retries"] += c.num_failed_retries
        worker["num_failed_retries"] += c.num_failed_retries
    return {
        "num_workers": len(workers),
        "num_files_by_status": by_status,
        **files,
        **totals,
        "first_contrib_begin": first or 0,
        "last_contrib_end": last,
        "table": tables,
        "worker": workers,
    }

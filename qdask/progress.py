"""What the user sees while and after a run: stage progress, the plan table, the memory plan, the ingest
summary and the verify report. The pipeline itself prints nothing; it hands these its results.

Stage progress has two faces. On a terminal, live bars: done/total, rows, rows per second, elapsed time
and the time remaining. Anywhere else (a log file, ``kubectl logs`` of the ingest Job) plain lines: one
when a stage starts, one every `every` seconds while it runs (done/total, rows, rate, ETA) and one when
it ends, so a stage that runs for an hour is never silent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

import click
from dask.utils import format_bytes
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from qdask.api import Status
    from qdask.estimate import Estimate
    from qdask.ingest import IngestSummary
    from qdask.kube.memory import MemoryPlan
    from qdask.stages.plan import TableSetup
    from qdask.stages.verify import VerifyReport

#: Seconds between two plain progress lines when the output is not a terminal.
PLAIN_EVERY = 30.0


class StageProgress(Protocol):
    """What a stage reports as its items finish: how many, and how many rows they carried."""

    def advance(self, items: int = 1, rows: int = 0) -> None: ...


class _RowRate(ProgressColumn):
    """Rows done and rows per second of a live bar."""

    def render(self, task: Task) -> Text:
        rows = task.fields.get("rows")
        if rows is None:  # a stage whose items carry no rows (a key check), or none done yet
            return Text(" " * 32)
        elapsed = task.elapsed or 0.0
        rate = f"{rows / elapsed:,.0f} rows/s" if elapsed > 0 else "- rows/s"
        return Text(f"{rows:>12,} rows {rate:>14}", style="progress.data.speed")


class _LiveStage:
    def __init__(self, progress: Progress, task: TaskID):
        self.progress, self.task = progress, task
        self.rows: int | None = None

    def advance(self, items: int = 1, rows: int = 0) -> None:
        if rows:
            self.rows = (self.rows or 0) + rows
        self.progress.update(self.task, advance=items, rows=self.rows)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class _PlainStage:
    """Progress as plain lines, every `every` seconds from a thread while the stage runs."""

    def __init__(self, console: Console, stage: str, total: int, what: str, every: float):
        self.console, self.stage, self.total, self.what, self.every = console, stage, total, what, every
        self.done = self.rows = 0
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name=f"qdask-progress-{stage}", daemon=True)

    def advance(self, items: int = 1, rows: int = 0) -> None:
        with self._lock:
            self.done += items
            self.rows += rows

    def line(self) -> str:
        with self._lock:
            done, rows = self.done, self.rows
        elapsed = time.monotonic() - self.start
        share = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        counted = (
            f", {rows:,} rows" + (f", {rows / elapsed:,.0f} rows/s" if elapsed > 0 else "") if rows else ""
        )
        eta = f", ETA {_clock(elapsed * (self.total - done) / done)}" if 0 < done < self.total else ""
        return (
            f"{self.stage}: {done}/{self.total} {self.what}{share}{counted}, elapsed {_clock(elapsed)}{eta}"
        )

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self.console.print(self.line(), soft_wrap=True, highlight=False)

    def __enter__(self) -> _PlainStage:
        self.console.print(f"{self.stage}: {self.total} {self.what} to do", soft_wrap=True, highlight=False)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.console.print(self.line(), soft_wrap=True, highlight=False)


@contextmanager
def stage_progress(
    console: Console, stage: str, total: int, what: str = "item(s)", *, every: float | None = None
) -> Iterator[StageProgress]:
    """Progress of one stage of `total` items: live bars on a terminal, plain lines elsewhere."""
    if console.is_terminal:
        progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RowRate(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        with progress:
            yield _LiveStage(progress, progress.add_task(stage, total=total, rows=None))
        return
    with _PlainStage(console, stage, total, what, PLAIN_EVERY if every is None else every) as plain:
        yield plain


def plan_table(database: str, setups: Iterable[TableSetup]) -> Table:
    """Per table: kind, input units, columns, estimated rows and input size."""
    table = Table(title=f"qdask plan: database {database}")
    for name in ("table", "kind", "units", "columns", "est. rows", "est. input"):
        table.add_column(name, justify="right" if name.startswith(("units", "col", "est")) else "left")
    for s in setups:
        rows, size = s.est_rows, s.est_bytes
        table.add_row(
            s.name,
            s.config.kind,
            str(len(s.units)),
            str(len(s.qserv_schema.columns)),
            f"{rows:,}" if rows is not None else "?",
            format_bytes(size) if size is not None else "?",
        )
    return table


def print_memory_plan(plan: MemoryPlan) -> None:
    """Per table and stage: the largest task's estimated peak next to the per-task budget and the limits."""

    pod = f", pod limit {format_bytes(plan.pod_limit)}" if plan.pod_limit else ""
    console = Console(stderr=True)
    console.print(
        f"memory per task; each worker: Dask limit {format_bytes(plan.worker_limit)}{pod}, "
        f"{plan.nthreads} thread(s)",
        soft_wrap=True,
    )
    table = Table()
    for name in ("table", "stage", "tasks", "est. peak", "budget", "fits"):
        table.add_column(name, justify="left" if name in ("table", "stage") else "right")
    for r in plan.rows:
        table.add_row(
            r.table,
            r.stage,
            str(r.tasks) if r.tasks else "-",
            format_bytes(r.peak),
            format_bytes(r.budget),
            "[green]yes[/]" if r.fits else "[red]NO[/]",
        )
    console.print(table)
    for r in plan.rows:
        if r.over:
            shown = ", ".join(r.over[:5]) + (f" and {len(r.over) - 5} more" if len(r.over) > 5 else "")
            console.print(
                f"[red]{r.table}: {len(r.over)} unit(s) cannot be cut to fit (one row group, or no "
                f"footer): {shown}. Give workers more memory or fewer threads.[/]",
                soft_wrap=True,
            )


def print_verify_report(report: VerifyReport) -> None:
    table = Table(title="qdask verify")
    for name in ("table", "check", "result", "detail"):
        table.add_column(name)
    for check in report.checks:
        table.add_row(
            check.table, check.name, "[green]ok[/]" if check.ok else "[red]DIFFERS[/]", check.detail
        )
    Console().print(table)


def print_summary(summary: IngestSummary) -> None:
    """What an ingest did: notes, quarantined rows, NaN/inf stored as NULL, and the totals (to stderr)."""
    for note in summary.notes:
        click.echo(f"- {note}", err=True)
    for table, (count, paths) in summary.quarantined.items():
        click.echo(
            f"- {table}: {count:,} row(s) with invalid positions quarantined in {', '.join(paths[:3])}",
            err=True,
        )
    for table, counts in summary.nan_to_null.items():
        if not any(counts.values()):
            continue
        shown = ", ".join(f"{c} ({n:,})" for c, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8])
        click.echo(
            f"- {table}: {sum(counts.values()):,} NaN/inf value(s) in {len(counts)} column(s) stored as NULL "
            f"(MariaDB cannot hold them): {shown}{' …' if len(counts) > 8 else ''}",
            err=True,
        )
    if not summary.changed_anything:
        click.echo(
            "nothing to do: every unit, chunk and transaction of this configuration is already done", err=True
        )
    else:
        loaded = summary.loaded
        extra = [
            f"{loaded.overlap:,} overlap copies" if loaded.overlap else "",
            f"{loaded.replicas:,} replicas of regular tables on the other workers" if loaded.replicas else "",
        ]
        also = " and ".join(e for e in extra if e)
        click.echo(
            f"run {summary.run_id}: {summary.units_partitioned} unit(s) partitioned, "
            f"{summary.chunks_collected} chunk file(s) staged, {loaded.catalog:,} catalog rows loaded in "
            f"{summary.transactions} transaction(s)" + (f" (Qserv also holds {also})" if also else ""),
            err=True,
        )
    if summary.report is not None:
        click.echo(f"run report: {summary.report}", err=True)


def print_units(setups: Iterable[TableSetup], shown: int = 8) -> None:
    """The input units the plan selected, per table (`shown` of each, then how many more)."""
    console = Console(stderr=True)
    for s in setups:
        console.print(f"[bold]{s.name}[/]: {len(s.units)} unit(s)", highlight=False)
        for u in s.units[:shown]:
            size = ", ".join(
                part
                for part in (
                    f"{u.est_rows:,} rows" if u.est_rows is not None else "",
                    format_bytes(u.est_bytes) if u.est_bytes is not None else "",
                )
                if part
            )
            console.print(f"  {u.unit_id}" + (f"  ({size})" if size else ""), soft_wrap=True, highlight=False)
        if len(s.units) > shown:
            console.print(
                f"  … and {len(s.units) - shown} more (all of them: qdask plan --json)", highlight=False
            )


def _duration(seconds: float | None) -> str:
    return "unknown" if seconds is None else _clock(max(seconds, 1.0))


def print_estimate(estimate: Estimate) -> None:
    """Chunks, staging disk and time the plan estimates, and where each number comes from."""
    console = Console(stderr=True)
    ratio = (
        f" ({estimate.staging_bytes / estimate.input_bytes:.1f}× the input)" if estimate.input_bytes else ""
    )
    about = "" if estimate.chunks_exact else "~"
    console.print(
        f"estimate: {estimate.rows:,} rows, {about}{estimate.chunks:,} chunk(s); "
        f"staging disk needed {format_bytes(estimate.staging_bytes)}{ratio}; time: staging "
        f"{_duration(estimate.staging_seconds)}, load {_duration(estimate.load_seconds)}",
        soft_wrap=True,
        highlight=False,
    )
    for source in estimate.sources:
        console.print(f"  {source}", soft_wrap=True, highlight=False)


def print_status(status: Status) -> None:
    """`qdask status`: what the staging directory records, as a table with the catalog's state."""
    console = Console()
    if not console.is_terminal:  # a pipe or a file has no width to fit: do not cut the table
        console = Console(width=max(console.width, 120))
    c = status.counts
    units, files, transactions = c["units"], c["chunk_files"], c["transactions"]
    console.print(
        f"[bold]qdask status[/]: database {status.database}, run {status.run_id} (ledger {status.ledger})",
        soft_wrap=True,
        highlight=False,
    )
    published = status.published
    console.print("published: " + (f"yes, {published['at']}" if published else "no"), highlight=False)
    verified = status.verified
    if verified is None:
        console.print("verified: not yet", highlight=False)
    elif verified["ok"]:
        console.print(
            f"verified: yes, {verified['at']}: all {verified['checks']} checks agree", highlight=False
        )
    else:
        console.print(
            f"verified: [red]FAILED[/] {verified['at']}: {len(verified['failed'])} check(s) differ",
            highlight=False,
        )
    console.print(
        f"units: {units.get('partitioned', 0)} partitioned, {units.get('planned', 0)} to partition, "
        f"{units.get('failed', 0)} failed; chunk files: {files.get('loaded', 0)} loaded, "
        f"{files.get('staged', 0)} staged, {c['chunks_to_collect']} to collect; transactions: "
        f"{transactions.get('committed', 0)} committed, {transactions.get('started', 0)} open, "
        f"{transactions.get('aborted', 0)} aborted",
        soft_wrap=True,
        highlight=False,
    )
    table = Table(title="rows: read, quarantined, and in Qserv (catalog rows, overlap copies, replicas)")
    table.add_column("table", no_wrap=True)
    for name in ("read", "quarantined", "catalog", "overlap", "replicas", "staged only"):
        table.add_column(name, justify="right", no_wrap=True)
    for name, t in status.tables.items():
        table.add_row(
            name,
            f"{t.get('rows_read', 0):,}",
            f"{t.get('rows_quarantined', 0):,}",
            f"{t.get('catalog', 0):,}",
            f"{t.get('overlap_copies', 0):,}",
            f"{t.get('replicas', 0):,}",
            f"{t.get('rows_staged', 0):,}",
        )
    console.print(table)
    if status.report is not None:
        console.print(f"run report: {status.report}", soft_wrap=True, highlight=False)

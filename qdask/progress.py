"""What the user sees while and after a run: stage bars, the plan table, the memory plan, the ingest
summary and the verify report. The pipeline itself prints nothing; it hands these its results."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import click
from dask.utils import format_bytes
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from qdask.ingest import IngestSummary
    from qdask.kube.memory import MemoryPlan
    from qdask.stages.plan import TableSetup
    from qdask.stages.verify import VerifyReport


def stage_bars(console: Console) -> Progress:
    """Live bars, one per stage: name, bar, done/total, elapsed time."""
    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


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
        click.echo(
            f"run {summary.run_id}: {summary.units_partitioned} unit(s) partitioned, "
            f"{summary.chunks_collected} chunk file(s) staged, {summary.rows_loaded:,} rows loaded in "
            f"{summary.transactions} transaction(s)",
            err=True,
        )

"""The ``qdask`` command: one sub-command per job (plan, ingest, status, verify, query, demo, emulator).

Each sub-command is a thin shell over a library function (`qdask.api`), so everything the command
does can also be driven (and tested) from Python. `--json` prints a command's result as JSON on stdout
(docs/json.md); `--log-level`/`--log-file` say where log lines go (`qdask.logs`). A `QdaskError` (bad
config, bad input, Qserv refusing, ...) is printed as its message alone and exits with its code (2 for a
usage or config error, 1 otherwise); Ctrl-C ends with one line; any other exception is a bug in qdask
and keeps its traceback.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import click

from qdask import __version__
from qdask.errors import QdaskError, QdaskUsageError

#: What Ctrl-C leaves, by command: the ledger makes ingest and demo resumable.
RESUME = {
    "ingest": "everything finished so far is recorded; re-run the same command to resume",
    "demo": "re-run `qdask demo` to start it again",
}


class QdaskGroup(click.Group):
    """The command group: user-facing errors and Ctrl-C as one clear message, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QdaskError as exc:
            name = ctx.invoked_subcommand or "qdask"
            usage = isinstance(exc, QdaskUsageError)  # a config error names its file and keys already
            click.echo(str(exc) if usage else f"qdask {name} stopped: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            # a stage whose loop the interrupt left (a suspended generator in a frame of the traceback)
            # prints its last progress line when released: release it now, so the one line comes last
            traceback.clear_frames(exc.__traceback__)
            name = ctx.invoked_subcommand or "qdask"
            click.echo(f"\nqdask {name} interrupted: {RESUME.get(name, 'nothing else was done')}", err=True)
            ctx.exit(130)


@click.group(cls=QdaskGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qdask")
def main() -> None:
    """Load LSST/Rubin catalogs (Butler datasets or Parquet/CSV/TSV files) into Qserv with Dask.

    Typical use: `qdask plan CONFIG --check`, then `qdask ingest CONFIG --workers 24`,
    then `qdask verify CONFIG` and `qdask query --db DB "SELECT COUNT(*) FROM Object"`.
    CONFIG is a config YAML file, or a directory in Qserv's dataset layout (see `qdask from-qserv`).
    """


@main.command("locate", context_settings={"ignore_unknown_options": True})
@click.argument("ra", type=float)
@click.argument("dec", type=float)
@click.option(
    "--layout",
    default="340,3,0.01667",
    show_default=True,
    help="S,SS,OVERLAP: stripes, sub-stripes per stripe, overlap radius in degrees (default: DP0.2).",
)
def locate_command(ra: float, dec: float, layout: str) -> None:
    """Show where Qserv's partitioner puts RA DEC (degrees): chunk, sub-chunk, bounds, overlap copies.

    A negative DEC may be given as is (`qdask locate 62 -37`).
    """
    from qdask.sky import Chunker

    try:
        s, ss, overlap = layout.split(",")
        chunker = Chunker(int(s), int(ss), float(overlap))
    except ValueError as exc:
        msg = f"expected S,SS,OVERLAP such as 340,3,0.01667 ({exc})"
        raise click.BadParameter(msg, param_hint="--layout") from None
    try:
        located = chunker.locate_all([ra], [dec])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    chunk, sub = int(located.chunk_id[0]), int(located.sub_chunk_id[0])
    click.echo(f"layout S={chunker.num_stripes} SS={chunker.num_sub_stripes} overlap={chunker.overlap} deg")
    click.echo(f"chunkId {chunk}  subChunkId {sub}")
    ra0, ra1, dec0, dec1 = chunker.chunk_bounds(chunk)
    click.echo(f"chunk bounds      RA {ra0:.6f} .. {ra1:.6f}  Dec {dec0:.6f} .. {dec1:.6f}")
    ra0, ra1, dec0, dec1 = chunker.sub_chunk_bounds(chunk, sub)
    click.echo(f"sub-chunk bounds  RA {ra0:.6f} .. {ra1:.6f}  Dec {dec0:.6f} .. {dec1:.6f}")
    copies = list(zip(located.overlap_chunk_id.tolist(), located.overlap_sub_chunk_id.tolist(), strict=True))
    click.echo(f"overlap copies: {len(copies)}")
    for c, sc in copies:
        where = "same chunk" if c == chunk else "other chunk"
        click.echo(f"  chunk_{c}_overlap.txt  {c}/{sc}  ({where})")


def log_options(command):
    """`--log-level` and `--log-file` on a command: set up before the command runs (`qdask.logs`)."""
    from qdask.logs import LEVELS

    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        from qdask.logs import setup_logging

        chosen = ctx.meta.setdefault("qdask.logging", {})
        chosen[param.name] = value
        setup_logging(chosen.get("log_level"), chosen.get("log_file"))
        return value

    command = click.option(
        "--log-file",
        type=click.Path(dir_okay=False),
        expose_value=False,
        callback=remember,
        help="Write log lines to this file (at --log-level, default info); stderr keeps the warnings.",
    )(command)
    return click.option(
        "--log-level",
        type=click.Choice(LEVELS, case_sensitive=False),
        expose_value=False,
        callback=remember,
        help="Level of the log lines: on stderr (default warning), or in --log-file (default info).",
    )(command)


def progress_option(command):
    """`--progress-every SECONDS`: how often a plain progress line is printed off a terminal."""

    def remember(ctx: click.Context, param: click.Parameter, value: float) -> float:
        from qdask import progress

        progress.PLAIN_EVERY = value
        return value

    return click.option(
        "--progress-every",
        type=click.FloatRange(min=0.1),
        default=30.0,
        show_default=True,
        expose_value=False,
        callback=remember,
        help="Seconds between progress lines when the output is not a terminal (a log, kubectl logs).",
    )(command)


def json_option(command):
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (schema: docs/json.md)."
    )(command)


def _print_json(data) -> None:
    import json

    click.echo(json.dumps(data, indent=2, default=str))


@main.command("from-qserv")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str), help="Write the config here.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--staging", help="Staging directory for the config (default: staging/<database>).")
@click.option("--controller", default=None, help="Qserv Replication controller URL.")
@click.option("--czar", default=None, help="Czar DSN mysql://user@host:port (the database is appended).")
def from_qserv_command(dataset, output, force, staging, controller, czar) -> None:
    """Write the qdask config of a Qserv dataset directory (Qserv's integration-test layout).

    DATASET holds ingest/database.json, ingest/<table>.json (kinds, keys, positions, schema, each data
    file's LOAD DATA dialect), partition/*.json and the data files, as in lsst/qserv's data/case01. The
    config is printed (or written to OUTPUT, paths relative to it) for you to read and edit; tables qdask
    cannot express yet are named with the reason. `qdask ingest DATASET` loads the same config directly.
    """
    from qdask.config.qserv_dataset import (
        DEFAULT_CONTROLLER,
        DEFAULT_CZAR,
        dataset_config,
        dataset_config_yaml,
    )

    target = Path(output) if output else None
    if target is not None and target.exists() and not force:
        raise click.UsageError(f"{target} exists; pass --force to overwrite it")
    described = dataset_config(
        dataset,
        relative_to=target.resolve().parent if target is not None else Path.cwd(),
        staging=staging,
        controller=controller or DEFAULT_CONTROLLER,
        czar=czar or DEFAULT_CZAR,
    )
    text = dataset_config_yaml(described)
    if target is None:
        click.echo(text, nl=False)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    left_out = f"; left out: {', '.join(described.skipped)}" if described.skipped else ""
    click.echo(f"wrote {target}: {len(described.kinds)} tables of {described.database}{left_out}", err=True)


@main.command("plan")
@click.argument("config", type=click.Path(path_type=str))
@click.option("--check", is_flag=True, help="Only validate CONFIG and print the resolved config, then stop.")
@json_option
@log_options
def plan_command(config: str, check: bool, as_json: bool) -> None:
    """Show what `qdask ingest CONFIG` would do; reads the input, writes nothing.

    Tables, the input units selected (datasets or files), columns, sizes, the memory each task needs,
    the chunks the catalog touches, the staging disk needed and the time it takes, with where each
    estimate comes from. With `--check`, only validate CONFIG and print the resolved configuration
    (secrets masked). Config errors name the file, line and key path, and exit with status 2.
    """
    from qdask import api
    from qdask.config import load_config

    cfg = load_config(config)
    click.echo(f"# {cfg.source}: valid", err=True)
    if check:
        if as_json:
            _print_json(cfg.display_dict())
        else:
            click.echo(cfg.to_yaml(), nl=False)
        return
    from qdask.progress import plan_table, print_estimate, print_memory_plan, print_units

    planned = api.plan(cfg)
    if as_json:
        _print_json(planned.to_dict())
        return
    from rich.console import Console

    Console(stderr=True).print(plan_table(cfg.database.name, planned.setups))
    print_units(planned.setups)
    print_memory_plan(planned.memory)
    if planned.estimate is not None:
        print_estimate(planned.estimate)


@main.group("emulator")
def emulator_group() -> None:
    """The local Qserv stand-in (controller + worker ingest services + czar on MariaDB)."""


@emulator_group.command("serve")
@click.option("--workers", "num_workers", default=3, show_default=True, help="Number of worker servers.")
@click.option("--mariadb", "dsn", default=None, help="mysql://user[:pw]@host:port (default: private).")
@click.option("--port", default=25081, show_default=True, help="Controller port (0: any free port).")
@click.option("--worker-port", "worker_ports", multiple=True, type=int, help="Worker port (repeat; 0: free).")
@click.option("--auth-key", default="", show_default=True, help="The ingest 'auth_key'.")
@click.option("--admin-auth-key", default="admin", show_default=True, help="The 'admin_auth_key'.")
@click.option("--instance", default="qserv", show_default=True, help="Prefix of the stand-in's databases.")
@click.option("--czar-port", default=4040, show_default=True, help="Czar front end port (0: any free port).")
@click.option("--czar-user", default="qsmaster", show_default=True, help="The czar front end's user.")
@click.option("--czar-password", default="", help="The czar front end user's password (default: none).")
def emulator_serve(
    num_workers: int,
    dsn: str | None,
    port: int,
    worker_ports: tuple[int, ...],
    auth_key: str,
    admin_auth_key: str,
    instance: str,
    czar_port: int,
    czar_user: str,
    czar_password: str,
) -> None:
    """Run the stand-in until Ctrl-C; prints the controller URL and the czar DSN (Qserv's SQL, port 4040)."""
    import asyncio
    import contextlib
    import signal

    from qdask.emulator.server import EmulatorConfig, serve_forever
    from qdask.mariadb import PrivateMariaDB

    def terminate(*_):
        raise KeyboardInterrupt

    # Until the stand-in serves: stop cleanly (and stop the private server) on SIGTERM; once it serves, its
    # event loop takes SIGINT and SIGTERM over and stops in order (`serve_forever`).
    signal.signal(signal.SIGTERM, terminate)
    private = None
    if dsn is None:
        private = PrivateMariaDB().start()
        dsn = private.dsn

    def ready(emulator) -> None:
        click.echo(f"controller {emulator.controller_url}")
        click.echo(f"czar       {emulator.czar_dsn}")
        for name, url in emulator.worker_urls.items():
            click.echo(f"{name:10s} {url}")

    config = EmulatorConfig(
        dsn=dsn,
        workers=num_workers,
        port=port,
        worker_ports=list(worker_ports),
        auth_key=auth_key,
        admin_auth_key=admin_auth_key,
        instance=instance,
        czar_port=czar_port,
        czar_user=czar_user,
        czar_password=czar_password,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_forever(config, ready))
    finally:
        if private is not None:
            private.stop()


@main.command("demo-repo")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--tracts", default=2, show_default=True, type=click.IntRange(1, 60), help="Tracts to fill.")
@click.option(
    "--rows-per-patch", default=200, show_default=True, type=click.IntRange(1), help="Objects per patch."
)
@click.option("--patches-per-tract", default=4, show_default=True, type=int, help="A square: 1, 4, 9, … 49.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same repository.")
def demo_repo_command(path: str, tracts: int, rows_per_patch: int, patches_per_tract: int, seed: int) -> None:
    """Create a Butler repository at PATH with DP0.2-shaped Object, ForcedSource and CcdVisit datasets."""
    import json

    from qdask.demo import make_demo_repo

    try:
        repo = make_demo_repo(
            path, tracts=tracts, rows_per_patch=rows_per_patch, patches_per_tract=patches_per_tract, seed=seed
        )
    except (ValueError, FileExistsError) as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(json.dumps(repo.to_dict(), indent=2))


def _config(path: str, **overrides):
    """Load CONFIG with command-line overrides (a `ConfigError` names every problem, and exits 2)."""
    from qdask.config import load_config

    cfg = load_config(path)
    given = {k: v for k, v in overrides.items() if v is not None}
    return cfg.with_overrides(**given) if given else cfg


@main.command("ingest")
@click.argument("config", type=click.Path(exists=True))
@click.option("--workers", type=click.IntRange(1), help="Dask workers (overrides cluster.workers).")
@click.option("--controller", help="Qserv Replication controller URL (overrides qserv.controller).")
@click.option("--czar", help="Czar DSN mysql://user@host:port (overrides qserv.czar).")
@click.option(
    "--staging", type=click.Path(file_okay=False), help="Staging directory (overrides staging.directory)."
)
@click.option("--scheduler", help="Address of a running Dask scheduler (instead of a local cluster).")
@click.option(
    "--cluster",
    "cluster_kind",
    type=click.Choice(["local", "kubernetes", "scheduler"]),
    help="Where Dask runs (overrides cluster.kind; kubernetes uses cluster.kubernetes).",
)
@click.option(
    "--stage-only", is_flag=True, help="Stop once every contribution file and its checksum are staged."
)
@click.option("--no-verify", is_flag=True, help="Skip the verification after publishing.")
@click.option(
    "--take-over",
    is_flag=True,
    help="Adopt what another qdask run whose staging directory is lost committed to the database "
    "(rebuilt from the transactions' contexts in Qserv), instead of refusing to load beside it.",
)
@click.option(
    "--published",
    is_flag=True,
    help="Add the config's new tables to the catalog this staging directory published: un-publish it "
    "(administrator's key, $qserv.admin_auth_key_env), load them, publish again.",
)
@json_option
@progress_option
@log_options
def ingest_command(
    config,
    workers,
    controller,
    czar,
    staging,
    scheduler,
    cluster_kind,
    stage_only,
    no_verify,
    take_over,
    published,
    as_json,
) -> None:
    """Ingest the catalog CONFIG describes into Qserv; re-run the same command to resume after any stop.

    Prints the plan, the Dask dashboard link, each stage's progress (live bars on a terminal, a line
    every --progress-every seconds elsewhere) and a summary, and writes the run report
    <staging>/report.html. A resumed run says what it reuses. Exit status 3 when verification fails.
    Tables added to the config of a published catalog are loaded with --published (docs/recovery.md).
    """
    from qdask.long_lived import setting_up

    with setting_up("driver"):  # this process is qdask's own: what its set-up leaves lives to its end
        from qdask import api
        from qdask.progress import print_memory_plan, print_summary, print_verify_report

        cfg = _config(
            config,
            workers=workers,
            controller=controller,
            czar=czar,
            staging=staging,
            scheduler=scheduler,
            cluster=cluster_kind,
        )
        driver, memory_plan = api.prepare(cfg)
    driver.take_over, driver.published = take_over, published
    driver.show_plan()
    print_memory_plan(memory_plan)
    summary = driver.run(stage_only=stage_only, verify_after=not no_verify)
    print_summary(summary)
    if as_json:
        _print_json(summary.to_dict())
    elif summary.verify is not None:
        print_verify_report(summary.verify)
    if summary.verify is not None and not summary.verify.ok:
        raise SystemExit(3)


@main.command("verify")
@click.argument("config", type=click.Path(exists=True))
@click.option("--czar", help="Czar DSN (overrides qserv.czar).")
@click.option(
    "--staging", type=click.Path(file_okay=False), help="Staging directory (overrides staging.directory)."
)
@click.option("--sample", "sample_size", default=20, show_default=True, help="Source rows compared in full.")
@click.option(
    "--unique-scan-rows",
    type=click.IntRange(min=0),
    default=10_000_000,  # qdask.stages.verify.UNIQUE_SCAN_ROWS (kept equal by a test)
    show_default=True,
    help="A table with more rows is not grouped by its unique integer key through the czar: a director's "
    "ids were proven unique before loading, a child's own ids are checked in the staged rows, and the key "
    "checksum compares them with the czar's chunk by chunk. 0 never groups; --unique-scan-all always does.",
)
@click.option(
    "--unique-scan-all", is_flag=True, help="Group every unique key through the czar, whatever its size."
)
@json_option
@log_options
def verify_command(config, czar, staging, sample_size, unique_scan_rows, unique_scan_all, as_json) -> None:
    """Compare Qserv (through the czar) with the ledger and the source; exit 0 only when all agree."""
    from qdask import api
    from qdask.ingest import verify_to_dict
    from qdask.progress import print_verify_report

    report = api.verify(
        _config(config, czar=czar, staging=staging),
        sample_size=sample_size,
        unique_scan_rows=None if unique_scan_all else unique_scan_rows,
    )
    if as_json:
        _print_json(verify_to_dict(report))
    else:
        print_verify_report(report)
    raise SystemExit(0 if report.ok else 3)


@main.command("status")
@click.argument("config", type=click.Path(exists=True))
@click.option(
    "--staging", type=click.Path(file_okay=False), help="Staging directory (overrides staging.directory)."
)
@json_option
@log_options
def status_command(config, staging, as_json) -> None:
    """Show what the staging directory of CONFIG records: published? verified? units, chunk files,
    transactions, and per table the rows read, quarantined and loaded (catalog rows, overlap copies,
    replicas). Reads only; talks to neither Qserv nor Dask."""
    from qdask import api
    from qdask.progress import print_status

    cfg = _config(config, staging=staging)
    found = api.status(cfg)
    if found is None:
        if as_json:
            _print_json(None)
        click.echo(
            f"no ledger in {cfg.staging.directory}: nothing has been ingested with this staging directory "
            "yet",
            err=True,
        )
        return
    if as_json:
        _print_json(found.to_dict())
    else:
        print_status(found)


@main.command("reset")
@click.argument("config", type=click.Path(exists=True))
@click.option(
    "--staging", type=click.Path(file_okay=False), help="Staging directory (overrides staging.directory)."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@log_options
def reset_command(config, staging, yes) -> None:
    """Delete what qdask staged for CONFIG (shards, contribution files, keys, quarantine, the ledger, the
    run record and reports), so the next `qdask ingest` starts over. Other files in the staging
    directory are kept. Rows already loaded into Qserv stay there: drop the database first to reload it."""
    from dask.utils import format_bytes

    from qdask import api

    cfg = _config(config, staging=staging)
    paths = api.staging_paths(cfg)
    if not paths:
        click.echo(f"nothing to reset: {cfg.staging.directory} holds nothing qdask staged", err=True)
        return
    size = sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    found = api.status(cfg)
    loaded = (found.counts["chunk_files"].get("loaded", 0) if found else 0) or 0
    where = cfg.staging.directory
    click.echo(f"this removes {format_bytes(size)} in {len(paths)} path(s) from {where}:", err=True)
    for path in paths:
        click.echo(f"  {path}", err=True)
    if loaded:
        click.echo(
            f"{loaded} chunk file(s) are loaded in Qserv database {cfg.database.name}: resetting does not "
            "remove them from Qserv; drop the database there before ingesting it again.",
            err=True,
        )
    if not yes and not click.confirm("reset the staging directory?", default=False, err=True):
        click.echo("nothing was removed", err=True)
        raise SystemExit(1)
    api.reset(cfg)
    click.echo(f"reset: {cfg.staging.directory} no longer holds a run of {cfg.database.name}", err=True)


@main.command("drop")
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("--controller", help="Qserv Replication controller URL (overrides qserv.controller).")
@click.option(
    "--staging", type=click.Path(file_okay=False), help="Staging directory (overrides staging.directory)."
)
@click.option(
    "--published", is_flag=True, help="Also delete a published database (Qserv requires the admin key)."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@log_options
def drop_command(config, controller, staging, published, yes) -> None:
    """Delete CONFIG's database from Qserv (every table on every worker, director indexes, row counters).

    An unpublished database is deleted with the ingest key; a published one only with --published and the
    administrator's key ($qserv.admin_auth_key_env). The staging directory is kept, and its ledger
    records every file as staged again: the same `qdask ingest` then loads the catalog anew.
    """
    from qdask import api

    cfg = _config(config, controller=controller, staging=staging)
    db = cfg.database.name
    if not yes and not click.confirm(
        f"delete database {db} from Qserv at {cfg.qserv.controller}?", default=False, err=True
    ):
        click.echo("nothing was deleted", err=True)
        raise SystemExit(1)
    done = api.drop(cfg, published=published)
    click.echo(
        f"dropped: database {db}{' (was published)' if done.was_published else ''} is deleted from Qserv; "
        f"{done.files_to_reload} loaded chunk file(s) of {cfg.staging.directory} will be loaded again by "
        "the next `qdask ingest`",
        err=True,
    )


@main.command("query")
@click.argument("sql", required=False)
@click.option("--request", "request_sql", help="The SQL (alias of the SQL argument, as the prototype had).")
@click.option(
    "--czar",
    envvar="QDASK_CZAR",
    default="mysql://qsmaster@127.0.0.1:4040",
    show_default=True,
    help="Czar DSN mysql://user[:pw]@host:port (env QDASK_CZAR).",
)
@click.option("--db", help="Default database for the query.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "tsv", "csv", "json"]), default="table", show_default=True
)
def query_command(sql, request_sql, czar, db, fmt) -> None:
    """Run SQL through the czar and print the rows (`qdask query --db dp02 "SELECT COUNT(*) FROM Object"`)."""
    import csv
    import json
    import sys

    import pymysql

    from qdask.qserv.czar import Czar, describe_error

    text = sql or request_sql
    if not text:
        raise click.UsageError("give the SQL as an argument or with --request")
    try:
        with Czar(czar).query(text, database=db) as rows:
            columns, data = rows.columns, list(rows)
    except pymysql.MySQLError as exc:
        raise click.ClickException(f"query failed: {describe_error(exc)}") from None
    except ValueError as exc:
        raise click.ClickException(f"query failed: {exc}") from None
    if fmt == "json":
        click.echo(json.dumps([dict(zip(columns, r, strict=True)) for r in data], default=str, indent=1))
    elif fmt in ("tsv", "csv"):
        writer = csv.writer(sys.stdout, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["\\N" if v is None and fmt == "tsv" else v for v in r] for r in data)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns)
        for r in data:
            table.add_row(*("NULL" if v is None else str(v) for v in r))
        Console().print(table)
        click.echo(f"{len(data)} row(s)", err=True)


@main.command("demo")
@click.option(
    "--workdir",
    default="demo-run",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the demo repository and staging go.",
)
@click.option(
    "--tracts", default=2, show_default=True, type=click.IntRange(1, 60), help="Tracts in the repository."
)
@click.option(
    "--rows-per-patch", default=500, show_default=True, type=click.IntRange(1), help="Objects per patch."
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1), help="Local Dask workers.")
@click.option("--mariadb", help="mysql://root@host:port of a MariaDB to use (default: a private one).")
@progress_option
@log_options
def demo_command(workdir, tracts, rows_per_patch, workers, mariadb) -> None:
    """The whole job locally: demo Butler repository → Qserv stand-in → ingest → verify → query."""
    from rich.console import Console
    from rich.table import Table

    from qdask.demo_run import run_demo
    from qdask.progress import print_summary, print_verify_report

    result = run_demo(workdir, tracts=tracts, rows_per_patch=rows_per_patch, workers=workers, mariadb=mariadb)
    print_summary(result.summary)
    report = result.summary.verify
    if report is not None:
        print_verify_report(report)
    table = Table(*result.query_columns, title=f"the czar's answer (database {result.config.database.name})")
    for row in result.query_rows:
        table.add_row(*(str(v) for v in row))
    Console().print(table)
    cone = Table(*result.spatial_columns, title=f"cone search through the czar: {result.spatial_sql}")
    for row in result.spatial_rows:
        cone.add_row(*("NULL" if v is None else str(v) for v in row))
    Console().print(cone)
    raise SystemExit(0 if report is not None and report.ok else 3)


if __name__ == "__main__":
    main()

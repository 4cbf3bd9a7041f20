"""The ``qdask`` command: one sub-command per job (plan, ingest, status, verify, query, demo, emulator).

Each sub-command is a thin shell over a library function, so everything the command does can also be
driven (and tested) from Python.
"""

from __future__ import annotations

import click

from qdask import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qdask")
def main() -> None:
    """Load LSST/Rubin catalogs (Butler datasets or Parquet/CSV/TSV files) into Qserv with Dask.

    Typical use: `qdask plan CONFIG --check`, then `qdask ingest CONFIG --workers 24`,
    then `qdask verify CONFIG` and `qdask query --db DB "SELECT COUNT(*) FROM Object"`.
    """


if __name__ == "__main__":
    main()

"""qdask: load LSST/Rubin catalogs into Qserv as a Dask dataflow.

The Python API (`qdask.api`, imported on first use so that ``import qdask`` stays light):

    qdask.plan(config)                    # units, memory plan, estimate; writes nothing
    qdask.ingest(config, client=client)   # every stage not yet done, on your Dask client if given
    qdask.verify(config)                  # the czar against the ledger and the source
    qdask.status(config)                  # what the staging directory records
    qdask.reset(config)                   # remove what qdask staged
"""

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("qdask")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

# qdask logs at stage boundaries (logger "qdask" and its children) and leaves handlers to the application:
# without one configured, nothing is printed (and Python's last-resort handler is not used).
logging.getLogger("qdask").addHandler(logging.NullHandler())

_API = ("plan", "verify", "status", "reset")


def __getattr__(name: str) -> Any:
    if name == "ingest":  # the driver module `qdask.ingest`, which is callable as `qdask.api.ingest`
        return importlib.import_module("qdask.ingest")
    if name in _API:
        return getattr(importlib.import_module("qdask.api"), name)
    raise AttributeError(f"module 'qdask' has no attribute {name!r}")

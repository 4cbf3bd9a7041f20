"""qdask: load LSST/Rubin catalogs into Qserv as a Dask dataflow."""

import logging
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qdask")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

# qdask logs at stage boundaries (logger "qdask" and its children) and leaves handlers to the application:
# without one configured, nothing is printed (and Python's last-resort handler is not used).
logging.getLogger("qdask").addHandler(logging.NullHandler())

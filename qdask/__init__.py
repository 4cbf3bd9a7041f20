"""qdask: load LSST/Rubin catalogs into Qserv as a Dask dataflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qdask")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

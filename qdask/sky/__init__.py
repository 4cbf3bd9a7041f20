"""Sky partitioning: Qserv's chunk/sub-chunk/overlap arithmetic, vectorised (see `qdask.sky.chunker`)."""

from qdask.sky.chunker import Chunker, InvalidPositionError, LayoutError, Located

__all__ = ["Chunker", "InvalidPositionError", "LayoutError", "Located"]

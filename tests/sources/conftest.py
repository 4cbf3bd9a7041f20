"""The referee of the text-dialect tests: MariaDB itself, writing files (``SELECT … INTO OUTFILE``) and
reading them (``LOAD DATA``) with the same options qdask is given (see `dialect_referee`)."""

from __future__ import annotations

import pytest
from dialect_referee import Referee


@pytest.fixture(scope="session")
def referee(mariadb, tmp_path_factory) -> Referee:
    """MariaDB as the referee of text dialects, in database ``dialect_referee``."""
    return Referee(mariadb, "dialect_referee", tmp_path_factory.mktemp("referee"))

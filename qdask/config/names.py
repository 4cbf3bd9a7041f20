"""Names the config accepts: SQL identifiers Qserv accepts, Kubernetes names, environment variables, charsets.

Qserv (and qdask) build SQL and file names from database, table and column names, so only plain
identifiers are allowed; Qserv's own tables derived from them must also fit MySQL's 64 characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

__all__ = [
    "MAX_DB_NAME",
    "MAX_DB_PLUS_TABLE",
    "MAX_IDENTIFIER",
    "MAX_PARTITIONED_TABLE",
    "RESERVED_COLUMNS",
    "ColumnName",
    "EnvName",
    "Identifier",
    "K8sName",
    "QueryableName",
    "K8sSubdomain",
    "check_charset",
    "check_identifier",
    "check_queryable",
    "check_length",
    "k8s_subdomain",
]

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_IDENTIFIER = 64  # MySQL/MariaDB identifier limit
MAX_DB_PLUS_TABLE = 56  # qservMeta.<db>__<table>__rows must fit in 64 characters
MAX_DB_NAME = 52  # qservCssData.<db>_EmptyChunks must fit in 64 characters
MAX_PARTITIONED_TABLE = 42  # <table>FullOverlap_1234567890 must fit in 64 characters
RESERVED_COLUMNS = ("qserv_trans_id",)


def check_identifier(value: str, what: str = "name") -> str:
    """Accept `value` only if Qserv accepts it as a name and it cannot inject SQL.

    Only plain identifiers: ASCII letters, digits and underscores, not starting with a digit, at most
    64 characters.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a {what} (a string), got {type(value).__name__}")
    if not _IDENT_RE.match(value) or len(value) > MAX_IDENTIFIER:
        raise ValueError(
            f"{value!r} is not a valid {what}: use only ASCII letters, digits and '_', not starting with a "
            f"digit, at most {MAX_IDENTIFIER} characters"
        )
    return value


def check_queryable(value: str, what: str = "name") -> str:
    """Refuse a name Qserv takes at ingest but its query parser refuses: an identifier starting with an
    underscore (``src/ccontrol/ParseAdapters.h``, ``UidAdapter``: "Identifiers in Qserv may not start
    with an underscore."), so nothing could ever select it."""
    check_identifier(value, what)
    if value.startswith("_"):
        raise ValueError(
            f"{value!r} is not a valid {what} for Qserv: its query parser refuses identifiers that start "
            "with an _ (underscore)"
        )
    return value


def check_length(value: str, limit: int, what: str, because: str) -> str:
    """`value` if it has at most `limit` characters; else an error saying `because` (why the limit)."""
    if len(value) > limit:
        raise ValueError(f"{what} {value!r} is {len(value)} characters; at most {limit}, because {because}")
    return value


def _identifier(value: str) -> str:
    return check_identifier(value, "name")


def _queryable(value: str) -> str:
    return check_queryable(value, "name")


def _column(value: str) -> str:
    check_identifier(value, "column name")
    if value.lower() in RESERVED_COLUMNS:
        raise ValueError(f"{value!r} is reserved by Qserv and cannot be a column name")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
QueryableName = Annotated[str, AfterValidator(_queryable)]  # a database or table name as Qserv shows it
ColumnName = Annotated[str, AfterValidator(_column)]


def _matching(pattern: str, what: str, max_length: int | None = None) -> Callable[[str], str]:
    """A validator accepting strings that match `pattern` (and have at most `max_length` characters)."""
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value) or (max_length is not None and len(value) > max_length):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return check


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_k8s_name = _matching(
    _LABEL,
    "Kubernetes name (RFC 1123 label): lower-case letters, digits and '-', starting and ending with a "
    "letter or digit, at most 63 characters",
    63,
)
k8s_subdomain = _matching(
    rf"{_LABEL}(\.{_LABEL})*",
    "Kubernetes name (RFC 1123 subdomain): lower-case letters, digits, '-' and '.', at most 253 characters",
    253,
)
_env_name = _matching(r"[A-Za-z_][A-Za-z0-9_]*", "environment variable name (letters, digits, '_')")

K8sName = Annotated[str, AfterValidator(_k8s_name)]
K8sSubdomain = Annotated[str, AfterValidator(k8s_subdomain)]
EnvName = Annotated[str, AfterValidator(_env_name)]

_CHARSET_RE = re.compile(r"[a-z0-9]+\Z")
_COLLATION_RE = re.compile(r"[a-z0-9]+_[a-z0-9_]+\Z")


def check_charset(charset: str | None, collation: str | None) -> None:
    """A MySQL character set and collation names, and the collation belonging to the character set."""
    if charset is not None and not _CHARSET_RE.match(charset):
        raise ValueError(f"charset_name {charset!r} is not a MySQL character set name (e.g. latin1, utf8mb4)")
    if collation is not None:
        if not _COLLATION_RE.match(collation):
            raise ValueError(f"collation_name {collation!r} is not a MySQL collation name")
        if charset is not None and not collation.startswith(charset + "_"):
            raise ValueError(
                f"collation_name {collation!r} does not belong to character set {charset!r} "
                f"(a collation of {charset} starts with '{charset}_')"
            )

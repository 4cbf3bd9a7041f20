"""MySQL-protocol DSNs, ``mysql://user[:password]@host[:port][/database]``, parsed in one place.

Parsing is SQLAlchemy's URL parser (`sqlalchemy.engine.make_url`): it takes the password up to the last
``@`` before the host, so a password may hold ``/``, ``:`` or ``#`` as typed; ``@`` and ``%`` in a
password are written ``%40`` and ``%25``. `DSN.url()` renders the DSN back with the user and password
percent-encoded, so any other URL parser reads the same values; the password shows as ``***`` unless
``reveal=True``. Error messages never quote the password.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["DSN", "DSNError", "SCHEMES", "parse_dsn"]

#: URL schemes accepted for a MySQL-protocol server (Qserv's czar speaks MySQL).
SCHEMES = ("mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql")

_SHAPE = "mysql://user[:password]@host[:port][/database]"


class DSNError(ValueError):
    """A DSN that is not ``mysql://user[:password]@host[:port][/database]``; never quotes the password."""


@dataclass(frozen=True)
class DSN:
    """A parsed DSN; the password is a `SecretStr`, so it shows neither in `repr` nor in `str`."""

    host: str
    port: int | None = None
    user: str | None = None
    password: SecretStr | None = None
    database: str | None = None

    def url(self, *, reveal: bool = False, scheme: str = "mysql") -> str:
        """The DSN as a URL, user and password percent-encoded; the password is ``***`` unless `reveal`."""
        url = URL.create(
            scheme,
            username=self.user,
            password=self.password.get_secret_value() if self.password is not None else None,
            host=self.host,
            port=self.port,
            database=self.database,
        )
        return url.render_as_string(hide_password=not reveal)

    def __str__(self) -> str:
        return self.url()


def parse_dsn(text: str) -> DSN:
    """Parse ``mysql://user[:password]@host[:port][/database]`` (schemes: `SCHEMES`).

    Raises `DSNError` for another scheme, a missing host, a port that is not a number in 1..65535, a query
    string, or an ``@`` left unencoded in the password.
    """
    if not isinstance(text, str):
        raise DSNError(f"expected a DSN string {_SHAPE}, got {type(text).__name__}")
    try:
        url = make_url(text)
    except ArgumentError:
        raise DSNError(f"expected {_SHAPE}") from None
    except ValueError:  # int() of the port
        raise DSNError("the port of the DSN is not a number in 1..65535") from None
    if url.drivername not in SCHEMES:
        raise DSNError(f"expected {_SHAPE}, got scheme {url.drivername!r}")
    if not url.host:
        raise DSNError(f"expected {_SHAPE}: the host is missing")
    if "@" in url.host:
        raise DSNError("the DSN has more than one '@': write an '@' in the password as %40")
    if url.port is not None and not 0 < url.port < 65536:
        raise DSNError("the port of the DSN is not a number in 1..65535")
    if url.query:
        raise DSNError("the DSN takes no query string (…?key=value)")
    return DSN(
        host=url.host,
        port=url.port,
        user=url.username or None,
        password=SecretStr(url.password) if url.password is not None else None,
        database=url.database or None,
    )

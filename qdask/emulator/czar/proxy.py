"""Qserv's proxy (``src/proxy/mysqlProxy.lua``, port 4040): it squeezes a query's white space, answers some
statements from the czar's own MariaDB ("local"), refuses writes and hands the rest to the czar."""

from __future__ import annotations

from enum import Enum

from qdask.emulator.czar.errors import ERR_NOT_SUPPORTED, QservError

# ---------------------------------------------------------------------------------------------- the proxy


def proxy_text(sql: str) -> str:
    """The statement as the proxy passes it on: the first ``/*…*/`` comment cut out the way
    ``removeLeadingComment`` does it (keeping the comment's leading ``/`` when it is not at the start),
    then ``removeExtraWhiteSpaces`` (mysqlProxy.lua:92-129) — on string literals too, as Qserv does."""
    start, end = sql.find("/*"), sql.find("*/")
    if start >= 0 and end >= 0:
        sql = (sql[: start + 1] if start > 0 else "") + sql[end + 2 :]
    out: list[str] = []
    for ch in sql:  # '[\n\t]+' → ' '
        if ch in "\n\t":
            if not out or out[-1] != "\0":
                out.append("\0")
        else:
            out.append(ch)
    text = "".join(out).replace("\0", " ").lstrip(" \r\v\f")  # '^%s*' → ''
    for sep in ("=", ","):
        text = _strip_around(text, sep)
    text = _strip_before(text, "(")
    text = _strip_after(text, "(")
    text = _strip_before(text, ")")
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def _strip_before(text: str, sep: str) -> str:
    parts = text.split(sep)
    return sep.join([p.rstrip(" ") for p in parts[:-1]] + [parts[-1]])


def _strip_after(text: str, sep: str) -> str:
    parts = text.split(sep)
    return sep.join([parts[0]] + [p.lstrip(" ") for p in parts[1:]])


def _strip_around(text: str, sep: str) -> str:
    return _strip_after(_strip_before(text, sep), sep)


class Route(Enum):
    """Where the proxy sends a statement (mysqlProxy.lua:418-457)."""

    LOCAL = "local"  # run by the czar's own MariaDB as is (isLocal, :148-161)
    DISALLOWED = "disallowed"  # writes (isDisallowed, :180-192)
    NOT_SUPPORTED = "not supported"  # EXPLAIN, GRANT, FLUSH (isNotSupported, :206-215)
    KILL = "kill"  # KILL, CANCEL (isKill, :194-200)
    QSERV = "qserv"  # everything else goes to the czar (sendToQserv, :259)


def route(text: str) -> Route:
    """The proxy's decision for ``text`` (already :func:`proxy_text`), made on the upper-cased text plus a
    trailing space, as the Lua patterns do."""
    u = text.upper() + " "
    if (
        (u.startswith("SHOW ") and "PROCESSLIST" not in u[5:])
        or (u.startswith("SET ") and "QSERV" not in u[4:])
        or u.startswith(("DESCRIBE ", "DESC ", "ROLLBACK", "COMMIT"))
        or (u.startswith("SELECT ") and " FROM " not in u[6:])
    ):
        return Route.LOCAL
    if u.startswith(("INSERT ", "UPDATE ", "LOAD ", "CREATE ", "ALTER ", "TRUNCATE ")):
        return Route.DISALLOWED
    if u.startswith(("EXPLAIN ", "GRANT ")) or (u.startswith("FLUSH ") and not u.startswith("FLUSH QSERV")):
        return Route.NOT_SUPPORTED
    if u.startswith(("KILL ", "CANCEL ")):
        return Route.KILL
    return Route.QSERV


def proxy_refusal(kind: Route) -> QservError:
    """The proxy's own refusals (mysqlProxy.lua:187-188, 210-211)."""
    if kind is Route.DISALLOWED:
        return QservError(ERR_NOT_SUPPORTED, "Sorry, this type of queries is not supported.", "writes")
    return QservError(ERR_NOT_SUPPORTED, "Sorry, this type of queries is not supported in DC3b.", "explain")


class Kind(Enum):
    """How the czar's UserQueryFactory classifies a statement (UserQueryFactory.cc:261-420)."""

    SELECT = "select"
    SET = "set"
    CALL = "call"
    PROCESSLIST = "processlist"
    SELECT_RESULT = "select result"
    SUBMIT = "submit"
    INVALID = "invalid"


def czar_kind(text: str) -> Kind:
    """UserQueryType's checks (UserQueryType.cc:46-80 regexes, matched case-insensitively on the whole
    statement): SUBMIT, SELECT … FROM QSERV_RESULT(n), SELECT, SHOW [FULL] PROCESSLIST, CALL, SET."""
    words = text.split()
    first = words[0].upper() if words else ""
    if first == "SUBMIT" and len(words) > 1:
        return Kind.SUBMIT
    if first == "SELECT" and len(words) > 1:
        squeezed = "".join(words).upper()
        if squeezed.startswith("SELECT*FROMQSERV_RESULT("):
            return Kind.SELECT_RESULT
        return Kind.SELECT
    if first == "SHOW" and [w.upper() for w in words[1:]] in (["PROCESSLIST"], ["FULL", "PROCESSLIST"]):
        return Kind.PROCESSLIST
    if first == "CALL" and len(words) > 1:
        return Kind.CALL
    if first == "SET" and len(words) > 1:
        return Kind.SET
    return Kind.INVALID

"""Errors as Qserv's proxy sends them to a MySQL client, and the Qserv source files the rules cite."""

from __future__ import annotations

PROXY = "src/proxy/mysqlProxy.lua"
ADAPTERS = "src/ccontrol/ParseAdapters.h"
LISTENER = "src/ccontrol/ParseListener.cc"
RUNNER = "src/ccontrol/ParseRunner.cc"
FACTORY = "src/ccontrol/UserQueryFactory.cc"

# Error codes as the client sees them: the proxy sends the negated ERR_* constants (mysqlProxy.lua:14-22,51)
ERR_NOT_SUPPORTED = 4003
ERR_CZAR_EXCEPTION = 4005
ERR_QSERV_PARSE = 4110
ERR_QSERV_RUNTIME = 4120
SQLSTATE = "Proxy"  # mysqlProxy.lua:55


class QservError(Exception):
    """An error as Qserv's proxy sends it: MySQL error ``code``, SQLSTATE ``Proxy`` and ``message``."""

    def __init__(self, code: int, message: str, rule: str | None = None):
        super().__init__(f"({code}) {message}")
        self.code = code
        self.message = message
        self.rule = rule


def czar_refused(error: str, rule: str | None = None) -> QservError:
    """The czar could not instantiate the query: Czar.cc:239 prefixes the UserQuery's error, the proxy
    (mysqlProxy.lua:287) prefixes that and sends ERR_QSERV_PARSE. Invalid queries have no id (``QI=?:``,
    global/intTypes.h:48)."""
    return QservError(
        ERR_QSERV_PARSE, f"Query processing error: QI=?: Failed to instantiate query: {error}", rule
    )


def runtime_failed(message: str) -> QservError:
    """The query failed on the workers: the proxy reads the error from the message table and sends
    ERR_QSERV_RUNTIME (mysqlProxy.lua:506-529)."""
    return QservError(ERR_QSERV_RUNTIME, f"Unable to return query results:\n{message}")


def invalid_query(text: str) -> QservError:
    """UserQueryFactory.cc:418: anything the czar does not recognise."""
    return czar_refused(f"Invalid or unsupported query: {text}", "invalid")


class AnalysisRefusal(Exception):
    """The czar's analysis refuses the query; ``text`` is the czar's error (after ``Failed to instantiate
    query: ``)."""

    def __init__(self, text: str, rule: str):
        super().__init__(text)
        self.text = text
        self.rule = rule

    def as_error(self) -> QservError:
        return czar_refused(self.text, self.rule)

"""Qserv's REST conventions: the response envelope, the JSON-body rule, authorization and API versions.

Every emulated endpoint is wrapped by :func:`endpoint`, which reproduces what Qserv's ``http::Module``
does before and after a service runs: parse the body only for ``Content-Type: application/json``
exactly, check ``auth_key``/``admin_auth_key`` for services that need them, check the API version
against the endpoint's window, and answer with HTTP 200 and ``success``/``error``/``error_ext``/
``warning`` whatever happens.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_VERSION = 55
log = logging.getLogger("qdask.emulator")

NO_VERSION_WARNING = "No version number was provided in the request."


class ApiError(Exception):
    """A deliberate API error: its message goes to ``error`` verbatim, ``ext`` to ``error_ext``."""

    def __init__(self, message: str, ext: dict | None = None):
        super().__init__(message)
        self.message = message
        self.ext = ext or {}


class InvalidParam(ApiError):
    """Bad request parameters; Qserv prefixes these with ``invalid parameters of the request, ex: ``."""

    def __init__(self, message: str, ext: dict | None = None):
        super().__init__("invalid parameters of the request, ex: " + message, ext)


class OperationFailed(ApiError):
    """A failure inside an operation; Qserv prefixes these with ``operation failed due to: ``."""

    def __init__(self, message: str, ext: dict | None = None):
        super().__init__("operation failed due to: " + message, ext)


class AuthFailed(ApiError):
    def __init__(self, message: str):
        super().__init__("failed to pass authorization requirements, ex: " + message)


@dataclass
class Keys:
    """The two authorization keys of a service (Qserv: ``auth_key``, ``admin_auth_key``)."""

    auth_key: str = ""
    admin_auth_key: str = ""


@dataclass
class Call:
    """One request as a service sees it: path/query/body parameters, warnings, admin flag."""

    request: web.Request
    body: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    is_admin: bool = False
    form: bool = False  # multipart form fields: numbers may come as numeric strings

    @property
    def query(self):
        return self.request.query

    def match(self, name: str) -> str:
        return self.request.match_info[name]

    # ---- body parameters, typed strictly as Qserv's nlohmann::json reads them
    def has(self, name: str) -> bool:
        return name in self.body

    def required(self, name: str, kind: type | tuple = str) -> Any:
        if name not in self.body:
            raise InvalidParam(f"No required parameter '{name}' found in the request's body.")
        return _typed(name, self.body[name], kind)

    def optional(self, name: str, default: Any, kind: type | tuple = str) -> Any:
        if name not in self.body:
            return default
        return _typed(name, self.body[name], kind)

    def _number(self, name: str) -> Any:
        return self.required(name, (int, str) if self.form else (int,))

    def required_uint(self, name: str) -> int:
        return _uint(name, self._number(name))

    def optional_uint(self, name: str, default: int) -> int:
        return _uint(name, self._number(name)) if name in self.body else default

    def required_int(self, name: str) -> int:
        return _int(name, self._number(name))

    # ---- query parameters
    def q_uint(self, name: str, default: int) -> int:
        if name not in self.query:
            return default
        return _uint(name, self.query[name])

    def q_str(self, name: str, default: str = "") -> str:
        return self.query.get(name, default)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)


def _typed(name: str, value: Any, kind: type | tuple) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if bool in kinds or not isinstance(value, bool):
        if isinstance(value, kinds):
            return value
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {str: "string", list: "array", dict: "object"}.get(kinds[0], "number")
    actual = {
        str: "string",
        int: "number",
        float: "number",
        bool: "boolean",
        list: "array",
        dict: "object",
    }.get(type(value), "null")
    raise OperationFailed(f"[json.exception.type_error.302] type must be {expected}, but is {actual}")


def _uint(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidParam(f"the value of the parameter '{name}' is not an unsigned integer.")
    if isinstance(value, int):
        if value < 0:
            raise InvalidParam(f"the value of the parameter '{name}' is not an unsigned integer.")
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise InvalidParam(f"the value of the parameter '{name}' is not an unsigned integer.")


def _int(name: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidParam(f"the value of the parameter '{name}' is not an integer.") from None


def envelope(
    payload: dict | None = None,
    *,
    error: str = "",
    error_ext: dict | None = None,
    warnings: list[str] | None = None,
) -> web.Response:
    """The Qserv answer: HTTP 200 always, payload keys beside success/error/error_ext/warning."""
    body = dict(payload or {})
    body["success"] = 0 if error else 1
    body["error"] = error
    body["error_ext"] = error_ext or {}
    body["warning"] = "; ".join(warnings or [])
    return web.Response(text=json.dumps(body), content_type="application/json")


async def parse_json_body(request: web.Request) -> dict:
    """The body as a JSON object, read only when Content-Type is exactly ``application/json``."""
    if request.headers.get("Content-Type", "") != "application/json":
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = []
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidParam("invalid format of the request body. A simple JSON object was expected")
    return body


def check_auth(call: Call, keys: Keys) -> None:
    """Qserv's rule: ``admin_auth_key`` first (grants admin), else ``auth_key``, else refuse."""
    body = call.body
    if "admin_auth_key" in body:
        if body["admin_auth_key"] != keys.admin_auth_key:
            raise AuthFailed(
                "administrator's authorization key 'admin_auth_key' in the request"
                " doesn't match the one in server configuration"
            )
        call.is_admin = True
        return
    if "auth_key" in body:
        if body["auth_key"] != keys.auth_key:
            raise AuthFailed(
                "authorization key 'auth_key' in the request doesn't match the one in server configuration"
            )
        return
    raise AuthFailed(
        "none of the authorization keys 'auth_key' or 'admin_auth_key' was found"
        " in the request. Please, provide one."
    )


def check_version(call: Call, min_version: int) -> None:
    """Version from the query and/or the body (body wins); absent → warning, outside window → error."""
    ext = {"min_version": min_version, "max_version": API_VERSION}
    raw = call.body["version"] if "version" in call.body else call.query.get("version")
    if raw is None:
        call.warn(NO_VERSION_WARNING)
        return
    try:
        if isinstance(raw, bool) or isinstance(raw, float):
            raise ValueError
        version = int(raw)
        if version < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ApiError("The optional parameter version is not a number.", ext) from None
    if not (min_version <= version <= API_VERSION):
        raise ApiError(
            f"The requested version {version} of the API is not in the range supported by the service.", ext
        )


Handler = Callable[[Call], Awaitable[dict]]


def endpoint(min_version: int | None, *, auth: bool = False, json_body: bool = True):
    """Wrap a service ``async def svc(self, call) -> payload`` into an aiohttp handler with Qserv rules.

    ``min_version=None`` skips the version check (``/meta/version``). ``json_body=False`` is for
    multipart uploads, whose fields are parsed (and authorized) by the service itself.
    """

    def wrap(svc):
        @functools.wraps(svc)
        async def handler(self, request: web.Request) -> web.StreamResponse:
            call = Call(request)
            try:
                if json_body:
                    call.body = await parse_json_body(request)
                    if auth:
                        check_auth(call, self.keys)
                    if min_version is not None:
                        check_version(call, min_version)
                payload = await svc(self, call)
                if isinstance(payload, web.StreamResponse):
                    return payload
                return envelope(payload, warnings=call.warnings)
            except ApiError as ex:
                return envelope(error=ex.message, error_ext=ex.ext, warnings=call.warnings)
            except web.HTTPException:
                raise
            except Exception as ex:  # Qserv reports any other exception the same generic way
                log.exception("service %s failed", svc.__name__)
                return envelope(error=f"operation failed due to: {ex}", warnings=call.warnings)

        handler.min_version = min_version
        handler.auth = auth
        return handler

    return wrap

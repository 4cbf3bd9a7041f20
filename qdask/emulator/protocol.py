"""Qserv's REST conventions: the envelope, the JSON-body rule, parameters, authorization and versions.

Every emulated service is wrapped by :func:`endpoint`, which reproduces what Qserv's ``http::Module`` does
before and after a service runs (``src/http/Module.cc:38-71``): parse the body only for
``Content-Type: application/json`` exactly, check ``auth_key``/``admin_auth_key`` where the service needs
them, check the API version against the service's window, and answer with HTTP 200 and
``success``/``error``/``error_ext``/``warning`` whatever happens. Errors are raised as the exception family
Qserv throws, which decides the prefix of the answer's ``error`` (``Module.cc:44-52``); the bare text
(``what``) is what a contribution records. Parameters are read with Qserv's own rules: nlohmann's typed
``get<T>`` for ``required<T>``/``optional<T>``, ``RequestBodyJSON::requiredUInt`` for fields that may come
as numeric strings, ``RequestQuery`` for the query string.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from aiohttp import web

from qdask.emulator.contract import API_VERSION

log = logging.getLogger("qdask.emulator")

NO_VERSION_WARNING = "No version number was provided in the request."


class ApiError(Exception):
    """A Qserv ``http::Error``: ``what`` goes to ``error`` verbatim, ``ext`` to ``error_ext``."""

    PREFIX: ClassVar[str] = ""

    def __init__(self, what: str, ext: dict | None = None):
        super().__init__(what)
        self.what = what
        self.ext = ext or {}

    @property
    def message(self) -> str:
        return self.PREFIX + self.what


class InvalidParam(ApiError):
    """A ``std::invalid_argument``: the answer says ``invalid parameters of the request, ex: <what>``."""

    PREFIX = "invalid parameters of the request, ex: "


class OperationFailed(ApiError):
    """Any other ``std::exception``: the answer says ``operation failed due to: <what>``."""

    PREFIX = "operation failed due to: "


class AuthFailed(ApiError):
    """An ``http::AuthError``: ``failed to pass authorization requirements, ex: <what>``."""

    PREFIX = "failed to pass authorization requirements, ex: "


@dataclass
class Keys:
    """The two authorization keys of a service (Qserv: ``auth_key``, ``admin_auth_key``)."""

    auth_key: str = ""
    admin_auth_key: str = ""


# ---------------------------------------------------------------------------------------- conversions
_JSON_TYPE_NAMES = {
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    list: "array",
    dict: "object",
}
_INTEGER = re.compile(r"\s*([+-]?)(\d+)")
T = TypeVar("T")


def _type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), "null")


def json_type_error(expected: str, value: Any) -> OperationFailed:
    """nlohmann's ``get<T>`` on a value of the wrong type."""
    return OperationFailed(
        f"[json.exception.type_error.302] type must be {expected}, but is {_type_name(value)}"
    )


def json_number(value: Any, unsigned: bool = False) -> int:
    """nlohmann ``get<int>``/``get<unsigned int>``: any number, floats truncated, negatives wrapped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise json_type_error("number", value)
    number = int(value)
    return number % (1 << 32) if unsigned else number


def std_stoull(text: str, func: str = "stoull") -> int:
    """``std::stoull``/``std::stoul``: leading blanks, a sign, digits, anything after ignored."""
    match = _INTEGER.match(text)
    if match is None:
        raise InvalidParam(func)
    number = int(match.group(2))
    if number >= 1 << 64:
        raise OperationFailed(func)  # std::out_of_range
    return (-number) % (1 << 64) if match.group(1) == "-" else number


def _stoll(text: str) -> int:
    """``std::stoll``."""
    match = _INTEGER.match(text)
    if match is None:
        raise InvalidParam("stoll")
    number = int(match.group(1) + match.group(2))
    if not -(1 << 63) <= number < 1 << 63:
        raise OperationFailed("stoll")
    return number


# ---------------------------------------------------------------------------------------- a request
@dataclass
class Call:
    """One request as a service sees it: body (``RequestBodyJSON``), query, path, warnings, admin flag."""

    request: web.Request
    body: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    is_admin: bool = False

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query

    def match(self, name: str) -> str:
        return self.request.match_info[name]

    def has(self, name: str) -> bool:
        return name in self.body

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)

    # ---- nlohmann typed reads: body().required<T>(name) / body().optional<T>(name, default)
    def _raw(self, name: str, default: Any) -> Any:
        if name in self.body:
            return self.body[name]
        if default is not _MISSING:
            return default
        raise InvalidParam(
            f"RequestBodyJSON::required<T>[static] required parameter {name} is missing in the request body"
        )

    def json_str(self, name: str, default: Any = None) -> str:
        value = self._raw(name, _MISSING if default is None else default)
        if not isinstance(value, str):
            raise json_type_error("string", value)
        return value

    def json_int(self, name: str, default: int | None = None) -> int:
        return json_number(self._raw(name, _MISSING if default is None else default))

    def json_uint(self, name: str, default: int | None = None) -> int:
        return json_number(self._raw(name, _MISSING if default is None else default), unsigned=True)

    def json_float(self, name: str, default: float | None = None) -> float:
        value = self._raw(name, _MISSING if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise json_type_error("number", value)
        return float(value)

    def json_any(self, name: str, default: Any = None) -> Any:
        """``get<json>``: any value (``None`` stands for JSON null)."""
        return self._raw(name, _MISSING if default is None else default)

    def json_uints(self, name: str) -> list[int]:
        """``requiredColl<unsigned int>`` (``RequestBodyJSON.h``)."""
        return [json_number(v, unsigned=True) for v in self._coll(name)]

    def json_strs(self, name: str, default: list[str]) -> list[str]:
        """``optionalColl<string>``."""
        if name not in self.body:
            return default
        out = []
        for value in self._coll(name):
            if not isinstance(value, str):
                raise json_type_error("string", value)
            out.append(value)
        return out

    def _coll(self, name: str) -> list:
        if name not in self.body:
            raise InvalidParam(
                f"RequestBodyJSON::requiredColl<T> required parameter {name} is missing in the request body"
            )
        value = self.body[name]
        if not isinstance(value, list):
            raise InvalidParam(
                f"RequestBodyJSON::requiredColl<T> a value of the required parameter {name} is not an array"
            )
        return value

    # ---- RequestBodyJSON::requiredUInt / requiredInt: numbers or numeric strings (form fields)
    def param_uint(self, name: str, default: int | None = None) -> int:
        if name not in self.body:
            if default is not None:
                return default
            raise InvalidParam(
                f"RequestBodyJSON::requiredUInt required parameter {name} is missing in the request body"
            )
        return _body_uint(name, self.body[name])

    def param_int(self, name: str) -> int:
        context = "RequestBodyJSON::requiredInt"
        if name not in self.body:
            raise InvalidParam(f"{context} required parameter {name} is missing in the request body")
        value = self.body[name]
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER.match(value):
            return _stoll(value)
        raise InvalidParam(f"{context} a value of the required parameter {name} is not a signed integer")

    # ---- RequestQuery (src/http/RequestQuery.cc)
    def q_str(self, name: str, default: str = "") -> str:
        return self.query.get(name, default)

    def q_required(self, name: str) -> str:
        """``requiredString``: present and not empty."""
        value = self.query.get(name, "")
        if not value:
            raise InvalidParam(f"RequestQuery::requiredString mandatory parameter '{name}' is missing")
        return value

    def q_uint(self, name: str, default: int) -> int:
        """``optionalUInt64``: ``std::stoull`` of the value."""
        return std_stoull(self.query[name]) if name in self.query else default

    def q_int(self, name: str, default: int) -> int:
        """``optionalInt``: ``std::stoll`` of the value."""
        return _stoll(self.query[name]) if name in self.query else default

    def q_bool(self, name: str) -> bool:
        """``requiredBool``: ``true``/``false`` in any case, else a number (``RequestQuery.cc:50-60``)."""
        if name not in self.query:
            raise InvalidParam(f"RequestQuery::requiredBool mandatory parameter '{name}' is missing")
        text = self.query[name]
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return std_stoull(text) != 0

    def path_id(self, name: str = "id") -> int:
        """``stoul(params().at("id"))``."""
        return std_stoull(self.match(name), "stoul")


_MISSING: Any = object()


def _body_uint(name: str, value: Any) -> int:
    """``RequestBodyJSON::requiredUInt`` (``src/http/RequestBodyJSON.cc``)."""
    context = "RequestBodyJSON::requiredUInt "
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 0:
            return value
        raise InvalidParam(f"{context}a value of the required parameter {name} is a negative integer")
    if isinstance(value, str):
        try:
            number = std_stoull(value, "stoul")
            if number < 1 << 32:
                return number
        except ApiError:
            pass
    raise InvalidParam(f"{context}a value of the required parameter {name} is not an unsigned integer")


def _query_uint(text: str) -> int:
    """``RequestQuery::requiredUInt``: ``std::stoll`` then a range check for ``unsigned int``."""
    number = _stoll(text)
    if not 0 <= number < 1 << 32:
        raise OperationFailed("value out of range")
    return number


# ---------------------------------------------------------------------------------------- the envelope
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


def check_auth(call: Call, keys: Keys, context: str) -> None:
    """``BaseModule::_enforceKeyAuthorization`` (``src/http/BaseModule.cc:147-170``): ``admin_auth_key``
    first (grants admin), else ``auth_key``, else refuse; the message starts with the module's context."""
    body = call.body
    if "admin_auth_key" in body:
        if body["admin_auth_key"] != keys.admin_auth_key:
            raise AuthFailed(
                f"{context}administrator's authorization key 'admin_auth_key' in the request"
                " doesn't match the one in server configuration"
            )
        call.is_admin = True
        return
    if "auth_key" in body:
        if body["auth_key"] != keys.auth_key:
            raise AuthFailed(
                f"{context}authorization key 'auth_key' in the request doesn't match"
                " the one in server configuration"
            )
        return
    raise AuthFailed(
        f"{context}none of the authorization keys 'auth_key' or 'admin_auth_key' was found"
        " in the request. Please, provide one."
    )


def check_version(call: Call, min_version: int, warning: str = "") -> None:
    """``BaseModule::checkApiVersion`` (``src/http/BaseModule.cc:57-90``): the query's version is parsed
    whenever present (``:74``), then the body's (``:75``) wins; 0 or absent → a warning."""
    ext = {"min_version": min_version, "max_version": API_VERSION}
    version = 0
    try:
        if "version" in call.query:
            version = _query_uint(call.query["version"])
        if "version" in call.body:
            version = _body_uint("version", call.body["version"])
    except ApiError:
        raise ApiError("The optional parameter version is not a number.", ext) from None
    if version == 0:
        call.warn(NO_VERSION_WARNING)
        return
    if not min_version <= version <= API_VERSION:
        if warning:
            call.warn(warning)
        raise ApiError(
            f"The requested version {version} of the API is not in the range supported by the service.", ext
        )


class Routed(Protocol):
    """A service module: the routes it serves."""

    def routes(self) -> list[web.RouteDef]: ...


class Service(Protocol):
    """What :func:`endpoint` needs from the object a service method belongs to."""

    CONTEXT: ClassVar[str]  # the module's context(), which starts Qserv's authorization errors

    @property
    def keys(self) -> Keys: ...


S = TypeVar("S", bound=Service)
ServiceMethod = Callable[[S, Call], Awaitable[Any]]
Handler = Callable[[S, web.Request], Awaitable[web.StreamResponse]]


def endpoint(
    min_version: int | None, *, auth: bool = False, json_body: bool = True
) -> Callable[[ServiceMethod[S]], Handler[S]]:
    """Wrap ``async def svc(self, call) -> payload`` into an aiohttp handler with Qserv's rules.

    ``min_version=None`` leaves the version check to the service (``/meta/version`` has none; some services
    check it themselves, as Qserv's do). ``json_body=False`` is for multipart uploads, whose fields are
    parsed (and authorized) by the service itself.
    """

    def wrap(svc: ServiceMethod[S]) -> Handler[S]:
        @functools.wraps(svc)
        async def handler(self: S, request: web.Request) -> web.StreamResponse:
            call = Call(request)
            try:
                if json_body:
                    call.body = await parse_json_body(request)
                    if auth:
                        check_auth(call, self.keys, self.CONTEXT)
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

        return handler

    return wrap

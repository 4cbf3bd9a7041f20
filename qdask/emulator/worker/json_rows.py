"""Contributions sent as JSON rows: Qserv's ``IngestDataHttpSvcMod`` (``POST /ingest/data``).

Rows become a CSV stream with every field in double quotes (``IngestDataHttpSvcMod.cc:114-116``): numbers
as C++ ``to_string`` writes them (floats with 6 decimals), booleans as 1/0, strings and decoded binary
values verbatim — Qserv escapes nothing here. Errors are answered bare (``http::Error``), and a
contribution recorded failed may be retried until loading begins (``:118-120``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from aiohttp import web

from qdask.emulator.contract import (
    INGEST_CHARSET,
    LOADER_MAX_WARNINGS,
    PARTITION_COLUMN,
    BinaryEncoding,
    ContribStatus,
    TransactionState,
)
from qdask.emulator.dialect import Dialect
from qdask.emulator.protocol import ApiError, Call, InvalidParam, endpoint
from qdask.emulator.worker.file_svc import WorkerModule

ROWS_PER_BLOCK = 1000
#: ``numBytesInTransactionId`` (``:215``): the id field's share of each row, as Qserv counts it.
ID_FIELD_BYTES = 4 + 2 + 1


class RowError(Exception):
    """A row or value the service refuses; recorded as START_FAILED."""


def is_binary(column_type: str) -> bool:
    """``isBinaryColumnType`` (``IngestDataHttpSvcMod.cc:49-63``)."""
    upper = column_type.upper()
    return any(p in upper for p in ("BIT", "BINARY", "BLOB"))


def _primitive(value: Any, row: int, col: int) -> bytes:
    """``_translatePrimitiveType``."""
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, float):
        return f"{value:f}".encode()
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RowError(
        f"unsupported type name '{_type_name(value)}' found at row {row} and column {col}"
        " where the boolean, numeric or string type was expected"
    )


def _binary(value: Any, row: int, col: int, encoding: BinaryEncoding) -> bytes:
    """``_translateHexString``/``_translateBase64String``/``_translateByteArray``."""
    expected_array = encoding is BinaryEncoding.ARRAY
    if expected_array != isinstance(value, list) or (not expected_array and not isinstance(value, str)):
        raise RowError(
            f"unsupported type name '{_type_name(value)}' found at row {row} and column {col}"
            " where the string type was expected"
        )
    try:
        if encoding is BinaryEncoding.HEX:
            return bytes.fromhex(value)
        if encoding is BinaryEncoding.B64:
            return base64.b64decode(value, validate=True)
        return bytes(value)
    except (ValueError, TypeError, binascii.Error) as ex:
        raise RowError(
            f"failed to decode a value of the '{encoding}' binary encoded column at row {row} and column"
            f" {col}, ex: {ex}"
        ) from None


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(value), "null")


class JsonRows(WorkerModule):
    CONTEXT: ClassVar[str] = "INGEST-DATA-HTTP-SVC "

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/ingest/data", self.ingest_data)]

    @endpoint(35, auth=True)
    async def ingest_data(self, call: Call) -> dict | web.Response:
        """``_syncProcessData`` (``IngestDataHttpSvcMod.cc:91-313``)."""
        svc = self.svc
        trans_id = call.json_uint("transaction_id")
        table_name = call.json_str("table")
        chunk = call.json_uint("chunk")
        overlap = call.json_int("overlap") != 0
        url = f"data-json://{call.request.remote or '127.0.0.1'}/"
        charset = call.json_str("charset_name", INGEST_CHARSET)
        dialect = Dialect(fields_enclosed_by='"')
        max_warnings = call.json_uint("max_num_warnings", LOADER_MAX_WARNINGS)
        text = call.json_str("binary_encoding", BinaryEncoding.HEX)
        try:
            encoding = BinaryEncoding(text)
        except ValueError:
            raise InvalidParam(f"http::parseBinaryEncoding unsupported mode '{text}'") from None
        if not call.has("rows"):
            raise ApiError("a collection of rows is missing in the request")
        rows = call.body["rows"]
        if not isinstance(rows, list):
            raise ApiError("a collection of rows found in the request is not the JSON array")
        if not rows:
            raise ApiError("a collection of rows in the request is empty")
        trans, table = svc.context(trans_id, table_name)
        fields = dialect.input_json()  # retry allowed until loading begins (:118-120)
        c = svc.new(trans, table, chunk, overlap, url, charset, fields, max_warnings, retry_allowed=True)
        if not table.columns or table.columns[0].name != PARTITION_COLUMN:
            await svc.created(c, "incomplete or missing table schema")
            raise ApiError(c.error)
        binary = [is_binary(col.type) for col in table.columns[1:]]
        if trans.state is not TransactionState.STARTED:
            await svc.created(c, f"transactionId={trans_id} is not active")
            raise ApiError(c.error)
        await svc.created(c)
        size = [0]
        try:
            svc.open_file(c)
            await svc.read(c, self._csv(rows, binary, encoding, size), dialect, lambda: False)
        except (ApiError, RowError) as ex:
            error = ex.what if isinstance(ex, ApiError) else str(ex)
            await svc.failed(c, ContribStatus.START_FAILED, error, True)
            svc.close_file(c)
            raise ApiError(error) from None
        c.num_bytes, c.num_rows = size[0], len(rows)  # counted per JSON row, as Qserv does (:280-283)
        await svc.load_or_fail(c, dialect, "MySQL load failed, ex: ")
        return svc.answer(call, c)

    @staticmethod
    async def _csv(
        rows: list, binary: list[bool], encoding: BinaryEncoding, size: list[int]
    ) -> AsyncIterator[bytes]:
        """The rows as the worker writes them, a block of rows at a time; ``size[0]`` counts bytes as Qserv
        does."""
        lines = []
        for r, row in enumerate(rows):
            if not isinstance(row, list):
                raise RowError("a row found in the request is not the JSON array")
            if len(row) != len(binary):
                raise RowError("the row size in the request doesn't match the table schema")
            fields = [
                _binary(v, r, i, encoding) if binary[i] else _primitive(v, r, i) for i, v in enumerate(row)
            ]
            line = b"\t".join(b'"' + f + b'"' for f in fields) + b"\n"
            size[0] += ID_FIELD_BYTES + len(line)
            lines.append(line)
            if len(lines) >= ROWS_PER_BLOCK:
                yield b"".join(lines)
                lines = []
        if lines:
            yield b"".join(lines)

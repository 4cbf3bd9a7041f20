"""The binary ingest protocol's framing and messages (``src/replica/proto/protocol.proto:926-1004``,
``ProtocolBuffer``): each message is a 4-byte big-endian length then a protobuf (proto2) body.

Only what the three ingest messages need of protobuf's wire format: varints (wire type 0) and
length-delimited fields (wire type 2); other wire types are skipped when read.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from enum import IntEnum

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
MAX_FRAME = 64_000_000  # ProtocolBuffer::HARD_LIMIT


class IngestStatus(IntEnum):
    """``ProtocolIngestResponse::Status``."""

    READY_TO_READ_DATA = 0
    FINISHED = 1
    FAILED = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode(fields: list[tuple[int, int | bool | str | bytes]]) -> bytes:
    """A message body from (field number, value) pairs: integers and flags as varints, text and bytes
    length-delimited."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):  # bool too
            out += _varint(number << 3 | VARINT) + _varint(int(value))
        else:
            data = value.encode() if isinstance(value, str) else value
            out += _varint(number << 3 | LENGTH) + _varint(len(data)) + data
    return bytes(out)


def decode(body: bytes) -> dict[int, int | bytes]:
    """Field number → value (the last one of a repeated number wins, as protobuf merges scalars)."""
    fields: dict[int, int | bytes] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= len(body):
                raise ValueError("truncated varint")
            byte = body[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(body):
        key = varint()
        number, kind = key >> 3, key & 7
        if kind == VARINT:
            fields[number] = varint()
        elif kind == LENGTH:
            size = varint()
            if pos + size > len(body):
                raise ValueError("truncated field")
            fields[number] = body[pos : pos + size]
            pos += size
        elif kind in (FIXED64, FIXED32):
            pos += 8 if kind == FIXED64 else 4
        else:
            raise ValueError(f"unsupported wire type {kind}")
    return fields


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes exceeds the limit of {MAX_FRAME}")
    return await reader.readexactly(size)


def _text(fields: dict[int, int | bytes], number: int) -> str:
    value = fields.get(number, b"")
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _number(fields: dict[int, int | bytes], number: int) -> int:
    value = fields.get(number, 0)
    return value if isinstance(value, int) else 0


@dataclass
class Handshake:
    """``ProtocolIngestHandshakeRequest`` (with its ``ProtocolDialectInput``)."""

    transaction_id: int
    table: str
    chunk: int
    is_overlap: bool
    auth_key: str
    url: str
    dialect_input: dict[str, str]
    max_num_warnings: int
    charset_name: str

    @classmethod
    def parse(cls, body: bytes) -> Handshake:
        f = decode(body)
        dialect = f.get(12, b"")
        d = decode(dialect) if isinstance(dialect, bytes) else {}
        names = ("fields_terminated_by", "fields_enclosed_by", "fields_escaped_by", "lines_terminated_by")
        return cls(
            transaction_id=_number(f, 1),
            table=_text(f, 2),
            chunk=_number(f, 3),
            is_overlap=bool(_number(f, 4)),
            auth_key=_text(f, 6),
            url=_text(f, 7),
            dialect_input={name: _text(d, i + 1) for i, name in enumerate(names)},
            max_num_warnings=_number(f, 13),
            charset_name=_text(f, 14),
        )


@dataclass
class Data:
    """``ProtocolIngestData``: a block of the input and whether it is the last one."""

    data: bytes
    last: bool

    @classmethod
    def parse(cls, body: bytes) -> Data:
        f = decode(body)
        data = f.get(1, b"")
        return cls(data if isinstance(data, bytes) else b"", bool(_number(f, 2)))


@dataclass
class Response:
    """``ProtocolIngestResponse``."""

    status: IngestStatus
    id: int = 0
    error: str = ""
    retry_allowed: bool = False
    num_warnings: int = 0
    num_rows: int = 0
    num_rows_loaded: int = 0

    def encode(self) -> bytes:
        return encode(
            [
                (8, self.id),
                (1, int(self.status)),
                (3, self.error),
                (4, self.retry_allowed),
                (5, self.num_warnings),
                (6, self.num_rows),
                (7, self.num_rows_loaded),
            ]
        )

"""A client of the worker's binary ingest protocol, written for the tests from Qserv's ``protocol.proto``
(``ProtocolIngestHandshakeRequest``, ``ProtocolIngestData``, ``ProtocolIngestResponse``) and
``IngestClient.cc`` — deliberately not the stand-in's own codec (``qdask.emulator.worker.wire``), so a
mistake in one side's reading of protobuf's wire format shows as a failure.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path

READY, FINISHED, FAILED = 0, 1, 2


def _varint(n: int) -> bytes:
    out = b""
    while n > 0x7F:
        out += bytes([0x80 | (n & 0x7F)])
        n >>= 7
    return out + bytes([n])


def field_varint(number: int, value: int) -> bytes:
    return _varint((number << 3) | 0) + _varint(value)


def field_bytes(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def parse(body: bytes) -> dict[int, int | bytes]:
    """Field number → value, for varint and length-delimited fields."""
    out: dict[int, int | bytes] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            b = body[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    while pos < len(body):
        key = varint()
        if key & 7 == 0:
            out[key >> 3] = varint()
        else:
            size = varint()
            out[key >> 3] = body[pos : pos + size]
            pos += size
    return out


@dataclass
class Answer:
    """A ``ProtocolIngestResponse``."""

    status: int
    id: int
    error: str
    retry_allowed: bool
    num_warnings: int
    num_rows: int
    num_rows_loaded: int


class LoaderClient:
    """One contribution over one connection, as ``qserv-replica-file INGEST FILE`` sends it."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=60)

    def _send(self, body: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            part = self.sock.recv(n - len(data))
            if not part:
                raise ConnectionError("the server closed the connection")
            data += part
        return data

    def answer(self) -> Answer:
        (size,) = struct.unpack(">I", self._recv_exact(4))
        f = parse(self._recv_exact(size))

        def text(n: int) -> str:
            v = f.get(n, b"")
            return v.decode() if isinstance(v, bytes) else ""

        def num(n: int) -> int:
            v = f.get(n, 0)
            return v if isinstance(v, int) else 0

        return Answer(num(1), num(8), text(3), bool(num(4)), num(5), num(6), num(7))

    def handshake(
        self, auth_key: str, transaction_id: int, table: str, chunk: int, overlap: bool, url: str
    ) -> Answer:
        dialect = b"".join(field_bytes(i, v) for i, v in enumerate(("\\t", "\\0", "\\\\", "\\n"), start=1))
        self._send(
            field_varint(1, transaction_id)
            + field_bytes(2, table)
            + field_varint(3, chunk)
            + field_varint(4, int(overlap))
            + field_bytes(6, auth_key)
            + field_bytes(7, url)
            + field_bytes(12, dialect)
            + field_varint(13, 0)
            + field_bytes(14, "")
        )
        return self.answer()

    def send_file(self, path: Path, record_size: int) -> list[Answer]:
        """The file in records of ``record_size`` bytes, the last one flagged; one answer per record."""
        data = path.read_bytes()
        answers = []
        offsets = list(range(0, len(data), record_size)) or [0]
        for k, start in enumerate(offsets):
            last = k == len(offsets) - 1
            self._send(field_bytes(1, data[start : start + record_size]) + field_varint(2, int(last)))
            answers.append(self.answer())
            if answers[-1].status != READY:
                break
        return answers

    def close(self) -> None:
        self.sock.close()


def load_file(
    host: str,
    port: int,
    auth_key: str,
    transaction_id: int,
    table: str,
    chunk: int,
    overlap: bool,
    path: Path,
) -> Answer:
    """``IngestClient``: handshake then the file, 1 MB records; the final answer."""
    client = LoaderClient(host, port)
    try:
        first = client.handshake(
            auth_key, transaction_id, table, chunk, overlap, f"file://{socket.gethostname()}{path}"
        )
        if first.status != READY:
            return first
        return client.send_file(path, 1 << 20)[-1]
    finally:
        client.close()

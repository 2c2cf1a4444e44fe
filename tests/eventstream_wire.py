"""The event-stream RPC wire format a Greengrass V2 nucleus speaks with its components.

Each message is a prelude (total length, headers length, CRC32 of the two), typed
headers, the payload and a CRC32 of the whole message; RPC messages carry
``:message-type``, ``:message-flags`` and ``:stream-id`` headers (awscrt's
``awscrt.eventstream`` and ``awscrt.eventstream.rpc`` name the same values).
Written for the tests' nucleus (``v2_nucleus.py``): awscrt has the client only.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from typing import Any, Dict, List, Optional, Tuple

# Header value types (aws-c-event-stream; awscrt.eventstream.HeaderType).
BOOL_TRUE, BOOL_FALSE, BYTE, INT16, INT32, INT64, BYTE_BUF, STRING, TIMESTAMP, UUID = range(10)
# RPC message types and flags (awscrt.eventstream.rpc.MessageType, MessageFlag).
APPLICATION_MESSAGE, APPLICATION_ERROR, PING, PING_RESPONSE, CONNECT, CONNECT_ACK = range(6)
PROTOCOL_ERROR = 6
CONNECTION_ACCEPTED = 0x1
TERMINATE_STREAM = 0x2
_FIXED = {BYTE: ">b", INT16: ">h", INT32: ">i", INT64: ">q", TIMESTAMP: ">q"}

Header = Tuple[str, int, Any]


def encode_frame(headers: List[Header], payload: bytes = b"") -> bytes:
    """One event-stream message: prelude (lengths, CRC32), headers, payload, message CRC32."""
    encoded = b""
    for name, kind, value in headers:
        raw = name.encode("utf-8")
        encoded += struct.pack(">B", len(raw)) + raw + struct.pack(">B", kind)
        if kind in _FIXED:
            encoded += struct.pack(_FIXED[kind], value)
        elif kind in (STRING, BYTE_BUF):
            data = value.encode("utf-8") if kind == STRING else bytes(value)
            encoded += struct.pack(">H", len(data)) + data
        elif kind == UUID:
            encoded += value.bytes
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


class FrameError(ValueError):
    pass


def read_frame(stream: Any) -> Optional[Tuple[Dict[str, Any], bytes]]:
    """(headers by name, payload) of the next message; None at a clean end of stream."""
    prelude = _read_exactly(stream, 12)
    if prelude is None:
        return None
    total, headers_length, prelude_crc = struct.unpack(">III", prelude)
    if zlib.crc32(prelude[:8]) != prelude_crc:
        raise FrameError("prelude CRC mismatch")
    rest = _read_exactly(stream, total - 12)
    if rest is None:
        raise FrameError("truncated message")
    (message_crc,) = struct.unpack(">I", rest[-4:])
    if zlib.crc32(prelude + rest[:-4]) != message_crc:
        raise FrameError("message CRC mismatch")
    raw_headers, payload = rest[:headers_length], rest[headers_length:-4]
    headers: Dict[str, Any] = {}
    i = 0
    while i < len(raw_headers):
        length = raw_headers[i]
        name = raw_headers[i + 1 : i + 1 + length].decode("utf-8")
        i += 1 + length
        kind = raw_headers[i]
        i += 1
        if kind in (BOOL_TRUE, BOOL_FALSE):
            value: Any = kind == BOOL_TRUE
        elif kind in _FIXED:
            size = struct.calcsize(_FIXED[kind])
            (value,) = struct.unpack(_FIXED[kind], raw_headers[i : i + size])
            i += size
        elif kind in (STRING, BYTE_BUF):
            (size,) = struct.unpack(">H", raw_headers[i : i + 2])
            value = raw_headers[i + 2 : i + 2 + size]
            value = value.decode("utf-8") if kind == STRING else value
            i += 2 + size
        elif kind == UUID:
            value = uuid.UUID(bytes=raw_headers[i : i + 16])
            i += 16
        else:
            raise FrameError("unknown header type {}".format(kind))
        headers[name] = value
    return headers, payload


def _read_exactly(stream: Any, size: int) -> Optional[bytes]:
    data = b""
    while len(data) < size:
        chunk = stream.recv(size - len(data))
        if not chunk:
            if data:
                raise FrameError("connection closed mid-message")
            return None
        data += chunk
    return data

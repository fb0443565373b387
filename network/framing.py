"""Length-prefixed frames on a byte stream: `uvarint(len) || payload`.

The prefix is an unsigned LEB128 varint, as libp2p protocols use. A reader
checks the announced length against its limit *before* reading the body, and
once a frame has started it must finish within `frame_timeout` seconds, so a
peer cannot pin memory with a huge header or a connection with a trickle.
Idle time *between* frames is unbounded: streams here are persistent.

No libp2p here: `ByteStream` is the two calls the reader needs (trio's own
`Stream` satisfies it, which the unit tests use).
"""

from __future__ import annotations

import math
from typing import Protocol

import trio

from network.errors import FrameError, FrameTimeout, FrameTooLarge

MAX_PREFIX_LEN = 5
"""A 5-byte varint covers 2**35: any larger prefix is garbage, not a big frame."""

READ_CHUNK = 64 * 1024


class ByteStream(Protocol):
    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Some bytes, or b"" at end of stream."""
        ...

    async def send_all(self, data: bytes | bytearray | memoryview) -> None: ...


def encode_uvarint(value: int) -> bytes:
    if value < 0:
        raise ValueError("uvarint cannot encode a negative number")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_uvarint(buf: bytes | bytearray) -> tuple[int, int] | None:
    """(value, prefix length) from the start of `buf`, None if incomplete; FrameError if malformed."""
    value = 0
    for i, byte in enumerate(buf[:MAX_PREFIX_LEN]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i > 0 and byte == 0:
                raise FrameError("non-minimal varint length prefix")
            return value, i + 1
    if len(buf) >= MAX_PREFIX_LEN:
        raise FrameError(f"length prefix longer than {MAX_PREFIX_LEN} bytes")
    return None


def encode_frame(payload: bytes | bytearray) -> bytes:
    return encode_uvarint(len(payload)) + bytes(payload)


class FrameReader:
    """Reads frames one at a time from a ByteStream, enforcing size and completion time."""

    def __init__(self, stream: ByteStream, *, max_frame: int, frame_timeout: float = math.inf) -> None:
        self._stream = stream
        self._buf = bytearray()
        self.max_frame = max_frame
        self.frame_timeout = frame_timeout

    async def _fill(self) -> bool:
        chunk = await self._stream.receive_some(READ_CHUNK)
        if not chunk:
            return False
        self._buf += chunk
        return True

    async def read_frame(self) -> bytes | None:
        """The next payload, or None on a clean end of stream between frames.

        Raises FrameTooLarge (checked on the header alone), FrameTimeout, or
        FrameError (malformed prefix, stream ended inside a frame).
        """
        if not self._buf and not await self._fill():
            return None
        # The first byte of the frame is here: from now on the peer is on the clock.
        with trio.move_on_after(self.frame_timeout) as scope:
            while (header := decode_uvarint(self._buf)) is None:
                if not await self._fill():
                    raise FrameError("stream ended inside a frame header")
            size, prefix_len = header
            if size > self.max_frame:
                raise FrameTooLarge(size, self.max_frame)
            while len(self._buf) < prefix_len + size:
                if not await self._fill():
                    raise FrameError(f"stream ended inside a frame ({len(self._buf) - prefix_len} of {size} bytes)")
            payload = bytes(self._buf[prefix_len : prefix_len + size])
            del self._buf[: prefix_len + size]
            return payload
        assert scope.cancelled_caught
        raise FrameTimeout(f"frame not completed within {self.frame_timeout:g} s ({len(self._buf)} bytes buffered)")

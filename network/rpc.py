"""Request/response sessions over one persistent byte stream.

Theory of operation
-------------------
Each frame (see `framing`) carries `type (1 byte) || request id (8 bytes, big
endian) || body`. The client numbers its requests and may have many in flight
on the same stream; the server answers each with a RESPONSE or an ERROR frame
carrying the same id, in whatever order its handlers finish. A response that
arrives after its caller gave up is discarded, so a timeout never leaves the
stream out of step (the reason to number requests rather than alternate).

Server rules: a frame that is not a well-formed REQUEST, is over the size
limit, or stalls mid-frame ends the session (the caller resets the stream);
at most `max_inflight` handlers run per stream, and reading pauses while that
many are busy, which is the backpressure a flooding peer meets. A handler
that raises is answered with an ERROR frame and logged; nothing escapes.

No libp2p here: both ends work on a `framing.ByteStream`.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from network.errors import ConnectionLost, FrameError, RemoteError, RequestTimeout
from network.framing import ByteStream, FrameReader, encode_frame

log = logging.getLogger(__name__)

REQUEST = 0x01
RESPONSE = 0x02
ERROR = 0x03
_HEADER = struct.Struct(">BQ")
HEADER_LEN = _HEADER.size
MAX_ERROR_REASON = 512


class Refused(Exception):
    """Raised by a server handler to answer with an ERROR frame carrying `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def pack(kind: int, request_id: int, body: bytes) -> bytes:
    return encode_frame(_HEADER.pack(kind, request_id) + body)


def unpack(payload: bytes) -> tuple[int, int, bytes]:
    if len(payload) < HEADER_LEN:
        raise FrameError(f"frame of {len(payload)} bytes is shorter than the {HEADER_LEN}-byte header")
    kind, request_id = _HEADER.unpack_from(payload)
    if kind not in (REQUEST, RESPONSE, ERROR):
        raise FrameError(f"unknown frame type 0x{kind:02x}")
    return kind, request_id, payload[HEADER_LEN:]


Handler = Callable[[bytes], Awaitable[bytes]]


@dataclass
class ServerLimits:
    max_request: int
    """Largest request body accepted; a larger frame header ends the session unread."""
    frame_timeout: float = 10.0
    handler_timeout: float = 60.0
    max_inflight: int = 16


async def serve_session(stream: ByteStream, handler: Handler, limits: ServerLimits) -> None:
    """Answer requests on `stream` until it ends.

    Returns normally at a clean end of stream; raises FrameError (or a
    subclass) when the peer broke framing, so the caller can count the reason
    and reset the stream, and ConnectionLost when the stream broke. Handler
    failures never propagate.
    """
    reader = FrameReader(stream, max_frame=HEADER_LEN + limits.max_request, frame_timeout=limits.frame_timeout)
    write_lock = trio.Lock()
    slots = trio.Semaphore(limits.max_inflight)

    async def answer(request_id: int, body: bytes) -> None:
        try:
            try:
                with trio.fail_after(limits.handler_timeout):
                    response = await handler(body)
                frame = pack(RESPONSE, request_id, response)
            except Refused as exc:
                frame = pack(ERROR, request_id, exc.reason.encode()[:MAX_ERROR_REASON])
            except trio.TooSlowError:
                log.warning("request %d: handler took over %g s", request_id, limits.handler_timeout)
                frame = pack(ERROR, request_id, b"handler timeout")
            except Exception:
                log.exception("request %d: handler raised", request_id)
                frame = pack(ERROR, request_id, b"internal error")
            async with write_lock:
                await stream.send_all(frame)
        except Exception as exc:  # the stream died under us: the read loop will see it too
            log.debug("request %d: could not send the answer: %r", request_id, exc)
        finally:
            slots.release()

    broken: FrameError | ConnectionLost | None = None
    async with trio.open_nursery() as nursery:
        try:
            while True:
                await slots.acquire()
                payload = await reader.read_frame()
                if payload is None:
                    slots.release()
                    break
                kind, request_id, body = unpack(payload)
                if kind != REQUEST:
                    raise FrameError(f"a client sent a frame of type 0x{kind:02x}")
                nursery.start_soon(answer, request_id, body)
        except (FrameError, ConnectionLost) as exc:
            # Raised outside the nursery, so callers see the error itself, not a group: a stream that
            # broke mid-session is the peer leaving, which the caller logs quietly.
            broken = exc
            nursery.cancel_scope.cancel()
    if broken is not None:
        raise broken


@dataclass
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    body: bytes | None = None
    error: Exception | None = None


class ClientSession:
    """The client end: `call` sends a request and waits for its answer.

    `run` must be running (in a nursery) for answers to arrive; when it
    returns, the session is dead and every waiting call fails with ConnectionLost.
    """

    def __init__(self, stream: ByteStream, *, max_response: int, frame_timeout: float = 30.0) -> None:
        self._stream = stream
        self._reader = FrameReader(stream, max_frame=HEADER_LEN + max_response, frame_timeout=frame_timeout)
        self._write_lock = trio.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self.closed: str | None = None
        """None while usable; else why the session ended."""

    def __len__(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Read answers until the stream ends or misbehaves; then fail all waiters."""
        reason = "stream closed by peer"
        try:
            while True:
                payload = await self._reader.read_frame()
                if payload is None:
                    break
                kind, request_id, body = unpack(payload)
                pending = self._pending.pop(request_id, None)
                if pending is None:
                    continue  # its caller timed out already
                if kind == RESPONSE:
                    pending.body = body
                elif kind == ERROR:
                    pending.error = RemoteError(body.decode(errors="replace"))
                else:
                    raise FrameError("a server sent a REQUEST frame")
                pending.done.set()
        except FrameError as exc:
            reason = f"{exc.reason}: {exc}"
            raise
        except Exception as exc:
            reason = f"stream failed: {exc!r}"
        finally:
            self._close(reason)

    def _close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
        for pending in self._pending.values():
            pending.error = ConnectionLost(reason)
            pending.done.set()
        self._pending.clear()

    async def call(self, body: bytes, *, timeout: float = math.inf) -> bytes:
        if self.closed is not None:
            raise ConnectionLost(self.closed)
        request_id = self._next_id
        self._next_id += 1
        pending = self._pending[request_id] = _Pending()
        try:
            with trio.fail_after(timeout):
                async with self._write_lock:
                    try:
                        await self._stream.send_all(pack(REQUEST, request_id, body))
                    except BaseException as exc:
                        # A partly written frame would put the stream out of step: retire it.
                        self._close(f"write interrupted: {exc!r}")
                        if isinstance(exc, Exception):
                            raise ConnectionLost(f"write failed: {exc!r}") from exc
                        raise
                await pending.done.wait()
        except trio.TooSlowError:
            raise RequestTimeout(f"no answer within {timeout:g} s") from None
        finally:
            self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        assert pending.body is not None
        return pending.body

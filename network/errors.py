"""Typed errors raised by the network layer.

Everything `network/` refuses or fails at has its own class, so callers can
tell a timeout from a lost connection from a peer that said no. Envelope
verification failures are not wrapped: they stay `protocol.errors` types.
What libp2p, trio or a stream raise is mapped to these in one function,
`network_error` (with `network_errors`, its context manager), which every
transport uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import trio


class NetworkError(Exception):
    """Base of every error raised by `network/`."""


class ListenError(NetworkError):
    """The host could not listen on a requested address (the message says what to do)."""


class DialError(NetworkError):
    """A peer could not be reached at the given address."""


class PublishBackpressure(NetworkError):
    """Outbound gossip queues stayed full past the publish timeout; nothing was sent."""

    def __init__(self, topic: str, congested: list[str], waited_s: float) -> None:
        names = ", ".join(congested[:5]) + (" ..." if len(congested) > 5 else "")
        super().__init__(
            f"publish on {topic} gave up after {waited_s:.1f} s: "
            f"queues to {len(congested)} peer(s) stayed full ({names})"
        )
        self.topic = topic
        self.congested = congested


class PublishTooLarge(NetworkError):
    """Gossip payload over the size that py-libp2p would drop silently."""


class AlreadySubscribed(NetworkError):
    """A topic can have one subscription per host (one validator, one trust set)."""


class RequestError(NetworkError):
    """A request on a direct stream did not produce a verified response."""


class RequestTimeout(RequestError):
    """No response within the request's deadline."""


class ConnectionLost(RequestError):
    """The stream or connection closed before the response arrived."""


class RemoteError(RequestError):
    """The peer answered with an error frame instead of a response."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"peer refused the request: {reason}")
        self.reason = reason


class FrameError(NetworkError):
    """A stream carried bytes that are not a valid frame; the stream is reset."""

    reason = "bad_frame"


class FrameTooLarge(FrameError):
    """A frame header announced more bytes than the limit (nothing of the body was read)."""

    reason = "oversized_frame"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class FrameTimeout(FrameError):
    """A frame started but did not complete in time (a stalled or trickling peer)."""

    reason = "stalled_frame"


Operation = Literal["dial", "open", "read", "write", "request"]
"""What was being done when a transport failed: the error type and message follow from it."""


def network_error(exc: Exception, op: Operation, what: str, *, timeout: float | None = None) -> NetworkError:
    """The dataswarm error for `exc`, raised by libp2p, trio or a stream while doing `op` on `what`.

    The one place where foreign failures become ours: a dial fails with DialError; opening,
    reading or writing a stream, or waiting for an answer on one, with ConnectionLost, or
    RequestTimeout when `trio.TooSlowError` says the deadline (`timeout`) passed. A
    `NetworkError` is returned unchanged. Cancellation is not an Exception and never gets here.
    """
    if isinstance(exc, NetworkError):
        return exc
    timed_out = isinstance(exc, trio.TooSlowError)
    within = f" within {timeout:g} s" if timeout is not None else ""
    if op == "dial":
        return DialError(f"{what}: no connection{within}" if timed_out else f"{what}: {exc}")
    if timed_out:
        return RequestTimeout(f"no answer from {what}{within}")
    if op == "open":
        return ConnectionLost(f"cannot open {what}: {exc}")
    return ConnectionLost(f"{op} {what} failed: {exc!r}")


@contextlib.contextmanager
def network_errors(op: Operation, what: str, *, timeout: float | None = None) -> Iterator[None]:
    """Raise what `network_error` makes of any Exception from the block (put it outside `trio.fail_after`)."""
    try:
        yield
    except Exception as exc:
        mapped = network_error(exc, op, what, timeout=timeout)
        if mapped is exc:
            raise
        raise mapped from exc

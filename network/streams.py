"""Requests and responses on persistent streams, with the checks at both ends.

`Streams` is the direct-stream half of a transport: `serve` answers requests
on a protocol (one persistent stream per peer, many requests on it, see
rpc.py), `request` sends one on a cached stream to the peer and verifies the
answer. How a stream is opened and how a handler is registered are given to
it, so the same code runs over libp2p (host.py) and over in-memory streams
(memory.py). No libp2p here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Protocol

import trio

from network.checks import EnvelopeChecks
from network.errors import ConnectionLost, FrameError, network_errors
from network.framing import ByteStream
from network.rpc import ClientSession, Refused, ServerLimits, serve_session
from network.transport import RefusalHook, RequestHandler
from protocol.envelope import Opened, max_envelope_size
from protocol.errors import ProtocolError
from protocol.messages import MessageKind

log = logging.getLogger(__name__)


class Stream(ByteStream, Protocol):
    """A byte stream to one authenticated peer; `send_all` and `receive_some` raise ConnectionLost."""

    peer_id: str

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


StreamHandler = Callable[[Stream], Awaitable[None]]
StreamOpener = Callable[[str, str], Awaitable[Stream]]
"""(peer ID, protocol ID) -> a new stream; ConnectionLost if it cannot be opened."""


@dataclass
class Channel:
    session: ClientSession
    stream: Stream
    scope: trio.CancelScope


class Streams:
    """Request/response for one transport: its served protocols and its cached client channels."""

    def __init__(
        self,
        checks: EnvelopeChecks,
        *,
        open_stream: StreamOpener,
        set_handler: Callable[[str, StreamHandler], None],
    ) -> None:
        self.checks = checks
        self.stats = checks.stats
        self._open_stream = open_stream
        self._set_handler = set_handler
        self.channels: dict[tuple[str, str], Channel] = {}
        """(peer ID, protocol ID) -> the open client session."""
        self._channel_locks: dict[tuple[str, str], trio.Lock] = {}
        self.nursery: trio.Nursery | None = None
        """Where client sessions run; the transport sets it while it runs."""

    def serve(
        self,
        protocol_id: str,
        handler: RequestHandler,
        *,
        expect: Collection[MessageKind],
        max_request: int | None = None,
        max_inflight: int = 16,
        frame_timeout: float = 10.0,
        handler_timeout: float = 60.0,
        on_refused: RefusalHook | None = None,
    ) -> None:
        """Answer requests on `protocol_id`: one persistent stream per peer, many requests on it.

        Each request must be an envelope of an `expect` kind signed by the
        Noise-authenticated peer of the stream; otherwise it is answered with
        an error frame and never reaches `handler`. Framing violations (over
        `max_request`, garbage, a frame stalled past `frame_timeout`) reset
        the stream. Nothing a peer sends can raise out of here. `on_refused(peer, error)` hears
        of every refused request: the peer is the Noise-authenticated one, so what it sent (a
        forged signature, a replay) can be held against it.
        """
        limits = ServerLimits(
            max_request=max_request or max_envelope_size(expect),
            frame_timeout=frame_timeout,
            handler_timeout=handler_timeout,
            max_inflight=max_inflight,
        )
        expect = frozenset(expect)

        async def on_stream(stream: Stream) -> None:
            peer = stream.peer_id

            async def handle(body: bytes) -> bytes:
                try:
                    opened = self.checks.request(body, peer=peer, expect=expect)
                except ProtocolError as exc:
                    reason = self.checks.drop(self.stats.requests_refused, exc, what="request", peer=peer)
                    if on_refused is not None:
                        try:
                            await on_refused(peer, exc)
                        except Exception:
                            log.exception("refusal hook for %s failed", protocol_id)
                    raise Refused(f"{reason}: {exc}") from None
                self.stats.requests_served[protocol_id] += 1
                return await handler(peer, opened)

            try:
                await serve_session(stream, handle, limits)
                await stream.close()
            except FrameError as exc:
                self.checks.drop(self.stats.streams_reset, exc, what=f"stream {protocol_id}", peer=peer)
                await stream.reset()
            except ConnectionLost as exc:
                log.debug("stream %s ended: %s", protocol_id, exc)
            except Exception:
                # An exception escaping a libp2p stream handler tears down the whole host (notes #7).
                log.exception("stream handler for %s failed", protocol_id)
                await stream.reset()

        self._set_handler(protocol_id, on_stream)

    async def request(
        self,
        peer_id: str,
        protocol_id: str,
        envelope: bytes,
        *,
        expect: Collection[MessageKind],
        trusted: Collection[bytes] | None = None,
        timeout: float = 30.0,
    ) -> Opened:
        """Send a request envelope on the persistent stream to `peer_id`; the verified response.

        The response must be signed by `peer_id` itself (and by a key in
        `trusted`, if given). Raises RequestTimeout, ConnectionLost,
        RemoteError (the peer refused; `.reason` says why) or the
        ProtocolError of a response that failed verification.
        """
        if self.nursery is None:
            raise RuntimeError("requests need the transport running (inside its `async with`)")
        with network_errors("request", f"{peer_id} on {protocol_id}", timeout=timeout), trio.fail_after(timeout):
            channel = await self._channel(peer_id, protocol_id)
            body = await channel.session.call(envelope)
        try:
            return self.checks.response(body, peer=peer_id, expect=expect, trusted=trusted)
        except ProtocolError as exc:
            self.checks.drop(self.stats.responses_refused, exc, what="response", peer=peer_id)
            raise

    async def _channel(self, peer_id: str, protocol_id: str) -> Channel:
        assert self.nursery is not None
        key = (peer_id, protocol_id)
        async with self._channel_locks.setdefault(key, trio.Lock()):
            channel = self.channels.get(key)
            if channel is not None and channel.session.closed is None:
                return channel
            if channel is not None:
                channel.scope.cancel()
            stream = await self._open_stream(peer_id, protocol_id)
            channel = Channel(ClientSession(stream, max_response=max_envelope_size()), stream, trio.CancelScope())
            self.channels[key] = channel
            self.nursery.start_soon(self._run_channel, key, channel)
            return channel

    async def _run_channel(self, key: tuple[str, str], channel: Channel) -> None:
        with channel.scope:
            try:
                await channel.session.run()
            except FrameError as exc:
                self.checks.drop(self.stats.streams_reset, exc, what=f"stream {key[1]}", peer=key[0])
            except Exception as exc:
                log.debug("channel to %s on %s ended: %r", key[0], key[1], exc)
        with trio.CancelScope(shield=True):
            await channel.stream.reset()
        if self.channels.get(key) is channel:
            del self.channels[key]

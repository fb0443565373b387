"""Envelope checks at the network boundary, and the accounting of what was dropped.

Every gossip message and every stream request passes through here before any
application code sees it. What fails is counted by reason in `NetworkStats`
and logged once with the peer it came from, so an operator (or a test) can
always say why a message went missing. Nothing here touches libp2p.

Gossip rules, beyond `protocol.open_envelope`:
- the envelope signer must be the gossip *origin* (the libp2p-signed `from`
  of the message), so a third party cannot re-publish someone else's offer;
- an offer must travel on the topic of its own task kind.
Stream rules: the signer must be the Noise-authenticated peer of the stream.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from network.errors import NetworkError, PublishTooLarge
from network.topics import OFFERS_PREFIX, offers_topic, topic_kinds
from protocol.envelope import Opened, ReplayCache, open_envelope
from protocol.errors import ProtocolError
from protocol.messages import MessageKind, TaskOffer

log = logging.getLogger(__name__)


MAX_GOSSIP_BYTES = 1_000_000
"""py-libp2p drops RPCs of 1 MiB or more at the sender without a word (notes #4); 1,000,000 bytes arrived."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class WrongTopic(NetworkError):
    """A valid envelope on a topic that does not carry its kind."""


def reason_of(exc: BaseException) -> str:
    """A stable snake_case reason for a refusal: BadSignature -> "bad_signature"."""
    explicit = getattr(exc, "reason", None)
    if isinstance(explicit, str) and not isinstance(exc, ProtocolError):
        return explicit
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


@dataclass
class NetworkStats:
    """Counters a host keeps; `snapshot()` is JSON-ready (for `/metrics` and tests)."""

    gossip_published: Counter[str] = field(default_factory=Counter)
    """topic -> messages published by this host"""
    gossip_delivered: Counter[str] = field(default_factory=Counter)
    """topic -> verified messages handed to the application"""
    gossip_dropped: Counter[str] = field(default_factory=Counter)
    """reason -> gossip messages refused by validators (or a full delivery queue)"""
    requests_served: Counter[str] = field(default_factory=Counter)
    """protocol -> requests passed to a handler"""
    requests_refused: Counter[str] = field(default_factory=Counter)
    """reason -> requests answered with an error frame without reaching a handler"""
    responses_refused: Counter[str] = field(default_factory=Counter)
    """reason -> responses that failed verification (the caller got the error)"""
    streams_reset: Counter[str] = field(default_factory=Counter)
    """reason -> streams torn down because the peer broke framing"""

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {name: dict(value) for name, value in vars(self).items()}


class EnvelopeChecks:
    """Verification with one replay cache for the whole host, and drop accounting."""

    def __init__(self, stats: NetworkStats, *, clock: Callable[[], int] = now_ms) -> None:
        self.stats = stats
        self.clock = clock
        self.replay_cache = ReplayCache()

    def gossip(
        self,
        topic: str,
        data: bytes,
        *,
        origin: str,
        expect: Collection[MessageKind],
        trusted: Collection[bytes] | None,
    ) -> Opened:
        opened = open_envelope(
            data,
            now_ms=self.clock(),
            replay_cache=self.replay_cache,
            expect=expect,
            trusted=trusted,
            transport_peer_id=origin,
        )
        _check_topic(topic, opened)
        return opened

    def request(self, data: bytes, *, peer: str, expect: Collection[MessageKind]) -> Opened:
        return open_envelope(
            data, now_ms=self.clock(), replay_cache=self.replay_cache, expect=expect, transport_peer_id=peer
        )

    def response(
        self, data: bytes, *, peer: str, expect: Collection[MessageKind], trusted: Collection[bytes] | None
    ) -> Opened:
        return open_envelope(
            data,
            now_ms=self.clock(),
            replay_cache=self.replay_cache,
            expect=expect,
            trusted=trusted,
            transport_peer_id=peer,
        )

    def outgoing(self, topic: str, data: bytes, *, self_peer: str, expect: Collection[MessageKind]) -> Opened:
        """What every receiver will check, minus replay: fail at the sender, not silently at each receiver."""
        opened = open_envelope(data, now_ms=self.clock(), replay_cache=None, expect=expect, transport_peer_id=self_peer)
        _check_topic(topic, opened)
        return opened

    def publishing(self, topic: str, data: bytes, *, self_peer: str, check: bool = True) -> None:
        """Before a publish: PublishTooLarge over the gossip ceiling, and (with `check`) `outgoing`'s ProtocolError."""
        if len(data) > MAX_GOSSIP_BYTES:
            raise PublishTooLarge(
                f"{len(data)} bytes is over the {MAX_GOSSIP_BYTES}-byte gossip ceiling; send it on a stream"
            )
        if check:
            self.outgoing(topic, data, self_peer=self_peer, expect=topic_kinds(topic))

    def drop(self, counter: Counter[str], exc: BaseException, *, what: str, peer: str, **context: Any) -> str:
        reason = reason_of(exc)
        counter[reason] += 1
        extra = "".join(f" {k}={v}" for k, v in context.items())
        # Echoes after a reconnect (recent-message replay, queued stale status) are normal.
        level = logging.INFO if reason in ("replayed", "expired") else logging.WARNING
        log.log(
            level,
            "dropped %s from %s: %s (%s)%s",
            what,
            peer,
            reason,
            exc,
            extra,
            extra={"drop_reason": reason, "peer": peer},
        )
        return reason


def _check_topic(topic: str, opened: Opened) -> None:
    message = opened.message
    if isinstance(message, TaskOffer) and topic.startswith(OFFERS_PREFIX) and topic != offers_topic(message.task_kind):
        raise WrongTopic(f"a {message.task_kind} offer arrived on {topic}")

"""Gossip on a libp2p host: tuned GossipSub, verified subscriptions, publish with backpressure.

`Gossip` owns the Pubsub and GossipSub services of one `SwarmHost` (which
starts them) and the subscriptions handed out. Every message passes the
envelope checks in libp2p's validator, so what fails is neither delivered nor
relayed; what passes is delivered to the subscription's queue.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID as MESHSUB_V10
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11 as MESHSUB_V11
from libp2p.pubsub.pb import rpc_pb2

from network.checks import EnvelopeChecks
from network.errors import AlreadySubscribed, PublishBackpressure
from network.patches import DataswarmPubsub, FloodPublishGossipSub
from network.queue import DEFAULT_MAX_ITEMS
from network.transport import Subscription
from protocol.envelope import Opened
from protocol.messages import MessageKind

log = logging.getLogger(__name__)

BACKPRESSURE_POLL_S = 0.002
"""RpcQueue has no "drained" event to await, so publish polls queue depth this often while congested."""


@dataclass(frozen=True)
class GossipConfig:
    heartbeat_interval: int = 1
    """Seconds. py-libp2p's default of 120 s leaves meshes unrepaired for minutes (notes #1)."""
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    queue_high_water: int = 16
    """Publish waits while an outbound queue (32 slots, then silent drops) holds this many RPCs (notes #3)."""
    publish_timeout: float = 30.0
    max_buffered: int = DEFAULT_MAX_ITEMS
    """Per subscription; beyond it messages are refused and counted as `delivery_queue_full`."""
    seen_ttl: int = 120
    flood_max: int = 64
    """A host's own message goes to every subscribed peer, or to this many drawn at random per message."""


class Gossip:
    """The gossip half of a SwarmHost: its Pubsub/GossipSub services and its subscriptions."""

    def __init__(self, host: IHost, config: GossipConfig, checks: EnvelopeChecks) -> None:
        self.config = config
        self.checks = checks
        self.stats = checks.stats
        self._my_id: ID = host.get_id()
        self.peer_id = str(self._my_id.to_base58())
        self.gossipsub = FloodPublishGossipSub(
            # Not /meshsub/1.2.0: its IDONTWANTs doubled the CPU per offer (docs/notes/libp2p.md#meshsub-12-idontwant).
            protocols=[MESHSUB_V11, MESHSUB_V10],
            degree=config.degree,
            degree_low=config.degree_low,
            degree_high=config.degree_high,
            heartbeat_interval=config.heartbeat_interval,
            flood_max=config.flood_max,
            spam_protection_enabled=False,
            eclipse_protection_enabled=False,
            # Messages queued for peers not yet subscribed: subscription races resolve in milliseconds
            # (docs/notes/libp2p.md#pending-messages-for-unsubscribed-peers).
            pending_messages_ttl=2.0,
            max_pending_messages_per_peer=512,
        )
        self.pubsub = DataswarmPubsub(
            host, self.gossipsub, strict_signing=True, seen_ttl=config.seen_ttl, on_message=self._deliver
        )
        self._subs: dict[str, Subscription] = {}
        # (message id, topic) -> envelope opened by the validator, picked up at delivery.
        self._validated: OrderedDict[tuple[bytes, str], Opened] = OrderedDict()

    def close(self) -> None:
        """End every subscription (consumers drain what is queued): the host is shutting down."""
        for sub in self._subs.values():
            sub.queue.close()

    def subscriber_count(self, topic: str) -> int:
        """Connected peers known to be subscribed to `topic`."""
        return len(self.pubsub.peer_topics.get(topic, ()))

    async def wait_for_subscribers(self, topic: str, count: int, *, timeout: float) -> None:
        """Return once `count` peers are subscribed to `topic`; trio.TooSlowError after `timeout`."""
        with trio.fail_after(timeout):
            while self.subscriber_count(topic) < count:
                await trio.sleep(0.02)  # pubsub has no event for "any peer subscribed"

    def _congested(self, topic: str) -> list[str]:
        high = self.config.queue_high_water
        queues = self.pubsub.peer_queues
        return [
            str(p.to_base58())
            for p in self.pubsub.peer_topics.get(topic, ())
            if (q := queues.get(p)) is not None and len(q) >= high
        ]

    async def publish(self, topic: str, data: bytes, *, timeout: float | None = None, check: bool = True) -> int:
        """Gossip an envelope; returns how many subscribed peers it was handed to.

        Waits (never drops) while an outbound queue to a subscriber is near
        full, and raises PublishBackpressure if that lasts past `timeout`.
        With `check` (the default) the envelope must pass every check a
        receiver makes except replay, or the ProtocolError is raised here.
        `check=False` is for tools and tests that must send what peers refuse.
        """
        self.checks.publishing(topic, data, self_peer=self.peer_id, check=check)
        timeout = self.config.publish_timeout if timeout is None else timeout
        start = trio.current_time()
        while congested := self._congested(topic):
            if trio.current_time() - start >= timeout:
                raise PublishBackpressure(topic, congested, trio.current_time() - start)
            await trio.sleep(BACKPRESSURE_POLL_S)
        await self.pubsub.publish(topic, data)
        self.stats.gossip_published[topic] += 1
        return self.subscriber_count(topic)

    async def subscribe(
        self,
        topic: str,
        expect: Collection[MessageKind] | None = None,
        trusted: Collection[bytes] | None = None,
        *,
        max_buffered: int | None = None,
    ) -> Subscription:
        """Receive verified envelopes of `expect` kinds (default: the topic's) on `topic`.

        With `trusted`, only envelopes signed by one of those Ed25519 public
        keys get through: a node passes its configured coordinator keys for
        offers. Anything that fails is dropped in the validator (and so is
        not relayed either), counted and logged.
        """
        if topic in self._subs:
            raise AlreadySubscribed(f"already subscribed to {topic}")
        sub = Subscription(
            topic,
            expect,
            trusted,
            max_buffered=max_buffered or self.config.max_buffered,
            on_unsubscribe=self._unsubscribe,
        )
        self._subs[topic] = sub

        def validator(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            return self._validate(sub, forwarder, msg)

        self.pubsub.set_topic_validator(topic, validator, False)
        await self.pubsub.subscribe(topic)
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.topic) is not sub:
            return
        del self._subs[sub.topic]
        self.pubsub.remove_topic_validator(sub.topic)
        sub.queue.close()
        with contextlib.suppress(Exception):
            await self.pubsub.unsubscribe(sub.topic)

    def _validate(self, sub: Subscription, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        origin = ID(msg.from_id)  # wraps any bytes; cannot raise (nor can its base58)
        if origin == self._my_id:
            return True  # our own publish, checked in publish()
        opened = sub.check(self.checks, msg.data, origin=str(origin.to_base58()), forwarder=str(forwarder))
        if opened is None:
            return False
        self._validated[(self.pubsub.get_message_id(msg), sub.topic)] = opened
        while len(self._validated) > 10_000:  # a validated message libp2p then dropped: forget it
            self._validated.popitem(last=False)
        return True

    def _deliver(self, msg: rpc_pb2.Message) -> None:
        msg_id = self.pubsub.get_message_id(msg)
        for topic in msg.topicIDs:
            sub = self._subs.get(topic)
            opened = self._validated.pop((msg_id, topic), None)
            if sub is None or opened is None or sub.queue.closed:
                continue  # own message echoed locally, or unsubscribed / shutting down meanwhile
            sub.deliver(opened, self.stats)

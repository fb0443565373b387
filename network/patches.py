"""Every workaround dataswarm needs for py-libp2p 0.8.1, and the code of those that patch libp2p itself.

Numbers refer to docs/notes/libp2p.md; each item says where it lives.

- #1 gossipsub tuned: 1 s heartbeat, spam and eclipse protection off (their
  defaults drop 50-92% of messages without an error); meshsub 1.1, not 1.2
  (`GossipConfig` and `Gossip`, gossip.py);
- #2 subscriptions do not use libp2p's 32-slot channel: `notify_subscriptions`
  is overridden (`DataswarmPubsub`, here) to feed a `DeliveryQueue` that never
  drops silently;
- #3 `publish` waits while any outbound queue to a subscriber of the topic
  holds >= `queue_high_water` RPCs, and raises PublishBackpressure at timeout
  (`Gossip.publish`);
- #4 gossip payloads are capped below the size libp2p drops silently
  (`MAX_GOSSIP_BYTES`, checks.py);
- #5 Pubsub/GossipSub services start before `host.run()` (`SwarmHost.__aenter__`);
- #6 the security list holds Noise only; the muxer list yamux only (`new_libp2p_host`, here);
- #7 every stream handler catches everything but cancellation (`Streams.serve`, streams.py);
- #8 `connect` evicts the peer from the dial negative cache first (`SwarmHost.connect`);
- #9 duplicates are suppressed by the host-wide replay cache (sender, nonce) (`EnvelopeChecks`, checks.py);
- pubsub seqnos start from time.time_ns(), not seconds, so a peer restarted with
  the same key does not reuse message IDs (receivers dropped them as seen) (`DataswarmPubsub`);
- a host's own messages go to every peer subscribed to the topic (go-libp2p's
  flood publish, on by default there), not to six "fanout" peers: a coordinator's
  other nodes got its offers only through IHAVE gossip, a heartbeat late
  (`FloodPublishGossipSub`, here);
- the listening socket is closed explicitly on exit (py-libp2p leaked it), and
  a busy port is refused up front (py-libp2p's SO_REUSEPORT shares it silently)
  (`SwarmHost.__aenter__` and `__aexit__`);
- #10 connected peers are added to the DHT routing table by hand (`SwarmHost._dht_add`);
- mDNS only fills the peerstore (from zeroconf's thread): discovered peers are
  dialled by the host, back on the trio loop (`SwarmHost._on_mdns_peer`);
- the advertised address list is cached for a few seconds: py-libp2p rebuilt it
  for every gossip message (`cache_get_addrs`, here);
- libp2p's loggers go through the application's logging, errors only, and a
  failed TCP dial is not logged twice (import of this module).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

if not os.environ.get("LIBP2P_DEBUG"):
    # libp2p's import-time logging setup detaches its logger (propagate off, no handler), so its
    # warnings about routine per-stream failures reach Python's bare last-resort handler on stderr, and
    # some modules pin their own logger at INFO. Route all of them through the application's logging and
    # keep only errors; LIBP2P_DEBUG restores libp2p's own setup.
    logging.getLogger("libp2p").propagate = True
    for _name in [n for n in logging.root.manager.loggerDict if n == "libp2p" or n.startswith("libp2p.")]:
        logging.getLogger(_name).setLevel(logging.ERROR)


class _RaisedAnyway(logging.Filter):
    """Drops libp2p's ERROR line for a failed TCP dial: the caller gets the same failure as an exception
    and decides whether it matters (a receipt pushed to a node that has left does not)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to open TCP stream")


logging.getLogger("libp2p.transport.tcp.tcp").addFilter(_RaisedAnyway())

NOISE = str(NOISE_PROTOCOL_ID)
"""The only security protocol a SwarmHost negotiates."""

ADDR_CACHE_S = 5.0
"""How long the advertised address list is reused; a new listener or interface shows within this."""


def new_libp2p_host(
    key_pair: Any,
    listen: Sequence[multiaddr.Multiaddr],
    *,
    mdns: bool,
    addrs_factory: Callable[[list[multiaddr.Multiaddr]], list[multiaddr.Multiaddr]],
) -> IHost:
    """A libp2p host that negotiates Noise and yamux and nothing else (notes #6)."""
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=list(listen),
        enable_mDNS=mdns,
        addrs_factory=addrs_factory,
    )


def cache_get_addrs(host: IHost) -> None:
    """Make `host.get_addrs` reuse its answer for ADDR_CACHE_S seconds (an instance override).

    py-libp2p rebuilds it for every gossip message it sends or forwards (docs/notes/libp2p.md#advertised-address-cache).
    """
    uncached = host.get_addrs
    cache: list[tuple[float, list[multiaddr.Multiaddr]]] = []

    def get_addrs() -> list[multiaddr.Multiaddr]:
        now = time.monotonic()
        if not cache or now - cache[0][0] >= ADDR_CACHE_S or not cache[0][1]:
            cache[:] = [(now, uncached())]
        return list(cache[0][1])

    setattr(host, "get_addrs", get_addrs)  # noqa: B010 (an instance attribute shadows the method)


class DataswarmPubsub(Pubsub):
    """Pubsub whose deliveries go to `on_message` instead of 32-slot channels (notes #2)."""

    def __init__(self, *args: Any, on_message: Callable[[rpc_pb2.Message], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_message = on_message
        # Nanoseconds, as go-libp2p: seconds reuse message IDs after a restart
        # (docs/notes/libp2p.md#seqno-after-a-restart).
        self.counter = time.time_ns()

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        self._on_message(publish_message)


class FloodPublishGossipSub(GossipSub):
    """GossipSub that sends what this host publishes to every subscribed peer, as go-libp2p does by default.

    py-libp2p sends a message published on a topic its host has not joined (a coordinator's
    offers) to `degree` fanout peers, and keeps the same ones while it publishes. Nodes dial
    the coordinator, so with ten of them four heard offers only through IHAVE gossip, a
    heartbeat late, and lost every race for work: in the adversarial e2e test a node got its
    first task after 7 minutes. Forwarding other peers' messages is unchanged (mesh only).
    Past `flood_max` subscribers each message goes to a fresh random sample of that many (and
    the fanout peers), which bounds a coordinator's upload per offer.
    """

    def __init__(self, *args: Any, flood_max: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flood_max = flood_max

    def _get_peers_to_send(
        self, topic_ids: Iterable[str], msg_forwarder: ID, origin: ID, msg_id: bytes | None = None
    ) -> Iterable[ID]:
        peers = set(super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id))
        if self.pubsub is None or origin != self.pubsub.my_id:
            return peers
        for topic in topic_ids:
            subscribed = [
                peer
                for peer in self.pubsub.peer_topics.get(topic, ())
                if peer in self.peer_protocol and peer not in (origin, msg_forwarder) and self._may_send(peer, topic)
            ]
            # Past flood_max a fresh random sample per message: every node still hears a share of the offers.
            peers.update(subscribed if len(subscribed) <= self.flood_max else random.sample(subscribed, self.flood_max))
        return peers

    def _may_send(self, peer: ID, topic: str) -> bool:
        """The score gate the base class applies to mesh and fanout peers."""
        scorer = self.scorer
        return scorer is None or (scorer.allow_gossip(peer, [topic]) and not scorer.is_graylisted(peer, [topic]))

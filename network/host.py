"""The libp2p adapter: the only module in dataswarm that imports `libp2p` or `multiaddr`.

`SwarmHost` is a libp2p host configured the way dataswarm needs it, behind a
small typed interface of str peer IDs, str multiaddrs, envelope bytes and
`protocol.Opened` values. Every workaround for py-libp2p 0.8.1 lives here
(numbers refer to shared/notes/libp2p.md):

- #1 gossipsub tuned: 1 s heartbeat, spam and eclipse protection off (their
  defaults drop 50-92% of messages without an error); meshsub 1.1, not 1.2;
- #2 subscriptions do not use libp2p's 32-slot channel: `notify_subscriptions`
  is overridden to feed a `DeliveryQueue` that never drops silently;
- #3 `publish` waits while any outbound queue to a subscriber of the topic
  holds >= `queue_high_water` RPCs, and raises PublishBackpressure at timeout;
- #4 gossip payloads are capped below the size libp2p drops silently;
- #5 Pubsub/GossipSub services start before `host.run()`;
- #6 the security list holds Noise only; the muxer list yamux only;
- #7 every stream handler catches everything but cancellation;
- #8 `connect` evicts the peer from the dial negative cache first;
- #9 duplicates are suppressed by the host-wide replay cache (sender, nonce);
- pubsub seqnos start from time.time_ns(), not seconds, so a peer restarted with
  the same key does not reuse message IDs (receivers dropped them as seen);
- a host's own messages go to every peer subscribed to the topic (go-libp2p's
  flood publish, on by default there), not to six "fanout" peers: a coordinator's
  other nodes got its offers only through IHAVE gossip, a heartbeat late;
- the listening socket is closed explicitly on exit (py-libp2p leaked it), and
  a busy port is refused up front (py-libp2p's SO_REUSEPORT shares it silently);
- #10 connected peers are added to the DHT routing table by hand;
- mDNS only fills the peerstore (from zeroconf's thread): discovered peers are
  dialled here, back on the trio loop.

Run it as an async context manager inside a trio task; background work lives
in the host's own nursery and is cancelled on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID as MESHSUB_V10
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11 as MESHSUB_V11
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as RELAY_HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from network.checks import EnvelopeChecks, NetworkStats
from network.doctor import expand_unspecified, listen_blocker, listen_failure_advice
from network.errors import (
    AlreadySubscribed,
    ConnectionLost,
    DialError,
    FrameError,
    ListenError,
    PublishBackpressure,
    PublishTooLarge,
    RequestTimeout,
)
from network.events import PeerEvent, PeerEventKind
from network.liveness import run_reconnect_watchdog
from network.queue import DEFAULT_MAX_ITEMS, DeliveryQueue
from network.rpc import ClientSession, Refused, ServerLimits, serve_session
from network.topics import topic_kinds
from protocol.envelope import Opened, max_envelope_size
from protocol.errors import ProtocolError
from protocol.identity import Identity
from protocol.messages import MessageKind

log = logging.getLogger(__name__)

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

MAX_GOSSIP_BYTES = 1_000_000
"""py-libp2p drops RPCs of 1 MiB or more at the sender without a word (notes #4); 1,000,000 bytes arrived."""

BACKPRESSURE_POLL_S = 0.002
"""RpcQueue has no "drained" event to await, so publish polls queue depth this often while congested."""

READ_CHUNK = 64 * 1024

ADDR_CACHE_S = 5.0
"""How long the advertised address list is reused; a new listener or interface shows within this."""

RequestHandler = Callable[[str, Opened], Awaitable[bytes]]
"""(Noise-authenticated peer ID, verified request) -> response envelope bytes. Raise `Refused` to say no."""
RefusalHook = Callable[[str, ProtocolError], Awaitable[None]]
"""Told (peer, error) for a request refused before it reached the handler."""


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


@dataclass(frozen=True)
class HostConfig:
    identity: Identity
    listen: Sequence[str] = ("/ip4/0.0.0.0/tcp/4001",)
    bootstrap: Sequence[str] = ()
    """Full multiaddrs (ending in /p2p/<peer id>), kept connected by the reconnect watchdog."""
    mdns: bool = True
    """LAN discovery: peers announcing themselves on the local network are dialled. Tests turn it off."""
    dht: bool = True
    relay_hop: bool = False
    """Serve circuit relay v2 for peers that cannot be dialled (coordinators and public nodes)."""
    relay_client: bool = False
    """Accept relayed connections and dial /p2p-circuit addresses."""
    announce: Sequence[str] = ()
    """Addresses to advertise instead of the listen addresses (e.g. a public IP behind port forwarding)."""
    gossip: GossipConfig = field(default_factory=GossipConfig)
    connect_timeout: float = 10.0


def key_pair_from_identity(identity: Identity) -> Any:
    """libp2p's Ed25519 key pair for a dataswarm identity: one key signs envelopes and authenticates Noise."""
    return create_new_key_pair(identity.seed)


def libp2p_peer_id(identity: Identity) -> str:
    """The peer ID libp2p itself derives for `identity` (a test checks it equals protocol's)."""
    return str(ID.from_pubkey(key_pair_from_identity(identity).public_key).to_base58())


class RawStream:
    """A libp2p stream as a `framing.ByteStream`: EOF is b"", every other failure is ConnectionLost."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self.peer_id = str(stream.muxed_conn.peer_id.to_base58())

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self._stream.read(max_bytes or READ_CHUNK)
        except StreamEOF:
            return b""
        except Exception as exc:
            raise ConnectionLost(f"read from {self.peer_id} failed: {exc!r}") from exc
        return bytes(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.write(bytes(data))
        except Exception as exc:
            raise ConnectionLost(f"write to {self.peer_id} failed: {exc!r}") from exc

    async def close(self) -> None:
        with trio.move_on_after(2), contextlib.suppress(Exception):
            await self._stream.close()

    async def reset(self) -> None:
        with trio.move_on_after(2), contextlib.suppress(Exception):
            await self._stream.reset()


class Subscription:
    """Verified messages of one topic, in arrival order, none lost to a slow consumer."""

    def __init__(
        self,
        host: SwarmHost,
        topic: str,
        expect: frozenset[MessageKind],
        trusted: frozenset[bytes] | None,
        max_buffered: int,
    ) -> None:
        self._host = host
        self.topic = topic
        self.expect = expect
        self.trusted = trusted
        self.queue: DeliveryQueue[Opened] = DeliveryQueue(f"subscription {topic}", max_items=max_buffered)

    def __len__(self) -> int:
        """Messages waiting for the consumer."""
        return len(self.queue)

    async def get(self) -> Opened:
        """The next message; trio.EndOfChannel after unsubscribe once drained."""
        return await self.queue.get()

    def __aiter__(self) -> AsyncIterator[Opened]:
        return self.queue

    async def unsubscribe(self) -> None:
        await self._host._unsubscribe(self)


class _DataswarmPubsub(Pubsub):
    """Pubsub whose deliveries go to `on_message` instead of 32-slot channels (notes #2)."""

    def __init__(self, *args: Any, on_message: Callable[[rpc_pb2.Message], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_message = on_message
        # py-libp2p seeds seqno with time.time() in *seconds*; a peer restarted with the same key
        # then reuses (from, seqno) message IDs and receivers drop its new messages as already
        # seen (measured: 5 of 20 offers lost after a coordinator restart). Nanoseconds, as go-libp2p.
        self.counter = time.time_ns()

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        self._on_message(publish_message)


class _FloodPublishGossipSub(GossipSub):
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


class _Notifee(INotifee):
    def __init__(self, host: SwarmHost) -> None:
        self._host = host

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._host._on_connected(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._host._on_disconnected(conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, maddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, maddr: multiaddr.Multiaddr) -> None:
        pass


@dataclass
class _Channel:
    session: ClientSession
    stream: RawStream
    scope: trio.CancelScope


def _parse_addr(addr: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(addr)
    except Exception as exc:
        raise DialError(f"{addr!r} is not a multiaddr: {exc}") from None


def _is_circuit(maddr: multiaddr.Multiaddr) -> bool:
    return any(p.name == "p2p-circuit" for p in maddr.protocols())


class SwarmHost:
    """A dataswarm peer on the libp2p network. Use as `async with SwarmHost(config) as host:`."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.identity = config.identity
        self.stats = NetworkStats()
        self.checks = EnvelopeChecks(self.stats)
        self._key_pair = key_pair_from_identity(config.identity)
        self._listen = [multiaddr.Multiaddr(a) for a in config.listen]
        announce = [multiaddr.Multiaddr(a) for a in config.announce]
        self._addr_cache: tuple[float, list[multiaddr.Multiaddr]] | None = None
        noise = NoiseTransport(self._key_pair, noise_privkey=create_x25519_key_pair().private_key)
        self._host = new_host(
            key_pair=self._key_pair,
            sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=self._listen,
            enable_mDNS=config.mdns,
            addrs_factory=(lambda _c: announce) if announce else self._advertised_addrs,
        )
        self._uncached_get_addrs = self._host.get_addrs
        setattr(self._host, "get_addrs", self._cached_get_addrs)  # noqa: B010 (instance override, see method)
        self._libp2p_id: ID = self._host.get_id()
        self.peer_id: str = str(self._libp2p_id.to_base58())
        g = config.gossip
        self._gossipsub = _FloodPublishGossipSub(
            # Not /meshsub/1.2.0: py-libp2p sends an IDONTWANT to every mesh peer for every
            # message, which doubled the CPU per delivered offer (1.27 s vs 0.65 s per message
            # across 50 in-process hosts, bench/network.py). Our gossip messages are small.
            protocols=[MESHSUB_V11, MESHSUB_V10],
            degree=g.degree,
            degree_low=g.degree_low,
            degree_high=g.degree_high,
            heartbeat_interval=g.heartbeat_interval,
            flood_max=g.flood_max,
            spam_protection_enabled=False,
            eclipse_protection_enabled=False,
            # Every connected peer not (yet) subscribed to a topic gets each message of it queued,
            # "in case its subscription is in flight", 100 deep with a WARNING per message beyond:
            # a coordinator logged one per offer per node of another kind. Subscription races
            # resolve in milliseconds, so keep 2 s of them, and more of them.
            pending_messages_ttl=2.0,
            max_pending_messages_per_peer=512,
        )
        self._pubsub = _DataswarmPubsub(
            self._host, self._gossipsub, strict_signing=True, seen_ttl=g.seen_ttl, on_message=self._deliver
        )
        self._dht: KadDHT | None = KadDHT(self._host, DHTMode.SERVER) if config.dht else None
        self._relay: CircuitV2Protocol | None = None
        self._relay_transport: CircuitV2Transport | None = None
        if config.relay_hop or config.relay_client:
            limits = RelayLimits(duration=3600, data=1 << 30, max_circuit_conns=256, max_reservations=256)
            self._relay = CircuitV2Protocol(self._host, limits=limits, allow_hop=config.relay_hop)
            roles = RelayRole.STOP | RelayRole.CLIENT | (RelayRole.HOP if config.relay_hop else RelayRole(0))
            self._relay_transport = CircuitV2Transport(self._host, self._relay, RelayConfig(roles=roles, limits=limits))
        self._subs: dict[str, Subscription] = {}
        # (message id, topic) -> envelope opened by the validator, picked up at delivery.
        self._validated: OrderedDict[tuple[bytes, str], Opened] = OrderedDict()
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._channel_locks: dict[tuple[str, str], trio.Lock] = {}
        self._connected: set[str] = set()
        self._peer_waiters: dict[str, trio.Event] = {}
        self._event_queues: list[DeliveryQueue[PeerEvent]] = []
        self._nursery: trio.Nursery | None = None
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._host.get_network().register_notifee(_Notifee(self))

    # --- lifecycle --------------------------------------------------------

    async def __aenter__(self) -> SwarmHost:
        for maddr in self._listen:
            if (advice := listen_blocker(str(maddr))) is not None:
                raise ListenError(advice)
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            # Services before host.run(), or bootstrap dials crash the host (notes #5).
            await stack.enter_async_context(background_trio_service(self._pubsub))
            await stack.enter_async_context(background_trio_service(self._gossipsub))
            await stack.enter_async_context(self._host.run(self._listen))
            self._check_listening()
            if self._dht is not None:
                await stack.enter_async_context(background_trio_service(self._dht))
            if self._relay is not None:
                await stack.enter_async_context(background_trio_service(self._relay))
                await self._relay.event_started.wait()
        except BaseException:
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            await stack.__aexit__(*sys.exc_info())
            raise
        self._stack = stack
        if self.config.mdns:
            self._trio_token = trio.lowlevel.current_trio_token()
            peerDiscovery.register_peer_discovered_handler(self._on_mdns_peer)
        if self.config.bootstrap:
            # Bootstrap peers are kept connected for the host's lifetime, not dialled once.
            self._nursery.start_soon(run_reconnect_watchdog, self, list(self.config.bootstrap))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._stack is not None and self._nursery is not None
        if self.config.mdns:
            peerDiscovery.unregister_peer_discovered_handler(self._on_mdns_peer)
        self._nursery.cancel_scope.cancel()
        for sub in self._subs.values():
            sub.queue.close()
        for queue in self._event_queues:
            queue.close()
        # py-libp2p's service shutdown runs under cancellation and never reaches its listener
        # close: the listening socket leaked and a restart on the same port failed. Close first.
        with trio.CancelScope(shield=True), trio.move_on_after(5), contextlib.suppress(Exception):
            await self._host.close()
        try:
            # Never report the body's exception as handled: some py-libp2p service contexts swallow
            # what passes through them, and an application error must not vanish with the host.
            await self._stack.__aexit__(exc_type, exc, tb)
        finally:
            self._stack = None
        return None

    def _swarm(self) -> Swarm:
        return cast(Swarm, self._host.get_network())

    def _check_listening(self) -> None:
        # py-libp2p logs a failed listen and carries on with no address at all.
        listening = self._host.get_network().listeners
        for maddr in self._listen:
            if str(maddr) not in listening:
                raise ListenError(listen_failure_advice(str(maddr)))

    def _advertised_addrs(self, candidates: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
        # 0.0.0.0 is where we listen, not where anyone can reach us: list each interface instead.
        out: list[multiaddr.Multiaddr] = []
        for addr in candidates:
            for expanded in expand_unspecified(str(addr)):
                maddr = multiaddr.Multiaddr(expanded)
                if maddr not in out:
                    out.append(maddr)
        return out

    def _cached_get_addrs(self) -> list[multiaddr.Multiaddr]:
        # py-libp2p rebuilds the advertised address list for the signed peer record on every
        # gossip message it sends or forwards: 0.5 ms each, a third of publish time (profiled).
        now = time.monotonic()
        cached = self._addr_cache
        if cached is None or now - cached[0] >= ADDR_CACHE_S or not cached[1]:
            cached = self._addr_cache = (now, self._uncached_get_addrs())
        return list(cached[1])

    def _on_mdns_peer(self, info: PeerInfo) -> None:
        # Called from zeroconf's thread (and for every host in the process: the registry is global).
        if info.peer_id == self._libp2p_id or self._nursery is None or self._trio_token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            self._trio_token.run_sync_soon(self._spawn_dial, info)

    def _spawn_dial(self, info: PeerInfo) -> None:
        # Runs on the trio loop; an exception here would crash the whole run, so none may escape.
        with contextlib.suppress(RuntimeError):  # the nursery is closing
            if self._nursery is not None:
                self._nursery.start_soon(self._dial_discovered, info)

    async def _dial_discovered(self, info: PeerInfo) -> None:
        peer_id = str(info.peer_id.to_base58())
        if peer_id in self._connected:
            return
        try:
            with trio.fail_after(self.config.connect_timeout):
                await self._host.connect(info)
            log.info("connected to %s, found by mDNS", peer_id)
        except Exception as exc:
            log.debug("mDNS peer %s not reachable: %r", peer_id, exc)

    # --- identity and addresses ------------------------------------------

    @property
    def listen_addrs(self) -> list[str]:
        """Dialable addresses of this host, each ending in /p2p/<peer id>."""
        return [str(a) for a in self._host.get_addrs()]

    def connected_peers(self) -> list[str]:
        return sorted(self._connected)

    def is_connected(self, peer_id: str) -> bool:
        return peer_id in self._connected

    def connection_security(self, peer_id: str) -> list[str]:
        """The negotiated security protocol of each open connection to `peer_id` (always "/noise")."""
        conns = self._host.get_network().get_connections(ID.from_base58(peer_id))
        return [str(cast(SwarmConn, c).get_negotiated_security_protocol()) for c in conns]

    def connection_kinds(self, peer_id: str) -> list[str]:
        """Whether each open connection to `peer_id` is "direct" or "relayed"."""
        conns = self._host.get_network().get_connections(ID.from_base58(peer_id))
        return ["relayed" if "RELAY" in str(c.get_connection_type()).upper() else "direct" for c in conns]

    # --- connections and peer events -------------------------------------

    def unblock_peer(self, peer_id: str) -> None:
        """Forget recent dial failures, so the next dial really tries (py-libp2p blocks for 60 s, notes #8)."""
        self._swarm().unblock_peer(ID.from_base58(peer_id))

    async def connect(self, addr: str, *, timeout: float | None = None) -> str:
        """Connect to a full multiaddr (ending in /p2p/<peer id>, possibly via /p2p-circuit); the peer ID."""
        maddr = _parse_addr(addr)
        timeout = self.config.connect_timeout if timeout is None else timeout
        try:
            if _is_circuit(maddr):
                return await self._connect_circuit(maddr, timeout)
            info = info_from_p2p_addr(maddr)
        except DialError:
            raise
        except Exception as exc:
            raise DialError(f"{addr}: {exc} (a dialable address ends in /p2p/<peer id>)") from None
        peer_id = str(info.peer_id.to_base58())
        if peer_id == self.peer_id:
            raise DialError(f"{addr} is this host itself")
        self._swarm().unblock_peer(info.peer_id)
        try:
            with trio.fail_after(timeout):
                # Returns at once, without a checkpoint, if a connection (even a closing one) exists:
                # a caller retrying in a loop would starve the task that cleans that connection up.
                await trio.lowlevel.checkpoint()
                await self._host.connect(info)
        except trio.TooSlowError:
            raise DialError(f"{addr}: no connection within {timeout:g} s") from None
        except Exception as exc:
            raise DialError(f"{addr}: {exc}") from None
        return peer_id

    async def disconnect(self, peer_id: str) -> None:
        with contextlib.suppress(Exception):
            await self._host.disconnect(ID.from_base58(peer_id))

    async def wait_for_peer(self, peer_id: str, *, timeout: float) -> None:
        """Return once `peer_id` is connected; trio.TooSlowError after `timeout`."""
        with trio.fail_after(timeout):
            while peer_id not in self._connected:
                await self._peer_waiters.setdefault(peer_id, trio.Event()).wait()

    @contextlib.asynccontextmanager
    async def peer_events(self) -> AsyncIterator[DeliveryQueue[PeerEvent]]:
        """Connection and disconnection events (one per peer, not per connection) while the block runs."""
        queue: DeliveryQueue[PeerEvent] = DeliveryQueue("peer events")
        self._event_queues.append(queue)
        try:
            yield queue
        finally:
            self._event_queues.remove(queue)
            queue.close()

    def _emit(self, event: PeerEvent) -> None:
        for queue in self._event_queues:
            if not queue.put(event):
                log.error("peer event queue full: %s for %s lost", event.kind, event.peer_id)

    def _on_connected(self, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        peer_id = str(peer.to_base58())
        security = cast(SwarmConn, conn).get_negotiated_security_protocol()
        if security != NOISE:  # cannot happen with a Noise-only list; refuse loudly if it ever does
            log.error("connection to %s negotiated %r, not %s: closing it", peer_id, security, NOISE)
            if self._nursery is not None:
                self._nursery.start_soon(self._close_conn, conn)
            return
        if peer_id in self._connected:
            return
        self._connected.add(peer_id)
        log.debug("connected to %s", peer_id)
        self._emit(PeerEvent(PeerEventKind.CONNECTED, peer_id))
        waiter = self._peer_waiters.pop(peer_id, None)
        if waiter is not None:
            waiter.set()
        if self._dht is not None and self._nursery is not None:
            self._nursery.start_soon(self._dht_add, peer)

    def _on_disconnected(self, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        peer_id = str(peer.to_base58())
        remaining = [c for c in self._host.get_network().get_connections(peer) if c is not conn and not c.is_closed]
        if remaining or peer_id not in self._connected:
            return
        self._connected.discard(peer_id)
        log.debug("disconnected from %s", peer_id)
        self._emit(PeerEvent(PeerEventKind.DISCONNECTED, peer_id))

    async def _close_conn(self, conn: INetConn) -> None:
        with trio.move_on_after(5), contextlib.suppress(Exception):
            await conn.close()

    async def _dht_add(self, peer: ID) -> None:
        # The routing table stays empty unless connected peers are added by hand (notes #10).
        assert self._dht is not None
        try:
            await self._dht.add_peer(peer, skip_server_mode_check=True)
        except Exception as exc:
            log.debug("could not add %s to the DHT routing table: %r", peer, exc)

    # --- discovery ---------------------------------------------------------

    async def find_peer(self, peer_id: str, *, timeout: float = 10.0) -> list[str]:
        """Addresses of `peer_id` from the peerstore or, failing that, a Kademlia lookup ([] if not found)."""
        if self._dht is None:
            raise RuntimeError("this host runs without the DHT (HostConfig.dht=False)")
        with trio.move_on_after(timeout):
            try:
                info = await self._dht.find_peer(ID.from_base58(peer_id))
            except Exception as exc:
                log.debug("DHT lookup of %s failed: %r", peer_id, exc)
                return []
            if info is None:
                return []
            return [f"{a}/p2p/{peer_id}" if "/p2p/" not in str(a) else str(a) for a in info.addrs]
        return []

    # --- circuit relay v2 ---------------------------------------------------

    async def reserve_relay(self, relay_addr: str, *, timeout: float = 10.0) -> str:
        """Reserve a slot on a relay; returns the /p2p-circuit address others can dial us on."""
        if self._relay_transport is None or self._nursery is None:
            raise RuntimeError("relay reservations need HostConfig.relay_client=True")
        relay_id = await self.connect(relay_addr, timeout=timeout)
        try:
            with trio.fail_after(timeout):
                stream = await self._host.new_stream(ID.from_base58(relay_id), [RELAY_HOP_PROTOCOL])
                ok = await self._relay_transport.reserve(stream, ID.from_base58(relay_id), self._nursery)
        except Exception as exc:
            raise DialError(f"relay {relay_addr} refused or failed the reservation: {exc!r}") from None
        if not ok:
            raise DialError(f"relay {relay_addr} refused the reservation (is it running with relay_hop=True?)")
        return f"{relay_addr}/p2p-circuit/p2p/{self.peer_id}"

    async def _connect_circuit(self, maddr: multiaddr.Multiaddr, timeout: float) -> str:
        if self._relay_transport is None:
            raise DialError(f"{maddr} is a relay address; dialling it needs HostConfig.relay_client=True")
        try:
            with trio.fail_after(timeout):
                conn = await self._relay_transport.dial(maddr)
        except trio.TooSlowError:
            raise DialError(f"{maddr}: no relayed connection within {timeout:g} s") from None
        except Exception as exc:
            raise DialError(f"{maddr}: {exc}") from None
        return str(conn.muxed_conn.peer_id.to_base58())

    # --- gossip --------------------------------------------------------------

    def subscriber_count(self, topic: str) -> int:
        """Connected peers known to be subscribed to `topic`."""
        return len(self._pubsub.peer_topics.get(topic, ()))

    async def wait_for_subscribers(self, topic: str, count: int, *, timeout: float) -> None:
        """Return once `count` peers are subscribed to `topic`; trio.TooSlowError after `timeout`."""
        with trio.fail_after(timeout):
            while self.subscriber_count(topic) < count:
                await trio.sleep(0.02)  # pubsub has no event for "any peer subscribed"

    def _congested(self, topic: str) -> list[str]:
        high = self.config.gossip.queue_high_water
        queues = self._pubsub.peer_queues
        return [
            str(p.to_base58())
            for p in self._pubsub.peer_topics.get(topic, ())
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
        if len(data) > MAX_GOSSIP_BYTES:
            raise PublishTooLarge(
                f"{len(data)} bytes is over the {MAX_GOSSIP_BYTES}-byte gossip ceiling; send it on a stream"
            )
        if check:
            self.checks.outgoing(topic, data, self_peer=self.peer_id, expect=topic_kinds(topic))
        timeout = self.config.gossip.publish_timeout if timeout is None else timeout
        start = trio.current_time()
        while congested := self._congested(topic):
            if trio.current_time() - start >= timeout:
                raise PublishBackpressure(topic, congested, trio.current_time() - start)
            await trio.sleep(BACKPRESSURE_POLL_S)
        await self._pubsub.publish(topic, data)
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
            self,
            topic,
            frozenset(expect) if expect else topic_kinds(topic),
            frozenset(trusted) if trusted is not None else None,
            max_buffered or self.config.gossip.max_buffered,
        )
        self._subs[topic] = sub

        def validator(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            return self._validate(sub, forwarder, msg)

        self._pubsub.set_topic_validator(topic, validator, False)
        await self._pubsub.subscribe(topic)
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.topic) is not sub:
            return
        del self._subs[sub.topic]
        self._pubsub.remove_topic_validator(sub.topic)
        sub.queue.close()
        with contextlib.suppress(Exception):
            await self._pubsub.unsubscribe(sub.topic)

    def _validate(self, sub: Subscription, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        try:
            origin = ID(msg.from_id)
            if origin == self._libp2p_id:
                return True  # our own publish, checked in publish()
            opened = self.checks.gossip(
                sub.topic, msg.data, origin=str(origin.to_base58()), expect=sub.expect, trusted=sub.trusted
            )
        except Exception as exc:
            self.checks.drop(
                self.stats.gossip_dropped, exc, what=f"gossip on {sub.topic}", peer=str(forwarder), size=len(msg.data)
            )
            return False
        self._validated[(self._pubsub.get_message_id(msg), sub.topic)] = opened
        while len(self._validated) > 10_000:  # a validated message libp2p then dropped: forget it
            self._validated.popitem(last=False)
        return True

    def _deliver(self, msg: rpc_pb2.Message) -> None:
        msg_id = self._pubsub.get_message_id(msg)
        for topic in msg.topicIDs:
            sub = self._subs.get(topic)
            opened = self._validated.pop((msg_id, topic), None)
            if sub is None or opened is None or sub.queue.closed:
                continue  # own message echoed locally, or unsubscribed / shutting down meanwhile
            if sub.queue.put(opened):
                self.stats.gossip_delivered[topic] += 1
            else:
                self.stats.gossip_dropped["delivery_queue_full"] += 1
                log.error(
                    "subscription %s: %d messages waiting, over max_buffered; message from %s dropped",
                    topic, len(sub.queue), opened.sender_peer_id,
                )  # fmt: skip

    # --- direct streams --------------------------------------------------

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

        async def on_stream(stream: INetStream) -> None:
            raw: RawStream | None = None
            try:
                raw = RawStream(stream)
                peer = raw.peer_id

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

                await serve_session(raw, handle, limits)
                await raw.close()
            except FrameError as exc:
                peer = raw.peer_id if raw else "?"
                self.checks.drop(self.stats.streams_reset, exc, what=f"stream {protocol_id}", peer=peer)
                if raw is not None:
                    await raw.reset()
            except ConnectionLost as exc:
                log.debug("stream %s ended: %s", protocol_id, exc)
            except Exception:
                # An exception escaping a stream handler tears down the whole host (notes #7).
                log.exception("stream handler for %s failed", protocol_id)
                if raw is not None:
                    await raw.reset()

        self._host.set_stream_handler(TProtocol(protocol_id), on_stream)

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
        try:
            with trio.fail_after(timeout):
                channel = await self._channel(peer_id, protocol_id)
                body = await channel.session.call(envelope)
        except trio.TooSlowError:
            raise RequestTimeout(f"no answer from {peer_id} on {protocol_id} within {timeout:g} s") from None
        try:
            return self.checks.response(body, peer=peer_id, expect=expect, trusted=trusted)
        except ProtocolError as exc:
            self.checks.drop(self.stats.responses_refused, exc, what="response", peer=peer_id)
            raise

    async def _channel(self, peer_id: str, protocol_id: str) -> _Channel:
        assert self._nursery is not None
        key = (peer_id, protocol_id)
        async with self._channel_locks.setdefault(key, trio.Lock()):
            channel = self._channels.get(key)
            if channel is not None and channel.session.closed is None:
                return channel
            if channel is not None:
                channel.scope.cancel()
            try:
                stream = await self._host.new_stream(ID.from_base58(peer_id), [TProtocol(protocol_id)])
            except Exception as exc:
                raise ConnectionLost(f"cannot open {protocol_id} to {peer_id}: {exc}") from None
            raw = RawStream(stream)
            channel = _Channel(ClientSession(raw, max_response=max_envelope_size()), raw, trio.CancelScope())
            self._channels[key] = channel
            self._nursery.start_soon(self._run_channel, key, channel)
            return channel

    async def _run_channel(self, key: tuple[str, str], channel: _Channel) -> None:
        with channel.scope:
            try:
                await channel.session.run()
            except FrameError as exc:
                self.checks.drop(self.stats.streams_reset, exc, what=f"stream {key[1]}", peer=key[0])
            except Exception as exc:
                log.debug("channel to %s on %s ended: %r", key[0], key[1], exc)
        with trio.CancelScope(shield=True):
            await channel.stream.reset()
        if self._channels.get(key) is channel:
            del self._channels[key]

    async def open_stream(self, peer_id: str, protocol_id: str) -> RawStream:
        """A bare stream, for tools and tests that speak a protocol by hand."""
        try:
            return RawStream(await self._host.new_stream(ID.from_base58(peer_id), [TProtocol(protocol_id)]))
        except Exception as exc:
            raise ConnectionLost(f"cannot open {protocol_id} to {peer_id}: {exc}") from None


__all__ = [
    "MAX_GOSSIP_BYTES",
    "NOISE",
    "GossipConfig",
    "HostConfig",
    "PeerEvent",
    "PeerEventKind",
    "RawStream",
    "RefusalHook",
    "RequestHandler",
    "Subscription",
    "SwarmHost",
    "libp2p_peer_id",
]

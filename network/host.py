"""`SwarmHost`: a libp2p host configured the way dataswarm needs it, composed of gossip and streams.

Behind a small typed interface of str peer IDs, str multiaddrs, envelope bytes
and `protocol.Opened` values, it owns the libp2p host's lifecycle,
connections and peer events, discovery (mDNS, the DHT) and circuit relay;
gossip is `Gossip` (gossip.py), requests on streams are `Streams`
(streams.py) over `RawStream`, the libp2p stream adapter here. The
py-libp2p 0.8.1 workarounds are listed, numbered, in patches.py.

Run it as an async context manager inside a trio task; background work lives
in the host's own nursery and is cancelled on exit.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import multiaddr
import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service

from network.checks import EnvelopeChecks, NetworkStats
from network.doctor import expand_unspecified, listen_blocker, listen_failure_advice
from network.errors import DialError, ListenError, network_errors
from network.events import PeerEvent
from network.gossip import Gossip, GossipConfig
from network.liveness import run_reconnect_watchdog
from network.patches import NOISE, cache_get_addrs, new_libp2p_host
from network.peers import PeerTable
from network.queue import DeliveryQueue
from network.relay import Relay, is_circuit
from network.streams import Channel, StreamHandler, Streams
from network.transport import Transport
from protocol.identity import Identity

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024


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
    """A libp2p stream as a `streams.Stream`: EOF is b"", every other failure is ConnectionLost."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self.peer_id = str(stream.muxed_conn.peer_id.to_base58())

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with network_errors("read", f"from {self.peer_id}"):
            try:
                data = await self._stream.read(max_bytes or READ_CHUNK)
            except StreamEOF:
                return b""
        return bytes(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with network_errors("write", f"to {self.peer_id}"):
            await self._stream.write(bytes(data))

    async def close(self) -> None:
        with trio.move_on_after(2), contextlib.suppress(Exception):
            await self._stream.close()

    async def reset(self) -> None:
        with trio.move_on_after(2), contextlib.suppress(Exception):
            await self._stream.reset()


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
        self._host = new_libp2p_host(
            self._key_pair,
            self._listen,
            mdns=config.mdns,
            addrs_factory=(lambda _c: announce) if announce else self._advertised_addrs,
        )
        cache_get_addrs(self._host)
        self._libp2p_id: ID = self._host.get_id()
        self.peer_id: str = str(self._libp2p_id.to_base58())
        self.gossip = Gossip(self._host, config.gossip, self.checks)
        self.streams = Streams(self.checks, open_stream=self.open_stream, set_handler=self._set_stream_handler)
        # The host's gossip and stream calls are those of its parts (their docstrings say what each does).
        self.publish = self.gossip.publish
        self.subscribe = self.gossip.subscribe
        self.subscriber_count = self.gossip.subscriber_count
        self.wait_for_subscribers = self.gossip.wait_for_subscribers
        self.serve = self.streams.serve
        self.request = self.streams.request
        self._dht: KadDHT | None = KadDHT(self._host, DHTMode.SERVER) if config.dht else None
        relayed = config.relay_hop or config.relay_client
        self._relay: Relay | None = Relay(self._host, hop=config.relay_hop) if relayed else None
        self.peers = PeerTable()
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
            self._nursery = self.streams.nursery = await stack.enter_async_context(trio.open_nursery())
            # Services before host.run(), or bootstrap dials crash the host (notes #5).
            await stack.enter_async_context(background_trio_service(self.gossip.pubsub))
            await stack.enter_async_context(background_trio_service(self.gossip.gossipsub))
            await stack.enter_async_context(self._host.run(self._listen))
            self._check_listening()
            if self._dht is not None:
                await stack.enter_async_context(background_trio_service(self._dht))
            if self._relay is not None:
                await stack.enter_async_context(background_trio_service(self._relay.protocol))
                await self._relay.protocol.event_started.wait()
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
        self.gossip.close()
        self.peers.close()
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
        if peer_id in self.peers:
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
        return self.peers.connected_peers()

    def is_connected(self, peer_id: str) -> bool:
        return peer_id in self.peers

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
        with network_errors("dial", f"{addr!r} is not a multiaddr"):
            maddr = multiaddr.Multiaddr(addr)
        timeout = self.config.connect_timeout if timeout is None else timeout
        if is_circuit(maddr):
            if self._relay is None:
                raise DialError(f"{maddr} is a relay address; dialling it needs HostConfig.relay_client=True")
            return await self._relay.dial(maddr, timeout=timeout)
        with network_errors("dial", f"{addr} (a dialable address ends in /p2p/<peer id>)"):
            info = info_from_p2p_addr(maddr)
        peer_id = str(info.peer_id.to_base58())
        if peer_id == self.peer_id:
            raise DialError(f"{addr} is this host itself")
        self._swarm().unblock_peer(info.peer_id)
        with network_errors("dial", addr, timeout=timeout), trio.fail_after(timeout):
            # Returns at once, without a checkpoint, if a connection (even a closing one) exists:
            # a caller retrying in a loop would starve the task that cleans that connection up.
            await trio.lowlevel.checkpoint()
            await self._host.connect(info)
        return peer_id

    async def disconnect(self, peer_id: str) -> None:
        with contextlib.suppress(Exception):
            await self._host.disconnect(ID.from_base58(peer_id))

    async def wait_for_peer(self, peer_id: str, *, timeout: float) -> None:
        """Return once `peer_id` is connected; trio.TooSlowError after `timeout`."""
        await self.peers.wait_for_peer(peer_id, timeout=timeout)

    def peer_events(self) -> contextlib.AbstractAsyncContextManager[DeliveryQueue[PeerEvent]]:
        """Connection and disconnection events (one per peer, not per connection) while the block runs."""
        return self.peers.peer_events()

    def _on_connected(self, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        peer_id = str(peer.to_base58())
        security = cast(SwarmConn, conn).get_negotiated_security_protocol()
        if security != NOISE:  # cannot happen with a Noise-only list; refuse loudly if it ever does
            log.error("connection to %s negotiated %r, not %s: closing it", peer_id, security, NOISE)
            if self._nursery is not None:
                self._nursery.start_soon(self._close_conn, conn)
            return
        if self.peers.connected(peer_id) and self._dht is not None and self._nursery is not None:
            self._nursery.start_soon(self._dht_add, peer)

    def _on_disconnected(self, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        peer_id = str(peer.to_base58())
        remaining = [c for c in self._host.get_network().get_connections(peer) if c is not conn and not c.is_closed]
        if not remaining:
            self.peers.disconnected(peer_id)

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

    # --- circuit relay v2 (relay.py) ---------------------------------------

    async def reserve_relay(self, relay_addr: str, *, timeout: float = 10.0) -> str:
        """Reserve a slot on a relay; returns the /p2p-circuit address others can dial us on."""
        if self._relay is None or self._nursery is None:
            raise RuntimeError("relay reservations need HostConfig.relay_client=True")
        relay_id = await self.connect(relay_addr, timeout=timeout)
        await self._relay.reserve(relay_addr, relay_id, self._nursery, timeout=timeout)
        return f"{relay_addr}/p2p-circuit/p2p/{self.peer_id}"

    # --- direct streams (streams.py) -------------------------------------

    @property
    def _channels(self) -> dict[tuple[str, str], Channel]:
        return self.streams.channels

    async def open_stream(self, peer_id: str, protocol_id: str) -> RawStream:
        """A new bare stream (requests use a cached one; tools and tests speak a protocol by hand on it)."""
        with network_errors("open", f"{protocol_id} to {peer_id}"):
            return RawStream(await self._host.new_stream(ID.from_base58(peer_id), [TProtocol(protocol_id)]))

    def _set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        async def on_stream(stream: INetStream) -> None:
            try:
                raw = RawStream(stream)
            except Exception:  # nothing may escape a stream handler (notes #7); `handler` catches the rest
                log.exception("a stream on %s without a peer", protocol_id)
                return
            await handler(raw)

        self._host.set_stream_handler(TProtocol(protocol_id), on_stream)


def _is_a_transport(host: SwarmHost) -> Transport:
    return host  # mypy's check that SwarmHost implements Transport


__all__ = ["HostConfig", "RawStream", "SwarmHost", "key_pair_from_identity", "libp2p_peer_id"]

"""Circuit relay v2: serving as a relay for peers that cannot be dialled, and reaching peers through one.

`Relay` holds libp2p's relay protocol (a service `SwarmHost` starts) and its
relay transport. A host with `relay_hop` relays for others; either kind can
dial /p2p-circuit addresses and reserve a slot on a relay.
"""

from __future__ import annotations

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as RELAY_HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport

from network.errors import DialError, network_errors


def is_circuit(maddr: multiaddr.Multiaddr) -> bool:
    return any(p.name == "p2p-circuit" for p in maddr.protocols())


class Relay:
    def __init__(self, host: IHost, *, hop: bool) -> None:
        limits = RelayLimits(duration=3600, data=1 << 30, max_circuit_conns=256, max_reservations=256)
        self._host = host
        self.protocol = CircuitV2Protocol(host, limits=limits, allow_hop=hop)
        """The service to run (and wait for `event_started`) while the host runs."""
        roles = RelayRole.STOP | RelayRole.CLIENT | (RelayRole.HOP if hop else RelayRole(0))
        self._transport = CircuitV2Transport(host, self.protocol, RelayConfig(roles=roles, limits=limits))

    async def reserve(self, relay_addr: str, relay_id: str, nursery: trio.Nursery, *, timeout: float) -> None:
        """Reserve a slot on the connected relay `relay_id`; DialError if it fails or says no."""
        with network_errors("dial", f"relay {relay_addr}, reserving", timeout=timeout), trio.fail_after(timeout):
            stream = await self._host.new_stream(ID.from_base58(relay_id), [RELAY_HOP_PROTOCOL])
            ok = await self._transport.reserve(stream, ID.from_base58(relay_id), nursery)
        if not ok:
            raise DialError(f"relay {relay_addr} refused the reservation (is it running with relay_hop=True?)")

    async def dial(self, maddr: multiaddr.Multiaddr, *, timeout: float) -> str:
        """Connect through the relay a /p2p-circuit address names; the peer ID reached."""
        with network_errors("dial", f"{maddr} (relayed)", timeout=timeout), trio.fail_after(timeout):
            conn = await self._transport.dial(maddr)
        return str(conn.muxed_conn.peer_id.to_base58())

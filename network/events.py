"""Peer connection events, as the host reports them to the application (one per peer, not per connection)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PeerEventKind(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class PeerEvent:
    kind: PeerEventKind
    peer_id: str


def peer_id_of(addr: str) -> str:
    """The peer ID a full multiaddr ends with (the destination, for a /p2p-circuit address)."""
    _head, sep, tail = addr.rstrip("/").rpartition("/p2p/")
    if not sep or not tail or "/" in tail:
        raise ValueError(f"{addr!r} does not end in /p2p/<peer id>")
    return tail

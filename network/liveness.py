"""Staying visible and staying connected.

- `run_periodic_publisher`: seal whatever a callable says is the current
  message (a NodeStatus, a CoordinatorAnnounce) and gossip it every interval.
- `run_reconnect_watchdog`: keep a set of peers (coordinators, bootstrap
  peers) connected, however long they are gone. py-libp2p's own bootstrap
  gives up after 3 failures and blocks a failed peer for 60 s; the watchdog
  retries every few seconds and clears that block before each dial
  (notes/libp2p.md #8), and reacts at once to a disconnection event.

Both run until cancelled: start them in the nursery of the component that
owns them. Neither lets an error end it; each failure is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import trio

from network.checks import now_ms
from network.errors import DialError, NetworkError
from network.events import PeerEventKind, peer_id_of
from protocol.envelope import MAX_LIFETIME_MS, seal
from protocol.errors import ProtocolError
from protocol.messages import Message

if TYPE_CHECKING:
    from network.host import SwarmHost
    from network.transport import Transport

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.5
RETRY_MAX_S = 2.0
"""Dial retry ceiling: a returning coordinator is found within ~2 s (+ dial time); refused dials cost ~nothing."""


async def run_periodic_publisher(
    host: Transport,
    topic: str,
    produce: Callable[[], Message],
    *,
    interval: float,
    ttl_ms: int | None = None,
) -> None:
    """Publish `seal(host.identity, produce())` on `topic` now and every `interval` seconds.

    The envelope lives `ttl_ms` (default: three intervals, at least 10 s), so
    receivers can treat a peer whose last message expired as gone.
    """
    ttl = ttl_ms if ttl_ms is not None else min(MAX_LIFETIME_MS, max(10_000, int(3_000 * interval)))
    while True:
        try:
            envelope = seal(host.identity, produce(), now_ms=now_ms(), ttl_ms=ttl)
            await host.publish(topic, envelope, timeout=interval)
        except (NetworkError, ProtocolError) as exc:
            log.warning("periodic publish on %s failed: %s", topic, exc)
        except Exception:
            log.exception("periodic publish on %s: producing the message failed", topic)
        await trio.sleep(interval)


async def keep_connected(
    host: SwarmHost, addr: str, *, retry_min: float = RETRY_MIN_S, retry_max: float = RETRY_MAX_S
) -> None:
    """Hold a connection to the peer at `addr`: redial at once when it drops, then with capped backoff."""
    peer_id = peer_id_of(addr)
    delay = retry_min
    down_since: float | None = None
    async with host.peer_events() as events:
        while True:
            if host.is_connected(peer_id):
                if down_since is not None:
                    log.info("reconnected to %s after %.1f s", peer_id, trio.current_time() - down_since)
                down_since, delay = None, retry_min
                async for event in events:
                    if event.peer_id == peer_id and event.kind == PeerEventKind.DISCONNECTED:
                        break
                if events.closed:
                    return  # the host is shutting down
                down_since = trio.current_time()
                log.info("lost %s; redialling", peer_id)
                continue
            try:
                await host.connect(addr, timeout=max(retry_max, 5.0))
                if host.is_connected(peer_id):
                    continue
                # libp2p reused a connection that is closing: give its cleanup time, then redial.
                log.debug("connection to %s is still closing; redialling in %.1f s", peer_id, delay)
            except DialError as exc:
                if down_since is None:
                    down_since = trio.current_time()
                log.debug("redial of %s failed (%s); next try in %.1f s", peer_id, exc, delay)
            except Exception:
                log.exception("redial of %s failed unexpectedly", peer_id)
            await trio.sleep(delay)
            delay = min(retry_max, delay * 2)


async def run_reconnect_watchdog(
    host: SwarmHost, addrs: Sequence[str], *, retry_min: float = RETRY_MIN_S, retry_max: float = RETRY_MAX_S
) -> None:
    """`keep_connected` for each address, concurrently, until cancelled."""
    async with trio.open_nursery() as nursery:
        for addr in addrs:
            nursery.start_soon(partial(keep_connected, host, addr, retry_min=retry_min, retry_max=retry_max))

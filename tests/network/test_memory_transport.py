"""The in-memory transport double: it checks, limits and fails as SwarmHost does, where tests rely on it.

These tests are about the double itself (that it is faithful enough to stand in
for a SwarmHost in runtime tests); tests of the real network use real hosts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import trio

from network import (
    TASK_PROTOCOL,
    TASK_REQUEST_KINDS,
    TASK_RESPONSE_KINDS,
    AlreadySubscribed,
    ConnectionLost,
    PublishTooLarge,
    Refused,
    RemoteError,
    RequestTimeout,
    SwarmHost,
    Transport,
    network_error,
    now_ms,
    offers_topic,
)
from network.errors import DialError
from network.memory import MemoryNetwork, MemoryTransport
from protocol import Claim, Opened, Reject, TaskKind, seal
from protocol.errors import SenderMismatch, UntrustedSender
from protocol.messages import RejectReason
from tests.network.support import host_config, identity, make_offer

OFFERS = offers_topic(TaskKind.SYNTHESIZE)


@contextlib.asynccontextmanager
async def transports(*ns: int) -> AsyncIterator[list[MemoryTransport]]:
    network = MemoryNetwork()
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(network.transport(identity(n))) for n in ns]


def claim(n: int, task: str = "task-000001") -> bytes:
    return seal(identity(n), Claim(task_id=task, attempt=0, free_slots=1), now_ms=now_ms())


def test_both_transports_have_every_member_of_the_protocol() -> None:
    """mypy checks the signatures (host.py and memory.py each return one as a Transport); this, that none is missing."""
    members = {name for name in vars(Transport) if not name.startswith("_")}
    assert members == {"identity", "peer_id", "listen_addrs", "publish", "subscribe", "serve", "request"}
    host = SwarmHost(host_config(identity(1)))  # built, never started
    for transport in (host, MemoryNetwork().transport(identity(2))):
        assert {name for name in members if not hasattr(transport, name)} == set(), type(transport)


def test_foreign_failures_map_to_network_errors_in_one_place() -> None:
    assert isinstance(network_error(trio.TooSlowError(), "request", "p on /x", timeout=2), RequestTimeout)
    assert isinstance(network_error(trio.TooSlowError(), "dial", "/ip4/1.2.3.4", timeout=2), DialError)
    lost = network_error(trio.BrokenResourceError("gone"), "write", "to p")
    assert isinstance(lost, ConnectionLost) and "write to p failed" in str(lost)
    assert "cannot open /x to p" in str(network_error(OSError("refused"), "open", "/x to p"))
    own = RemoteError("no")
    assert network_error(own, "request", "p") is own


async def test_gossip_reaches_every_other_subscriber_checked_as_a_host_would() -> None:
    coord, stranger = identity(0), identity(9)
    async with transports(0, 1, 2, 9) as (c, n1, n2, s):
        offers1 = await n1.subscribe(OFFERS, trusted={coord.public_key})
        offers2 = await n2.subscribe(OFFERS)
        await c.subscribe(OFFERS)  # a publisher's own subscription does not hear itself
        with pytest.raises(AlreadySubscribed):
            await n1.subscribe(OFFERS)
        assert await c.publish(OFFERS, seal(coord, make_offer(1), now_ms=now_ms())) == 2
        # Signed by a key n1 does not trust: n1 drops it, n2 (no trusted set) takes it.
        assert await s.publish(OFFERS, seal(stranger, make_offer(2), now_ms=now_ms())) == 3
        with trio.fail_after(1):
            assert (await offers1.get()).message.task_id == "task-000001"  # type: ignore[union-attr]
            got = [(await offers2.get()).sender_peer_id for _ in range(2)]
        assert got == [coord.peer_id, stranger.peer_id]
        assert len(offers1) == 0
        assert n1.stats.gossip_dropped == {"untrusted_sender": 1}
        assert n2.stats.gossip_delivered == {OFFERS: 2}
        assert c.stats.gossip_delivered == {OFFERS: 1}  # the stranger's offer, not its own
        await offers2.unsubscribe()
        assert await c.publish(OFFERS, seal(coord, make_offer(3), now_ms=now_ms())) == 1


async def test_what_the_publisher_would_refuse_is_dropped_by_the_receiver_for_the_same_reason() -> None:
    forged = seal(identity(5), make_offer(1), now_ms=now_ms())  # not signed by the sender
    async with transports(0, 1) as (c, n):
        sub = await n.subscribe(OFFERS)
        with pytest.raises(SenderMismatch):
            await c.publish(OFFERS, forged)
        with pytest.raises(PublishTooLarge):  # the gossip ceiling holds even unchecked
            await c.publish(OFFERS, b"x" * 1_000_001, check=False)
        await c.publish(OFFERS, forged, check=False)
        await c.publish(OFFERS, seal(identity(0), make_offer(2, TaskKind.SEARCH), now_ms=now_ms()), check=False)
        assert n.stats.gossip_dropped == {"sender_mismatch": 1, "wrong_topic": 1}
        assert len(sub) == 0


async def test_requests_answers_refusals_and_failures() -> None:
    coord = identity(0)
    refused: list[tuple[str, str]] = []

    async def handler(peer: str, opened: Opened) -> bytes:
        task_id = opened.message.task_id  # type: ignore[union-attr]
        if task_id == "task-slow":
            await trio.sleep(5)
        if task_id == "task-no":
            raise Refused("task_unknown")
        if task_id == "task-forged":
            return seal(identity(7), Reject(task_id=task_id, reason=RejectReason.INVALID), now_ms=now_ms())
        return seal(coord, Reject(task_id=task_id, reason=RejectReason.NO_CAPACITY), now_ms=now_ms())

    async def on_refused(peer: str, error: Exception) -> None:
        refused.append((peer, type(error).__name__))

    async with transports(0, 1) as (c, n):
        c.serve(TASK_PROTOCOL, handler, expect=TASK_REQUEST_KINDS, on_refused=on_refused)

        async def ask(envelope: bytes, timeout: float = 5) -> Opened:
            return await n.request(
                c.peer_id, TASK_PROTOCOL, envelope, expect=TASK_RESPONSE_KINDS, trusted={coord.public_key},
                timeout=timeout,
            )  # fmt: skip

        with trio.fail_after(10):
            assert (await ask(claim(1, "task-a"))).message.reason == RejectReason.NO_CAPACITY  # type: ignore[union-attr]
            with pytest.raises(RequestTimeout):
                await ask(claim(1, "task-slow"), timeout=0.2)
            with pytest.raises(RemoteError, match="task_unknown"):
                await ask(claim(1, "task-no"))
            with pytest.raises(UntrustedSender):
                await ask(claim(1, "task-forged"))
            with pytest.raises(RemoteError, match="sender_mismatch"):  # signed by 2, sent by 1
                await ask(claim(2, "task-b"))
            with pytest.raises(ConnectionLost, match="does not serve"):
                await n.request(c.peer_id, "/dataswarm/1/nothing", claim(1), expect=TASK_RESPONSE_KINDS)
            with pytest.raises(ConnectionLost, match="no such peer"):
                await n.request(identity(8).peer_id, TASK_PROTOCOL, claim(1), expect=TASK_RESPONSE_KINDS)
            assert (await ask(claim(1, "task-c"))).message.task_id == "task-c"  # type: ignore[union-attr]
        assert refused == [(n.peer_id, "SenderMismatch")]
        assert c.stats.requests_served == {TASK_PROTOCOL: 5}
        assert n.stats.responses_refused == {"untrusted_sender": 1}
        assert len(n.streams.channels) == 1  # one persistent stream carried them all


async def test_a_request_fails_fast_when_the_peer_goes_away() -> None:
    coord = identity(0)
    network = MemoryNetwork()

    async def never(peer: str, opened: Opened) -> bytes:
        await trio.sleep_forever()
        raise AssertionError

    async with network.transport(identity(1)) as n:
        failed = trio.Event()

        async def waiting() -> None:
            with pytest.raises(ConnectionLost):
                await n.request(coord.peer_id, TASK_PROTOCOL, claim(1), expect=TASK_RESPONSE_KINDS, timeout=30)
            failed.set()

        async with trio.open_nursery() as nursery:
            async with network.transport(coord) as c:
                c.serve(TASK_PROTOCOL, never, expect=TASK_REQUEST_KINDS)
                nursery.start_soon(waiting)
                await trio.sleep(0.05)  # the request is in flight
            with trio.fail_after(1):
                await failed.wait()
        assert n.streams.channels == {}

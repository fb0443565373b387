"""SwarmHost with real libp2p hosts on 127.0.0.1, several in one process."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
import trio

from network import (
    NOISE,
    STATUS_TOPIC,
    TASK_PROTOCOL,
    TASK_REQUEST_KINDS,
    TASK_RESPONSE_KINDS,
    ConnectionLost,
    DialError,
    GossipConfig,
    ListenError,
    PeerEventKind,
    PublishTooLarge,
    Refused,
    RemoteError,
    RequestTimeout,
    Subscription,
    SwarmHost,
    WrongTopic,
    keep_connected,
    libp2p_peer_id,
    now_ms,
    offers_topic,
    run_periodic_publisher,
)
from network.doctor import INSECURE_PROTOCOLS, multistream_probe, parse_tcp_addr
from protocol import Claim, NodeStatus, Opened, Reject, TaskKind, peer_id_from_public_key, seal
from protocol.errors import Expired, SenderMismatch, UntrustedSender
from protocol.messages import RejectReason
from tests.network.support import host_config, hosts, identity, make_offer

OFFERS = offers_topic(TaskKind.SYNTHESIZE)


async def wait_until(condition: Callable[[], bool], *, timeout: float) -> None:
    """For state libp2p offers no event for (stats, routing tables): check often, bounded by `timeout`."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


def claim(n: int, task: str = "task-000001") -> bytes:
    return seal(identity(n), Claim(task_id=task, attempt=0, free_slots=1), now_ms=now_ms())


def reject_from(n: int) -> Callable[[str, Opened], object]:
    async def handler(peer: str, opened: Opened) -> bytes:
        task_id = opened.message.task_id  # type: ignore[union-attr]
        return seal(identity(n), Reject(task_id=task_id, reason=RejectReason.NO_CAPACITY), now_ms=now_ms())

    return handler


async def test_libp2p_peer_id_is_the_protocol_peer_id() -> None:
    ident = identity(1)
    assert libp2p_peer_id(ident) == peer_id_from_public_key(ident.public_key) == ident.peer_id
    async with SwarmHost(host_config(ident)) as host:
        assert host.peer_id == ident.peer_id
        assert all(a.endswith(f"/p2p/{ident.peer_id}") for a in host.listen_addrs)


async def test_only_noise_is_offered_and_negotiated() -> None:
    async with hosts(host_config(identity(1)), host_config(identity(2))) as (a, b):
        _, ip, port = parse_tcp_addr(a.listen_addrs[0])
        # An independent peer, speaking multistream-select by hand, proposes each insecure option.
        answers = await multistream_probe(ip, port, [*INSECURE_PROTOCOLS, NOISE])
        assert answers == {**dict.fromkeys(INSECURE_PROTOCOLS, False), NOISE: True}
        await b.connect(a.listen_addrs[0])
        await a.wait_for_peer(b.peer_id, timeout=10)
        assert a.connection_security(b.peer_id) == [NOISE]
        assert b.connection_security(a.peer_id) == [NOISE]


async def test_a_busy_port_is_refused_with_advice() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        advice = rf"port {port} is in use by another process: pass --listen /ip4/127\.0\.0\.1/tcp/\d+"
        with pytest.raises(ListenError, match=advice):
            async with SwarmHost(host_config(identity(1), listen=[f"/ip4/127.0.0.1/tcp/{port}"])):
                pass


async def test_a_port_is_free_again_after_the_host_exits() -> None:
    async with SwarmHost(host_config(identity(1))) as host:
        addr = host.listen_addrs[0].split("/p2p/")[0]
    async with SwarmHost(host_config(identity(1), listen=[addr])) as again:  # py-libp2p leaked the socket
        assert again.listen_addrs[0].startswith(addr)


async def test_a_consumer_far_behind_loses_no_gossip() -> None:
    coord, node = identity(0), identity(1)
    async with hosts(host_config(coord), host_config(node)) as (c, n):
        sub = await n.subscribe(OFFERS, trusted={coord.public_key})
        await n.connect(c.listen_addrs[0])
        await c.wait_for_subscribers(OFFERS, 1, timeout=10)
        count = 1500  # libp2p's own subscription channel holds 32
        for i in range(count):
            await c.publish(OFFERS, seal(coord, make_offer(i), now_ms=now_ms()))
        # Only now does the consumer start reading.
        with trio.fail_after(30):
            got = [(await sub.get()).message.task_id for _ in range(count)]  # type: ignore[union-attr]
        assert sorted(got) == [f"task-{i:06d}" for i in range(count)]
        assert sub.queue.high_water > 32
        assert n.stats.gossip_dropped == {}


@contextlib.asynccontextmanager
async def star(gossip: GossipConfig, n: int = 10) -> AsyncIterator[tuple[SwarmHost, list[Subscription]]]:
    """A publisher (identity 0) that `n` subscribers dialled, as nodes dial a coordinator; its heartbeat
    is slowed to 120 s so that nothing arrives through IHAVE gossip within a test."""
    coord = identity(0)
    config = host_config(coord, gossip=replace(gossip, heartbeat_interval=120))
    async with hosts(config, *(host_config(identity(i)) for i in range(1, n + 1))) as (c, *ns):
        subs = [await node.subscribe(OFFERS, trusted={coord.public_key}) for node in ns]
        for node in ns:
            await node.connect(c.listen_addrs[0])
        await c.wait_for_subscribers(OFFERS, n, timeout=20)
        yield c, subs


async def test_what_a_host_publishes_reaches_every_subscriber_at_once_not_six() -> None:
    """A coordinator's offers go to every node that dialled it, not to gossipsub's `degree` (6) fanout
    peers: without flood publish only six of the ten nodes get the offer."""
    async with star(GossipConfig()) as (c, subs):
        await c.publish(OFFERS, seal(identity(0), make_offer(7), now_ms=now_ms()))
        with trio.move_on_after(10):
            while not all(len(sub) for sub in subs):
                await trio.sleep(0.05)
        assert sum(1 for sub in subs if len(sub)) == len(subs), f"{[len(sub) for sub in subs]} offers per node"
        assert [(await sub.get()).message.task_id for sub in subs] == ["task-000007"] * len(subs)  # type: ignore[union-attr]


async def test_past_flood_max_each_message_goes_to_a_fresh_sample_so_every_node_hears_some() -> None:
    async with star(GossipConfig(flood_max=2)) as (c, subs):
        for i in range(60):
            await c.publish(OFFERS, seal(identity(0), make_offer(i), now_ms=now_ms()))
        await trio.sleep(3)
        reached = [len(sub) for sub in subs]
        # Each offer reaches the 6 fanout peers and 2 drawn at random: at most 8 of 10 nodes, and
        # a node outside the fanout misses all 60 draws with probability 0.8^60 (1.5e-6).
        assert all(reached), reached
        assert sum(reached) <= 60 * 8, reached


async def test_a_failed_dial_is_an_exception_not_an_error_line_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    gone = identity(5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens on it once the socket is closed
    async with hosts(host_config(identity(0))) as (h,):
        with pytest.raises(DialError, match=str(port)):
            await h.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{gone.peer_id}", timeout=5)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_the_same_envelope_twice_is_delivered_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="network")  # replays are logged at INFO: gossip echoes are normal
    coord, node = identity(0), identity(1)
    async with hosts(host_config(coord), host_config(node)) as (c, n):
        sub = await n.subscribe(OFFERS, trusted={coord.public_key})
        await n.connect(c.listen_addrs[0])
        await c.wait_for_subscribers(OFFERS, 1, timeout=10)
        envelope = seal(coord, make_offer(1), now_ms=now_ms())
        await c.publish(OFFERS, envelope)
        await c.publish(OFFERS, envelope)  # a new gossip message id, the same (sender, nonce)
        await c.publish(OFFERS, seal(coord, make_offer(2), now_ms=now_ms()))
        with trio.fail_after(10):
            first, second = await sub.get(), await sub.get()
        assert {first.message.task_id, second.message.task_id} == {"task-000001", "task-000002"}  # type: ignore[union-attr]
        await wait_until(lambda: n.stats.gossip_dropped["replayed"] == 1, timeout=10)
        assert len(sub) == 0
        assert any(getattr(r, "drop_reason", None) == "replayed" for r in caplog.records)


async def test_publish_refuses_what_every_receiver_would_drop() -> None:
    coord = identity(0)
    async with SwarmHost(host_config(coord)) as c:
        with pytest.raises(Expired):
            await c.publish(OFFERS, seal(coord, make_offer(1), now_ms=now_ms() - 3_600_000, ttl_ms=60_000))
        with pytest.raises(WrongTopic):
            await c.publish(offers_topic(TaskKind.SEARCH), seal(coord, make_offer(1), now_ms=now_ms()))
        with pytest.raises(SenderMismatch):  # signed by someone else
            await c.publish(OFFERS, seal(identity(5), make_offer(1), now_ms=now_ms()))
        with pytest.raises(PublishTooLarge):
            await c.publish(OFFERS, b"x" * 1_000_001, check=False)


async def test_requests_on_a_persistent_stream() -> None:
    coord, node = identity(0), identity(1)
    calls = 0

    async def handler(peer: str, opened: Opened) -> bytes:
        nonlocal calls
        calls += 1
        task_id = opened.message.task_id  # type: ignore[union-attr]
        if task_id == "task-slow":
            await trio.sleep(5)
        if task_id == "task-bug":
            raise RuntimeError("handler bug")
        if task_id == "task-no":
            raise Refused("task_unknown")
        if task_id == "task-forged":  # answered with a signature that is not the coordinator's
            return seal(identity(7), Reject(task_id=task_id, reason=RejectReason.INVALID), now_ms=now_ms())
        return seal(coord, Reject(task_id=task_id, reason=RejectReason.NO_CAPACITY), now_ms=now_ms())

    async with hosts(host_config(coord), host_config(node)) as (c, n):
        c.serve(TASK_PROTOCOL, handler, expect=TASK_REQUEST_KINDS)
        await n.connect(c.listen_addrs[0])

        async def ask(task: str, timeout: float = 10) -> Opened:
            return await n.request(c.peer_id, TASK_PROTOCOL, claim(1, task), expect=TASK_RESPONSE_KINDS,
                                   trusted={coord.public_key}, timeout=timeout)

        assert (await ask("task-a")).message.reason == RejectReason.NO_CAPACITY  # type: ignore[union-attr]
        with pytest.raises(RequestTimeout):
            await ask("task-slow", timeout=0.5)
        with pytest.raises(RemoteError, match="internal error"):
            await ask("task-bug")
        with pytest.raises(RemoteError, match="task_unknown"):
            await ask("task-no")
        with pytest.raises(UntrustedSender):
            await ask("task-forged")
        with pytest.raises(SenderMismatch):  # even with no trusted set, the answer must come from the peer asked
            await n.request(c.peer_id, TASK_PROTOCOL, claim(1, "task-forged"), expect=TASK_RESPONSE_KINDS)
        assert n.stats.responses_refused == {"untrusted_sender": 1, "sender_mismatch": 1}
        # Still the one stream, still working.
        assert (await ask("task-b")).message.task_id == "task-b"  # type: ignore[union-attr]
        assert calls == 7
        assert len(n._channels) == 1


async def test_a_request_fails_fast_when_the_peer_goes_away() -> None:
    coord, node = identity(0), identity(1)
    async with SwarmHost(host_config(node)) as n:
        async with SwarmHost(host_config(coord)) as c:
            c.serve(TASK_PROTOCOL, reject_from(0), expect=TASK_REQUEST_KINDS)  # type: ignore[arg-type]
            await n.connect(c.listen_addrs[0])
            await n.request(c.peer_id, TASK_PROTOCOL, claim(1), expect=TASK_RESPONSE_KINDS)
        with pytest.raises(ConnectionLost):
            await n.request(c.peer_id, TASK_PROTOCOL, claim(1, "task-2"), expect=TASK_RESPONSE_KINDS, timeout=10)


async def test_peer_events_and_the_reconnect_watchdog() -> None:
    async with (
        hosts(host_config(identity(0)), host_config(identity(1))) as (c, n),
        n.peer_events() as events,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(keep_connected, n, c.listen_addrs[0])
        await n.wait_for_peer(c.peer_id, timeout=10)
        with trio.fail_after(10):
            first = await events.get()
        assert (first.kind, first.peer_id) == (PeerEventKind.CONNECTED, c.peer_id)
        await c.disconnect(n.peer_id)  # the coordinator drops us: the watchdog dials straight back
        with trio.fail_after(10):
            kinds = [(await events.get()).kind for _ in range(2)]
        assert kinds == [PeerEventKind.DISCONNECTED, PeerEventKind.CONNECTED]
        assert n.is_connected(c.peer_id)
        nursery.cancel_scope.cancel()


async def test_periodic_publisher_sends_the_current_status() -> None:
    node = identity(1)
    state = {"free": 3}

    def status() -> NodeStatus:
        return NodeStatus(version="t", models=[], task_kinds=[TaskKind.SEARCH], free_slots=state["free"], total_slots=4)

    async with hosts(host_config(identity(0)), host_config(node)) as (c, n):
        sub = await c.subscribe(STATUS_TOPIC)
        await n.connect(c.listen_addrs[0])
        await n.wait_for_subscribers(STATUS_TOPIC, 1, timeout=10)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: run_periodic_publisher(n, STATUS_TOPIC, status, interval=0.2))
            with trio.fail_after(10):
                first = await sub.get()
                state["free"] = 0
                while (later := await sub.get()).message.free_slots != 0:  # type: ignore[union-attr]
                    pass
            nursery.cancel_scope.cancel()
        assert first.sender_peer_id == later.sender_peer_id == node.peer_id


async def test_dht_finds_a_peer_two_hops_away() -> None:
    async with hosts(*(host_config(identity(i)) for i in range(3))) as (a, b, c):
        await a.connect(b.listen_addrs[0])
        await c.connect(b.listen_addrs[0])
        assert not a.is_connected(c.peer_id)
        found: list[str] = []

        async def lookup() -> None:
            found.extend(await a.find_peer(c.peer_id, timeout=2))

        with trio.fail_after(20):
            while not found:  # b learns of c asynchronously; retry the lookup until it has
                await lookup()
        assert any(addr.endswith(f"/p2p/{c.peer_id}") for addr in found)
        assert await a.connect(found[0]) == c.peer_id


async def test_circuit_relay_reaches_a_peer_through_a_relay() -> None:
    relay, hidden, dialer = identity(0), identity(1), identity(2)
    async with hosts(
        host_config(relay, relay_hop=True),
        host_config(hidden, relay_client=True),
        host_config(dialer, relay_client=True),
    ) as (r, h, d):
        circuit = await h.reserve_relay(r.listen_addrs[0])
        assert circuit == f"{r.listen_addrs[0]}/p2p-circuit/p2p/{h.peer_id}"
        h.serve(TASK_PROTOCOL, reject_from(1), expect=TASK_REQUEST_KINDS)  # type: ignore[arg-type]
        # The dialer knows only the relay address; the connection runs over the relay, Noise end to end.
        assert await d.connect(circuit) == h.peer_id
        assert d.connection_kinds(h.peer_id) == ["relayed"]
        assert d.connection_security(h.peer_id) == [NOISE]
        answer = await d.request(h.peer_id, TASK_PROTOCOL, claim(2), expect=TASK_RESPONSE_KINDS, timeout=10)
        assert answer.sender_peer_id == h.peer_id


async def test_listen_on_all_interfaces_advertises_concrete_addresses() -> None:
    async with SwarmHost(host_config(identity(1), listen=["/ip4/0.0.0.0/tcp/0"])) as host:
        assert host.listen_addrs
        assert not any("/0.0.0.0/" in a for a in host.listen_addrs)
        assert any(a.startswith("/ip4/127.0.0.1/") for a in host.listen_addrs)


"""Hostile peers: each bad message is dropped with a logged, counted reason, and the host keeps working.

Real libp2p hosts on 127.0.0.1: a trusted coordinator C, a node N that
subscribes to offers trusting only C, and a hostile peer H connected to N.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import trio

from network import (
    TASK_PROTOCOL,
    TASK_REQUEST_KINDS,
    TASK_RESPONSE_KINDS,
    ConnectionLost,
    RemoteError,
    Subscription,
    SwarmHost,
    now_ms,
    offers_topic,
)
from network.framing import encode_frame, encode_uvarint
from network.rpc import REQUEST, pack
from protocol import Claim, Reject, TaskKind, encode, seal
from protocol.messages import RejectReason
from tests.network.support import host_config, hosts, identity, make_offer

OFFERS = offers_topic(TaskKind.SYNTHESIZE)
COORD, NODE, HOSTILE = identity(0), identity(1), identity(66)


@dataclass
class Swarm:
    coord: SwarmHost
    node: SwarmHost
    hostile: SwarmHost
    offers: Subscription
    behind: Subscription
    """A second node, connected only to N, that trusts any signer: it sees what N relays."""


@pytest.fixture
async def swarm() -> AsyncIterator[Swarm]:
    configs = host_config(COORD), host_config(NODE), host_config(HOSTILE), host_config(identity(2))
    async with hosts(*configs) as (c, n, h, n2):
        sub = await n.subscribe(OFFERS, trusted={COORD.public_key})
        behind = await n2.subscribe(OFFERS)
        await n2.connect(n.listen_addrs[0])
        await n.wait_for_subscribers(OFFERS, 1, timeout=10)

        async def answer(peer: str, opened: object) -> bytes:
            task_id = opened.message.task_id  # type: ignore[attr-defined]
            return seal(NODE, Reject(task_id=task_id, reason=RejectReason.NO_CAPACITY), now_ms=now_ms())

        n.serve(TASK_PROTOCOL, answer, expect=TASK_REQUEST_KINDS, frame_timeout=0.5)
        await c.connect(n.listen_addrs[0])
        await h.connect(n.listen_addrs[0])
        await c.wait_for_subscribers(OFFERS, 1, timeout=10)
        await h.wait_for_subscribers(OFFERS, 1, timeout=10)
        yield Swarm(c, n, h, sub, behind)


async def wait_until(condition: Callable[[], bool], *, timeout: float = 10) -> None:
    """Drop counters have no event to await: check often, bounded by `timeout`."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


def logged(caplog: pytest.LogCaptureFixture, reason: str) -> bool:
    return any(getattr(r, "drop_reason", None) == reason for r in caplog.records)


async def assert_good_offer_still_arrives(s: Swarm, i: int) -> None:
    await s.coord.publish(OFFERS, seal(COORD, make_offer(i), now_ms=now_ms()))
    with trio.fail_after(10):
        opened = await s.offers.get()
    assert opened.message.task_id == f"task-{i:06d}"  # type: ignore[union-attr]
    assert len(s.offers) == 0  # nothing hostile ever reached the application


async def test_hostile_gossip_is_dropped_before_the_application(swarm: Swarm, caplog: pytest.LogCaptureFixture) -> None:
    s = swarm
    genuine = seal(COORD, make_offer(1), now_ms=now_ms())
    forged_sig = bytearray(genuine)
    forged_sig[-10] ^= 0xFF  # the signature is the last field of the canonical map
    cases = {
        # an offer with no envelope at all: just the message body
        "malformed_message": encode(make_offer(2).model_dump(mode="python")),
        # an envelope whose signature does not verify
        "bad_signature": bytes(forged_sig),
        # properly signed, by a key the node does not trust
        "untrusted_sender": seal(HOSTILE, make_offer(3), now_ms=now_ms()),
        # the coordinator's genuine offer, replayed by someone else
        "sender_mismatch": genuine,
        # far over the offer size limit (refused before parsing)
        "oversized_message": b"\x00" * 200_000,
    }
    for reason, data in cases.items():
        await s.hostile.publish(OFFERS, data, check=False)
        await wait_until(lambda r=reason: s.node.stats.gossip_dropped[r] >= 1)  # type: ignore[misc]
        assert logged(caplog, reason), reason

    # The genuine envelope replayed by its own signer: a new gossip message, an old nonce.
    original = seal(COORD, make_offer(4), now_ms=now_ms())
    await s.coord.publish(OFFERS, original)
    with trio.fail_after(10):
        assert (await s.offers.get()).raw == original
    await s.coord.publish(OFFERS, original)
    await wait_until(lambda: s.node.stats.gossip_dropped["replayed"] >= 1)
    # A valid offer of another kind on this topic.
    await s.coord.publish(OFFERS, seal(COORD, make_offer(5, TaskKind.SEARCH), now_ms=now_ms()), check=False)
    await wait_until(lambda: s.node.stats.gossip_dropped["wrong_topic"] >= 1)
    assert logged(caplog, "wrong_topic")

    await assert_good_offer_still_arrives(s, 6)
    # N relayed only what it accepted: the node behind it saw the good offers and nothing else.
    with trio.fail_after(10):
        relayed = {(await s.behind.get()).message.task_id for _ in range(2)}  # type: ignore[union-attr]
    assert relayed == {"task-000004", "task-000006"}
    assert len(s.behind) == 0


async def test_hostile_streams_are_reset_and_counted(swarm: Swarm, caplog: pytest.LogCaptureFixture) -> None:
    s = swarm
    node_id = s.node.peer_id

    async def raw_session(payload: bytes) -> bytes:
        """Send raw bytes on a fresh stream; whatever comes back before the node closes it."""
        stream = await s.hostile.open_stream(node_id, TASK_PROTOCOL)
        await stream.send_all(payload)
        received = b""
        with trio.fail_after(10):
            try:
                while chunk := await stream.receive_some():
                    received += chunk
            except ConnectionLost:
                pass  # reset by the node: what we expect
        return received

    # Garbage that is not even a length prefix.
    await raw_session(b"\xff" * 16)
    await wait_until(lambda: s.node.stats.streams_reset["bad_frame"] >= 1)
    # A header announcing 50 MB: refused on the header, the stream torn down at once.
    await raw_session(encode_uvarint(50 * 2**20) + b"x" * 100)
    await wait_until(lambda: s.node.stats.streams_reset["oversized_frame"] >= 1)
    # A frame that starts and then stalls (frame_timeout is 0.5 s for this server).
    await raw_session(encode_uvarint(1000) + b"partial")
    await wait_until(lambda: s.node.stats.streams_reset["stalled_frame"] >= 1)
    # A well-framed message of an unknown type.
    await raw_session(encode_frame(b"\x09" + bytes(8)))
    await wait_until(lambda: s.node.stats.streams_reset["bad_frame"] >= 2)
    for reason in ("bad_frame", "oversized_frame", "stalled_frame"):
        assert logged(caplog, reason), reason

    # Well-framed requests whose envelope is bad get an error answer, not the handler.
    async def request(envelope: bytes) -> None:
        await s.hostile.request(node_id, TASK_PROTOCOL, envelope, expect=TASK_RESPONSE_KINDS, timeout=10)

    claim = Claim(task_id="task-000001", attempt=0, free_slots=1)
    with pytest.raises(RemoteError, match="malformed_message"):
        await request(b"not an envelope")
    with pytest.raises(RemoteError, match="sender_mismatch"):  # signed by the coordinator, sent by H
        await request(seal(COORD, claim, now_ms=now_ms()))
    with pytest.raises(RemoteError, match="unexpected_kind"):  # an offer is not a request
        await request(seal(HOSTILE, make_offer(1), now_ms=now_ms()))
    replay = seal(HOSTILE, claim, now_ms=now_ms())
    await request(replay)
    with pytest.raises(RemoteError, match="replayed"):
        await request(replay)
    assert dict(s.node.stats.requests_refused) == {
        "malformed_message": 1, "sender_mismatch": 1, "unexpected_kind": 1, "replayed": 1,
    }
    assert s.node.stats.requests_served[TASK_PROTOCOL] == 1

    # A peer that floods pipelined requests on one stream is paced, not served out of memory.
    stream = await s.hostile.open_stream(node_id, TASK_PROTOCOL)
    envelopes = [seal(HOSTILE, Claim(task_id=f"t-{i}", attempt=0, free_slots=1), now_ms=now_ms()) for i in range(200)]
    await stream.send_all(b"".join(pack(REQUEST, i, e) for i, e in enumerate(envelopes)))
    await wait_until(lambda: s.node.stats.requests_served[TASK_PROTOCOL] == 201)
    await stream.reset()

    # After all that: the host still answers a good request and still gets gossip.
    answer = await s.hostile.request(
        node_id, TASK_PROTOCOL, seal(HOSTILE, Claim(task_id="task-ok", attempt=0, free_slots=1), now_ms=now_ms()),
        expect=TASK_RESPONSE_KINDS, timeout=10,
    )
    assert answer.message.task_id == "task-ok"  # type: ignore[union-attr]
    await assert_good_offer_still_arrives(s, 7)

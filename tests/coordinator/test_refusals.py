"""Requests refused before the scheduler sees them still count against the peer that sent them.

A real coordinator and a real libp2p host for the misbehaving node, on loopback.
The peer is the Noise-authenticated one, so a forged signature or a replayed
envelope is attributable to it; a stale envelope (a skewed clock) is not held
against anyone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.service import Coordinator, open_coordinator
from network import TASK_PROTOCOL, TASK_RESPONSE_KINDS, RemoteError, SwarmHost, now_ms
from protocol.envelope import seal
from protocol.identity import Identity
from protocol.messages import Claim, Reject, RejectReason, Result
from protocol.tasks import SearchOutput
from tests.api.support import config
from tests.network.support import host_config, identity

pytestmark = pytest.mark.trio


def claim(task_id: str = "no-such-task") -> Claim:
    return Claim(task_id=task_id, attempt=0, model_sha256=None, free_slots=1, tok_s=0.0)


async def send(host: SwarmHost, coord: Coordinator, envelope: bytes) -> str:
    """The refusal reason the coordinator answered with, or "" if the request was answered."""
    try:
        await host.request(coord.identity.peer_id, TASK_PROTOCOL, envelope, expect=TASK_RESPONSE_KINDS, timeout=10)
    except RemoteError as exc:
        return str(exc)
    return ""


async def test_forged_and_replayed_requests_are_charged_until_the_peer_is_blacklisted(tmp_path: Path) -> None:
    cheat, someone_else = identity(31), Identity.from_seed(b"\x42" * 32)
    async with open_coordinator(config(tmp_path)) as coord, SwarmHost(host_config(cheat)) as host:
        await host.connect(coord.peer_addrs[0])
        store = coord.runtime.scheduler.store

        forged = seal(someone_else, claim(), now_ms=now_ms())  # signed by a key that is not the peer's
        assert "sender_mismatch" in await send(host, coord, forged)
        rep = store.reputation(cheat.peer_id)
        assert rep is not None and rep.rejected == 1 and not rep.blacklisted
        assert store.reputation(someone_else.peer_id) is None  # the named signer did nothing

        genuine = seal(cheat, claim(), now_ms=now_ms())
        assert await send(host, coord, genuine) == ""  # answered (a Reject: no such task)
        assert "replayed" in await send(host, coord, genuine)
        rep = store.reputation(cheat.peer_id)
        assert rep is not None and rep.rejected == 2

        while not rep.blacklisted:
            assert rep.rejected < 10, "a peer forging every request must be blacklisted within 10"
            await send(host, coord, seal(someone_else, claim(), now_ms=now_ms()))
            rep = store.reputation(cheat.peer_id)
            assert rep is not None
        answer = await host.request(
            coord.identity.peer_id, TASK_PROTOCOL, seal(cheat, claim(), now_ms=now_ms()),
            expect=TASK_RESPONSE_KINDS, timeout=10,
        )  # fmt: skip
        assert isinstance(answer.message, Reject) and answer.message.reason is RejectReason.NODE_BLACKLISTED


async def test_a_stale_claim_is_not_charged_but_a_stale_result_is(tmp_path: Path) -> None:
    """A slow clock makes stale claims (refused, no charge); only a replay makes a stale result."""
    node = identity(32)
    async with open_coordinator(config(tmp_path)) as coord, SwarmHost(host_config(node)) as host:
        await host.connect(coord.peer_addrs[0])
        store = coord.runtime.scheduler.store
        stale = seal(node, claim(), now_ms=now_ms() - 3_600_000)
        assert "expired" in await send(host, coord, stale)
        assert store.reputation(node.peer_id) is None

        old_result = Result(
            task_id="t1", job_id="j1", lease_id="t1.r0.a0", attempt=0,
            output=SearchOutput(backend="local", hits=[]),
        )  # fmt: skip
        assert "expired" in await send(host, coord, seal(node, old_result, now_ms=now_ms() - 3_600_000))
        rep = store.reputation(node.peer_id)
        assert rep is not None and rep.rejected == 1
        assert coord.runtime.scheduler.stats["refused:stale_result"] == 1

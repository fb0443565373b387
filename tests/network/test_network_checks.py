"""Envelope checks at the network boundary (no hosts): who may say what, on which topic."""

from __future__ import annotations

import pytest

from network import offers_topic, peer_id_of, reason_of, topic_kinds
from network.checks import EnvelopeChecks, NetworkStats, WrongTopic
from network.errors import FrameTimeout
from network.topics import COORDINATORS_TOPIC, STATUS_TOPIC
from protocol import MessageKind, TaskKind, seal
from protocol.errors import BadSignature, Replayed, SenderMismatch, UnexpectedKind, UntrustedSender
from tests.network.support import identity, make_offer

COORD, OTHER = identity(0), identity(9)
OFFERS = offers_topic(TaskKind.SYNTHESIZE)


def checks() -> EnvelopeChecks:
    return EnvelopeChecks(NetworkStats(), clock=lambda: 1_000_000)


def sealed(ident=COORD, kind: TaskKind = TaskKind.SYNTHESIZE) -> bytes:  # type: ignore[no-untyped-def]
    return seal(ident, make_offer(1, kind), now_ms=1_000_000)


def test_reasons_are_stable_snake_case_names() -> None:
    assert reason_of(BadSignature("x")) == "bad_signature"
    assert reason_of(UntrustedSender("x")) == "untrusted_sender"
    assert reason_of(WrongTopic("x")) == "wrong_topic"
    assert reason_of(FrameTimeout("x")) == "stalled_frame"


def test_topics_carry_the_version_and_fix_their_kinds() -> None:
    assert OFFERS == "/dataswarm/1/offers/synthesize"
    assert topic_kinds(OFFERS) == {MessageKind.TASK_OFFER}
    assert topic_kinds(STATUS_TOPIC) == {MessageKind.NODE_STATUS}
    assert topic_kinds(COORDINATORS_TOPIC) == {MessageKind.COORDINATOR_ANNOUNCE}
    with pytest.raises(ValueError):
        topic_kinds("/dataswarm/1/offers/mining")
    with pytest.raises(ValueError):
        topic_kinds("/other/topic")


def test_peer_id_of_reads_the_last_p2p_component() -> None:
    assert peer_id_of(f"/ip4/1.2.3.4/tcp/1/p2p/{COORD.peer_id}") == COORD.peer_id
    relay = f"/ip4/1.2.3.4/tcp/1/p2p/{OTHER.peer_id}/p2p-circuit/p2p/{COORD.peer_id}"
    assert peer_id_of(relay) == COORD.peer_id
    with pytest.raises(ValueError):
        peer_id_of("/ip4/1.2.3.4/tcp/1")


def test_gossip_is_accepted_from_its_trusted_signer_once() -> None:
    c = checks()
    data = sealed()
    opened = c.gossip(OFFERS, data, origin=COORD.peer_id, expect=topic_kinds(OFFERS), trusted={COORD.public_key})
    assert opened.sender == COORD.public_key
    with pytest.raises(Replayed):
        c.gossip(OFFERS, data, origin=COORD.peer_id, expect=topic_kinds(OFFERS), trusted={COORD.public_key})


def test_gossip_refusals() -> None:
    c = checks()
    kinds = topic_kinds(OFFERS)
    with pytest.raises(SenderMismatch):  # someone else re-publishing the coordinator's offer
        c.gossip(OFFERS, sealed(), origin=OTHER.peer_id, expect=kinds, trusted=None)
    with pytest.raises(UntrustedSender):
        c.gossip(OFFERS, sealed(OTHER), origin=OTHER.peer_id, expect=kinds, trusted={COORD.public_key})
    with pytest.raises(WrongTopic):
        c.gossip(OFFERS, sealed(kind=TaskKind.SEARCH), origin=COORD.peer_id, expect=kinds, trusted=None)
    with pytest.raises(UnexpectedKind):
        c.gossip(STATUS_TOPIC, sealed(), origin=COORD.peer_id, expect=topic_kinds(STATUS_TOPIC), trusted=None)


def test_drop_counts_and_logs_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    stats = NetworkStats()
    c = EnvelopeChecks(stats)
    c.drop(stats.gossip_dropped, UntrustedSender("nope"), what="gossip", peer="12D3KooWpeer")
    assert stats.gossip_dropped == {"untrusted_sender": 1}
    (record,) = caplog.records
    assert record.drop_reason == "untrusted_sender"  # type: ignore[attr-defined]
    assert "12D3KooWpeer" in record.getMessage()

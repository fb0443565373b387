"""A node's slots shared among the coordinators it trusts: whom a freed slot pulls from first."""

from __future__ import annotations

from node.sharing import OFFER_MEMORY_S, SharePolicy


def test_a_lone_coordinator_gets_every_pull() -> None:
    policy = SharePolicy()
    policy.offered("A", now=0.0)
    for _ in range(5):
        policy.ran("A")
    assert policy.pull_order("A", now=1.0) == ["A"]


def test_the_coordinator_served_least_is_asked_first_while_it_has_work() -> None:
    policy = SharePolicy()
    policy.offered("A", now=0.0)
    policy.offered("B", now=0.5)
    order = []
    current = "A"
    for step in range(6):
        policy.offered("A", now=step)  # both keep re-offering: both have open tasks
        policy.offered("B", now=step)
        policy.ran(current)
        current = policy.pull_order(current, now=step + 0.1)[0]
        order.append(current)
    assert order == ["B", "A", "B", "A", "B", "A"]
    assert policy.served["A"] == policy.served["B"] == 3


def test_a_coordinator_that_stopped_offering_drops_out_and_the_served_one_is_kept() -> None:
    policy = SharePolicy()
    policy.offered("B", now=0.0)
    policy.ran("A")
    assert policy.pull_order("A", now=1.0) == ["B", "A"]  # B has work and has run nothing here
    assert policy.pull_order("A", now=OFFER_MEMORY_S + 1.0) == ["A"]  # B's job ended: no offer for a while

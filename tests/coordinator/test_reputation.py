"""Reputation trajectories: cheaters fall below the blacklist fast, honest nodes never do."""

from __future__ import annotations

import random

import pytest

from coordinator.verify.reasons import Reason
from coordinator.verify.reputation import (
    DEFAULT_CONFIG,
    NodeReputation,
    Outcome,
    ReputationConfig,
    decayed_score,
    is_trusted,
    new_node,
    outcome_for,
    plan_replication,
    priority,
    spot_check_rate,
    update,
)
from protocol.messages import Verdict

DAY_MS = 24 * 3600 * 1000


def _run(rep: NodeReputation, outcomes: list[Outcome], start_ms: int = 0) -> list[NodeReputation]:
    out = []
    for i, o in enumerate(outcomes):
        rep = update(rep, o, now_ms=start_ms + i * 1000)
        out.append(rep)
    return out


def _tasks_until_blacklisted(trajectory: list[NodeReputation]) -> int | None:
    return next((i + 1 for i, r in enumerate(trajectory) if r.blacklisted), None)


def test_a_new_cheater_is_blacklisted_within_10_tasks() -> None:
    trajectory = _run(new_node("cheat", now_ms=0), [Outcome.REJECTED] * 10)
    n = _tasks_until_blacklisted(trajectory)
    assert n is not None and n <= 10
    assert trajectory[n - 1].score < DEFAULT_CONFIG.blacklist_below
    assert n == 4  # 0.5 * 0.75^4 = 0.158


def test_a_trusted_node_that_turns_cheater_is_blacklisted_within_10_tasks() -> None:
    veteran = _run(new_node("v", now_ms=0), [Outcome.ACCEPTED] * 200)[-1]
    assert veteran.score > 0.99 and is_trusted(veteran, now_ms=200_000)
    trajectory = _run(veteran, [Outcome.REJECTED] * 10, start_ms=200_000)
    n = _tasks_until_blacklisted(trajectory)
    assert n is not None and n <= 10
    assert plan_replication(trajectory[-1], draw=0.99, now_ms=300_000).replicas == 0


@pytest.mark.parametrize("seed", range(20))
def test_an_honest_node_with_5_percent_false_rejections_stays_above_the_threshold(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = [Outcome.REJECTED if rng.random() < 0.05 else Outcome.ACCEPTED for _ in range(5_000)]
    trajectory = _run(new_node("honest", now_ms=0), outcomes)
    assert not any(r.blacklisted for r in trajectory)
    assert min(r.score for r in trajectory) > DEFAULT_CONFIG.blacklist_below
    # And it spends most of its life trusted, i.e. at r = 1 (the point of adaptive replication).
    trusted = sum(is_trusted(r, now_ms=i * 1000) for i, r in enumerate(trajectory))
    assert trusted / len(trajectory) > 0.7


def test_an_intermittent_cheater_never_earns_trust_and_is_eventually_blacklisted() -> None:
    rng = random.Random(7)
    outcomes = [Outcome.REJECTED if rng.random() < 0.5 else Outcome.ACCEPTED for _ in range(200)]
    trajectory = _run(new_node("sometimes", now_ms=0), outcomes)
    # Never trusted: every one of its results keeps being replicated, so no cheat goes unchecked.
    assert not any(is_trusted(r, now_ms=i * 1000) for i, r in enumerate(trajectory))
    assert _tasks_until_blacklisted(trajectory) is not None


def test_occasional_lapses_lower_the_score_but_never_blacklist() -> None:
    # A slow or rebooting home machine: two lapses in a row at most, between accepted results.
    pattern = [Outcome.EXPIRED, Outcome.EXPIRED, Outcome.ACCEPTED] * 60
    trajectory = _run(new_node("slow", now_ms=0), pattern)
    assert not any(r.blacklisted for r in trajectory)
    assert trajectory[-1].expired == 120 and trajectory[-1].rejected == 0


def test_a_node_that_never_answers_is_blacklisted_within_ten_leases() -> None:
    trajectory = _run(new_node("silent", now_ms=0), [Outcome.EXPIRED] * 10)
    lapses = _tasks_until_blacklisted(trajectory)
    assert lapses is not None and lapses <= 10
    assert trajectory[-1].rejected == 0  # counted as lapses, not as rejected results
    assert plan_replication(trajectory[-1], draw=0.5, now_ms=0).replicas == 0


def test_blacklisting_is_sticky() -> None:
    banned = _run(new_node("c", now_ms=0), [Outcome.REJECTED] * 5)[-1]
    redeemed = _run(banned, [Outcome.ACCEPTED] * 50, start_ms=10_000)[-1]
    assert redeemed.blacklisted and priority(redeemed, now_ms=0) == -1.0


def test_the_score_decays_toward_the_prior_while_idle() -> None:
    good = NodeReputation(peer_id="g", score=0.9, accepted=50, updated_ms=0)
    assert decayed_score(good, now_ms=0) == pytest.approx(0.9)
    assert decayed_score(good, now_ms=7 * DAY_MS) == pytest.approx(0.7)  # one half-life
    assert decayed_score(good, now_ms=365 * DAY_MS) == pytest.approx(0.5, abs=1e-6)
    bad = NodeReputation(peer_id="b", score=0.3, updated_ms=0)
    assert decayed_score(bad, now_ms=7 * DAY_MS) == pytest.approx(0.4)
    # An idle trusted node has to re-earn trust.
    assert is_trusted(good, now_ms=0) and not is_trusted(good, now_ms=14 * DAY_MS)


def test_adaptive_replication_follows_boinc() -> None:
    assert plan_replication(None, draw=0.0, now_ms=0).replicas == 2  # never seen
    newcomer = _run(new_node("n", now_ms=0), [Outcome.ACCEPTED] * 5)[-1]
    assert plan_replication(newcomer, draw=0.0, now_ms=5_000).replicas == 2  # too few results yet
    trusted = _run(new_node("t", now_ms=0), [Outcome.ACCEPTED] * 20)[-1]
    assert plan_replication(trusted, draw=0.5, now_ms=20_000) == plan_replication(trusted, draw=0.99, now_ms=20_000)
    assert plan_replication(trusted, draw=0.5, now_ms=20_000).replicas == 1
    assert not plan_replication(trusted, draw=0.5, now_ms=20_000).spot_check
    assert plan_replication(trusted, draw=0.05, now_ms=20_000).spot_check  # draw < p = 0.1
    # One rejection makes it suspicious again: back to r = 2 until it recovers.
    suspicious = update(trusted, Outcome.REJECTED, now_ms=21_000)
    assert plan_replication(suspicious, draw=0.5, now_ms=21_000).replicas == 2
    rng = random.Random(3)
    veteran = _run(new_node("v", now_ms=0), [Outcome.ACCEPTED] * 80)[-1]
    spot = sum(plan_replication(veteran, draw=rng.random(), now_ms=80_000).spot_check for _ in range(10_000))
    assert 800 < spot < 1200  # a perfect record: p = 0.1


def test_the_spot_check_rate_rises_as_the_score_falls_towards_the_trust_threshold() -> None:
    cfg = DEFAULT_CONFIG
    veteran = _run(new_node("v", now_ms=0), [Outcome.ACCEPTED] * 80)[-1]
    fresh = _run(new_node("f", now_ms=0), [Outcome.ACCEPTED] * 10)[-1]
    assert spot_check_rate(veteran, now_ms=80_000) == pytest.approx(cfg.spot_check_p, abs=0.01)
    assert spot_check_rate(fresh, now_ms=10_000) > 0.5  # just trusted: mostly checked
    at_threshold = NodeReputation(peer_id="t", score=cfg.trust_at, accepted=50, updated_ms=0)
    assert spot_check_rate(at_threshold, now_ms=0) == pytest.approx(1.0)


def test_a_node_caught_once_that_earns_trust_back_is_checked_almost_always() -> None:
    """The oscillating cheat of bench/spot_checks.py: honest while replicated, fabricating while trusted."""
    rep = _run(new_node("o", now_ms=0), [Outcome.ACCEPTED] * 30)[-1]
    rep = update(rep, Outcome.REJECTED, now_ms=31_000)  # caught at its first fabrication
    t = 32_000
    while not is_trusted(rep, now_ms=t):  # behaves while it runs at r = 2
        rep = update(rep, Outcome.ACCEPTED, now_ms=t)
        t += 1000
    assert spot_check_rate(rep, now_ms=t) > 0.9


def test_which_verdicts_move_the_score() -> None:
    assert outcome_for(Verdict.ACCEPTED) is Outcome.ACCEPTED
    assert outcome_for(Verdict.PENDING) is None
    assert outcome_for(Verdict.REJECTED, Reason.RESCORE_FAILED) is Outcome.REJECTED
    assert outcome_for(Verdict.REJECTED, Reason.SIGNER_NOT_LEASE_HOLDER) is Outcome.REJECTED
    assert outcome_for(Verdict.REJECTED, Reason.LEASE_DEAD) is Outcome.EXPIRED
    assert outcome_for(Verdict.REJECTED, Reason.NEAR_DUPLICATE) is None  # quality, not honesty


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        ReputationConfig(penalty=1.5)
    with pytest.raises(ValueError):
        ReputationConfig(untrusted_replicas=1)
    lenient = ReputationConfig(trust_min_accepted=1, trust_at=0.5)
    assert plan_replication(new_node("x", now_ms=0, config=lenient), draw=0.9, now_ms=0, config=lenient).replicas == 2
    once = update(new_node("x", now_ms=0, config=lenient), Outcome.ACCEPTED, now_ms=1, config=lenient)
    assert plan_replication(once, draw=0.9, now_ms=1, config=lenient).replicas == 1

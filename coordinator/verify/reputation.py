"""Per-node reputation: a score from verdicts, a blacklist, and adaptive replication.

Owns: how a verdict moves a node's score, when a node is blacklisted, and how
many replicas (and whether a spot-check) a task granted to that node needs
(BOINC-style adaptive replication: new or suspicious nodes run at r = 2, a
trusted node runs at r = 1 with spot-check probability p).
Must not: persist anything (the store saves `NodeReputation` as returned here),
read the clock (times come in as `now_ms`), or draw random numbers itself
(the caller passes a uniform draw, so decisions are reproducible in tests).

The score is an estimate in [0, 1] of "this node's verified results are
accepted". Updates are asymmetric on purpose: trust is earned slowly and lost
fast, so a cheater is caught within a handful of checked tasks while an honest
node's rare false rejection costs it a few tasks of extra replication, not its
standing. With the defaults:
- accepted:  s <- s + 0.1 (1 - s);   rejected: s <- 0.75 s;
- an honest node with 5 % false rejections settles near 0.88 (0.095 (1 - s) = 0.0125 s)
  and needs six rejections in a row (p ~ 1.6e-8) to fall below 0.2;
- a cheater is below 0.2 after 4 rejected tasks as a newcomer (0.5 -> 0.16) and
  after 6 from a perfect score (0.75^6 = 0.18): within the 10 the issue allows.
Between verdicts the score decays exponentially toward the prior (an idle
node's old record counts less), with a half-life of a week.

Only verified outcomes should be fed in: a trusted node's unreplicated result
that was not spot-checked proves nothing and must not raise its score.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from coordinator.verify.reasons import Reason
from protocol.messages import Verdict


@dataclass(frozen=True)
class ReputationConfig:
    prior: float = 0.5
    """Score of a node never seen; also where an idle node's score drifts back to."""
    gain: float = 0.1
    """Accepted result: s += gain * (1 - s)."""
    penalty: float = 0.25
    """Rejected result: s -= penalty * s."""
    expiry_penalty: float = 0.03
    """Lease ran out: a mild s -= expiry_penalty * s (slow machines are not cheats)."""
    half_life_ms: int = 7 * 24 * 3600 * 1000
    """Time for (s - prior) to halve while a node has no verdicts."""
    blacklist_below: float = 0.2
    """A rejection that leaves the score below this blacklists the node (sticky)."""
    trust_at: float = 0.75
    """Score at or above which a node may run unreplicated..."""
    trust_min_accepted: int = 10
    """...once it has at least this many verified accepted results."""
    untrusted_replicas: int = 2
    """Replicas for tasks granted to new or suspicious nodes (BOINC: r >= 2)."""
    max_lapses: int = 3
    """From this many lapsed leases in a row (no accepted result between), each lapse counts as a
    rejection: a node that claims work and never answers holds tasks hostage, whatever its reason."""
    spot_check_p: float = 0.1
    """Probability that a trusted node of a perfect score has its unreplicated result verified anyway (cost
    1 + p). Below a perfect score the rate rises, to 1 at `trust_at` (`spot_check_rate`): a node that was
    caught and earned trust back in the few results that lift its score is checked almost always, so a
    cheat that fabricates only while trusted gets almost nothing through (bench/spot_checks.py)."""

    def __post_init__(self) -> None:
        for name in ("prior", "gain", "penalty", "expiry_penalty", "blacklist_below", "trust_at", "spot_check_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.untrusted_replicas < 2:
            raise ValueError("untrusted nodes need at least 2 replicas")
        if self.half_life_ms <= 0:
            raise ValueError("half_life_ms must be positive")


DEFAULT_CONFIG = ReputationConfig()


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"


# Refusals that say "this row is not wanted", not "this node is dishonest": an
# honest small model writes duplicates, short rows and unsupported answers.
_NEUTRAL_REASONS = frozenset(
    {
        Reason.DUPLICATE,
        Reason.NEAR_DUPLICATE,
        Reason.TOO_SHORT,
        Reason.TOO_LONG,
        Reason.WRONG_LANGUAGE,
        Reason.EVIDENCE_NOT_FOUND,
        Reason.UNSUPPORTED_ANSWER,
        Reason.UNVERIFIABLE,
        Reason.REPETITIVE,
        Reason.QUESTION_OFF_SOURCE,
    }
)


def outcome_for(verdict: Verdict, reason: Reason | None = None) -> Outcome | None:
    """The reputation outcome of a verdict, or None when it should not move the score."""
    if verdict is Verdict.ACCEPTED:
        return Outcome.ACCEPTED
    if verdict is Verdict.PENDING:
        return None
    if reason is Reason.LEASE_DEAD:
        return Outcome.EXPIRED
    if reason in _NEUTRAL_REASONS:
        return None
    return Outcome.REJECTED


@dataclass(frozen=True)
class NodeReputation:
    peer_id: str
    score: float
    accepted: int = 0
    rejected: int = 0
    expired: int = 0
    consecutive_ok: int = 0
    blacklisted: bool = False
    updated_ms: int = 0
    consecutive_expired: int = 0
    """Leases lapsed since the node's last accepted result."""


def new_node(peer_id: str, *, now_ms: int, config: ReputationConfig = DEFAULT_CONFIG) -> NodeReputation:
    return NodeReputation(peer_id=peer_id, score=config.prior, updated_ms=now_ms)


def decayed_score(rep: NodeReputation, *, now_ms: int, config: ReputationConfig = DEFAULT_CONFIG) -> float:
    """The score as of `now_ms`: (score - prior) halves every half-life without verdicts."""
    idle = max(0, now_ms - rep.updated_ms)
    factor = 0.5 ** (idle / config.half_life_ms)
    return float(config.prior + (rep.score - config.prior) * factor)


def update(
    rep: NodeReputation, outcome: Outcome, *, now_ms: int, config: ReputationConfig = DEFAULT_CONFIG
) -> NodeReputation:
    """The reputation after one verified outcome."""
    s = decayed_score(rep, now_ms=now_ms, config=config)
    if outcome is Outcome.ACCEPTED:
        s += config.gain * (1.0 - s)
        return replace(
            rep,
            score=s,
            accepted=rep.accepted + 1,
            consecutive_ok=rep.consecutive_ok + 1,
            consecutive_expired=0,
            updated_ms=now_ms,
        )
    if outcome is Outcome.EXPIRED:
        lapses = rep.consecutive_expired + 1
        if lapses < config.max_lapses:
            # A slow or rebooted machine: lowers priority and trust only.
            s -= config.expiry_penalty * s
            return replace(
                rep, score=s, expired=rep.expired + 1, consecutive_ok=0, consecutive_expired=lapses, updated_ms=now_ms
            )
        s -= config.penalty * s
        return replace(
            rep,
            score=s,
            expired=rep.expired + 1,
            consecutive_ok=0,
            consecutive_expired=lapses,
            blacklisted=rep.blacklisted or s < config.blacklist_below,
            updated_ms=now_ms,
        )
    s -= config.penalty * s
    return replace(
        rep,
        score=s,
        rejected=rep.rejected + 1,
        consecutive_ok=0,
        blacklisted=rep.blacklisted or s < config.blacklist_below,
        updated_ms=now_ms,
    )


def spot_check_rate(rep: NodeReputation | None, *, now_ms: int, config: ReputationConfig = DEFAULT_CONFIG) -> float:
    """How often a trusted node's unreplicated result is re-checked: `spot_check_p` at a score of 1, rising
    linearly to 1 at `trust_at`."""
    score = config.prior if rep is None else decayed_score(rep, now_ms=now_ms, config=config)
    doubt = min(1.0, max(0.0, (1.0 - score) / max(1e-9, 1.0 - config.trust_at)))
    return config.spot_check_p + (1.0 - config.spot_check_p) * doubt


def is_trusted(rep: NodeReputation | None, *, now_ms: int, config: ReputationConfig = DEFAULT_CONFIG) -> bool:
    if rep is None or rep.blacklisted:
        return False
    return rep.accepted >= config.trust_min_accepted and decayed_score(rep, now_ms=now_ms, config=config) >= (
        config.trust_at
    )


@dataclass(frozen=True)
class ReplicationPlan:
    replicas: int
    """How many distinct nodes must run the task; 0 means do not grant to this node at all."""
    spot_check: bool
    """Verify the single replica anyway (validate task for generative kinds, an extra replica otherwise)."""


def plan_replication(
    rep: NodeReputation | None,
    *,
    draw: float,
    now_ms: int,
    config: ReputationConfig = DEFAULT_CONFIG,
    operator_trusted: bool = False,
) -> ReplicationPlan:
    """BOINC adaptive replication for a task first claimed by this node.

    draw: a uniform random number in [0, 1) from the caller's RNG.
    operator_trusted: the coordinator's operator runs this node (config `trusted_nodes`): it is
    trusted without earning it, but is still spot-checked, and a failed check still blacklists it.
    """
    if rep is not None and rep.blacklisted:
        return ReplicationPlan(0, False)
    if operator_trusted or is_trusted(rep, now_ms=now_ms, config=config):
        # The operator's own node is checked at the base rate until it is caught once.
        base = operator_trusted and (rep is None or rep.rejected == 0)
        rate = config.spot_check_p if base else spot_check_rate(rep, now_ms=now_ms, config=config)
        return ReplicationPlan(1, draw < rate)
    return ReplicationPlan(config.untrusted_replicas, False)


def priority(rep: NodeReputation | None, *, now_ms: int, config: ReputationConfig = DEFAULT_CONFIG) -> float:
    """Ordering key for granting work: higher first; blacklisted nodes get -1 (never)."""
    if rep is None:
        return config.prior
    if rep.blacklisted:
        return -1.0
    return decayed_score(rep, now_ms=now_ms, config=config)

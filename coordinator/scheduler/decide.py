"""What to do with one task, from one snapshot of it: `decide(view, config)`, a pure function.

| task            | snapshot                                                      | decision                      |
|-----------------|---------------------------------------------------------------|-------------------------------|
| any             | closed, a replica still out, or no result pending             | Wait                          |
| search,         | a majority agrees (a lone result: it alone, not credited)     | Accept, the minority rejected |
| retrieve,       | no majority, fewer than max_replicas replicas                 | AddReplica (a tie-breaker)    |
| curate          | no majority at max_replicas                                   | Reject (quorum_minority)      |
| validate        | one replica, one result                                       | Accept                        |
|                 | a strict majority (>= 2) of the measurements agree            | Accept, the others rejected   |
|                 | no such majority: below max_replicas / at it                  | AddReplica / Reject (unverif.)|
| generative      | replicas agree and no audit is wanted                         | Accept (credited)             |
|                 | a trusted node's lone result, no audit wanted                 | Accept (not credited)         |
|                 | an audit wanted (replicas differ, a spot-check or abandoned   | NeedAudit for each candidate  |
|                 | replica's pick, answer-first, a trusted node alone) and a     | that has a validator          |
|                 | candidate lacks one                                           |                               |
|                 | an audit still running                                        | Wait                          |
|                 | audits in: re-scoring accepts one or more                     | Accept, with the audit        |
|                 | audits in: none accepted, or no validator could take one      | Reject (rescore_failed,       |
|                 |                                                               | unverifiable)                 |

Effects (settling, replicas, validate tasks) are applied by `effects.apply`; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.scheduler.config import LIVE, SchedulerConfig
from coordinator.scheduler.view import TaskView
from coordinator.store import TaskState
from coordinator.verify.quorum import QuorumPolicy, QuorumStatus, quorum
from coordinator.verify.reasons import Failure, Reason
from coordinator.verify.rescoring import Agreement, Candidate, compare_replicas
from coordinator.verify.rescoring import decide as rescore
from protocol.tasks import DETERMINISTIC_KINDS, JudgeOutput, TaskKind, ValidateOutput

Rejected = tuple[tuple[int, Failure], ...]
"""(result id, why) for each rejected result."""


@dataclass(frozen=True)
class Wait:
    """Nothing to do now: replicas or audits are still out, or nothing is pending."""

    why: str


@dataclass(frozen=True)
class AddReplica:
    """One more replica: the replicas (or validators) did not agree and a tie-breaker may still."""

    why: str


@dataclass(frozen=True)
class NeedAudit:
    """Create a validate task for each candidate: (result id, validator replicas)."""

    candidates: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Accept:
    """Close the task with `canonical`: `accepted` (canonical first) accepted, `rejected` rejected."""

    canonical: int
    accepted: tuple[int, ...]
    rejected: Rejected = ()
    credit: bool = True
    """Whether acceptance counts for the producers' reputation (a lone unchecked result proves nothing)."""
    audit: tuple[ValidateOutput, ...] = ()
    """The canonical candidate's validator outputs (its round trip decides answer-first rows)."""
    clear_spot_check: bool = False


@dataclass(frozen=True)
class Reject:
    """Reject every pending result; the store re-offers their replicas while attempts remain."""

    rejected: Rejected
    clear_spot_check: bool = False


Decision = Wait | AddReplica | NeedAudit | Accept | Reject


def decide(view: TaskView, config: SchedulerConfig) -> Decision:
    if view.task.state is not TaskState.OPEN:
        return Wait(f"task is {view.task.state.value}")
    if any(r.state in LIVE for r in view.replicas):
        return Wait("replicas running")
    if not view.pending:
        return Wait("no result pending")
    if view.task.kind in DETERMINISTIC_KINDS:
        return by_quorum(view, config)
    if view.task.kind is TaskKind.VALIDATE:
        return by_validator_quorum(view, config)
    return generative(view, config)


def by_quorum(view: TaskView, config: SchedulerConfig) -> Decision:
    pending = view.pending
    outputs = [(r.result_id, view.messages[r.result_id].output) for r in pending]
    policy = QuorumPolicy(
        retrieve_agree=config.quorum.retrieve_agree,
        search_agree=config.quorum.search_agree,
        curate_agree=config.quorum.curate_agree,
        min_agree=1 if len(pending) == 1 else config.quorum.min_agree,
    )
    outcome = quorum(outputs, policy=policy)  # type: ignore[arg-type]
    if outcome.status is QuorumStatus.AGREED and outcome.canonical is not None:
        minority = tuple((k, Failure(Reason.QUORUM_MINORITY, "outside the majority")) for k in outcome.minority)
        return Accept(outcome.canonical, tuple(outcome.majority), minority, credit=len(pending) > 1)
    if len(view.replicas) < config.max_replicas:
        return AddReplica("no majority among replicas: a tie-breaker")
    failure = Failure(Reason.QUORUM_MINORITY, "no majority among replicas")
    return Reject(tuple((r.result_id, failure) for r in pending))


def validators_agree(a: ValidateOutput, b: ValidateOutput, config: SchedulerConfig) -> bool:
    ta, tb = a.roundtrip, b.roundtrip
    trips_agree = (ta is None and tb is None) or (
        ta is not None
        and tb is not None
        and ta.answer_rank == tb.answer_rank
        and abs(ta.margin - tb.margin) <= config.validator_margin_tolerance
    )
    return (
        a.n_tokens == b.n_tokens
        and abs(a.mean_logprob - b.mean_logprob) <= config.validator_logprob_tolerance
        and abs(a.topk_rate - b.topk_rate) <= config.validator_topk_tolerance
        and trips_agree
    )


def by_validator_quorum(view: TaskView, config: SchedulerConfig) -> Decision:
    pending = [r.result_id for r in view.pending]
    outs: dict[int, ValidateOutput] = {}
    for rid in pending:
        out = view.messages[rid].output
        assert isinstance(out, ValidateOutput)
        outs[rid] = out
    best: list[int] = []
    for rid in pending:
        group = [q for q in pending if validators_agree(outs[rid], outs[q], config)]
        if len(group) > len(best):
            best = group
    if len(view.replicas) == 1 and len(pending) == 1:
        return Accept(pending[0], (pending[0],))
    if len(best) >= 2 and 2 * len(best) > len(pending):
        failure = Failure(Reason.QUORUM_MINORITY, "re-score disagrees with the other validators")
        return Accept(best[0], tuple(best), tuple((r, failure) for r in pending if r not in best))
    if len(view.replicas) < config.max_replicas:
        return AddReplica("validators did not agree: a tie-breaking validator")
    failure = Failure(Reason.UNVERIFIABLE, "validators did not agree")
    return Reject(tuple((r, failure) for r in pending))


def checked_by_itself(view: TaskView, config: SchedulerConfig) -> bool:
    """A lone result of the operator's own node, with no other node that could check it: re-scored by
    that node itself (an unchecked result would prove nothing, and the card says who checked)."""
    if len(view.pending) != 1 or view.pending[0].node not in config.trusted_nodes:
        return False
    only = view.pending[0]
    return view.validators({only.node}, view.messages[only.result_id].model_sha256) == [only.node]


def same_scores(view: TaskView) -> bool:
    """Judge replicas agree only on the same score: two rationales can read alike and score apart."""
    scores = {o.score for r in view.pending if isinstance(o := view.messages[r.result_id].output, JudgeOutput)}
    return len(scores) <= 1


def generative(view: TaskView, config: SchedulerConfig) -> Decision:
    pending, messages = view.pending, view.messages
    audits: dict[int, Sequence[ValidateOutput] | None] = dict(view.audits)
    picked = view.spot_checked
    needs_rescore = view.audited or picked or any(v is not None for v in audits.values())
    everyone = tuple(r.result_id for r in pending)
    if len(pending) >= 2 and not needs_rescore:
        first, *rest = pending
        agreement = [compare_replicas(messages[first.result_id], messages[r.result_id]) for r in rest]
        if all(a in (Agreement.EXACT, Agreement.CLOSE) for a in agreement) and same_scores(view):
            return Accept(everyone[0], everyone)
        needs_rescore = True
    if not needs_rescore and checked_by_itself(view, config):
        needs_rescore = True  # the operator's node alone: it re-scores its own output in a separate pass
    if not needs_rescore:
        # A lone result from a trusted node, not spot-checked: accepted, but it proves nothing.
        return Accept(everyone[0], everyone, credit=False)
    wanted: list[tuple[int, int]] = []
    for r in pending:
        if r.result_id in audits:
            continue
        model = messages[r.result_id].model_sha256
        eligible = view.validators(view.producers, model) if model is not None else []
        if eligible:
            # Two agreeing validators when the network has them; a small network gets a single audit.
            wanted.append((r.result_id, max(1, min(config.validator_replicas, len(eligible)))))
        else:
            audits[r.result_id] = ()  # no node may validate it: decided as unverifiable below
    if wanted:
        return NeedAudit(tuple(wanted))
    if any(v is None for v in audits.values()):
        return Wait("audits running")
    failures: dict[int, Failure | None] = {}
    for r in pending:
        outputs = audits.get(r.result_id)
        if not outputs:
            failures[r.result_id] = Failure(Reason.UNVERIFIABLE, "no eligible validator could re-score it")
            continue
        claimed = messages[r.result_id].stats.mean_logprob
        failures[r.result_id] = rescore(Candidate(r.result_id, outputs, claimed), config.rescore).failure
    accepted = tuple(rid for rid in everyone if failures[rid] is None)
    rejected = tuple((rid, f) for rid in everyone if (f := failures[rid]) is not None)
    if not accepted:
        return Reject(rejected, clear_spot_check=picked)
    audit = tuple(audits.get(accepted[0]) or ())
    return Accept(accepted[0], accepted, rejected, audit=audit, clear_spot_check=picked)

"""The scheduler: offers, claims, grants, results, verification and receipts for every task.

Owns: the decisions between the network and the store. It turns offered replicas
into signed TaskOffers, answers each Claim with a Grant or a Reject, records
each Result, runs the verifier (checks, quorum, replica comparison, prefill
re-scoring through `validate` tasks, quality gates), settles tasks with
verdicts, reputations and signed Receipts, and expires leases.
Must not: do network I/O or read the clock (the runtime passes `now_ms` and
sends what the methods return), or hold state that a restart would need:
everything that matters is in the store, so a coordinator killed at any moment
resumes where it was (`resume` re-evaluates tasks that had results pending).

One task's way, module by module: `facade.Scheduler.submit` adds it; `offers` gossips
it; `claims` answers a claim (replicas planned, lease written, `grants` builds the
Grant); `results` checks and records the result; then the facade's loop reads a
`view` of the task, `decide`s (a pure function of that view), and `effects` applies
the decision (one `Store.settle` for verdicts, receipts, reputations and the `rows`
that pass the gates; or a replica, or `audits` to create). A closed audit queues its
parent, and the loop decides that next.

Verification flow per task (see docs/design.md, "Verification"):
- Replication is adaptive (BOINC): a task starts with one replica; a claim by an
  untrusted node adds a second replica so two distinct nodes run it; a trusted
  node runs it alone, with a spot-check at probability p (the pick is stored
  with the task, so a restart before the result arrives still re-scores it).
- Deterministic kinds (search, retrieve, curate) settle by quorum over
  normalized outputs; without a majority a third replica is added.
- Generative kinds compare replicas (same seed and settings, so honest
  replicas on the same build agree byte for byte). Disagreement or a
  spot-check creates one `validate` task per candidate, granted only to a node
  that produced none of the candidates; the validators' prefill measurements
  decide which candidates the declared model would have produced.
- Answer-first synthesize tasks (question/answer rows, `SynthesizePayload.target`)
  run once and are always audited: the validate task re-scores the output
  (honesty) and runs the round trip (quality) in one signed pass, on a node
  that did not produce it. A second replica would add nothing the audit does
  not check, at the cost of a generation.
- Accepted synthesize rows then pass the quality gates (the answer-first
  question gates and the round trip, grounding, length, language,
  near-duplicates) before they become dataset rows.

Threading: the methods are synchronous and call the (locking) store; the
runtime calls them from one worker thread so fsyncs never stall the loop.
"""

from coordinator.scheduler.config import (
    ACTIVE_JOB_STATES,
    CHARGED_REFUSALS,
    DEFER_WINDOW_MS,
    LIVE,
    LIVE_NODE_MS,
    PULL_SCAN,
    PULL_TASK_ID,
    PULL_TRIES,
    VALIDATE_STAGE,
    VALIDATION_SCAN_MS,
    SchedulerConfig,
)
from coordinator.scheduler.decide import Accept, AddReplica, Decision, NeedAudit, Reject, Wait, decide
from coordinator.scheduler.effects import Outgoing
from coordinator.scheduler.facade import Scheduler
from coordinator.scheduler.ids import JUDGE_MARK, VALIDATE_MARK, judge_task_id, judged_row, seed_for, validate_task_id
from coordinator.scheduler.rows import GROUNDING_MIN_SUPPORT, Coverage, coverage_of
from coordinator.scheduler.view import TaskView

__all__ = [
    "ACTIVE_JOB_STATES",
    "CHARGED_REFUSALS",
    "DEFER_WINDOW_MS",
    "GROUNDING_MIN_SUPPORT",
    "JUDGE_MARK",
    "LIVE",
    "LIVE_NODE_MS",
    "PULL_SCAN",
    "PULL_TASK_ID",
    "PULL_TRIES",
    "VALIDATE_MARK",
    "VALIDATE_STAGE",
    "VALIDATION_SCAN_MS",
    "Accept",
    "AddReplica",
    "Coverage",
    "Decision",
    "NeedAudit",
    "Outgoing",
    "Reject",
    "Scheduler",
    "SchedulerConfig",
    "TaskView",
    "Wait",
    "coverage_of",
    "decide",
    "judge_task_id",
    "judged_row",
    "seed_for",
    "validate_task_id",
]

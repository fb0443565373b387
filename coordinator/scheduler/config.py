"""The scheduler's settings: `SchedulerConfig` (from the coordinator's config) and its fixed timings."""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator import job_states
from coordinator.verify.quorum import QuorumPolicy
from coordinator.verify.reputation import DEFAULT_CONFIG, ReputationConfig
from coordinator.verify.rescoring import RescoreThresholds, RoundTripThresholds
from protocol.state import ReplicaState
from protocol.tasks import TaskKind

VALIDATE_STAGE = "validate"
LIVE = (ReplicaState.OFFERED, ReplicaState.CLAIMED, ReplicaState.GRANTED)
"""States of a replica still to come: a task is not decided while one of its replicas is in them."""
DEFER_WINDOW_MS = 5_000
"""How long a node's claims for new work are refused while an audit it may take waits (see claims.py)."""
VALIDATION_SCAN_MS = 250
"""How often claims look for offered validate replicas to send a node to (the runtime ticks every 250 ms)."""
ACTIVE_JOB_STATES = job_states.OFFERED
"""Jobs whose tasks are offered and granted; a compiling, done, failed or cancelled job's leftovers are not."""
LIVE_NODE_MS = 30_000
"""A node whose NodeStatus is older than this is not counted on to validate."""
CHARGED_REFUSALS = frozenset({"bad_signature", "sender_mismatch", "replayed", "stale_result"})
"""Refused requests that only a cheat sends (see `Scheduler.charge_refusal`)."""
PULL_SCAN = 32
"""Offered replicas a Pull looks at (oldest first), per group: audits, then everything else."""
PULL_TRIES = 8
"""Claims a Pull may try before it answers NONE_OPEN: bounds the coordinator's work per Pull."""
PULL_TASK_ID = "pull"
"""The task id of a Reject that answers a Pull (it names no task)."""
STALL_MS = 60_000
"""How long a watched stage may see no replica activity before its untaken tasks are abandoned (stalls.py)."""


@dataclass(frozen=True)
class SchedulerConfig:
    temperature: float = 0.7
    """Sampling temperature for question_gen (variety of queries); replicas share the seed, so they still agree."""
    temperatures: dict[TaskKind, float] = field(
        default_factory=lambda: {TaskKind.SPEC: 0.0, TaskKind.SYNTHESIZE: 0.3, TaskKind.JUDGE: 0.0}
    )
    """Per-kind overrides. Synthesize runs cool: grounding, not sampling, gives the variety
    (docs/notes/quality.md#repetition).
    The spec task is a reading of the request, not a creative one: greedy."""
    top_k: int = 40
    max_tokens: dict[TaskKind, int] = field(
        default_factory=lambda: {
            TaskKind.SPEC: 8192,
            TaskKind.QUESTION_GEN: 4096,
            TaskKind.SYNTHESIZE: 2048,
            TaskKind.JUDGE: 1024,
            TaskKind.VALIDATE: 1,
        }
    )
    """Ceilings of at least the longest text the node's grammar admits for the payloads the pipeline sends:
    spec 7,887, question_gen 3,085 (5 + 5 items), judge 632, synthesize 1,539 characters for a question-answer
    row; the node stops at the grammar's end well before. A node raises a lower grant to its grammar's bound
    (a row schema with long fields), and the checks allow what the text accounts for
    (verify.receipts.token_allowance): at 400, before that, a 433-token question_gen was rejected on both
    honest replicas of a 100-row run."""
    max_replicas: int = 3
    """Upper bound on replicas per task (two plus one tie-breaker)."""
    max_attempts: int = 4
    offer_ttl_ms: int = 30_000
    reoffer_ms: int = 3_000
    """An offer still unclaimed after this long is gossiped again (nodes may have joined or freed up)."""
    claim_hold_ms: int = 10_000
    """How long a claimed replica waits for the grant to be sent before it is re-offered."""
    max_offers_per_tick: int = 64
    """Outstanding-offer bound per publishing round: backpressure from the coordinator's side."""
    receipt_ttl_ms: int = 10 * 60_000
    validate_top_k: int = 10
    trusted_nodes: frozenset[str] = frozenset()
    """Peer IDs the operator runs (config `trusted_nodes`): r = 1 with spot-checks; when no other live node
    can re-score their generations, they re-score them themselves in a separate validate task, and the
    card says that no independent node checked those rows."""
    validator_replicas: int = 2
    """Validators per candidate: their prefill measurements must agree, so one lying validator can
    neither frame an honest producer nor wave a cheater through."""
    validator_logprob_tolerance: float = 0.05
    validator_topk_tolerance: float = 0.02
    """Honest validators on the same build compute the same prefill; the slack covers other CPUs."""
    quorum: QuorumPolicy = field(default_factory=QuorumPolicy)
    rescore: RescoreThresholds = field(default_factory=RescoreThresholds)
    roundtrip: RoundTripThresholds = field(default_factory=RoundTripThresholds)
    validator_margin_tolerance: float = 0.05
    """Two validators' round-trip margins (nats/token) agree within this; their answer ranks must be equal."""
    reputation: ReputationConfig = DEFAULT_CONFIG
    stall_ms: int = STALL_MS
    """The stall clock (stalls.py): a job's stage with no replica activity this long has its untaken tasks abandoned."""

"""The scheduler: offers, claims, grants, results, verification and receipts for every task.

Owns: the decisions between the network and the store. It turns offered slots
into signed TaskOffers, answers each Claim with a Grant or a Reject, records
each Result, runs the verifier (checks, quorum, replica comparison, prefill
re-scoring through `validate` tasks, quality gates), settles tasks with
verdicts, reputations and signed Receipts, and expires leases.
Must not: do network I/O or read the clock (the runtime passes `now_ms` and
sends what the methods return), or hold state that a restart would need:
everything that matters is in the store, so a coordinator killed at any moment
resumes where it was (`resume` re-evaluates tasks that had results pending).

Verification flow per task (see shared/DESIGN.md, "Verification"):
- Replication is adaptive (BOINC): a task starts with one slot; a claim by an
  untrusted node adds a second slot so two distinct nodes run it; a trusted
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

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from coordinator import job_states
from coordinator.spec import asks
from coordinator.store import Judgement, NewRow, NotFound, Store, TaskState
from coordinator.store.db import ResultRecord, SlotRecord, TaskRecord
from coordinator.verify.checks import check_result
from coordinator.verify.gates import Deduplicator, GroundingChecker, LexicalGrounding, gate_row, page_cap
from coordinator.verify.injection import injection_failure
from coordinator.verify.questions import check_answer_first
from coordinator.verify.quorum import QuorumPolicy, QuorumStatus, quorum
from coordinator.verify.reasons import Failure, Reason
from coordinator.verify.receipts import build_receipt
from coordinator.verify.reputation import (
    DEFAULT_CONFIG,
    NodeReputation,
    Outcome,
    ReputationConfig,
    new_node,
    outcome_for,
    plan_replication,
    update,
)
from coordinator.verify.rescoring import (
    Agreement,
    Candidate,
    RescoreThresholds,
    RoundTripThresholds,
    compare_replicas,
    decide,
    roundtrip_failure,
)
from coordinator.verify.rescoring import validate_payload_for as rescoring_payload
from coordinator.verify.text import normalize_ws, row_text
from protocol.envelope import Opened, seal
from protocol.identity import Identity
from protocol.messages import (
    Claim,
    Grant,
    MessageKind,
    NodeStatus,
    Pull,
    Reject,
    RejectReason,
    Result,
    TaskOffer,
    Verdict,
)
from protocol.state import SlotState, lease_deadline_ms
from protocol.tasks import (
    DETERMINISTIC_KINDS,
    GENERATIVE_KINDS,
    LLM_KINDS,
    RESCORABLE_PAYLOADS,
    DecodingParams,
    SynthesizeOutput,
    SynthesizePayload,
    TaskKind,
    TaskPayload,
    ValidateOutput,
    ValidatePayload,
)

log = logging.getLogger(__name__)

VALIDATE_STAGE = "validate"
VALIDATE_MARK = ".v"
"""Validate task ids are `<parent task id>.v<result id>`: the link survives restarts without a table."""

LIVE = (SlotState.OFFERED, SlotState.CLAIMED, SlotState.GRANTED)
DEFER_WINDOW_MS = 5_000
"""How long a node's claims for new work are refused while an audit it may take waits (see on_claim)."""
VALIDATION_SCAN_MS = 250
"""How often claims look for offered validate slots to send a node to (the runtime ticks every 250 ms)."""
ACTIVE_JOB_STATES = job_states.OFFERED
LIVE_NODE_MS = 30_000
"""A node whose NodeStatus is older than this is not counted on to validate."""
CHARGED_REFUSALS = frozenset({"bad_signature", "sender_mismatch", "replayed", "stale_result"})
"""Refused requests that only a cheat sends (see `charge_refusal`)."""
GROUNDING_MIN_SUPPORT = 0.5
"""Jobs whose tasks are offered and granted; a compiling, done, failed or cancelled job's leftovers are not."""


@dataclass(frozen=True)
class SchedulerConfig:
    temperature: float = 0.7
    """Sampling temperature for question_gen (variety of queries); replicas share the seed, so they still agree."""
    temperatures: dict[TaskKind, float] = field(
        default_factory=lambda: {TaskKind.SPEC: 0.0, TaskKind.SYNTHESIZE: 0.3, TaskKind.JUDGE: 0.0}
    )
    """Per-kind overrides. Synthesize runs cool: at 0.7 the 135M model drifted into repetition in most rows
    of a 6-row demo run (all dropped by the grounding gate); grounding, not sampling, gives the variety.
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
    """Upper bound on slots per task (two replicas plus one tie-breaker)."""
    max_attempts: int = 4
    offer_ttl_ms: int = 30_000
    reoffer_ms: int = 3_000
    """An offer still unclaimed after this long is gossiped again (nodes may have joined or freed up)."""
    claim_hold_ms: int = 10_000
    """How long a claimed slot waits for the grant to be sent before it is re-offered."""
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


@dataclass
class Coverage:
    """What a job's accepted rows already use: answer sentences (one row each) and rows per source page."""

    answers: set[str] = field(default_factory=set)
    pages: Counter[str] = field(default_factory=Counter)
    cap: int = 0


@dataclass(frozen=True)
class Outgoing:
    """A signed envelope the runtime must deliver to one node (a receipt decided later)."""

    peer_id: str
    envelope: bytes


def coverage_of(store: Store, job_id: str, rows: int | None) -> Coverage:
    """What a job's accepted rows use, read from the store (the scheduler keeps it after that)."""
    coverage = Coverage(cap=page_cap(rows))
    for row in store.rows(job_id):
        coverage.answers.add(normalize_ws(row.evidence))
        payload = store.task_payload(row.task_id)
        if isinstance(payload, SynthesizePayload) and payload.chunk is not None:
            coverage.pages[payload.chunk.url] += 1
    return coverage


def _coverage_failure(coverage: Coverage, url: str, evidence: str) -> Failure | None:
    if normalize_ws(evidence) in coverage.answers:
        return Failure(Reason.DUPLICATE, "its answer sentence already has a row")
    if coverage.pages[url] >= coverage.cap:
        return Failure(Reason.PAGE_QUOTA, f"{url} already holds {coverage.pages[url]} rows (cap {coverage.cap})")
    return None


PULL_SCAN = 32
"""Offered slots a Pull looks at (oldest first), per group: audits, then everything else."""
PULL_TRIES = 8
"""Claims a Pull may try before it answers NONE_OPEN: bounds the coordinator's work per Pull."""
PULL_TASK_ID = "pull"
"""The task id of a Reject that answers a Pull (it names no task)."""


def seed_for(task_id: str) -> int:
    """The sampling seed of a task: the same for every replica, so honest replicas agree."""
    return int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:4], "big")


def parent_of(task_id: str) -> tuple[str, int] | None:
    """(parent task id, candidate result id) for a validate task id, else None."""
    head, sep, tail = task_id.rpartition(VALIDATE_MARK)
    if not sep or not tail.isdigit():
        return None
    return head, int(tail)


class Scheduler:
    def __init__(
        self,
        store: Store,
        identity: Identity,
        config: SchedulerConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.identity = identity
        self.config = config or SchedulerConfig()
        self.rng = rng or random.Random()
        self._last_offer: dict[tuple[str, int], int] = {}
        self._status: dict[str, NodeStatus] = {}
        self._seen_ms: dict[str, int] = {}
        self._deferred: dict[tuple[str, tuple[str, int]], int] = {}
        self._waiting_validations: tuple[int, list[tuple[str, int]]] = (-(10**12), [])
        self._dedup: dict[str, Deduplicator] = {}
        self._coverage: dict[str, Coverage] = {}
        self.stats: Counter[str] = Counter()

    # --- tasks --------------------------------------------------------------

    def submit(
        self, task_id: str, job_id: str, stage: str, payload: TaskPayload, *, est_tokens: int = 0, now_ms: int
    ) -> TaskRecord:
        """Create a task (idempotent: an existing task id is returned as it is)."""
        try:
            return self.store.task(task_id)
        except NotFound:
            pass
        return self.store.add_task(
            task_id,
            job_id,
            stage,
            payload,
            replicas=1,
            max_attempts=self.config.max_attempts,
            est_tokens=est_tokens,
            now_ms=now_ms,
        )

    def decoding_for(self, task: TaskRecord) -> DecodingParams | None:
        if task.kind not in GENERATIVE_KINDS:
            return None
        return DecodingParams(
            seed=seed_for(task.task_id),
            temperature=self.config.temperatures.get(task.kind, self.config.temperature),
            top_k=self.config.top_k,
            max_tokens=self.config.max_tokens.get(task.kind, 512),
        )

    def allowed_models(self, task: TaskRecord) -> list[str]:
        if task.kind is TaskKind.VALIDATE:
            payload = self.store.task_payload(task.task_id)
            assert payload.kind is TaskKind.VALIDATE
            return [payload.model_sha256]
        if task.kind in LLM_KINDS:
            return sorted(self.store.job(task.job_id).allowed_models)
        return []

    # --- offers -------------------------------------------------------------

    def offers(self, now_ms: int) -> list[tuple[TaskKind, bytes]]:
        """Signed offers to gossip now: open slots not offered within `reoffer_ms`."""
        out: list[tuple[TaskKind, bytes]] = []
        waiting: Counter[tuple[str, int]] = Counter()
        for slot in self.store.offered_slots(limit=self.config.max_offers_per_tick * 4):
            waiting[(slot.task_id, slot.attempt)] += 1
        for (task_id, attempt), n in waiting.items():
            if len(out) >= self.config.max_offers_per_tick:
                break
            last = self._last_offer.get((task_id, attempt))
            if last is not None and now_ms - last < self.config.reoffer_ms:
                continue
            task = self.store.task(task_id)
            if task.kind is not TaskKind.VALIDATE and self.store.job(task.job_id).state not in ACTIVE_JOB_STATES:
                continue  # validation of work already submitted goes on: it decides verdicts, credit and reputation
            offer = TaskOffer(
                task_id=task_id,
                job_id=task.job_id,
                task_kind=task.kind,
                attempt=attempt,
                payload_sha256=task.payload_sha256,
                est_tokens=task.est_tokens,
                model_sha256=self.allowed_models(task),
                replicas_wanted=min(n, 16),
                offer_expires_ms=now_ms + self.config.offer_ttl_ms,
            )
            self._last_offer[(task_id, attempt)] = now_ms
            out.append((task.kind, seal(self.identity, offer, now_ms=now_ms, ttl_ms=self.config.offer_ttl_ms)))
        self.stats["offers"] += len(out)
        return out

    def note_status(self, peer_id: str, status: NodeStatus, now_ms: int) -> None:
        self._status[peer_id] = status
        self._seen_ms[peer_id] = now_ms
        self.store.touch_node(peer_id, now_ms=now_ms)

    def node_statuses(self) -> dict[str, NodeStatus]:
        return dict(self._status)

    def last_seen_ms(self, peer_id: str) -> int | None:
        """When the node's last status gossip arrived (since this coordinator started)."""
        return self._seen_ms.get(peer_id)

    def live_nodes(self, now_ms: int) -> list[str]:
        """Nodes whose status arrived within LIVE_NODE_MS and that are not blacklisted."""
        out = []
        for peer, seen in self._seen_ms.items():
            rep = self.store.reputation(peer)
            if now_ms - seen <= LIVE_NODE_MS and not (rep is not None and rep.blacklisted):
                out.append(peer)
        return out

    # --- claims -------------------------------------------------------------

    def _reputation(self, peer_id: str, now_ms: int) -> NodeReputation:
        return self.store.reputation(peer_id) or new_node(peer_id, now_ms=now_ms, config=self.config.reputation)

    def _held_by(self, peer_id: str) -> int:
        return self.store.count_held(peer_id)

    def _live_grant(self, task_id: str, attempt: int, peer_id: str, now_ms: int) -> Grant | None:
        for slot in self.store.slots(task_id):
            if (
                slot.node == peer_id
                and slot.attempt >= attempt  # granted at a later attempt than a stale offer said
                and slot.state is SlotState.GRANTED
                and slot.lease_id is not None
                and (slot.deadline_ms is None or slot.deadline_ms > now_ms)
            ):
                return self.store.grant_message(slot.lease_id)
        return None

    def on_claim(self, claim: Claim, peer_id: str, now_ms: int) -> Grant | Reject:
        """Answer one claim. `peer_id` is the Noise-authenticated sender (= the envelope signer)."""

        def reject(reason: RejectReason, detail: str = "") -> Reject:
            self.stats[f"reject:{reason.value}"] += 1
            return Reject(task_id=claim.task_id, reason=reason, detail=detail)

        rep = self.store.reputation(peer_id)
        if rep is not None and rep.blacklisted:
            log.info("claim refused: node %s is blacklisted", peer_id)
            return reject(RejectReason.NODE_BLACKLISTED, "this node's results failed verification too often")
        try:
            task = self.store.task(claim.task_id)
        except NotFound:
            return reject(RejectReason.TASK_UNKNOWN)
        if task.state is not TaskState.OPEN:
            return reject(RejectReason.ALREADY_FILLED, f"task is {task.state.value}")
        job_state = self.store.job(task.job_id).state
        if job_state not in ACTIVE_JOB_STATES and task.kind is not TaskKind.VALIDATE:
            return reject(RejectReason.ALREADY_FILLED, f"job is {job_state}")
        allowed = self.allowed_models(task)
        if task.kind in LLM_KINDS and allowed and claim.model_sha256 not in allowed:
            return reject(RejectReason.MODEL_NOT_ALLOWED, f"allowed models: {', '.join(allowed)}")
        held = self._live_grant(task.task_id, claim.attempt, peer_id, now_ms)
        if held is not None:
            # The node claims what it already holds: its first answer was lost on the way.
            self.stats["regrants"] += 1
            return held
        link = parent_of(task.task_id) if task.kind is TaskKind.VALIDATE else None
        if link is not None:
            producers = {r.node for r in self.store.results_for(link[0])}
            vpayload = self.store.task_payload(task.task_id)
            model = vpayload.model_sha256 if isinstance(vpayload, ValidatePayload) else None
            if peer_id in producers and peer_id not in self._validators_for(producers, model, now_ms):
                return reject(RejectReason.ALREADY_HELD, "a producer of a candidate cannot validate it")
        status = self._status.get(peer_id)
        capacity = max(1, status.total_slots) if status is not None else 1
        if self._held_by(peer_id) >= capacity:
            return reject(RejectReason.NO_CAPACITY, f"node already holds {capacity} lease(s)")
        if task.kind in LLM_KINDS and task.kind is not TaskKind.VALIDATE:
            waiting = self._validation_waiting_for(peer_id, now_ms)
            if waiting is not None:
                self._deferred.setdefault((peer_id, waiting), now_ms)
                self._last_offer.pop(waiting, None)  # offered again on the next tick
                self.stats["deferred"] += 1
                return reject(RejectReason.DEFERRED, f"validate {waiting[0]} first: a finished result waits on it")
        slot = self.store.claim(
            task.task_id, peer_id, claim_deadline_ms=now_ms + self.config.claim_hold_ms, now_ms=now_ms
        )
        if slot is None:
            return reject(RejectReason.ALREADY_FILLED, "no free replica for this node")
        if task.kind is not TaskKind.VALIDATE:
            plan = plan_replication(
                rep,
                draw=self.rng.random(),
                now_ms=now_ms,
                config=self.config.reputation,
                operator_trusted=peer_id in self.config.trusted_nodes,
            )
            replicas = 1 if self._audited(task) else plan.replicas
            if plan.spot_check and task.kind in DETERMINISTIC_KINDS and self._another_serves(peer_id, task, now_ms):
                replicas = 2  # a deterministic spot-check is a second replica, from any other node that is here
            have = len(self.store.slots(task.task_id))
            for _ in range(max(0, min(replicas, self.config.max_replicas) - have)):
                self.store.add_replica(task.task_id, now_ms=now_ms)
            if plan.spot_check and task.kind in GENERATIVE_KINDS:
                # Stored before the grant: a restart while the node runs the task still re-scores its result.
                self.store.pick_spot_check(task.task_id, now_ms=now_ms)
        lease_id = f"{task.task_id}.r{slot.replica}.a{slot.attempt}"
        deadline = lease_deadline_ms(now_ms, task.est_tokens, claim.tok_s)
        decoding = self.decoding_for(task)
        model = claim.model_sha256 if task.kind in LLM_KINDS else None
        self.store.grant(
            task.task_id,
            slot.replica,
            lease_id=lease_id,
            deadline_ms=deadline,
            model_sha256=model,
            decoding=decoding,
            now_ms=now_ms,
        )
        self.stats["grants"] += 1
        return self.store.grant_message(lease_id)

    def on_pull(self, pull: Pull, peer_id: str, now_ms: int) -> Grant | Reject:
        """Answer a node that asks for any open task of its kinds: the oldest one it may take (audits
        first: finished results wait on them), granted exactly as a claim for it would be."""
        self.stats["pulls"] += 1
        rest: list[TaskKind] = [k for k in dict.fromkeys(pull.task_kinds) if k is not TaskKind.VALIDATE]
        groups: list[list[TaskKind]] = [[TaskKind.VALIDATE]] if TaskKind.VALIDATE in pull.task_kinds else []
        groups += [rest] if rest else []
        tried = 0
        for group in groups:
            seen: set[tuple[str, int]] = set()
            for slot in self.store.offered_slots(limit=PULL_SCAN, kinds=group):
                key = (slot.task_id, slot.attempt)
                if key in seen:
                    continue
                seen.add(key)
                task = self.store.task(slot.task_id)
                if peer_id in self._involved(task.task_id):
                    continue
                if task.kind is not TaskKind.VALIDATE and self.store.job(task.job_id).state not in ACTIVE_JOB_STATES:
                    continue  # a job waiting for nodes: not a refusal worth counting against the tries
                allowed = self.allowed_models(task)
                model = next((m for m in pull.model_sha256 if not allowed or m in allowed), None)
                if task.kind in LLM_KINDS and model is None:
                    continue
                claim = Claim(
                    task_id=task.task_id,
                    attempt=slot.attempt,
                    model_sha256=model if task.kind in LLM_KINDS else None,
                    free_slots=pull.free_slots,
                    tok_s=pull.tok_s,
                )
                answer = self.on_claim(claim, peer_id, now_ms)
                if isinstance(answer, Grant):
                    self.stats["pull_grants"] += 1
                    return answer
                tried += 1
                if tried >= PULL_TRIES or answer.reason in (RejectReason.NODE_BLACKLISTED, RejectReason.NO_CAPACITY):
                    return Reject(task_id=PULL_TASK_ID, reason=answer.reason, detail=answer.detail)
        return Reject(task_id=PULL_TASK_ID, reason=RejectReason.NONE_OPEN, detail="no open task for this node now")

    # --- results ------------------------------------------------------------

    def on_result(self, opened: Opened, now_ms: int) -> tuple[bytes, list[Outgoing]]:
        """Record and verify one result. Returns the receipt for its sender and receipts for others.

        The sender's receipt is final when the task could be decided now, else PENDING
        (its final receipt is pushed later, as an Outgoing). Raises NotFound for a
        lease this coordinator never granted.
        """
        result = opened.message
        assert isinstance(result, Result)
        # Checked before it is recorded: a check that raises leaves nothing stored, never a counted result
        # without a verdict (which `evaluate` or a restart's `resume` would then decide without the checks).
        grant = self.store.grant_message(result.lease_id)  # NotFound for a lease never granted
        task = self.store.task(grant.task_id)
        failures = check_result(
            result,
            signer_peer_id=opened.sender_peer_id,
            grant=grant,
            allowed_models=self.allowed_models(task),
            now_ms=now_ms,
        )
        recorded = self.store.record_result(opened, now_ms=now_ms)
        rid = recorded.result.result_id
        if recorded.duplicate:
            existing = self.store.receipt(rid)
            return existing or self._receipt(result, opened.sender_peer_id, Verdict.PENDING, now_ms), []
        self.stats["results"] += 1
        if failures:
            log.info("result %s for %s rejected: %s", rid, task.task_id, failures[0])
            self._settle(task, [(recorded.result, failures[0])], now_ms=now_ms)
        outgoing = self.evaluate(task.task_id, now_ms)
        mine = self.store.receipt(rid)
        others = [o for o in outgoing if o.envelope != mine]
        return mine or self._receipt(result, opened.sender_peer_id, Verdict.PENDING, now_ms), others

    def _receipt(self, result: Result, peer_id: str, verdict: Verdict, now_ms: int) -> bytes:
        kind = TaskKind(result.output.kind)
        return build_receipt(
            self.identity, result, node_peer_id=peer_id, task_kind=kind, verdict=verdict, now_ms=now_ms
        )

    def _pending(self, task_id: str) -> list[ResultRecord]:
        return [r for r in self.store.results_for(task_id) if r.counted and self.store.verdict(r.result_id) is None]

    def evaluate(self, task_id: str, now_ms: int) -> list[Outgoing]:
        """Decide a task whose replicas are all in; returns the receipts to deliver."""
        task = self.store.task(task_id)
        if task.state is not TaskState.OPEN:
            return []
        slots = self.store.slots(task_id)
        if any(s.state in LIVE for s in slots):
            return []  # replicas still running
        pending = self._pending(task_id)
        if not pending:
            return []
        if task.kind in DETERMINISTIC_KINDS or task.kind is TaskKind.VALIDATE:
            return self._by_quorum(task, pending, len(slots), now_ms)
        return self._generative(task, pending, now_ms)

    def _by_quorum(self, task: TaskRecord, pending: list[ResultRecord], n_slots: int, now_ms: int) -> list[Outgoing]:
        if task.kind is TaskKind.VALIDATE:
            return self._validator_quorum(task, pending, n_slots, now_ms)
        outputs = [(r.result_id, self.store.result_message(r.result_id).output) for r in pending]
        min_agree = 1 if len(pending) == 1 else self.config.quorum.min_agree
        policy = QuorumPolicy(
            retrieve_agree=self.config.quorum.retrieve_agree,
            search_agree=self.config.quorum.search_agree,
            curate_agree=self.config.quorum.curate_agree,
            min_agree=min_agree,
        )
        outcome = quorum(outputs, policy=policy)  # type: ignore[arg-type]
        by_id = {r.result_id: r for r in pending}
        if outcome.status is QuorumStatus.AGREED and outcome.canonical is not None:
            verdicts: list[tuple[ResultRecord, Failure | None]] = [(by_id[k], None) for k in outcome.majority]
            verdicts += [(by_id[k], Failure(Reason.QUORUM_MINORITY, "outside the majority")) for k in outcome.minority]
            return self._settle(
                task, verdicts, canonical=by_id[outcome.canonical], now_ms=now_ms, credit=len(pending) > 1
            )
        if n_slots < self.config.max_replicas:
            self.store.add_replica(task.task_id, now_ms=now_ms)  # a tie-breaker
            return []
        failure = Failure(Reason.QUORUM_MINORITY, "no majority among replicas")
        return self._settle(task, [(r, failure) for r in pending], now_ms=now_ms, credit=False)

    def _agree(self, a: ValidateOutput, b: ValidateOutput) -> bool:
        c = self.config
        ta, tb = a.roundtrip, b.roundtrip
        trips_agree = (ta is None and tb is None) or (
            ta is not None
            and tb is not None
            and ta.answer_rank == tb.answer_rank
            and abs(ta.margin - tb.margin) <= c.validator_margin_tolerance
        )
        return (
            a.n_tokens == b.n_tokens
            and abs(a.mean_logprob - b.mean_logprob) <= c.validator_logprob_tolerance
            and abs(a.topk_rate - b.topk_rate) <= c.validator_topk_tolerance
            and trips_agree
        )

    def _audited(self, task: TaskRecord) -> bool:
        """Whether every result of the task goes to a validator (answer-first synthesize tasks)."""
        if task.kind is not TaskKind.SYNTHESIZE:
            return False
        payload = self.store.task_payload(task.task_id)
        return isinstance(payload, SynthesizePayload) and payload.target is not None

    def _validator_quorum(
        self, task: TaskRecord, pending: list[ResultRecord], n_slots: int, now_ms: int
    ) -> list[Outgoing]:
        outs: dict[int, ValidateOutput] = {}
        for r in pending:
            out = self.store.result_message(r.result_id).output
            assert isinstance(out, ValidateOutput)
            outs[r.result_id] = out
        best: list[ResultRecord] = []
        for r in pending:
            group = [q for q in pending if self._agree(outs[r.result_id], outs[q.result_id])]
            if len(group) > len(best):
                best = group
        if n_slots == 1 and len(pending) == 1:
            return self._settle(task, [(pending[0], None)], canonical=pending[0], now_ms=now_ms)
        if len(best) >= 2 and 2 * len(best) > len(pending):
            verdicts: list[tuple[ResultRecord, Failure | None]] = [(r, None) for r in best]
            verdicts += [
                (r, Failure(Reason.QUORUM_MINORITY, "re-score disagrees with the other validators"))
                for r in pending
                if r not in best
            ]
            return self._settle(task, verdicts, canonical=best[0], now_ms=now_ms)
        if n_slots < self.config.max_replicas:
            self.store.add_replica(task.task_id, now_ms=now_ms)  # a tie-breaking validator
            return []
        failure = Failure(Reason.UNVERIFIABLE, "validators did not agree")
        return self._settle(task, [(r, failure) for r in pending], now_ms=now_ms, credit=False)

    def _generative(self, task: TaskRecord, pending: list[ResultRecord], now_ms: int) -> list[Outgoing]:
        messages = {r.result_id: self.store.result_message(r.result_id) for r in pending}
        validations = self._validations(task.task_id)
        picked = self.store.spot_checked(task.task_id)
        needs_rescore = self._audited(task) or picked or any(v is not None for v in validations.values())
        if len(pending) >= 2 and not needs_rescore:
            first, *rest = pending
            agreement = [compare_replicas(messages[first.result_id], messages[r.result_id]) for r in rest]
            if all(a in (Agreement.EXACT, Agreement.CLOSE) for a in agreement):
                return self._accept_generative(task, pending, [], now_ms, credit=True)
            needs_rescore = True
        if not needs_rescore and self._checked_by_itself(pending, messages, now_ms):
            needs_rescore = True  # the operator's node alone: it re-scores its own output in a separate pass
        if not needs_rescore:
            # A lone result from a trusted node, not spot-checked: accepted, but it proves nothing.
            return self._accept_generative(task, pending, [], now_ms, credit=False)
        missing = [r for r in pending if r.result_id not in validations]
        created = False
        for r in missing:
            if self._create_validation(task, r, messages[r.result_id], now_ms):
                created = True
            else:
                validations[r.result_id] = []  # no node may validate it: decided as unverifiable below
        if created or any(v is None for v in validations.values()):
            return []  # wait for the validators
        decisions: dict[int, Failure | None] = {}
        for r in pending:
            outputs = validations.get(r.result_id)
            if not outputs:
                decisions[r.result_id] = Failure(Reason.UNVERIFIABLE, "no eligible validator could re-score it")
                continue
            d = decide(Candidate(r.result_id, outputs, messages[r.result_id].stats.mean_logprob), self.config.rescore)
            decisions[r.result_id] = d.failure
        accepted = [r for r in pending if decisions[r.result_id] is None]
        rejected: list[tuple[ResultRecord, Failure | None]] = [
            (r, decisions[r.result_id]) for r in pending if decisions[r.result_id] is not None
        ]
        if picked:
            self.store.clear_spot_check(task.task_id)
        if not accepted:
            return self._settle(task, rejected, now_ms=now_ms)
        audit = validations.get(accepted[0].result_id) or []
        return self._accept_generative(task, accepted, rejected, now_ms, credit=True, audit=audit)

    def _validations(self, task_id: str) -> dict[int, list[ValidateOutput] | None]:
        """Per candidate result id: the validate outputs (None while its validate task is open)."""
        out: dict[int, list[ValidateOutput] | None] = {}
        for r in self.store.results_for(task_id):
            vid = f"{task_id}{VALIDATE_MARK}{r.result_id}"
            try:
                vt = self.store.task(vid)
            except NotFound:
                continue
            if vt.state is TaskState.OPEN:
                out[r.result_id] = None
            elif vt.state is TaskState.DONE and vt.canonical_result_id is not None:
                agreed = []
                for v in self.store.results_for(vid):
                    verdict = self.store.verdict(v.result_id)
                    if verdict is not None and verdict.verdict is Verdict.ACCEPTED:
                        output = self.store.result_message(v.result_id).output
                        assert isinstance(output, ValidateOutput)
                        agreed.append(output)
                out[r.result_id] = agreed
            else:
                out[r.result_id] = []
        return out

    def _validation_waiting_for(self, peer_id: str, now_ms: int) -> tuple[str, int] | None:
        """An offered validate slot this node may fill, and was not yet sent to: (task id, attempt).

        A node with a free slot claims whichever offer reaches it first. Offers are re-gossiped every
        `reoffer_ms`, and a wave of synthesize offers outnumbers the validations they produce, so a busy
        network left audits untaken until the stall timer abandoned them (and the results they decide).
        A node is sent to a given validation for DEFER_WINDOW_MS at most: other offers reach it before
        the audit's does, and each is refused in that window; after it, a node that could not take the
        audit after all gets work again (no livelock).
        """
        if len(self._deferred) > 10_000:
            self._deferred = {k: t for k, t in self._deferred.items() if now_ms - t <= DEFER_WINDOW_MS}
        at, keys = self._waiting_validations
        if now_ms - at >= VALIDATION_SCAN_MS:  # one scan per tick, not one per claim
            slots = self.store.offered_slots(limit=16, kinds=[TaskKind.VALIDATE])
            keys = list(dict.fromkeys((x.task_id, x.attempt) for x in slots))
            self._waiting_validations = (now_ms, keys)
        for key in keys:
            link = parent_of(key[0])
            first = self._deferred.get((peer_id, key))
            if (first is not None and now_ms - first > DEFER_WINDOW_MS) or link is None:
                continue
            slots = self.store.slots(key[0])
            if not any(x.state is SlotState.OFFERED and x.attempt == key[1] for x in slots):
                continue  # taken since the scan
            payload = self.store.task_payload(key[0])
            if payload.kind is not TaskKind.VALIDATE or not self.serves(
                peer_id, TaskKind.VALIDATE, [payload.model_sha256]
            ):
                continue
            producers = {r.node for r in self.store.results_for(link[0])}
            if peer_id in self._involved(key[0], slots):
                continue
            if peer_id not in producers or peer_id in self._validators_for(producers, payload.model_sha256, now_ms):
                return key
        return None

    def _validators_for(self, producers: Collection[str], model: str | None, now_ms: int) -> list[str]:
        """Live nodes that may re-score a candidate of these producers: any live node that produced none of
        them and serves the model; when there is none and every producer is the operator's own node, those
        producers themselves (a separate pass, reported on the card as checked by the operator's node only)."""
        serving = [p for p in self.live_nodes(now_ms) if self.serves(p, TaskKind.VALIDATE, [model])]
        independent = [p for p in serving if p not in producers]
        if independent or not producers or not set(producers) <= self.config.trusted_nodes:
            return independent
        return [p for p in serving if p in producers]

    def _checked_by_itself(self, pending: list[ResultRecord], messages: dict[int, Result], now_ms: int) -> bool:
        """A lone result of the operator's own node, with no other node that could check it: re-scored by
        that node itself (an unchecked result would prove nothing, and the card says who checked)."""
        if len(pending) != 1 or pending[0].node not in self.config.trusted_nodes:
            return False
        validators = self._validators_for({pending[0].node}, messages[pending[0].result_id].model_sha256, now_ms)
        return validators == [pending[0].node]

    def _another_serves(self, peer_id: str, task: TaskRecord, now_ms: int) -> bool:
        return any(p != peer_id and self.serves(p, task.kind) for p in self.live_nodes(now_ms))

    def serves(self, peer_id: str, kind: TaskKind, models: Collection[str | None] = ()) -> bool:
        """Whether the node's last status lists `kind` and, if `models` names any, holds one of them
        (a node whose status lists no models is taken at its word)."""
        status = self._status.get(peer_id)
        if status is None or kind not in status.task_kinds:
            return False
        named = {m for m in models if m}
        return not named or not status.models or any(m.sha256 in named for m in status.models)

    def _involved(self, task_id: str, slots: Sequence[SlotRecord] | None = None) -> set[str]:
        """Nodes that produced a result for the task or hold one of its slots: no other replica for them."""
        nodes = {r.node for r in self.store.results_for(task_id)}
        return nodes | {x.node for x in (self.store.slots(task_id) if slots is None else slots) if x.node}

    def _create_validation(self, task: TaskRecord, record: ResultRecord, result: Result, now_ms: int) -> bool:
        """Create the validate task for one candidate; False when no live node is eligible to run it."""
        original = self.store.task_payload(task.task_id)
        task_payload = original if isinstance(original, RESCORABLE_PAYLOADS) else None
        try:
            # An answer-first question is a few tokens, most forced by its frame grammar, the rest sampled
            # from the top-k of the grant: an honest one lies inside that top-k, so that is the k to check.
            # With top-10, 2 of 79 honest questions of a 20-row demo run scored 0.63 and 0.73 (3 misses).
            top_k = self.config.validate_top_k
            if isinstance(task_payload, SynthesizePayload) and task_payload.target is not None:
                top_k = max(top_k, self.config.top_k)
            payload = rescoring_payload(result, top_k=top_k, task=task_payload)
        except ValueError:
            return False
        vid = f"{task.task_id}{VALIDATE_MARK}{record.result_id}"
        try:
            self.store.task(vid)
            return True
        except NotFound:
            pass
        est = max(1, len(result.prompt) // 4 + len(result.raw_text) // 4)
        producers = {r.node for r in self.store.results_for(task.task_id)}
        eligible = self._validators_for(producers, result.model_sha256, now_ms)
        if not eligible:
            return False
        # Two agreeing validators when the network has them; a small network gets a single audit.
        replicas = max(1, min(self.config.validator_replicas, len(eligible)))
        self.store.add_task(
            vid,
            task.job_id,
            VALIDATE_STAGE,
            payload,
            replicas=replicas,
            max_attempts=self.config.max_attempts,
            est_tokens=est // 3,
            now_ms=now_ms,
        )
        self.stats["validations"] += 1
        return True

    def _accept_generative(
        self,
        task: TaskRecord,
        accepted: list[ResultRecord],
        rejected: Sequence[tuple[ResultRecord, Failure | None]],
        now_ms: int,
        *,
        credit: bool,
        audit: Sequence[ValidateOutput] = (),
    ) -> list[Outgoing]:
        canonical = accepted[0]
        verdicts: list[tuple[ResultRecord, Failure | None]] = [(r, None) for r in accepted]
        verdicts += rejected
        return self._settle(task, verdicts, canonical=canonical, now_ms=now_ms, credit=credit, audit=audit)

    def _answer_first_failure(
        self, payload: SynthesizePayload, data: dict[str, object], audit: Sequence[ValidateOutput]
    ) -> Failure | None:
        """The answer-first gates, then the round trip (which only a validator can run)."""
        target = payload.target
        assert target is not None
        question, answer = data.get(target.question_field), data.get(target.answer_field)
        if not isinstance(question, str) or not isinstance(answer, str):
            return Failure(Reason.ANSWER_MISMATCH, "the row lacks its question or answer field")
        failure = check_answer_first(question, answer, target.sentence, max_chars=target.max_question_chars)
        return failure or roundtrip_failure(audit, self.config.roundtrip)

    def _rows_for(
        self, task: TaskRecord, canonical: ResultRecord, now_ms: int, audit: Sequence[ValidateOutput] = ()
    ) -> list[NewRow]:
        output = self.store.result_message(canonical.result_id).output
        if not isinstance(output, SynthesizeOutput):
            return []
        payload = self.store.task_payload(task.task_id)
        assert isinstance(payload, SynthesizePayload)
        grounded = bool(self.store.job(task.job_id).spec.get("grounded", payload.chunk is not None))
        dedup = self._dedup_for(task.job_id)
        rows = []
        coverage = self._coverage_for(task.job_id) if payload.target is not None else None
        for idx, row in enumerate(output.rows):
            failure = injection_failure(row.data, row.evidence)
            if failure is None and payload.target is not None:
                failure = self._answer_first_failure(payload, row.data, audit)
            if failure is None and coverage is not None and payload.chunk is not None:
                failure = _coverage_failure(coverage, payload.chunk.url, row.evidence)
            failure = failure or gate_row(
                f"{task.task_id}/{idx}",
                row,
                chunk=payload.chunk,
                grounded=grounded,
                dedup=dedup,
                grounding=self._grounding_for(row.data),
            )
            if failure is not None:
                self.stats[f"row_dropped:{failure.reason.value}"] += 1
                self.store.record_row_drop(task.job_id, task.task_id, idx, failure.reason.value, now_ms=now_ms)
                continue
            rows.append(NewRow(idx, row.data, row.evidence))
            if coverage is not None and payload.chunk is not None:
                coverage.answers.add(normalize_ws(row.evidence))
                coverage.pages[payload.chunk.url] += 1
        return rows

    def _coverage_for(self, job_id: str) -> Coverage:
        if job_id not in self._coverage:
            rows = self.store.job(job_id).spec.get("spec", {}).get("rows")
            self._coverage[job_id] = coverage_of(self.store, job_id, rows if isinstance(rows, int) else None)
        return self._coverage[job_id]

    @staticmethod
    def _grounding_for(data: dict[str, object]) -> GroundingChecker:
        # Fields that ask may use words the source lacks: support is measured on the others. Measured on
        # 20 SmolLM2-135M rows of a demo run: checking every field at 0.6 passed 2; answer fields only at
        # 0.5 passed 6, and every row dropped then was invented or generic.
        stating = tuple(k for k in data if not asks(k))
        asking = tuple(k for k in data if asks(k))
        return LexicalGrounding(
            min_support=GROUNDING_MIN_SUPPORT, answer_fields=stating or None, question_fields=asking
        )

    def _dedup_for(self, job_id: str) -> Deduplicator:
        if job_id not in self._dedup:
            dedup = Deduplicator()
            for row in self.store.rows(job_id):  # rebuilt after a restart
                dedup.add(f"{row.task_id}/{row.idx}", row_text(row.data))
            self._dedup[job_id] = dedup
        return self._dedup[job_id]

    def _settle(
        self,
        task: TaskRecord,
        verdicts: Sequence[tuple[ResultRecord, Failure | None]],
        *,
        canonical: ResultRecord | None = None,
        now_ms: int,
        credit: bool = True,
        audit: Sequence[ValidateOutput] = (),
    ) -> list[Outgoing]:
        judgements: list[Judgement] = []
        reputations: dict[str, NodeReputation] = {}
        outgoing: list[Outgoing] = []
        for record, failure in verdicts:
            result = self.store.result_message(record.result_id)
            verdict = Verdict.ACCEPTED if failure is None else Verdict.REJECTED
            receipt = self._receipt(result, record.node, verdict, now_ms)
            reason = failure.reason if failure else None
            judgements.append(
                Judgement(record.result_id, verdict, reason.value if reason else "", failure.detail if failure else "",
                          receipt=receipt)
            )  # fmt: skip
            outgoing.append(Outgoing(record.node, receipt))
            self.stats[f"verdict:{task.kind.value}:{verdict.value}:{reason.value if reason else 'ok'}"] += 1
            outcome = outcome_for(verdict, reason)
            if outcome is None or (outcome is Outcome.ACCEPTED and not credit):
                continue
            rep = reputations.get(record.node) or self._reputation(record.node, now_ms)
            reputations[record.node] = update(rep, outcome, now_ms=now_ms, config=self.config.reputation)
        rows = self._rows_for(task, canonical, now_ms, audit) if canonical is not None else []
        settled = self.store.settle(
            task.task_id,
            judgements,
            canonical_result_id=canonical.result_id if canonical else None,
            rows=rows,
            reputations=list(reputations.values()),
            now_ms=now_ms,
        )
        for rep in reputations.values():
            if rep.blacklisted:
                log.warning("node %s blacklisted (score %.2f)", rep.peer_id, rep.score)
        if settled.task.state is not TaskState.OPEN:
            outgoing += self._after_close(settled.task, now_ms)
        elif any(f is not None for _, f in verdicts) and self._exhausted(settled.task, now_ms):
            # The rejected replica is offered again, but every live node that could run it already
            # did: in a small network that slot would only wait for the job's 60 s stall timer.
            log.info("task %s: no live node left that has not run it; abandoning it", task.task_id)
            outgoing += self.abandon(task.task_id, now_ms)
        return outgoing

    def _exhausted(self, task: TaskRecord, now_ms: int) -> bool:
        """Whether no live node may take this task's next replica (False when no node is known live)."""
        live = self.live_nodes(now_ms)
        if not live or task.kind is TaskKind.VALIDATE:
            return False
        involved = self._involved(task.task_id)
        models = self.allowed_models(task) if task.kind in LLM_KINDS else []
        return not any(p not in involved and self.serves(p, task.kind, models) for p in live)

    def _after_close(self, task: TaskRecord, now_ms: int) -> list[Outgoing]:
        link = parent_of(task.task_id) if task.kind is TaskKind.VALIDATE else None
        return self.evaluate(link[0], now_ms) if link is not None else []

    def abandon(self, task_id: str, now_ms: int) -> list[Outgoing]:
        """Stop wanting a task no node will take; a validate task's parent is then decided without it."""
        task = self.store.abandon_task(task_id, now_ms=now_ms)
        self.stats["abandoned"] += 1
        if task.state is not TaskState.OPEN:
            return self._after_close(task, now_ms)
        # A result is in but its replica never came: it is re-scored rather than taken on trust.
        if task.kind in GENERATIVE_KINDS:
            self.store.pick_spot_check(task_id, now_ms=now_ms)
        return self.evaluate(task_id, now_ms)

    # --- refusals -----------------------------------------------------------

    def charge_refusal(self, peer_id: str, reason: str, now_ms: int, *, kind: str | None = None) -> bool:
        """Count a request refused before it reached `on_claim`/`on_result` against its sender.

        `peer_id` is the transport-authenticated peer, so only what it chose to send counts:
        a forged or foreign signature or a replayed envelope is a rejection (as a forged
        result would be). So is a stale Result: a node seals its result just before sending
        it, and a node whose clock is off cannot claim work to produce one, so an expired
        Result is an old one sent again. Anything an honest node could send by accident (a
        stale claim from a skewed clock, an unknown version) moves nothing. True if charged.
        """
        if reason == "expired" and kind == MessageKind.RESULT.value:
            reason = "stale_result"
        if reason not in CHARGED_REFUSALS:
            return False
        rep = update(self._reputation(peer_id, now_ms), Outcome.REJECTED, now_ms=now_ms,
                     config=self.config.reputation)  # fmt: skip
        self.store.save_reputation(rep)
        self.stats[f"refused:{reason}"] += 1
        log.warning("request from %s refused (%s); charged as a rejection%s", peer_id, reason,
                    ", node blacklisted" if rep.blacklisted else "")  # fmt: skip
        return True

    # --- time ---------------------------------------------------------------

    def tick(self, now_ms: int) -> list[Outgoing]:
        """Expire lapsed leases (charging their nodes) and settle what that unblocks."""
        outgoing: list[Outgoing] = []
        touched: set[str] = set()
        for expiry in self.store.expire_due(now_ms=now_ms):
            node = expiry.before.node
            if node is not None and expiry.before.state is SlotState.GRANTED:
                rep = update(self._reputation(node, now_ms), Outcome.EXPIRED, now_ms=now_ms,
                             config=self.config.reputation)  # fmt: skip
                self.store.save_reputation(rep)
                self.stats["expired"] += 1
            touched.add(expiry.before.task_id)
        for task_id in touched:
            task = self.store.task(task_id)
            if task.state is TaskState.OPEN:
                outgoing += self.evaluate(task_id, now_ms)
            else:
                outgoing += self._after_close(task, now_ms)
        return outgoing

    def resume(self, now_ms: int) -> list[Outgoing]:
        """After a restart: expire what lapsed while down, and decide tasks left with results pending."""
        outgoing = self.tick(now_ms)
        for task_id in self.store.open_tasks_with_pending_results():
            outgoing += self.evaluate(task_id, now_ms)
        return outgoing

"""The Scheduler: the coordinator's entry points (submit, offers, claims, results, time), each a thin call into
the module that owns it, and the one loop that decides tasks: read a view, `decide`, apply the effects, and
queue the tasks those effects touched (a closed audit's parent) until the queue is empty.

What the job runners wait on is recorded as events (events.py: a task settled, the live nodes changed),
which the runtime takes after each call (`take_events`) and sends on; the stall clock (stalls.py) runs in
`tick` for the stages the runners say they wait on (`watch_stage`)."""

from __future__ import annotations

import logging
import random
from collections import Counter, deque
from collections.abc import Collection

from coordinator.scheduler.audits import parent_to_decide
from coordinator.scheduler.claims import Claims
from coordinator.scheduler.config import CHARGED_REFUSALS, SchedulerConfig
from coordinator.scheduler.decide import decide
from coordinator.scheduler.effects import Applied, Effects, Outgoing
from coordinator.scheduler.events import Event, Events
from coordinator.scheduler.grants import allowed_models, decoding_for
from coordinator.scheduler.nodes import Nodes
from coordinator.scheduler.offers import Offers
from coordinator.scheduler.results import record_result
from coordinator.scheduler.rows import RowGate
from coordinator.scheduler.stalls import Stalls
from coordinator.scheduler.view import Payloads, read_view
from coordinator.store import NotFound, Store, TaskRecord, TaskState
from coordinator.verify.reputation import Outcome
from protocol.envelope import Opened
from protocol.identity import Identity
from protocol.messages import Claim, Grant, MessageKind, NodeStatus, Pull, Reject
from protocol.state import ReplicaState
from protocol.tasks import DecodingParams, TaskKind, TaskPayload

log = logging.getLogger(__name__)


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
        self.stats: Counter[str] = Counter()
        self.events = Events()
        self.stalls = Stalls(store)
        self._live_seen: object = None
        """What the live nodes served at the last tick that watched a stage (see `_note_nodes`)."""
        self.nodes = Nodes(store, self.config.trusted_nodes)
        self.payloads = Payloads(store)
        self._offers = Offers(store, identity, self.config, self.allowed_models)
        rows = RowGate(store, self.config.roundtrip, self.stats)
        self.effects = Effects(
            store, identity, self.config, self.nodes, rows, self.allowed_models, self.stats, self.events
        )
        self.claims = Claims(
            store, self.config, self.nodes, self._offers, self.payloads, self.effects.involved, self.rng, self.stats
        )

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
        return decoding_for(task, self.config)

    def allowed_models(self, task: TaskRecord) -> list[str]:
        return allowed_models(self.store, self.payloads, task)

    def offers(self, now_ms: int) -> list[tuple[TaskKind, bytes]]:
        """Signed offers to gossip now: open replicas not offered within `reoffer_ms`."""
        out = self._offers.due(now_ms)
        self.stats["offers"] += len(out)
        return out

    # --- nodes --------------------------------------------------------------

    def note_status(self, peer_id: str, status: NodeStatus, now_ms: int) -> None:
        self.nodes.note(peer_id, status, now_ms)

    def node_statuses(self) -> dict[str, NodeStatus]:
        return self.nodes.statuses()

    def last_seen_ms(self, peer_id: str) -> int | None:
        """When the node's last status gossip arrived (since this coordinator started)."""
        return self.nodes.last_seen_ms(peer_id)

    def live_nodes(self, now_ms: int) -> list[str]:
        return self.nodes.live(now_ms)

    def serves(self, peer_id: str, kind: TaskKind, models: Collection[str | None] = ()) -> bool:
        return self.nodes.serves(peer_id, kind, models)

    # --- claims and results -------------------------------------------------

    def on_claim(self, claim: Claim, peer_id: str, now_ms: int) -> Grant | Reject:
        """Answer one claim. `peer_id` is the Noise-authenticated sender (= the envelope signer)."""
        return self.claims.on_claim(claim, peer_id, now_ms)

    def on_pull(self, pull: Pull, peer_id: str, now_ms: int) -> Grant | Reject:
        return self.claims.on_pull(pull, peer_id, now_ms)

    def on_result(self, opened: Opened, now_ms: int) -> tuple[bytes, list[Outgoing]]:
        """Record and verify one result. Returns the receipt for its sender and receipts for others
        (the sender's is PENDING while its task waits on replicas or audits). Raises NotFound for a
        lease this coordinator never granted."""
        mine, applied = record_result(self.store, self.payloads, self.effects, opened, now_ms, self._drain)
        return mine, [o for o in applied.outgoing if o.envelope != mine]

    # --- deciding -----------------------------------------------------------

    def evaluate(self, task_id: str, now_ms: int) -> list[Outgoing]:
        """Decide a task whose replicas are all in, and whatever that closes; returns the receipts to deliver."""
        return self._drain([task_id], now_ms).outgoing

    def _drain(self, task_ids: list[str], now_ms: int) -> Applied:
        """Decide each queued task from a fresh view, apply the decision, queue the tasks it touched."""
        queue = deque(task_ids)
        applied = Applied()
        while queue:
            validators = self.nodes.validators_at(now_ms)  # per task: a settle may have blacklisted a node
            view = read_view(self.store, queue.popleft(), payloads=self.payloads, validators=validators)
            step = self.effects.apply(view, decide(view, self.config), now_ms)
            queue.extend(step.then)
            applied.add(Applied(step.outgoing, step.receipts))
        return applied

    def abandon(self, task_id: str, now_ms: int) -> list[Outgoing]:
        """Stop wanting a task no node will take; a validate task's parent is then decided without it."""
        return self._drain(self.effects.abandon(task_id, now_ms).then, now_ms).outgoing

    # --- refusals and time --------------------------------------------------

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
        rep = self.effects.charge(peer_id, Outcome.REJECTED, now_ms)
        self.stats[f"refused:{reason}"] += 1
        log.warning("request from %s refused (%s); charged as a rejection%s", peer_id, reason,
                    ", node blacklisted" if rep.blacklisted else "")  # fmt: skip
        return True

    def tick(self, now_ms: int) -> list[Outgoing]:
        """Expire lapsed leases (charging their nodes) and settle what that unblocks; then abandon the
        untaken tasks of watched stages whose stall clock ran out."""
        touched: dict[str, None] = {}
        for expiry in self.store.expire_due(now_ms=now_ms):
            node = expiry.before.node
            if node is not None and expiry.before.state is ReplicaState.GRANTED:
                self.effects.charge(node, Outcome.EXPIRED, now_ms)
                self.stats["expired"] += 1
            touched[expiry.before.task_id] = None
        queue: list[str] = []
        for task_id in touched:
            task = self.store.task(task_id)
            self.events.settled(task)  # the expiry may have failed it (every replica gave up)
            queue += [task_id] if task.state is TaskState.OPEN else parent_to_decide(self.store, task)
        outgoing = self._drain(queue, now_ms).outgoing
        return outgoing + self._abandon_stalled(now_ms)

    # --- the stall clock and what the runners wait on -------------------------

    def watch_stage(self, job_id: str, stage: str, now_ms: int, *, waiting: bool) -> None:
        """The job's runner waits on `stage` (and the job's validate tasks); `waiting`: the job waits for
        nodes, which holds the stall clock (see stalls.py)."""
        self.stalls.watch(job_id, stage, now_ms, waiting=waiting)

    def unwatch_stage(self, job_id: str, *, forget: bool = False) -> None:
        """The runner waits on no stage now; `forget`: the job's runner is done (its clock goes too)."""
        if forget:
            self.stalls.forget(job_id)
        else:
            self.stalls.unwatch(job_id)

    def take_events(self) -> list[Event]:
        """The events recorded since the last call (the runtime sends them to the runners)."""
        return self.events.take()

    def _abandon_stalled(self, now_ms: int) -> list[Outgoing]:
        outgoing: list[Outgoing] = []
        if not self.stalls.active():
            return outgoing
        if self._note_nodes(now_ms):
            return outgoing  # the runners judge the new nodes first
        for job_id in self.stalls.jobs():
            for _stage, untaken in self.stalls.due(job_id, now_ms, self.config.stall_ms):
                for task_id in untaken:
                    log.warning("job %s: no node took %s for %.0f s; abandoning it",
                                job_id, task_id, self.config.stall_ms / 1000)  # fmt: skip
                    outgoing += self.abandon(task_id, now_ms)
        return outgoing

    def _note_nodes(self, now_ms: int) -> bool:
        """Whether the live nodes or what they serve changed since the last look (then NodesChanged)."""
        seen = {}
        for peer in sorted(self.nodes.live(now_ms)):
            status = self.nodes.status(peer)
            seen[peer] = (tuple(status.task_kinds), tuple(m.sha256 for m in status.models)) if status else None
        if seen == self._live_seen:
            return False
        self._live_seen = seen
        self.stalls.nodes_changed()
        self.events.nodes_changed()
        return True

    def resume(self, now_ms: int) -> list[Outgoing]:
        """After a restart: expire what lapsed while down, and decide tasks left with results pending."""
        outgoing = self.tick(now_ms)
        return outgoing + self._drain(self.store.open_tasks_with_pending_results(), now_ms).outgoing

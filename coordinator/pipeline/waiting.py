"""Whether a stage's tasks wait for nodes: too few live nodes serve its kind to run and verify them.

Owns: how many distinct live nodes a task of a kind needs (`nodes_needed`), the wait decision from the
live nodes and the kinds they serve (`node_wait`), and how a wait is shown and kept in the job's spec
document (under WAIT_KEY) for the API, the dashboard and the CLI.
Must not: read the clock, the store or the scheduler (the job runner passes what it saw), or abandon
tasks (the scheduler's stall clock does, scheduler/stalls.py, and only while no wait is on).

"Needed" follows the scheduler's replication (coordinator/scheduler.py, verify/reputation.py): an
untrusted node's generative task is replicated on a second node or audited by one (an answer-first
row is always re-scored by a node that did not write it), and a deterministic task settles by a quorum
of two replicas; so both need `untrusted_replicas` (2) distinct nodes. A trusted node runs a task at
r = 1, so one live trusted node that serves the kind suffices.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from coordinator.verify.reputation import DEFAULT_CONFIG
from protocol.tasks import DETERMINISTIC_KINDS, GENERATIVE_KINDS, TaskKind

WAIT_KEY = "waiting_for_nodes"
"""Key of the current wait in the job's job document (None when the job is not waiting)."""


@dataclass(frozen=True)
class NodeWait:
    stage: str
    live: int
    """Live nodes that serve the stage's task kind (with a model the job allows)."""
    needed: int
    """Distinct live nodes its tasks need (`nodes_needed`)."""

    @property
    def waiting(self) -> bool:
        return self.live < self.needed

    def describe(self) -> str:
        purpose = "for verification of" if self.needed > 1 else "to run"
        return f"waiting for nodes: {self.live} live, needs {self.needed} {purpose} {self.stage} tasks"

    def as_doc(self) -> dict[str, object]:
        return {"stage": self.stage, "live": self.live, "needed": self.needed}

    @classmethod
    def from_doc(cls, doc: object) -> NodeWait | None:
        """The wait kept in a job document; None for none (or a malformed one: it is only shown)."""
        if not isinstance(doc, Mapping):
            return None
        stage, live, needed = doc.get("stage"), doc.get("live"), doc.get("needed")
        if not isinstance(stage, str) or not isinstance(live, int) or not isinstance(needed, int):
            return None
        return cls(stage, live, needed)


def nodes_needed(kind: TaskKind, *, trusted: bool = False, replicas: int = DEFAULT_CONFIG.untrusted_replicas) -> int:
    """Distinct live nodes that serve `kind` a task of it needs before it can be run and verified.

    trusted: a live node that serves the kind is trusted to run it alone (r = 1). The job runner's
    `trusted_nodes` decides who is; this is the one place that turns that into a number.
    replicas: the scheduler's replicas for an untrusted node (ReputationConfig.untrusted_replicas).
    """
    if trusted:
        return 1
    if kind in GENERATIVE_KINDS or kind in DETERMINISTIC_KINDS:
        return max(1, replicas)
    return 1  # validate: one node that produced none of the candidates (the scheduler picks it)


def node_wait(
    kind: TaskKind,
    serving: Mapping[str, Collection[TaskKind]],
    *,
    trusted: Collection[str] = (),
    replicas: int = DEFAULT_CONFIG.untrusted_replicas,
) -> NodeWait:
    """The wait of a stage of `kind`. serving: each live node → the kinds it can take for this job;
    trusted: the nodes trusted to run a task alone."""
    able = [peer for peer, kinds in serving.items() if kind in kinds]
    needed = nodes_needed(kind, trusted=any(peer in trusted for peer in able), replicas=replicas)
    return NodeWait(kind.value, live=len(able), needed=needed)

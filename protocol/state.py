"""The replica, task and lease state rules, shared by the coordinator and the tests.

Theory of operation
-------------------
Rule 1: everything that decides a state transition lives in this file.
Rule 2: the rules do not know who applies them; the coordinator's store calls
        `next_replica_state` inside the transaction that records the event, and tests
        use the same table.

A *replica* is one run of a task (a task replicated r times has r replicas;
the store's table of them is still called `slots`, which elsewhere means a
node's capacity: free_slots, the node's `slots` setting). Each replica goes through:

    OFFERED --claim--> CLAIMED --grant--> GRANTED --submit--> SUBMITTED
       ^                  |                  |                   |
       |               deny                expire          accept | reject
       |                  v                  v                   v        v
       +----retry----- OFFERED           EXPIRED            VERIFIED  REJECTED
       +----retry--------------------------- + ----------------------------+
    EXPIRED/REJECTED --give_up--> FAILED   (when attempts are exhausted)
    OFFERED/CLAIMED --cancel--> FAILED       (the job no longer needs the task: done,
                                              cancelled, or no node may take it)

A result that arrives for an EXPIRED replica ("late") is still verified, via the
`late_submit` event, but the replica only counts once: if it was already
re-offered, the late result is recorded and not double-counted.

A *task* is OPEN until a canonical result is accepted (DONE) or it can make no
more progress (FAILED):

    OPEN --settle--> DONE
    OPEN --exhaust--> FAILED     (every replica FAILED)
    OPEN --abandon--> FAILED     (no node may take it, nothing left to judge)

A *lease* is the grant one replica runs under. It follows its replica's events:

    LIVE --submit--> SUBMITTED
    LIVE --expire--> EXPIRED --late_submit--> SUBMITTED

Where a result stands against the lease's deadline is time, not state: before the
deadline the lease is LIVE; after it the lease is EXPIRED, and a late result is
still verified until `LATE_GRACE_MS` past the deadline (`past_grace`).

The job's states (coordinator-only) have their table in `coordinator/job_states.py`.

Times are integer unix milliseconds passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from protocol.errors import IllegalTransition

St = TypeVar("St", bound=StrEnum)
Ev = TypeVar("Ev", bound=StrEnum)


class ReplicaState(StrEnum):
    OFFERED = "offered"
    CLAIMED = "claimed"
    GRANTED = "granted"
    SUBMITTED = "submitted"
    VERIFIED = "verified"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"


class ReplicaEvent(StrEnum):
    CLAIM = "claim"
    DENY = "deny"
    GRANT = "grant"
    SUBMIT = "submit"
    LATE_SUBMIT = "late_submit"
    ACCEPT = "accept"
    REJECT = "reject"
    EXPIRE = "expire"
    RETRY = "retry"
    GIVE_UP = "give_up"
    CANCEL = "cancel"


S, E = ReplicaState, ReplicaEvent

REPLICA_TRANSITIONS: dict[tuple[ReplicaState, ReplicaEvent], ReplicaState] = {
    (S.OFFERED, E.CLAIM): S.CLAIMED,
    (S.CLAIMED, E.DENY): S.OFFERED,
    (S.CLAIMED, E.GRANT): S.GRANTED,
    (S.CLAIMED, E.EXPIRE): S.EXPIRED,
    (S.GRANTED, E.SUBMIT): S.SUBMITTED,
    (S.GRANTED, E.EXPIRE): S.EXPIRED,
    (S.EXPIRED, E.LATE_SUBMIT): S.SUBMITTED,
    (S.SUBMITTED, E.ACCEPT): S.VERIFIED,
    (S.SUBMITTED, E.REJECT): S.REJECTED,
    (S.EXPIRED, E.RETRY): S.OFFERED,
    (S.REJECTED, E.RETRY): S.OFFERED,
    (S.EXPIRED, E.GIVE_UP): S.FAILED,
    (S.REJECTED, E.GIVE_UP): S.FAILED,
    (S.OFFERED, E.CANCEL): S.FAILED,
    (S.CLAIMED, E.CANCEL): S.FAILED,
}

TERMINAL = frozenset({S.VERIFIED, S.FAILED})


class TaskState(StrEnum):
    OPEN = "open"
    DONE = "done"
    """A canonical result was accepted: never offered or claimed again."""
    FAILED = "failed"
    """Every replica gave up without an accepted result, or the task was abandoned."""


class TaskEvent(StrEnum):
    SETTLE = "settle"
    """A canonical result was accepted."""
    EXHAUST = "exhaust"
    """Every replica is FAILED."""
    ABANDON = "abandon"
    """No node may take it and no submitted result is left to judge."""


TASK_TRANSITIONS: dict[tuple[TaskState, TaskEvent], TaskState] = {
    (TaskState.OPEN, TaskEvent.SETTLE): TaskState.DONE,
    (TaskState.OPEN, TaskEvent.EXHAUST): TaskState.FAILED,
    (TaskState.OPEN, TaskEvent.ABANDON): TaskState.FAILED,
}


class LeaseState(StrEnum):
    LIVE = "live"
    """Granted, no result yet, deadline not passed."""
    SUBMITTED = "submitted"
    """Its result was recorded (on time, or late within the grace)."""
    EXPIRED = "expired"
    """The deadline passed without a result; a late result is still verified within `LATE_GRACE_MS`."""


LEASE_TRANSITIONS: dict[tuple[LeaseState, ReplicaEvent], LeaseState] = {
    (LeaseState.LIVE, E.SUBMIT): LeaseState.SUBMITTED,
    (LeaseState.LIVE, E.EXPIRE): LeaseState.EXPIRED,
    (LeaseState.EXPIRED, E.LATE_SUBMIT): LeaseState.SUBMITTED,
}


def _step(table: Mapping[tuple[St, Ev], St], state: St, event: Ev, machine: str) -> St:
    try:
        return table[(state, event)]
    except KeyError:
        raise IllegalTransition(state.value, event.value, machine=machine) from None


def next_replica_state(state: ReplicaState, event: ReplicaEvent) -> ReplicaState:
    """The replica's state after `event`, or IllegalTransition naming both."""
    return _step(REPLICA_TRANSITIONS, state, event, "replica")


def next_task_state(state: TaskState, event: TaskEvent) -> TaskState:
    """The task's state after `event`, or IllegalTransition naming both."""
    return _step(TASK_TRANSITIONS, state, event, "task")


def next_lease_state(state: LeaseState, event: ReplicaEvent) -> LeaseState:
    """The lease's state after its replica's `event`, or IllegalTransition naming both."""
    return _step(LEASE_TRANSITIONS, state, event, "lease")


# --- leases -----------------------------------------------------------------

MIN_LEASE_MS = 30_000
"""Floor on any lease: covers gossip + stream round trips and model warm-up."""
LEASE_SLACK = 3.0
"""Deadline = slack x expected generation time: home machines are shared and slow down."""
DEFAULT_TOK_S = 10.0
"""Speed assumed for a node that has not reported one (the slowest we accept)."""
LATE_GRACE_MS = 60_000
"""How long after expiry a late result is still verified (and recorded, not double-counted)."""


def lease_deadline_ms(now_ms: int, est_tokens: int, tok_s: float, *, min_ms: int = MIN_LEASE_MS) -> int:
    """When a lease granted now must be fulfilled, from task size and node speed."""
    speed = tok_s if tok_s > 0 else DEFAULT_TOK_S
    expected_ms = int(1000 * est_tokens / speed * LEASE_SLACK)
    return now_ms + max(min_ms, expected_ms)


def past_grace(deadline_ms: int, now_ms: int, *, grace_ms: int = LATE_GRACE_MS) -> bool:
    """Whether a result arriving at `now_ms` is too late to verify: its lease EXPIRED more than
    `grace_ms` ago (before the deadline the lease is LIVE; within the grace a result is late but verified)."""
    return now_ms > deadline_ms + grace_ms


def after_failure(attempt: int, max_attempts: int) -> ReplicaEvent:
    """What follows an expired or rejected replica: another attempt, or giving up."""
    return ReplicaEvent.RETRY if attempt + 1 < max_attempts else ReplicaEvent.GIVE_UP

"""The task and lease state rules, shared by the coordinator and the tests.

Theory of operation
-------------------
Rule 1: everything that decides a state transition lives in this file.
Rule 2: the rules do not know who applies them; the coordinator's store calls
        `next_state` inside the transaction that records the event, and tests
        use the same table.

A *slot* is one replica of a task (a task replicated r times has r slots).
Each slot goes through:

    OFFERED --claim--> CLAIMED --grant--> GRANTED --submit--> SUBMITTED
       ^                  |                  |                   |
       |               deny                expire          accept | reject
       |                  v                  v                   v        v
       +----retry----- OFFERED           EXPIRED            VERIFIED  REJECTED
       +----retry--------------------------- + ----------------------------+
    EXPIRED/REJECTED --give_up--> FAILED   (when attempts are exhausted)
    OFFERED/CLAIMED --cancel--> FAILED       (the job no longer needs the task: done,
                                              cancelled, or no node may take it)

A result that arrives for an EXPIRED slot ("late") is still verified, via the
`late_submit` event, but the slot only counts once: if the slot was already
re-offered, the late result is recorded and not double-counted.

Times are integer unix milliseconds passed in by the caller.
"""

from __future__ import annotations

from enum import StrEnum

from protocol.errors import IllegalTransition


class SlotState(StrEnum):
    OFFERED = "offered"
    CLAIMED = "claimed"
    GRANTED = "granted"
    SUBMITTED = "submitted"
    VERIFIED = "verified"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"


class SlotEvent(StrEnum):
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


S, E = SlotState, SlotEvent

TRANSITIONS: dict[tuple[SlotState, SlotEvent], SlotState] = {
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


def next_state(state: SlotState, event: SlotEvent) -> SlotState:
    """The state after `event`, or IllegalTransition naming both."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state.value, event.value) from None


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


class LeaseStatus(StrEnum):
    LIVE = "live"
    LATE = "late"
    """Expired, but a result is still verified (within LATE_GRACE_MS)."""
    DEAD = "dead"


def lease_status(deadline_ms: int, now_ms: int, *, grace_ms: int = LATE_GRACE_MS) -> LeaseStatus:
    if now_ms <= deadline_ms:
        return LeaseStatus.LIVE
    if now_ms <= deadline_ms + grace_ms:
        return LeaseStatus.LATE
    return LeaseStatus.DEAD


def after_failure(attempt: int, max_attempts: int) -> SlotEvent:
    """What follows an expired or rejected slot: another attempt, or giving up."""
    return SlotEvent.RETRY if attempt + 1 < max_attempts else SlotEvent.GIVE_UP

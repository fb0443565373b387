"""The task/slot state rules: the table, its illegal events, and the lease arithmetic."""

from __future__ import annotations

import pytest

from protocol.errors import IllegalTransition
from protocol.state import (
    LATE_GRACE_MS,
    LEASE_TRANSITIONS,
    MIN_LEASE_MS,
    REPLICA_TRANSITIONS,
    TASK_TRANSITIONS,
    TERMINAL,
    LeaseState,
    ReplicaEvent,
    ReplicaState,
    TaskEvent,
    TaskState,
    after_failure,
    lease_deadline_ms,
    next_lease_state,
    next_replica_state,
    next_task_state,
    past_grace,
)


def run(*events: ReplicaEvent, start: ReplicaState = ReplicaState.OFFERED) -> ReplicaState:
    state = start
    for event in events:
        state = next_replica_state(state, event)
    return state


def test_happy_path() -> None:
    E = ReplicaEvent
    assert run(E.CLAIM, E.GRANT, E.SUBMIT, E.ACCEPT) is ReplicaState.VERIFIED


def test_rejection_and_expiry_lead_back_to_offered_or_failed() -> None:
    E = ReplicaEvent
    assert run(E.CLAIM, E.GRANT, E.SUBMIT, E.REJECT, E.RETRY) is ReplicaState.OFFERED
    assert run(E.CLAIM, E.GRANT, E.EXPIRE, E.GIVE_UP) is ReplicaState.FAILED
    assert run(E.CLAIM, E.DENY) is ReplicaState.OFFERED


def test_late_result_after_expiry_is_still_verified() -> None:
    E = ReplicaEvent
    assert run(E.CLAIM, E.GRANT, E.EXPIRE, E.LATE_SUBMIT, E.ACCEPT) is ReplicaState.VERIFIED


def test_illegal_events_name_state_and_event() -> None:
    with pytest.raises(IllegalTransition) as info:
        next_replica_state(ReplicaState.OFFERED, ReplicaEvent.SUBMIT)
    assert info.value.state == "offered" and info.value.event == "submit"
    assert "offered" in str(info.value) and "submit" in str(info.value)


@pytest.mark.parametrize("state", sorted(TERMINAL))
@pytest.mark.parametrize("event", list(ReplicaEvent))
def test_terminal_states_accept_no_event(state: ReplicaState, event: ReplicaEvent) -> None:
    with pytest.raises(IllegalTransition):
        next_replica_state(state, event)


def test_every_state_is_reachable_from_offered() -> None:
    reached = {ReplicaState.OFFERED}
    frontier = [ReplicaState.OFFERED]
    while frontier:
        s = frontier.pop()
        for (src, _), dst in REPLICA_TRANSITIONS.items():
            if src is s and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    assert reached == set(ReplicaState)


def test_lease_deadline_scales_with_size_and_speed() -> None:
    assert lease_deadline_ms(0, 0, 50.0) == MIN_LEASE_MS
    fast, slow = lease_deadline_ms(0, 10_000, 100.0), lease_deadline_ms(0, 10_000, 10.0)
    assert slow > fast > MIN_LEASE_MS
    assert lease_deadline_ms(0, 10_000, 0.0) == slow  # unknown speed is treated as the slowest accepted


def test_a_result_is_verified_until_the_grace_after_the_deadline() -> None:
    assert not past_grace(1000, 1000)  # LIVE
    assert not past_grace(1000, 1000 + LATE_GRACE_MS)  # EXPIRED, late but verified
    assert past_grace(1000, 1000 + LATE_GRACE_MS + 1)


def test_a_lease_follows_its_slot_and_names_illegal_events() -> None:
    assert next_lease_state(LeaseState.LIVE, ReplicaEvent.SUBMIT) is LeaseState.SUBMITTED
    assert next_lease_state(next_lease_state(LeaseState.LIVE, ReplicaEvent.EXPIRE), ReplicaEvent.LATE_SUBMIT) is (
        LeaseState.SUBMITTED
    )
    with pytest.raises(IllegalTransition) as info:
        next_lease_state(LeaseState.SUBMITTED, ReplicaEvent.EXPIRE)
    assert (info.value.machine, info.value.state, info.value.event) == ("lease", "submitted", "expire")
    assert {dst for dst in LEASE_TRANSITIONS.values()} | {LeaseState.LIVE} == set(LeaseState)


def test_a_task_leaves_open_once() -> None:
    assert next_task_state(TaskState.OPEN, TaskEvent.SETTLE) is TaskState.DONE
    assert next_task_state(TaskState.OPEN, TaskEvent.EXHAUST) is TaskState.FAILED
    for event in TaskEvent:
        with pytest.raises(IllegalTransition, match=f"{event.value}.*task state 'done'"):
            next_task_state(TaskState.DONE, event)
    assert {src for src, _ in TASK_TRANSITIONS} == {TaskState.OPEN}


def test_retry_until_attempts_exhausted() -> None:
    assert after_failure(0, 3) is ReplicaEvent.RETRY
    assert after_failure(1, 3) is ReplicaEvent.RETRY
    assert after_failure(2, 3) is ReplicaEvent.GIVE_UP


def test_cancel_closes_waiting_slots_but_not_running_ones() -> None:
    E = ReplicaEvent
    assert run(E.CANCEL) is ReplicaState.FAILED
    assert run(E.CLAIM, E.CANCEL) is ReplicaState.FAILED
    with pytest.raises(IllegalTransition):
        run(E.CLAIM, E.GRANT, E.CANCEL)  # a running lease ends by result or expiry, never by fiat

"""The task/slot state rules: the table, its illegal events, and the lease arithmetic."""

from __future__ import annotations

import pytest

from protocol.errors import IllegalTransition
from protocol.state import (
    LATE_GRACE_MS,
    MIN_LEASE_MS,
    TERMINAL,
    TRANSITIONS,
    LeaseStatus,
    SlotEvent,
    SlotState,
    after_failure,
    lease_deadline_ms,
    lease_status,
    next_state,
)


def run(*events: SlotEvent, start: SlotState = SlotState.OFFERED) -> SlotState:
    state = start
    for event in events:
        state = next_state(state, event)
    return state


def test_happy_path() -> None:
    E = SlotEvent
    assert run(E.CLAIM, E.GRANT, E.SUBMIT, E.ACCEPT) is SlotState.VERIFIED


def test_rejection_and_expiry_lead_back_to_offered_or_failed() -> None:
    E = SlotEvent
    assert run(E.CLAIM, E.GRANT, E.SUBMIT, E.REJECT, E.RETRY) is SlotState.OFFERED
    assert run(E.CLAIM, E.GRANT, E.EXPIRE, E.GIVE_UP) is SlotState.FAILED
    assert run(E.CLAIM, E.DENY) is SlotState.OFFERED


def test_late_result_after_expiry_is_still_verified() -> None:
    E = SlotEvent
    assert run(E.CLAIM, E.GRANT, E.EXPIRE, E.LATE_SUBMIT, E.ACCEPT) is SlotState.VERIFIED


def test_illegal_events_name_state_and_event() -> None:
    with pytest.raises(IllegalTransition) as info:
        next_state(SlotState.OFFERED, SlotEvent.SUBMIT)
    assert info.value.state == "offered" and info.value.event == "submit"
    assert "offered" in str(info.value) and "submit" in str(info.value)


@pytest.mark.parametrize("state", sorted(TERMINAL))
@pytest.mark.parametrize("event", list(SlotEvent))
def test_terminal_states_accept_no_event(state: SlotState, event: SlotEvent) -> None:
    with pytest.raises(IllegalTransition):
        next_state(state, event)


def test_every_state_is_reachable_from_offered() -> None:
    reached = {SlotState.OFFERED}
    frontier = [SlotState.OFFERED]
    while frontier:
        s = frontier.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is s and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    assert reached == set(SlotState)


def test_lease_deadline_scales_with_size_and_speed() -> None:
    assert lease_deadline_ms(0, 0, 50.0) == MIN_LEASE_MS
    fast, slow = lease_deadline_ms(0, 10_000, 100.0), lease_deadline_ms(0, 10_000, 10.0)
    assert slow > fast > MIN_LEASE_MS
    assert lease_deadline_ms(0, 10_000, 0.0) == slow  # unknown speed is treated as the slowest accepted


def test_lease_status_live_late_dead() -> None:
    assert lease_status(1000, 1000) is LeaseStatus.LIVE
    assert lease_status(1000, 1001) is LeaseStatus.LATE
    assert lease_status(1000, 1000 + LATE_GRACE_MS + 1) is LeaseStatus.DEAD


def test_retry_until_attempts_exhausted() -> None:
    assert after_failure(0, 3) is SlotEvent.RETRY
    assert after_failure(1, 3) is SlotEvent.RETRY
    assert after_failure(2, 3) is SlotEvent.GIVE_UP


def test_cancel_closes_waiting_slots_but_not_running_ones() -> None:
    E = SlotEvent
    assert run(E.CANCEL) is SlotState.FAILED
    assert run(E.CLAIM, E.CANCEL) is SlotState.FAILED
    with pytest.raises(IllegalTransition):
        run(E.CLAIM, E.GRANT, E.CANCEL)  # a running lease ends by result or expiry, never by fiat

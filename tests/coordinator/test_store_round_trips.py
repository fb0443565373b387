"""How many Store calls one claim and one result cost: a ceiling, so a change that reads the same thing
twice again shows up here (issue 16: on_claim made 16 calls, an accepting on_result 34, before the split)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from coordinator.scheduler import Scheduler
from coordinator.store import Store
from protocol.messages import Grant, Reject
from tests.coordinator.factories import (
    GOOD_ROW,
    NODE_A,
    NODE_B,
    page,
    result_for,
    retrieve_output,
    retrieve_payload,
    rows_output,
    synth_payload,
)
from tests.coordinator.test_scheduler import HONEST_TEXT, claim, new_scheduler, submit


def counting(store: Store) -> Counter[str]:
    """Count every public Store method call on this instance (nested ones too: grant_message's reads)."""
    calls: Counter[str] = Counter()
    for name in dir(Store):
        method = getattr(store, name)
        if name.startswith("_") or name == "atomic" or not callable(method):
            continue  # `atomic` opens a transaction around calls: it reads nothing itself

        def wrapper(*args: Any, _name: str = name, _method: Any = method, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _method(*args, **kwargs)

        setattr(store, name, wrapper)
    return calls


def cost(calls: Counter[str], step: Any) -> int:
    calls.clear()
    step()
    return sum(calls.values())


def test_a_claim_and_a_result_read_each_thing_once(tmp_path: Path) -> None:
    s: Scheduler = new_scheduler(tmp_path)
    calls = counting(s.store)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=1_700_000_000_000)
    grants: list[Grant | Reject] = []
    assert cost(calls, lambda: grants.append(claim(s, "t1", NODE_A))) <= 10
    assert cost(calls, lambda: grants.append(claim(s, "t1", NODE_B))) <= 7
    ga, gb = grants
    assert isinstance(ga, Grant) and isinstance(gb, Grant)
    assert cost(calls, lambda: submit(s, result_for(ga, rows_output(GOOD_ROW), raw_text=HONEST_TEXT), NODE_A)) <= 6
    assert cost(calls, lambda: submit(s, result_for(gb, rows_output(GOOD_ROW), raw_text=HONEST_TEXT), NODE_B)) <= 21
    assert calls["settle"] == 1 and calls["task_payload"] == 0  # the payload was read once, at the first claim

    s.submit("r1", "j1", "retrieve", retrieve_payload(), now_ms=1_700_000_000_000)
    g1, g2 = claim(s, "r1", NODE_A), claim(s, "r1", NODE_B)
    assert isinstance(g1, Grant) and isinstance(g2, Grant)
    submit(s, result_for(g1, retrieve_output(page())), NODE_A)
    assert cost(calls, lambda: submit(s, result_for(g2, retrieve_output(page())), NODE_B)) <= 15

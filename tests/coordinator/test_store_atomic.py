"""Several store calls as one transaction (`Store.atomic`): the scheduler applies each decision, and each
claim with its grant, inside one, so an error part way leaves none of it behind."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from coordinator.store import NotFound, Store, TaskState
from protocol.messages import Grant, Reject, Verdict
from protocol.state import ReplicaState
from tests.coordinator.factories import MODEL, NODE_A, NODE_B, T0, result_for, synth_payload
from tests.coordinator.test_scheduler import claim, honest, measurement, new_scheduler, submit
from tests.coordinator.test_trusted_nodes import scheduler


def jobs(store: Store, *ids: str) -> list[str]:
    found = []
    for job_id in ids:
        with contextlib.suppress(NotFound):
            found.append(store.job(job_id).job_id)
    return found


def test_an_error_inside_atomic_undoes_every_write_in_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    with pytest.raises(RuntimeError), store.atomic():
        store.create_job("j1", {"topic": "a"}, allowed_models=[MODEL], now_ms=T0)
        store.add_stage("j1", "synthesize", now_ms=T0)
        raise RuntimeError("the decision failed half way")
    assert jobs(store, "j1") == []
    store.create_job("j1", {"topic": "a"}, allowed_models=[MODEL], now_ms=T0)  # the store is usable after it
    assert jobs(store, "j1") == ["j1"]


def test_a_failed_call_inside_atomic_undoes_only_its_own_writes(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    with store.atomic():
        store.create_job("j1", {"topic": "a"}, allowed_models=[MODEL], now_ms=T0)
        try:
            with store.atomic():
                store.create_job("j2", {"topic": "b"}, allowed_models=[MODEL], now_ms=T0)
                raise ValueError("this step fails and the caller carries on")
        except ValueError:
            pass
        store.create_job("j3", {"topic": "c"}, allowed_models=[MODEL], now_ms=T0)
    reopened = Store(tmp_path / "c.db")
    assert jobs(reopened, "j1", "j2", "j3") == ["j1", "j3"]


def test_a_grant_that_fails_leaves_no_claimed_replica_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("database or disk is full")

    with monkeypatch.context() as m:
        m.setattr(s.store, "grant", disk_full)
        with pytest.raises(OSError):
            claim(s, "t1", NODE_A)
    # Without the transaction, A's claim (and the replica it planned) would hold the task for the claim hold.
    assert [x.state for x in s.store.replicas("t1")] == [ReplicaState.OFFERED]
    assert s.store.count_held(NODE_A.peer_id) == 0
    got = [claim(s, "t1", NODE_A), claim(s, "t1", NODE_B)]
    assert all(isinstance(g, Grant) for g in got), [g for g in got if isinstance(g, Reject)]


def test_a_settle_that_fails_keeps_the_spot_check_pick_and_writes_no_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accepting a spot-checked result clears its pick and then settles. Were they two transactions, a
    settle that failed would leave the result unjudged *and* no longer marked for re-scoring, and the next
    decision would take it on the trusted node's word."""
    s = scheduler(tmp_path, live=(NODE_A.peer_id, NODE_B.peer_id), spot_check_p=1.0)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    g = claim(s, "t1", NODE_A)
    assert isinstance(g, Grant) and s.store.spot_checked("t1")
    assert submit(s, honest(g), NODE_A).verdict is Verdict.PENDING
    [mine] = s.store.results_for("t1")
    [vtask] = s.store.tasks("j1", stage="validate")
    vg = claim(s, vtask.task_id, NODE_B, now=T0 + 1500)
    assert isinstance(vg, Grant)

    real_settle = s.store.settle

    def crash_on_the_parent(task_id: str, *args: Any, **kwargs: Any) -> Any:
        if task_id == "t1":  # the validate task settles first; its parent's decision fails
            raise OSError("disk I/O error")
        return real_settle(task_id, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(s.store, "settle", crash_on_the_parent)
        with pytest.raises(OSError):
            submit(s, result_for(vg, measurement(True)), NODE_B, now=T0 + 2000)
    assert s.store.spot_checked("t1")  # the pick survives the failed decision
    assert s.store.verdict(mine.result_id) is None and s.store.task("t1").state is TaskState.OPEN
    s.resume(T0 + 2500)  # decided again, from the store, with the validator's measurement
    verdict = s.store.verdict(mine.result_id)
    assert verdict is not None and verdict.verdict is Verdict.ACCEPTED
    assert s.store.task("t1").state is TaskState.DONE and not s.store.spot_checked("t1")

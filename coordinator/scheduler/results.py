"""Results: each one checked against its grant, recorded, and its task decided (see `Scheduler.on_result`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from coordinator.scheduler.effects import Applied, Effects
from coordinator.scheduler.grants import allowed_models
from coordinator.scheduler.view import Payloads
from coordinator.store import Store
from coordinator.store.replicas import grant_for
from coordinator.verify.checks import check_result
from protocol.envelope import Opened
from protocol.messages import Result, Verdict

log = logging.getLogger(__name__)


def record_result(
    store: Store,
    payloads: Payloads,
    effects: Effects,
    opened: Opened,
    now_ms: int,
    decide_tasks: Callable[[list[str], int], Applied],
) -> tuple[bytes, Applied]:
    """Check, record and decide one result: (the sender's receipt, what deciding its task applied).

    The receipt is final when the task could be decided now, else PENDING (its final receipt is
    pushed later, as an Outgoing). Raises NotFound for a lease this coordinator never granted.
    """
    result = opened.message
    assert isinstance(result, Result)
    # Checked before it is recorded: a check that raises leaves nothing stored, never a counted result
    # without a verdict (which a later decision or a restart's `resume` would then take without the checks).
    lease = store.lease(result.lease_id)  # NotFound for a lease never granted
    task = store.task(lease.task_id)
    failures = check_result(
        result,
        signer_peer_id=opened.sender_peer_id,
        grant=grant_for(lease, task, payloads.get(task.task_id)),
        allowed_models=allowed_models(store, payloads, task),
        now_ms=now_ms,
    )
    recorded = store.record_result(opened, now_ms=now_ms)
    rid = recorded.result.result_id
    if recorded.duplicate:
        existing = store.receipt(rid)
        return existing or effects.receipt(result, opened.sender_peer_id, Verdict.PENDING, now_ms), Applied()
    effects.stats["results"] += 1
    applied = Applied()
    if failures:
        log.info("result %s for %s rejected: %s", rid, task.task_id, failures[0])
        applied = effects.settle(task, [(recorded.result, result, failures[0])], now_ms=now_ms)
    applied = decide_tasks([*applied.then, task.task_id], now_ms).add(Applied(applied.outgoing, applied.receipts))
    mine = applied.receipts.get(rid)
    return mine or effects.receipt(result, opened.sender_peer_id, Verdict.PENDING, now_ms), applied

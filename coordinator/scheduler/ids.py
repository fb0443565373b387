"""What a task id encodes: the name of a validate or judge task, and the sampling seed.

The one place that builds validate task ids (`validate_task_id`). Nothing parses them: which candidate a
validate task re-scores is stored with it (`Store.validated_by`, `Store.validations`).
A judge task's id names the row it judges (`judge_task_id`, read back by `judged_row`): a row is a
(synthesize task, output row) pair that never changes, so the id is all the link it needs.
"""

from __future__ import annotations

import hashlib

VALIDATE_MARK = ".v"
"""Validate task ids are `<parent task id>.v<result id>`: unique, and readable in logs."""


def validate_task_id(parent_task_id: str, result_id: int) -> str:
    """The id of the validate task that re-scores candidate `result_id` of `parent_task_id`."""
    return f"{parent_task_id}{VALIDATE_MARK}{result_id}"


JUDGE_MARK = ".j"
"""Judge task ids are `<synthesize task id>.j<output row>`."""


def judge_task_id(parent_task_id: str, idx: int) -> str:
    """The id of the judge task that scores output row `idx` of synthesize task `parent_task_id`."""
    return f"{parent_task_id}{JUDGE_MARK}{idx}"


def judged_row(task_id: str) -> tuple[str, int] | None:
    """(synthesize task id, output row) of a judge task id, else None."""
    parent, mark, idx = task_id.rpartition(JUDGE_MARK)
    return (parent, int(idx)) if mark and parent and idx.isdigit() else None


def seed_for(task_id: str, attempt: int = 0) -> int:
    """The sampling seed of a task: the same for every replica, so honest replicas agree; another for each
    retry, since the same seed can only write the same bytes again (docs/notes/verification.md#seed-per-retry)."""
    key = task_id if attempt == 0 else f"{task_id}#{attempt}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")

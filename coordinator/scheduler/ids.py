"""What a task id encodes: the name of a validate task, and the sampling seed.

The one place that builds validate task ids (`validate_task_id`). Nothing parses them: which candidate a
validate task re-scores is stored with it (`Store.validated_by`, `Store.validations`).
"""

from __future__ import annotations

import hashlib

VALIDATE_MARK = ".v"
"""Validate task ids are `<parent task id>.v<result id>`: unique, and readable in logs."""


def validate_task_id(parent_task_id: str, result_id: int) -> str:
    """The id of the validate task that re-scores candidate `result_id` of `parent_task_id`."""
    return f"{parent_task_id}{VALIDATE_MARK}{result_id}"


def seed_for(task_id: str, attempt: int = 0) -> int:
    """The sampling seed of a task: the same for every replica, so honest replicas agree; another for each
    retry, since the same seed can only write the same bytes again (docs/notes/verification.md#seed-per-retry)."""
    key = task_id if attempt == 0 else f"{task_id}#{attempt}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")

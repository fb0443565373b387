"""What a task id encodes: the link from a validate task to the candidate it re-scores, and the sampling seed.

The only place that builds or parses validate task ids: `validate_task_id` and `parent_of`.
"""

from __future__ import annotations

import hashlib

VALIDATE_MARK = ".v"
"""Validate task ids are `<parent task id>.v<result id>`: the link survives restarts without a table."""


def validate_task_id(parent_task_id: str, result_id: int) -> str:
    """The id of the validate task that re-scores candidate `result_id` of `parent_task_id`."""
    return f"{parent_task_id}{VALIDATE_MARK}{result_id}"


def parent_of(task_id: str) -> tuple[str, int] | None:
    """(parent task id, candidate result id) for a validate task id, else None."""
    head, sep, tail = task_id.rpartition(VALIDATE_MARK)
    if not sep or not tail.isdigit():
        return None
    return head, int(tail)


def seed_for(task_id: str, attempt: int = 0) -> int:
    """The sampling seed of a task: the same for every replica, so honest replicas agree; another for each
    retry, since the same seed can only write the same bytes again (docs/notes/verification.md#seed-per-retry)."""
    key = task_id if attempt == 0 else f"{task_id}#{attempt}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")

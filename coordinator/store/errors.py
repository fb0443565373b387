"""The store's own refusals.

Owns: the exception types the store raises for a missing row or a request that
contradicts what is recorded.
Must not: carry protocol errors (an illegal replica event raises
`protocol.state.IllegalTransition`, which the store lets through).
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's own refusals (IllegalTransition comes from protocol.state)."""


class NotFound(StoreError, KeyError):
    """No such job, task, replica, lease or result."""


class Conflict(StoreError):
    """The request contradicts what is recorded (wrong node, task closed, ...)."""

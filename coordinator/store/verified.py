"""The cache of verified Result messages, so a stored envelope is not re-verified on every read.

Owns: a small LRU, keyed by result id, of (envelope bytes, verified `Result`),
bounded in entries and in envelope bytes. `Store.result_message` re-verifies a
stored envelope's signature; the verifier reads the same result several times
while deciding a task (the profile of P3 showed three verifications per task, a
third of the coordinator's CPU). A hit counts only when the cached envelope
*equals the bytes just read from the database*, so a row changed on disk is
verified again (and fails) exactly as without the cache. `record_result` seeds
it with the caller's `Opened`, which is verified by construction.
Must not: verify anything itself, read the database, or lock: the store calls
it with its lock held.
"""

from __future__ import annotations

from collections import OrderedDict

from protocol.messages import Result

VERIFIED_CACHE_ENTRIES = 1024
VERIFIED_CACHE_BYTES = 32 * 1024 * 1024
"""Bounds of the verified-result cache (see the module docstring): entries, and envelope bytes held."""


class VerifiedResults:
    def __init__(self) -> None:
        self._entries: OrderedDict[int, tuple[bytes, Result]] = OrderedDict()
        self._bytes = 0

    def get(self, result_id: int, envelope: bytes) -> Result | None:
        """The Result verified from exactly `envelope`, or None."""
        cached = self._entries.get(result_id)
        if cached is None or cached[0] != envelope:  # only the very bytes that were verified
            return None
        self._entries.move_to_end(result_id)
        return cached[1]

    def remember(self, result_id: int, envelope: bytes, message: Result) -> None:
        """Keep a verified Result (immutable), within the cache's bounds."""
        old = self._entries.pop(result_id, None)
        if old is not None:
            self._bytes -= len(old[0])
        self._entries[result_id] = (envelope, message)
        self._bytes += len(envelope)
        while self._entries and (len(self._entries) > VERIFIED_CACHE_ENTRIES or self._bytes > VERIFIED_CACHE_BYTES):
            _, (dropped, _) = self._entries.popitem(last=False)
            self._bytes -= len(dropped)

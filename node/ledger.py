"""The node's local ledger of signed receipts: what a volunteer's credit rests on.

Owns: appending each receipt envelope (as signed by the coordinator) to a
JSON-lines file, and reading the ledger back with every signature re-checked,
so `dataswarm node receipts` shows only credit a coordinator really signed.
A receipt decided later supersedes the PENDING one for the same lease.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from protocol import encoding
from protocol.envelope import open_envelope
from protocol.errors import ProtocolError
from protocol.messages import MessageKind, Receipt, Verdict


@dataclass(frozen=True)
class LedgerEntry:
    receipt: Receipt
    coordinator: str
    issued_at_ms: int


@dataclass(frozen=True)
class LedgerSummary:
    entries: list[LedgerEntry]
    invalid: int
    """Lines that failed to parse or whose signature did not verify."""

    def count(self, verdict: Verdict) -> int:
        return sum(1 for e in self.entries if e.receipt.verdict is verdict)

    @property
    def credits(self) -> float:
        return sum(e.receipt.work_units for e in self.entries if e.receipt.verdict is Verdict.ACCEPTED)


class ReceiptLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, envelope: bytes, receipt: Receipt) -> None:
        line = json.dumps({"lease_id": receipt.lease_id, "envelope": base64.b64encode(envelope).decode()})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self, *, trusted: Collection[bytes] | None = None, node_peer_id: str | None = None) -> LedgerSummary:
        """Every valid receipt, the latest per lease, re-verified; counts the lines that fail."""
        latest: dict[str, LedgerEntry] = {}
        invalid = 0
        if not self.path.exists():
            return LedgerSummary([], 0)
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                raw = base64.b64decode(json.loads(line)["envelope"], validate=True)
                # Offline audit: check the signature as of the receipt's own issue time, no replay window.
                opened = open_envelope(
                    raw, now_ms=_issued_at(raw), replay_cache=None, expect={MessageKind.RECEIPT}, trusted=trusted
                )
            except (ValueError, KeyError, TypeError, ProtocolError):
                invalid += 1
                continue
            receipt = opened.message
            assert isinstance(receipt, Receipt)
            if node_peer_id is not None and receipt.node_peer_id != node_peer_id:
                invalid += 1
                continue
            previous = latest.get(receipt.lease_id)
            if previous is None or previous.receipt.verdict is Verdict.PENDING:
                latest[receipt.lease_id] = LedgerEntry(receipt, opened.sender_peer_id, opened.issued_at)
        return LedgerSummary(list(latest.values()), invalid)


def _issued_at(raw: bytes) -> int:
    fields = encoding.decode(raw, limit=len(raw), what="receipt envelope")
    if not isinstance(fields, dict) or not isinstance(fields.get("issued_at"), int):
        raise ValueError("not an envelope")
    return int(fields["issued_at"])

"""Signed receipts: the coordinator's statement "I judged your result, and here is the verdict".

Owns: building the `Receipt` for a judged result (task, job, lease, node,
result digest, work units, verdict) sealed with the coordinator's key, and the
offline check a node runs over the receipts in its ledger.
Must not: decide the verdict (the verifier did), or store anything.

`result_sha256` (`protocol.digests`) is sha256 of the canonical `Result` body
bytes; a node can recompute it from the Result it sent, so a receipt cannot be
re-pointed at another result.
"""

from __future__ import annotations

from collections.abc import Collection

from protocol import encoding
from protocol.digests import result_sha256
from protocol.envelope import MAX_LIFETIME_MS, max_envelope_size, open_envelope, seal
from protocol.errors import ProtocolError
from protocol.identity import Identity
from protocol.messages import MessageKind, Receipt, Result, Verdict
from protocol.tasks import GENERATIVE_KINDS, TaskKind

RECEIPT_TTL_MS = MAX_LIFETIME_MS
"""Receipts are audited long after they are sent; the envelope's lifetime only
bounds replay on the live stream, so use the longest one allowed."""


class ReceiptInvalid(Exception):
    """A receipt that must not be trusted; the message says why."""


def token_allowance(max_tokens: int, raw_text: str) -> int:
    """The completion tokens a result may claim: the grant's max_tokens, or more when its text accounts for them.

    A node raises a grant below its grammar's bound to that bound (node/llm/structured.py), so a
    long row schema can honestly take more tokens than the grant; the text is held to the grant's
    JSON schema by the checks. Under a grammar every token writes at least one byte (llama.cpp
    refuses empty pieces), plus one for the end-of-generation token.
    """
    return max(max_tokens, len(raw_text.encode("utf-8")) + 1)


def work_units(kind: TaskKind, result: Result) -> float:
    """Credit for a result: completion tokens for generative kinds (capped at `token_allowance`,
    so a node cannot inflate its claim), prompt + scored tokens for validate (prefill work),
    1 for everything else."""
    if kind in GENERATIVE_KINDS:
        tokens = result.stats.completion_tokens
        if result.decoding is not None:
            tokens = min(tokens, token_allowance(result.decoding.max_tokens, result.raw_text))
        return float(tokens)
    if kind is TaskKind.VALIDATE:
        return float(result.stats.prompt_tokens + result.stats.completion_tokens)
    return 1.0


def build_receipt(
    coordinator: Identity,
    result: Result,
    *,
    node_peer_id: str,
    task_kind: TaskKind,
    verdict: Verdict,
    detail: str = "",
    now_ms: int,
) -> bytes:
    """The sealed Receipt envelope for `result` (work units are 0 unless accepted)."""
    receipt = Receipt(
        task_id=result.task_id,
        job_id=result.job_id,
        lease_id=result.lease_id,
        node_peer_id=node_peer_id,
        result_sha256=result_sha256(result),
        verdict=verdict,
        work_units=work_units(task_kind, result) if verdict is Verdict.ACCEPTED else 0.0,
        detail=detail[:1000],
    )
    return seal(coordinator, receipt, now_ms=now_ms, ttl_ms=RECEIPT_TTL_MS)


def verify_receipt(
    envelope: bytes,
    *,
    coordinator_keys: Collection[bytes],
    node_peer_id: str | None = None,
    result: Result | None = None,
) -> Receipt:
    """Check a stored receipt offline and return it, or raise ReceiptInvalid.

    The signature must verify and belong to one of `coordinator_keys`; if given,
    the receipt must name `node_peer_id` and carry the digest of `result`
    (and its task and lease). Age does not matter offline: the envelope is
    checked as of its own issue time.
    """
    try:
        outer = encoding.decode(envelope, limit=max_envelope_size({MessageKind.RECEIPT}), what="receipt")
        issued = outer.get("issued_at") if isinstance(outer, dict) else None
        if not isinstance(issued, int):
            raise ReceiptInvalid("not a receipt envelope")
        opened = open_envelope(
            envelope,
            now_ms=issued,
            replay_cache=None,
            expect={MessageKind.RECEIPT},
            trusted=coordinator_keys,
        )
    except ProtocolError as exc:
        raise ReceiptInvalid(f"{type(exc).__name__}: {exc}") from None
    receipt = opened.message
    if not isinstance(receipt, Receipt):  # open_envelope(expect=RECEIPT) guarantees this
        raise ReceiptInvalid("not a receipt")
    if node_peer_id is not None and receipt.node_peer_id != node_peer_id:
        raise ReceiptInvalid(f"receipt is for {receipt.node_peer_id}, not {node_peer_id}")
    if result is not None:
        digest = result_sha256(result)
        if receipt.result_sha256 != digest:
            raise ReceiptInvalid(f"receipt covers result {receipt.result_sha256}, this result is {digest}")
        if (receipt.task_id, receipt.lease_id) != (result.task_id, result.lease_id):
            raise ReceiptInvalid("receipt names another task or lease than the result")
    return receipt

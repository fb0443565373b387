"""Receipts: signed by the coordinator, auditable offline by the node, forgeries refused."""

from __future__ import annotations

import pytest

from coordinator.verify.receipts import (
    ReceiptInvalid,
    build_receipt,
    result_sha256,
    verify_receipt,
    work_units,
)
from protocol import encoding
from protocol.envelope import MAX_LIFETIME_MS, seal
from protocol.messages import GenerationStats, Receipt, Verdict
from protocol.tasks import TaskKind
from tests.coordinator.factories import (
    COORDINATOR,
    GOOD_ROW,
    NODE_A,
    NODE_B,
    T0,
    grant,
    result_for,
    retrieve_output,
    retrieve_payload,
    rows_output,
    synth_payload,
)

RESULT = result_for(grant(synth_payload()), rows_output(GOOD_ROW))
KEYS = {COORDINATOR.public_key}


def _receipt(verdict: Verdict = Verdict.ACCEPTED) -> bytes:
    return build_receipt(
        COORDINATOR, RESULT, node_peer_id=NODE_A.peer_id, task_kind=TaskKind.SYNTHESIZE, verdict=verdict, now_ms=T0
    )


def test_a_receipt_is_signed_and_verifies_offline_long_after() -> None:
    envelope = _receipt()
    receipt = verify_receipt(envelope, coordinator_keys=KEYS, node_peer_id=NODE_A.peer_id, result=RESULT)
    assert (receipt.task_id, receipt.job_id, receipt.lease_id) == (RESULT.task_id, RESULT.job_id, RESULT.lease_id)
    assert receipt.result_sha256 == result_sha256(RESULT)
    assert receipt.verdict is Verdict.ACCEPTED and receipt.work_units == 30.0  # completion tokens
    # No clock is involved: a receipt audited years later is judged as of its own issue time.
    assert verify_receipt(envelope, coordinator_keys=KEYS) == receipt


def test_a_rejected_result_gets_a_receipt_with_no_credit() -> None:
    receipt = verify_receipt(_receipt(Verdict.REJECTED), coordinator_keys=KEYS)
    assert receipt.verdict is Verdict.REJECTED and receipt.work_units == 0.0


def test_a_receipt_signed_by_another_key_is_refused() -> None:
    forged = seal(
        NODE_B,  # a node minting its own credit
        Receipt(
            task_id=RESULT.task_id,
            job_id=RESULT.job_id,
            lease_id=RESULT.lease_id,
            node_peer_id=NODE_A.peer_id,
            result_sha256=result_sha256(RESULT),
            verdict=Verdict.ACCEPTED,
            work_units=1e6,
        ),
        now_ms=T0,
    )
    with pytest.raises(ReceiptInvalid, match="UntrustedSender"):
        verify_receipt(forged, coordinator_keys=KEYS)


def test_a_tampered_receipt_is_refused() -> None:
    fields = encoding.decode(_receipt(), limit=10_000)
    body = encoding.decode(fields["body"], limit=10_000)
    body["work_units"] = 1e6
    fields["body"] = encoding.encode(body)
    with pytest.raises(ReceiptInvalid, match="BadSignature"):
        verify_receipt(encoding.encode(fields), coordinator_keys=KEYS)
    with pytest.raises(ReceiptInvalid):
        verify_receipt(b"\x00garbage", coordinator_keys=KEYS)


def test_a_receipt_for_someone_else_or_another_result_is_refused() -> None:
    envelope = _receipt()
    with pytest.raises(ReceiptInvalid, match="is for"):
        verify_receipt(envelope, coordinator_keys=KEYS, node_peer_id=NODE_B.peer_id)
    other = RESULT.model_copy(update={"raw_text": "something else"})
    with pytest.raises(ReceiptInvalid, match="covers result"):
        verify_receipt(envelope, coordinator_keys=KEYS, result=other)


def test_a_receipt_of_another_kind_is_refused() -> None:
    not_a_receipt = seal(COORDINATOR, RESULT, now_ms=T0)
    with pytest.raises(ReceiptInvalid):
        verify_receipt(not_a_receipt, coordinator_keys=KEYS)


def test_work_units() -> None:
    capped = RESULT.model_copy(update={"stats": GenerationStats(completion_tokens=10_000)})
    assert len(RESULT.raw_text) < 256
    assert work_units(TaskKind.SYNTHESIZE, capped) == 256.0  # capped at the granted max_tokens
    long_row = capped.model_copy(update={"raw_text": "x" * 999})
    assert work_units(TaskKind.SYNTHESIZE, long_row) == 1000.0  # or at what its text accounts for
    fetch = result_for(grant(retrieve_payload()), retrieve_output("text"))
    assert work_units(TaskKind.RETRIEVE, fetch) == 1.0
    scoring = RESULT.model_copy(update={"stats": GenerationStats(prompt_tokens=300, completion_tokens=40)})
    assert work_units(TaskKind.VALIDATE, scoring) == 340.0


def test_receipts_use_the_longest_envelope_lifetime() -> None:
    fields = encoding.decode(_receipt(), limit=10_000)
    assert fields["expires_at"] - fields["issued_at"] == MAX_LIFETIME_MS

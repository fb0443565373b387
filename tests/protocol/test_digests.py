"""The protocol's digests are pinned: a fixed payload, result, row and text hash to what they always did.

The expected values were computed with the code these helpers replaced
(coordinator/store/db.py, coordinator/verify/receipts.py, coordinator/compile/signed.py,
node/retrieve/retriever.py): stored databases, receipts and datasets name them.
"""

from __future__ import annotations

from protocol.digests import body_sha256, content_sha256, payload_bytes, payload_sha256, result_sha256, row_sha256
from protocol.envelope import open_envelope, seal
from protocol.identity import Identity
from protocol.messages import Result
from protocol.tasks import SearchHit, SearchOutput, SearchPayload

NOW = 1_700_000_000_000
PAYLOAD = SearchPayload(query="gutenberg printing press", max_results=3)
RESULT = Result(
    task_id="t-1",
    job_id="j-1",
    lease_id="l-1",
    attempt=0,
    output=SearchOutput(backend="fixture", hits=[SearchHit(url="https://example.org/a", title="A", snippet="s")]),
)
RESULT_SHA256 = "b89f956fa5c9de9689f1d4bffd133d87caccbfc72f6c3567baa9cd4a2d507c03"


def test_payload_digest_is_pinned() -> None:
    assert len(payload_bytes(PAYLOAD)) == 57
    assert payload_sha256(PAYLOAD) == "1c6cd691c1dc67aeb2609b350893f14dcb4ea777a9c6fcf53f6ba2f686e28db8"


def test_result_digest_is_pinned_and_the_same_from_the_message_or_the_signed_body() -> None:
    assert result_sha256(RESULT) == RESULT_SHA256
    raw = seal(Identity.from_seed(b"\x0a" * 32), RESULT, now_ms=NOW, nonce=b"\x00" * 16)
    opened = open_envelope(raw, now_ms=NOW, replay_cache=None)
    assert body_sha256(opened.body) == RESULT_SHA256


def test_row_digest_is_pinned() -> None:
    data = {"question": "Who built the press?", "answer": "Gutenberg", "n": 3}
    assert row_sha256(data, "Johannes Gutenberg") == "56a7e5abe8bed1331dcb72d9bb104d156590b8dd0af26932abce180bb72f0543"


def test_content_digest_is_pinned() -> None:
    assert content_sha256("Grüße, Gutenberg") == "89f6a56cecdfb716f073d3dc0aa70a29a97d5dee0bbbc4269c105e6de8048a1b"

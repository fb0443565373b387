"""Hypothesis strategies that build every protocol message kind with valid random content."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from protocol import tasks as t
from protocol.identity import Identity
from protocol.messages import (
    Claim,
    CoordinatorAnnounce,
    GenerationStats,
    Grant,
    Message,
    ModelInfo,
    NodeStatus,
    Receipt,
    Reject,
    RejectReason,
    Result,
    TaskOffer,
    Verdict,
)

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.:", min_size=1, max_size=40)
sha = st.binary(min_size=32, max_size=32).map(bytes.hex)
text = st.text(max_size=60)
nonempty = st.text(min_size=1, max_size=60)
ms = st.integers(min_value=0, max_value=2**53)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
small = st.integers(min_value=0, max_value=1000)
url = st.from_regex(r"\Ahttps?://[a-z]{1,12}\.example/[a-z0-9/]{0,20}\Z")
peer_ids = st.binary(min_size=32, max_size=32).map(lambda s: Identity.from_seed(s).peer_id)

json_leaf = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | finite | text
json_value: st.SearchStrategy[Any] = st.recursive(
    json_leaf, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(text, kids, max_size=3), max_leaves=8
)
json_object = st.dictionaries(text, json_value, max_size=4)

decoding = st.builds(
    t.DecodingParams,
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    temperature=st.floats(min_value=0, max_value=2),
    top_k=st.integers(min_value=0, max_value=1000),
    top_p=st.floats(min_value=0.01, max_value=1),
    max_tokens=st.integers(min_value=1, max_value=8192),
    json_schema=st.none() | json_object,
)


@st.composite
def chunks(draw: st.DrawFn) -> t.SourceChunk:
    body = draw(text)
    start = draw(small)
    return t.SourceChunk(url=draw(url), content_sha256=draw(sha), start=start, end=start + len(body), text=body)


documents = st.builds(t.Document, url=url, title=text, text=text, content_sha256=sha)

payloads = st.one_of(
    st.builds(t.SpecPayload, request=nonempty, max_fields=st.integers(1, t.SPEC_MAX_FIELDS)),
    st.builds(t.QuestionGenPayload, topic=nonempty, description=text, n_queries=st.integers(1, 20)),
    st.builds(t.SearchPayload, query=nonempty, max_results=st.integers(1, 50)),
    st.builds(t.RetrievePayload, url=url, max_bytes=st.integers(1, 50_000_000)),
    st.builds(t.CuratePayload, documents=st.lists(documents, min_size=1, max_size=3), instruction=nonempty),
    st.builds(t.SynthesizePayload, instruction=nonempty, chunk=st.none() | chunks(), row_schema=json_object),
    st.builds(
        t.ValidatePayload, model_sha256=sha, prompt=text, candidate=text, claimed_mean_logprob=st.none() | finite
    ),
    st.builds(t.JudgePayload, row=json_object, criteria=nonempty, chunk=st.none() | chunks()),
)

hits = st.builds(t.SearchHit, url=url, title=text, snippet=text, score=finite)
field_drafts = st.builds(
    t.SpecFieldDraft,
    name=st.text(min_size=1, max_size=t.SPEC_FIELD_NAME_CHARS),
    type=st.sampled_from(t.SPEC_FIELD_TYPES),
    description=st.text(max_size=t.SPEC_DESCRIPTION_CHARS),
    max_length=st.integers(1, t.MAX_FIELD_CHARS),
    choices=st.lists(st.text(min_size=1, max_size=t.SPEC_CHOICE_CHARS), max_size=t.SPEC_MAX_CHOICES),
)
outputs = st.one_of(
    st.builds(
        t.SpecOutput,
        topic=st.text(min_size=1, max_size=t.MAX_TOPIC_CHARS),
        rows=st.integers(1, t.MAX_ROWS),
        grounded=st.booleans(),
        language=st.sampled_from(["en", "fr", "deu"]),
        fields=st.lists(field_drafts, min_size=1, max_size=3),
    ),
    st.builds(t.QuestionGenOutput, queries=st.lists(nonempty, max_size=5), questions=st.lists(nonempty, max_size=5)),
    st.builds(t.SearchOutput, backend=st.just("local"), hits=st.lists(hits, max_size=5)),
    st.builds(
        t.RetrieveOutput,
        url=url,
        final_url=url,
        status=st.integers(100, 599),
        content_type=text,
        title=text,
        text=text,
        content_sha256=sha,
        fetched_at_ms=ms,
    ),
    st.builds(t.CurateOutput, tasks=st.lists(st.builds(t.SynthesisSpec, instruction=text, chunk=chunks()), max_size=3)),
    st.builds(
        t.SynthesizeOutput,
        rows=st.lists(st.builds(t.GeneratedRow, data=json_object, evidence=text), max_size=3),
    ),
    st.builds(
        t.ValidateOutput,
        n_tokens=small,
        mean_logprob=finite,
        topk_rate=st.floats(0, 1),
        token_logprobs=st.lists(finite, max_size=10),
    ),
    st.builds(t.JudgeOutput, score=st.integers(1, 5), rationale=text),
)

model_infos = st.builds(ModelInfo, name=text, sha256=sha, tok_s=st.floats(0, 1e4), n_ctx=small, slots=st.integers(0, 8))

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        NodeStatus,
        version=text,
        models=st.lists(model_infos, max_size=3),
        task_kinds=st.lists(st.sampled_from(list(t.TaskKind)), max_size=7),
        free_slots=small,
        total_slots=small,
    ),
    st.builds(CoordinatorAnnounce, version=text, addrs=st.lists(text, max_size=3), api_url=text, open_offers=small),
    st.builds(
        TaskOffer,
        task_id=ids,
        job_id=ids,
        task_kind=st.sampled_from(list(t.TaskKind)),
        attempt=small,
        payload_sha256=sha,
        est_tokens=small,
        model_sha256=st.lists(sha, max_size=3),
        replicas_wanted=st.integers(1, 16),
        offer_expires_ms=ms,
    ),
    st.builds(
        Claim, task_id=ids, attempt=small, model_sha256=st.none() | sha, free_slots=small, tok_s=st.floats(0, 1e4)
    ),
    st.builds(
        Grant,
        task_id=ids,
        job_id=ids,
        lease_id=ids,
        attempt=small,
        node_peer_id=peer_ids,
        payload=payloads,
        decoding=st.none() | decoding,
        model_sha256=st.none() | sha,
        lease_deadline_ms=ms,
    ),
    st.builds(Reject, task_id=ids, reason=st.sampled_from(list(RejectReason)), detail=text),
    st.builds(
        Result,
        task_id=ids,
        job_id=ids,
        lease_id=ids,
        attempt=small,
        output=outputs,
        model_sha256=st.none() | sha,
        decoding=st.none() | decoding,
        prompt=text,
        raw_text=text,
        stats=st.builds(GenerationStats, prompt_tokens=small, completion_tokens=small, mean_logprob=st.none() | finite),
    ),
    st.builds(
        Receipt,
        task_id=ids,
        job_id=ids,
        lease_id=ids,
        node_peer_id=peer_ids,
        result_sha256=sha,
        verdict=st.sampled_from(list(Verdict)),
        work_units=st.floats(0, 1e6),
        detail=text,
    ),
)

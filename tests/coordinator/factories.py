"""Builders for coordinator tests: identities, payloads, grants, results, and sealed envelopes."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from coordinator.store import Store
from protocol.envelope import Opened, open_envelope, seal
from protocol.identity import Identity
from protocol.messages import GenerationStats, Grant, MessageKind, Result
from protocol.tasks import (
    GENERATIVE_KINDS,
    LLM_KINDS,
    DecodingParams,
    GeneratedRow,
    RetrieveOutput,
    RetrievePayload,
    SearchHit,
    SearchOutput,
    SearchPayload,
    SourceChunk,
    SynthesizeOutput,
    SynthesizePayload,
    TaskOutput,
    TaskPayload,
)


def leave_job_state(store: Store, job_id: str, state: str) -> None:
    """Write a job's state as a coordinator that stopped part-way left it, past the state table (which
    `Store.set_job_state` applies): a test's way to put a job back in a state it has moved on from."""
    with sqlite3.connect(store.path) as raw:
        raw.execute("UPDATE jobs SET state = ? WHERE job_id = ?", (state, job_id))
    raw.close()


T0 = 1_700_000_000_000
"""A fixed 'now' for tests (unix ms); tests move time by adding to it."""

MODEL = "ab" * 32
OTHER_MODEL = "cd" * 32

COORDINATOR = Identity.from_seed(b"\xc0" * 32)
NODE_A = Identity.from_seed(b"\x0a" * 32)
NODE_B = Identity.from_seed(b"\x0b" * 32)
NODE_C = Identity.from_seed(b"\x0c" * 32)

ROW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 5, "maxLength": 300},
        "answer": {"type": "string", "minLength": 1, "maxLength": 500},
    },
    "required": ["question", "answer"],
    "additionalProperties": False,
}

CHUNK_TEXT = (
    "The printing press was developed by Johannes Gutenberg around 1440 in Mainz.\n"
    "His movable-type system made books   cheaper and spread literacy across Europe."
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def chunk(text: str = CHUNK_TEXT) -> SourceChunk:
    return SourceChunk(url="http://127.0.0.1/doc", content_sha256=sha(text), start=0, end=len(text), text=text)


def synth_payload(n_rows: int = 1, schema: dict[str, Any] | None = None) -> SynthesizePayload:
    return SynthesizePayload(
        instruction="Write a question and answer grounded in the chunk.",
        chunk=chunk(),
        row_schema=schema or ROW_SCHEMA,
        n_rows=n_rows,
    )


def decoding(seed: int = 7, json_schema: dict[str, Any] | None = None) -> DecodingParams:
    return DecodingParams(seed=seed, temperature=0.8, max_tokens=256, json_schema=json_schema)


def grant(
    payload: TaskPayload,
    *,
    node: Identity = NODE_A,
    task_id: str = "t1",
    job_id: str = "j1",
    lease_id: str = "l1",
    attempt: int = 0,
    deadline_ms: int = T0 + 60_000,
    model: str | None = MODEL,
    dec: DecodingParams | None = None,
) -> Grant:
    llm = payload.kind in LLM_KINDS
    return Grant(
        task_id=task_id,
        job_id=job_id,
        lease_id=lease_id,
        attempt=attempt,
        node_peer_id=node.peer_id,
        payload=payload,
        decoding=(dec or decoding()) if llm else None,
        model_sha256=model if llm else None,
        lease_deadline_ms=deadline_ms,
    )


def rows_output(*rows: tuple[str, str, str]) -> SynthesizeOutput:
    """(question, answer, evidence) triples -> a synthesize output."""
    return SynthesizeOutput(rows=[GeneratedRow(data={"question": q, "answer": a}, evidence=e) for q, a, e in rows])


GOOD_ROW = (
    "Who developed the printing press?",
    "Johannes Gutenberg developed it around 1440.",
    "developed by Johannes Gutenberg around 1440",
)


def result_for(g: Grant, output: TaskOutput, **overrides: Any) -> Result:
    """A Result that answers grant `g` faithfully, unless fields are overridden."""
    llm = g.model_sha256 is not None
    fields: dict[str, Any] = {
        "task_id": g.task_id,
        "job_id": g.job_id,
        "lease_id": g.lease_id,
        "attempt": g.attempt,
        "output": output,
        "model_sha256": g.model_sha256,
        "decoding": g.decoding,
        "prompt": "<|im_start|>user\nWrite a question<|im_end|>" if llm else "",
        "raw_text": '{"question": "q"}' if llm else "",
        "stats": GenerationStats(
            prompt_tokens=40 if llm else 0,
            completion_tokens=30 if llm else 0,
            mean_logprob=-1.2 if llm else None,
            finish_reason="stop" if llm else "",
        ),
    }
    fields.update(overrides)
    return Result(**fields)


def seal_result(result: Result, node: Identity = NODE_A, now_ms: int = T0) -> bytes:
    return seal(node, result, now_ms=now_ms)


def opened(result: Result, node: Identity = NODE_A, now_ms: int = T0) -> Opened:
    """The Result as the coordinator sees it after open_envelope."""
    return open_envelope(
        seal_result(result, node, now_ms), now_ms=now_ms, replay_cache=None, expect={MessageKind.RESULT}
    )


def page(words: int = 300, *, variant: int = 0) -> str:
    """A deterministic page of prose; different `variant`s are different pages."""
    vocab = [
        "python", "module", "function", "returns", "value", "object", "class", "method", "string", "list",
        "dictionary", "argument", "keyword", "default", "exception", "raised", "import", "package", "file", "path",
        "thread", "process", "socket", "buffer", "stream", "encode", "decode", "format", "number", "integer",
    ]  # fmt: skip
    out = []
    state = 12345 + variant * 7919
    for _ in range(words):
        state = (state * 1103515245 + 12345) % 2**31
        out.append(vocab[state % len(vocab)])
    return " ".join(out)


def retrieve_output(text: str, url: str = "http://127.0.0.1/page", status: int = 200) -> RetrieveOutput:
    return RetrieveOutput(
        url=url,
        final_url=url,
        status=status,
        content_type="text/html",
        title="Page",
        text=text,
        content_sha256=sha(text),
        fetched_at_ms=T0,
    )


def retrieve_payload(url: str = "http://127.0.0.1/page") -> RetrievePayload:
    return RetrievePayload(url=url)


def search_output(urls: list[str]) -> SearchOutput:
    return SearchOutput(backend="local", hits=[SearchHit(url=u, title="t", snippet="s") for u in urls])


def search_payload(query: str = "python asyncio", max_results: int = 10) -> SearchPayload:
    return SearchPayload(query=query, max_results=max_results)


# --- pages for quorum tests (real docs prose, so shingle statistics are realistic) ----------

ASYNCIO = (
    "asyncio is a library to write concurrent code using the async/await syntax. asyncio is used as a foundation "
    "for multiple Python asynchronous frameworks that provide high-performance network and web-servers, database "
    "connection libraries, distributed task queues, etc. asyncio is often a perfect fit for IO-bound and "
    "high-level structured network code. asyncio provides a set of high-level APIs to run Python coroutines "
    "concurrently and have full control over their execution; perform network IO and IPC; control subprocesses; "
    "distribute tasks via queues; synchronize concurrent code. Additionally, there are low-level APIs for "
    "library and framework developers to create and manage event loops, which provide asynchronous APIs for "
    "networking, running subprocesses, handling OS signals, etc.; implement efficient protocols using "
    "transports; bridge callback-based libraries and code with async/await syntax. Last updated on Nov 21, 2025."
)
PATHLIB = (
    "This module offers classes representing filesystem paths with semantics appropriate for different operating "
    "systems. Path classes are divided between pure paths, which provide purely computational operations "
    "without I/O, and concrete paths, which inherit from pure paths but also provide I/O operations. If you've "
    "never used this module before or just aren't sure which class is right for your task, Path is most likely "
    "what you need. It instantiates a concrete path for the platform the code is running on. Pure paths are "
    "useful in some special cases; for example if you want to manipulate Windows paths on a Unix machine (or "
    "vice versa). You cannot instantiate a WindowsPath when running on Unix, but you can instantiate "
    "PureWindowsPath. Last updated on Nov 21, 2025."
)


def drifted(text: str) -> str:
    """What a second fetch minutes later looks like: new footer date, reflowed whitespace, one word changed."""
    return text.replace("Nov 21, 2025", "Nov 22, 2025").replace("perfect fit", "good fit").replace(". ", ".\n\n  ")


# --- store workflows ------------------------------------------------------------------


def new_store(tmp_path: Any, name: str = "coord.db") -> Store:
    return Store(tmp_path / name)


def seed_job(store: Store, job_id: str = "j1", *, now_ms: int = T0) -> None:
    store.create_job(job_id, {"topic": "printing"}, allowed_models=[MODEL], now_ms=now_ms)
    store.add_stage(job_id, "synthesize", now_ms=now_ms)


def claim_and_grant(
    store: Store,
    task_id: str,
    node: Identity,
    *,
    lease_id: str,
    now_ms: int = T0,
    lease_ms: int = 60_000,
) -> Grant:
    """Run claim + grant for `node`, returning the Grant the coordinator would send."""
    claimed = store.claim(task_id, node.peer_id, claim_deadline_ms=now_ms + 5_000, now_ms=now_ms)
    assert claimed is not None, f"{node.peer_id} could not claim {task_id}"
    payload = store.task_payload(task_id)
    llm = payload.kind in GENERATIVE_KINDS
    store.grant(
        task_id,
        claimed.replica,
        lease_id=lease_id,
        deadline_ms=now_ms + lease_ms,
        model_sha256=MODEL if llm else None,
        decoding=decoding() if llm else None,
        now_ms=now_ms,
    )
    return store.grant_message(lease_id)

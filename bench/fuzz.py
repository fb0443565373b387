"""Fuzzing at volume: every entry point that takes bytes from a peer, and the HTTP API.

Owns: the fuzz harness and its mutators. Entry points, and what each may raise
(anything else, or a broken invariant, is a crash):
    envelope.random    open_envelope(random bytes)                      ProtocolError
    envelope.mutated   open_envelope(valid envelope, bytes mutated)      ProtocolError
    envelope.resigned  open_envelope(fields/body mutated, re-signed)     ProtocolError
    body.<kind>        decode_body(kind, mutated body), each MessageKind DecodeError
    framing.varint     network.framing.decode_uvarint                    FrameError
    framing.stream     FrameReader.read_frame + rpc.unpack on a fragmenting in-memory stream   FrameError
    grant.payload      the node's Grant parse: decode_body + node.runtime.grant_problem    DecodeError
    result.check       the coordinator's: decode_body + verify.checks.check_result (+ receipt digest)  DecodeError
    api                schemathesis against the coordinator's OpenAPI schema, served on 127.0.0.1:
                       no 5xx, status codes, content types and bodies as documented
Invariants on accepted input: a decoded message re-encodes (its digest is what receipts and
provenance sign); a varint decodes only from its minimal encoding; a frame read re-encodes to
the exact bytes it came from; check_result returns a list of Failures and never raises.
Must not: fix what it finds (decoders own their fixes), reach beyond 127.0.0.1, or read the clock
for anything but timing (`now_ms` is fixed, as protocol/ expects).

Why hypothesis plus a mutator, not atheris: atheris 3.0.0 installs here (cp311 wheel), but its
coverage guidance sees only Python bytecode, while the parsing here happens in msgpack's C
unpacker, pydantic-core (Rust) and OpenSSL's Ed25519; it aborts the process on the first crash
(no per-entry counts, no pytest); and it would be a new dependency. hypothesis drives 3 000
inputs/s through its engine on a trivial target here, against 250 000/s for a plain loop, so
hypothesis builds the structured seed corpus (tests/protocol/strategies.py: valid messages of each
kind it knows; a newer kind gets other bodies relabelled) and schemathesis's cases, and a seeded
mutator (byte flips, inserts, deletes, splices, msgpack-level field replacement, re-signing) makes
the volume. Runs are deterministic per --seed.

Run: .venv/bin/python bench/fuzz.py [--budget 1.0] [--seed 0] [--api-cases N] [--figures FILE]
--budget 1 is 1.1e6 inputs and 1e4 API cases (about 10-15 min on 2 busy cores); CI runs
tests/protocol/test_fuzz_budget.py, the same harness at a small budget.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
import trio  # noqa: E402

from protocol import encoding  # noqa: E402
from protocol import tasks as t  # noqa: E402
from protocol.digests import payload_sha256  # noqa: E402
from protocol.envelope import (  # noqa: E402
    NONCE_LEN,
    SIGNING_DOMAIN,
    ReplayCache,
    decode_body,
    encode_message,
    open_envelope,
    seal,
)
from protocol.errors import DecodeError, ProtocolError  # noqa: E402
from protocol.identity import Identity  # noqa: E402
from protocol.messages import (  # noqa: E402
    Claim,
    CoordinatorAnnounce,
    GenerationStats,
    Grant,
    Message,
    MessageKind,
    ModelInfo,
    NodeStatus,
    Pull,
    Receipt,
    Reject,
    RejectReason,
    Result,
    TaskOffer,
    Verdict,
)

NOW = 1_700_000_000_000
COORDINATOR = Identity.from_seed(hashlib.sha256(b"dataswarm-fuzz-coordinator").digest())
NODE = Identity.from_seed(hashlib.sha256(b"dataswarm-fuzz-node").digest())
MALLORY = Identity.from_seed(hashlib.sha256(b"dataswarm-fuzz-mallory").digest())
IDENTITIES = {i.public_key: i for i in (COORDINATOR, NODE, MALLORY)}
MODEL = "ab" * 32

# network/, node/ and coordinator/ are imported by name at run time: `mypy bench/fuzz.py` puts bench/
# first on its search path, where bench/network.py, bench/node.py and bench/coordinator.py shadow those
# packages, and mypy would report errors in those files. protocol/ (the bulk of it) stays typed.
checks: Any = importlib.import_module("coordinator.verify.checks")
receipts: Any = importlib.import_module("coordinator.verify.receipts")
framing: Any = importlib.import_module("network.framing")
rpc: Any = importlib.import_module("network.rpc")
node_runtime: Any = importlib.import_module("node.runtime")
FrameError: type[Exception] = importlib.import_module("network.errors").FrameError
TASK_RESPONSE_KINDS: frozenset[MessageKind] = importlib.import_module("network.topics").TASK_RESPONSE_KINDS

BASE_INPUTS: dict[str, int] = {
    "envelope.random": 150_000,
    "envelope.mutated": 100_000,
    "envelope.resigned": 40_000,
    **{f"body.{k.value}": 50_000 for k in MessageKind},
    "framing.varint": 100_000,
    "framing.stream": 100_000,
    "grant.payload": 100_000,
    "result.check": 100_000,
}
"""Inputs per entry point at --budget 1 (1.14e6 in all with 9 message kinds). envelope.resigned costs a
sign and a verify (about 300 us) per input, hence fewer; its bodies are the body mutator's, fuzzed at
volume below."""
BASE_API_CASES = 10_000
MAX_SAMPLES = 5
"""Crash inputs kept per entry point (each written to the crash directory)."""


# --- interesting values ---------------------------------------------------------------------------

INTS = [0, 1, -1, 2, 7, 16, 17, 64, 100, 101, 127, 128, 255, 256, 1000, 1001, 1024, 1025, 8192, 8193,
        2**31 - 1, 2**31, -(2**31), 2**32 - 1, 2**32, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1]  # fmt: skip
FLOATS = [0.0, -0.0, 0.5, 1.0, -1.0, 2.0, 2.0000001, 1e-300, 5e-324, 1e19, 3e19, 1e300, -1e300, 1e308, -1e308,
          1.7976931348623157e308, -1.7976931348623157e308, math.nan, math.inf, -math.inf]  # fmt: skip
LENGTHS = [2, 3, 17, 41, 65, 129, 161, 201, 257, 301, 401, 513, 1001, 2001, 2049, 4001, 8001, 32_001, 64_001]
STRINGS = [
    "", " ", "a", "\x00", "é", "\U0001f600", "\u202e", "\ufeff", "\n", "a b", "../x", "a/b", "{}", "[]", "null",
    "1e999", "-", "0" * 64, "ab" * 32, "AB" * 32, "g" * 64, "http://", "http://127.0.0.1/doc", "?",
    '{"question": "Who?", "answer": "Him."}', "[" * 5000, '{"a":' * 3000, "[" * 40_000, "]" * 10, "\\u0000",
    *[k.value for k in MessageKind], *[k.value for k in t.TaskKind], "accepted", "stop", "length",
]  # fmt: skip
BYTES = [b"", b"\x00", b"\x00" * 16, b"\x00" * 32, b"\xff" * 32, b"\x00" * 64, b"\xc1", b"\x80" * 10]
MARKERS = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xCA,
           0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD3, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0, 0xFF]  # fmt: skip
"""msgpack type bytes: the mutator writes these where a length or a type is expected."""
MISSING = object()
"""replace_at's sentinel: delete the node instead of replacing it."""


def interesting(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(INTS)
    if pick < 0.5:
        return rng.choice(FLOATS)
    if pick < 0.75:
        return rng.choice(STRINGS)
    if pick < 0.85:
        return rng.choice(BYTES) if rng.random() < 0.7 else rng.randbytes(rng.choice([16, 32, 64]))
    return rng.choice([None, True, False, [], {}, [None], {"": None}, {"kind": "grant"}, [[[]]]])


# --- byte-level mutations -------------------------------------------------------------------------


def mutate_bytes(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    """1-4 stacked byte mutations (the classic AFL set, with msgpack type bytes as the dictionary)."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        n = len(buf)
        op = rng.randrange(10)
        pos = rng.randrange(n + 1)
        if op == 0 and n:
            buf[min(pos, n - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[min(pos, n - 1)] = rng.choice(MARKERS) if rng.random() < 0.6 else rng.randrange(256)
        elif op == 2:
            buf[pos:pos] = rng.randbytes(rng.choice((1, 1, 2, 4, 8, 33)))
        elif op == 3 and n:
            del buf[pos : pos + rng.choice((1, 1, 2, 4, 16, 200))]
        elif op == 4 and n:
            start = rng.randrange(n)
            chunk = buf[start : start + rng.choice((1, 4, 16, 64, 512))]
            buf[pos:pos] = chunk * rng.choice((1, 1, 2, 16))
        elif op == 5:
            del buf[pos:]
        elif op == 6 and n:
            width = rng.choice((1, 2, 4, 8))
            value = rng.choice(INTS) % (1 << (8 * width))
            buf[pos : pos + width] = value.to_bytes(width, "big")
        elif op == 7 and corpus:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
        elif op == 8:
            buf[pos:pos] = bytes([rng.choice(MARKERS)])
        else:
            buf += rng.randbytes(rng.randrange(1, 40))
    return bytes(buf)


# --- msgpack-level mutations ----------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def node_paths(value: Any, prefix: Path_ = (), out: list[Path_] | None = None) -> list[Path_]:
    """Every node of a decoded msgpack tree, as a path of keys and indexes (the root is ())."""
    out = [] if out is None else out
    out.append(prefix)
    if isinstance(value, dict):
        for key, child in value.items():
            node_paths(child, (*prefix, key), out)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            node_paths(child, (*prefix, i), out)
    return out


def get_at(value: Any, path: Path_) -> Any:
    for part in path:
        value = value[part]
    return value


def replace_at(value: Any, path: Path_, fn: Callable[[Any], Any]) -> Any:
    """A copy of `value` with the node at `path` replaced by fn(node) (MISSING deletes it).

    Only the containers on the path are copied: seeds stay untouched without a deep copy."""
    if not path:
        return fn(value)
    head, rest = path[0], path[1:]
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    new = replace_at(value[head], rest, fn)
    if new is MISSING:
        del copy[head]
    else:
        copy[head] = new
    return copy


def mutate_node(old: Any, rng: random.Random, donors: list[Any]) -> Any:
    """A structure-aware change of one node: type-preserving tweaks first, since they get past shape checks."""
    op = rng.random()
    if op < 0.25:
        return interesting(rng)
    if op < 0.3:
        return MISSING
    if op < 0.4 and donors:
        donor = rng.choice(donors)
        return get_at(donor, rng.choice(node_paths(donor)))
    if isinstance(old, bool):
        return not old if rng.random() < 0.5 else rng.choice([0, 1, "true", None])
    if isinstance(old, int):
        return rng.choice([old + rng.choice((-1, 1)), -old, old * 2**32, rng.choice(INTS), float(old), str(old)])
    if isinstance(old, float):
        return rng.choice([-old, old * 1e300, old + 1e-9, rng.choice(FLOATS), int(old) if math.isfinite(old) else 0])
    if isinstance(old, str):
        choice = rng.randrange(7)
        if choice == 0:  # just past a bound (to a length, not by a factor: a long string must not become GBs)
            n, base = rng.choice(LENGTHS), old or "x"
            return (base * (n // len(base) + 1))[:n]
        if choice == 1:
            return old[: rng.randrange(len(old) + 1)]
        if choice == 2:
            return old.encode()
        if choice == 3 and old:
            i = rng.randrange(len(old))
            return old[:i] + rng.choice(STRINGS[:12]) + old[i + 1 :]
        if choice == 4:
            return old.upper() if rng.random() < 0.5 else old + rng.choice(STRINGS)
        if choice == 5:
            return rng.choice(STRINGS)
        return [old]
    if isinstance(old, bytes):
        return rng.choice([old.hex(), old[:-1], old + b"\x00", old * 2, rng.randbytes(len(old))])
    if isinstance(old, list):
        choice = rng.randrange(7)
        if choice == 0:
            return []
        if choice == 5:
            return [interesting(rng)] * rng.choice((2, 3, len(old) or 1, 17, 51))
        if choice == 6 and old and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in old):
            return [v * rng.choice(FLOATS[8:16]) for v in old]  # every element at once: sums and means overflow
        if choice == 1 and old:  # past a length bound, but capped: big elements copied 300 times make GBs
            scalar = all(v is None or isinstance(v, (int, float)) for v in old[:4])
            short = all(isinstance(v, str) and len(v) < 100 for v in old[:4])
            limit = 9000 if scalar else 1100 if short else 20
            return old * max(2, min(rng.choice(LENGTHS[:8]), limit // len(old)))
        if choice == 2 and old:
            return old[::-1] if rng.random() < 0.5 else old[1:]
        if choice == 3:
            return [*old, interesting(rng)]
        return {str(i): v for i, v in enumerate(old)}
    if isinstance(old, dict):
        choice = rng.randrange(5)
        if choice == 0:
            return {**old, rng.choice(["extra", "kind", "", "v", "sig", "payload", "output"]): interesting(rng)}
        if choice == 1 and old:
            key = rng.choice(list(old))
            return {k: v for k, v in old.items() if k != key}
        if choice == 2 and old:
            return list(old.values())
        if choice == 3:
            return {}
        nested: Any = old
        for _ in range(rng.choice((2, 50, 200))):
            nested = {"a": nested} if rng.random() < 0.5 else [nested]
        return nested
    return interesting(rng)


def _safe_get(value: Any, path: Path_) -> Any:
    try:
        return get_at(value, path)
    except (KeyError, IndexError, TypeError):
        return None


def mutate_value(value: Any, rng: random.Random, donors: list[Any], paths: list[Path_] | None = None) -> Any:
    """1-3 node mutations; a third of them aim at a `kind` field, which picks the union member."""
    paths = paths if paths is not None else node_paths(value)
    for _ in range(rng.choice((1, 1, 2, 3))):
        kinds = [p for p in paths if p and p[-1] == "kind"]
        if kinds and rng.random() < 0.15:
            path = rng.choice(kinds)
            value = replace_at(value, path, lambda _: rng.choice(STRINGS[-20:]))
        else:
            # Mostly leaves: a scalar replaced in place keeps the shape, so the change reaches the schema.
            path = rng.choice(paths)
            for _ in range(3 if rng.random() < 0.7 else 0):
                if not isinstance(_safe_get(value, path), (dict, list)):
                    break
                path = rng.choice(paths)
            with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier mutation removed the path
                value = replace_at(value, path, lambda old: mutate_node(old, rng, donors))
        if value is MISSING:
            value = {}
        paths = node_paths(value) if len(paths) < 400 else paths
    return value


def pack_value(value: Any, rng: random.Random) -> bytes | None:
    """Canonical bytes mostly (they get past the canonical check to the schema); sometimes a
    non-canonical msgpack form of the same value (key order, float32, raw str, deep nesting)."""
    pick = rng.random()
    try:
        if pick < 0.85:
            return encoding.encode(value)
        if pick < 0.9:
            packed: bytes = msgpack.packb(value, use_bin_type=True, use_single_float=True)
        elif pick < 0.95 and isinstance(value, dict):
            packed = msgpack.packb(dict(reversed(list(value.items()))), use_bin_type=True)
        elif pick < 0.97:
            packed = msgpack.packb(value, use_bin_type=False)
        else:
            depth = rng.choice((10, 600, 2000))
            packed = b"\x91" * depth + encoding.encode(value)
        return packed
    except (ProtocolError, ValueError, TypeError, OverflowError, RecursionError):
        # Values the mutator made that no msgpack writer accepts (NaN in canonical, ints past 64 bits).
        try:
            fallback: bytes = msgpack.packb(value, use_bin_type=True)
            return fallback
        except (ValueError, TypeError, OverflowError, RecursionError):
            return None


# --- seeds ------------------------------------------------------------------------------------------


def hypothesis_messages(n: int, seed: int) -> list[Message]:
    """`n` valid messages of every kind from the test suite's strategies (hypothesis makes the structure)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed

    from tests.protocol.strategies import messages

    found: list[Message] = []

    @hypothesis_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(messages)
    def collect(message: Message) -> None:
        found.append(message)

    collect()
    return found


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 5, "maxLength": 300},
        "answer": {"type": "string", "minLength": 1, "maxLength": 500},
    },
    "required": ["question", "answer"],
    "additionalProperties": False,
}
CHUNK_TEXT = "The printing press was developed by Johannes Gutenberg around 1440 in Mainz."
ROW_JSON = '{"question": "Who developed the printing press?", "answer": "Johannes Gutenberg."}'


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_pairs() -> list[tuple[Grant, Result]]:
    """A coordinator-made grant and a faithful result for every task kind: result.check mutates the result."""
    chunk = t.SourceChunk(
        url="http://127.0.0.1/doc", content_sha256=_sha(CHUNK_TEXT), start=0, end=len(CHUNK_TEXT), text=CHUNK_TEXT
    )
    doc = t.Document(url="http://127.0.0.1/doc", title="Press", text=CHUNK_TEXT, content_sha256=_sha(CHUNK_TEXT))
    dec = t.DecodingParams(seed=7, temperature=0.8, max_tokens=256, json_schema=SCHEMA)
    synth = t.SynthesizePayload(instruction="Write a question.", chunk=chunk, row_schema=SCHEMA, n_rows=2)
    row = t.GeneratedRow(data=json.loads(ROW_JSON), evidence="developed by Johannes Gutenberg")
    cases: list[tuple[t.TaskPayload, t.TaskOutput, t.DecodingParams | None, str]] = [
        (synth, t.SynthesizeOutput(rows=[row, row]), dec, ROW_JSON),
        (t.SynthesizePayload(instruction="Rows.", row_schema={"type": "object"}), t.SynthesizeOutput(rows=[row]),
         t.DecodingParams(seed=1), ROW_JSON),
        (t.SpecPayload(request="100 rows about presses"), t.SpecOutput(
            topic="presses", rows=100, grounded=True, language="en",
            fields=[t.SpecFieldDraft(name="q", type="string", description="a question", max_length=200, choices=[])],
        ), dec, ROW_JSON),
        (t.QuestionGenPayload(topic="presses"), t.QuestionGenOutput(queries=["printing press"], questions=["Who?"]),
         t.DecodingParams(seed=2, json_schema={"type": "object"}), "{}"),
        (t.SearchPayload(query="printing press", max_results=3), t.SearchOutput(backend="local", hits=[
            t.SearchHit(url="http://127.0.0.1/doc", title="Press", snippet="Gutenberg")]), None, ""),
        (t.RetrievePayload(url="http://127.0.0.1/doc"), t.RetrieveOutput(
            url="http://127.0.0.1/doc", final_url="http://127.0.0.1/doc", status=200, content_type="text/html",
            title="Press", text=CHUNK_TEXT, content_sha256=_sha(CHUNK_TEXT), fetched_at_ms=NOW), None, ""),
        (t.CuratePayload(documents=[doc], instruction="Chunk it."), t.CurateOutput(tasks=[
            t.SynthesisSpec(instruction="Ask.", chunk=chunk, answers=[CHUNK_TEXT])]), None, ""),
        (t.ValidatePayload(model_sha256=MODEL, prompt="p", candidate=ROW_JSON, task=synth), t.ValidateOutput(
            n_tokens=3, mean_logprob=-1.0, topk_rate=0.9, token_logprobs=[-0.5, -1.0, -1.5]), t.DecodingParams(seed=3),
         ""),
        (t.JudgePayload(row={"q": "Who?"}, criteria="grounded", chunk=chunk),
         t.JudgeOutput(score=4, rationale="fine"), dec, '{"question": "Who is it?", "answer": "x"}'),
    ]  # fmt: skip
    pairs = []
    for i, (payload, output, decoding, raw) in enumerate(cases):
        llm = payload.kind in t.LLM_KINDS
        grant = Grant(
            task_id=f"job-1.{payload.kind}.{i}",
            job_id="job-1",
            lease_id=f"lease-{i}",
            attempt=0,
            node_peer_id=NODE.peer_id,
            payload=payload,
            decoding=decoding if llm else None,
            model_sha256=MODEL if llm else None,
            lease_deadline_ms=NOW + 60_000,
        )
        result = Result(
            task_id=grant.task_id,
            job_id=grant.job_id,
            lease_id=grant.lease_id,
            attempt=0,
            output=output,
            model_sha256=grant.model_sha256,
            decoding=grant.decoding,
            prompt="<|im_start|>user\nWrite<|im_end|>" if llm else "",
            raw_text=raw,
            stats=GenerationStats(prompt_tokens=40, completion_tokens=30, mean_logprob=-1.2, finish_reason="stop"),
        )
        pairs.append((grant, result))
    return pairs


@dataclass
class Corpus:
    """Valid inputs to mutate, built once per run (hypothesis messages plus hand-made typical ones)."""

    bodies: dict[MessageKind, list[bytes]]
    values: dict[MessageKind, list[Any]]
    envelopes: list[bytes]
    envelope_fields: list[dict[str, Any]]
    pairs: list[tuple[Grant, Result]]
    pair_values: list[Any]
    grants: list[tuple[Grant, TaskOffer]]
    grant_values: list[Any]

    @property
    def all_bodies(self) -> list[bytes]:
        return [b for bs in self.bodies.values() for b in bs]


def typical_messages() -> list[Message]:
    """One plain message of each kind the pairs do not cover, so every kind has seeds at any budget."""
    model = ModelInfo(name="SmolLM2-135M-Instruct Q4_1", sha256=MODEL, tok_s=42.5, n_ctx=2048, slots=2)
    return [
        NodeStatus(version="dataswarm-node/0.1.0", models=[model], task_kinds=[t.TaskKind.SEARCH],
                   free_slots=1, total_slots=2, tasks_done=7),
        CoordinatorAnnounce(version="dataswarm-coordinator/0.1.0", addrs=["/ip4/127.0.0.1/tcp/4001"],
                            api_url="http://127.0.0.1:8470", open_offers=3),
        TaskOffer(task_id="job-1.search.0", job_id="job-1", task_kind=t.TaskKind.SEARCH, attempt=1,
                  payload_sha256=MODEL, est_tokens=100, model_sha256=[MODEL], replicas_wanted=2, offer_expires_ms=NOW),
        Claim(task_id="job-1.search.0", attempt=1, model_sha256=MODEL, free_slots=1, tok_s=42.5),
        Pull(task_kinds=[t.TaskKind.SEARCH, t.TaskKind.SYNTHESIZE], model_sha256=[MODEL], free_slots=1, tok_s=42.5),
        Reject(task_id="job-1.search.0", reason=RejectReason.ALREADY_FILLED, detail="two replicas already"),
        Receipt(task_id="job-1.search.0", job_id="job-1", lease_id="lease-0", node_peer_id=NODE.peer_id,
                result_sha256=MODEL, verdict=Verdict.ACCEPTED, work_units=30.0, detail=""),
    ]  # fmt: skip


def build_corpus(n_messages: int, seed: int) -> Corpus:
    messages: list[Message] = list(hypothesis_messages(n_messages, seed)) + typical_messages()
    pairs = check_pairs()
    messages += [m for pair in pairs for m in pair]
    bodies: dict[MessageKind, list[bytes]] = {k: [] for k in MessageKind}
    for message in messages:
        bodies[MessageKind(message.kind)].append(encode_message(message))
    for kind, found in bodies.items():
        if not found:
            # A kind newer than the strategies: other kinds' bodies relabelled, so its fields get guessed at.
            found += [encoding.encode({**m.model_dump(mode="python"), "kind": kind.value}) for m in messages[:50]]
    rng = random.Random(seed)
    envelopes = []
    for message in messages:
        signer = COORDINATOR if message.kind in (MessageKind.GRANT, MessageKind.TASK_OFFER) else NODE
        envelopes.append(seal(signer, message, now_ms=NOW, nonce=rng.randbytes(NONCE_LEN)))
    grants = []
    for message in messages:
        if isinstance(message, Grant):
            # The offer the node claimed: the grant answers it exactly, so unmutated grants pass grant_problem.
            offer = TaskOffer(
                task_id=message.task_id,
                job_id=message.job_id,
                task_kind=t.TaskKind(message.payload.kind),
                attempt=message.attempt,
                payload_sha256=payload_sha256(message.payload),
                model_sha256=[],
                offer_expires_ms=NOW,
            )
            grants.append((message.model_copy(update={"node_peer_id": NODE.peer_id}), offer))
    return Corpus(
        bodies=bodies,
        values={k: [encoding.decode(b, limit=1 << 24) for b in bs] for k, bs in bodies.items()},
        envelopes=envelopes,
        envelope_fields=[encoding.decode(e, limit=1 << 24) for e in envelopes],
        pairs=pairs,
        pair_values=[encoding.decode(encode_message(r), limit=1 << 24) for _, r in pairs],
        grants=grants,
        grant_values=[encoding.decode(encode_message(g), limit=1 << 24) for g, _ in grants],
    )


# --- bookkeeping ------------------------------------------------------------------------------------


@dataclass
class CrashSample:
    entry: str
    error: str
    where: str
    size: int
    file: str


@dataclass
class EntryStats:
    name: str
    inputs: int = 0
    accepted: int = 0
    """Inputs the decoder took (for grant.payload and result.check: that then went through the node's or
    the coordinator's checks): how deep the mutations reach."""
    crashes: int = 0
    seconds: float = 0.0
    slowest_ms: float = 0.0
    slowest_size: int = 0
    samples: list[CrashSample] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


class Invariant(Exception):
    """An accepted input broke a property the entry point promises (always a crash)."""


def _describe(exc: BaseException) -> tuple[str, str]:
    """The error, and where: the deepest frame of the project's own code (where a fix goes), then the deepest."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return f"{type(exc).__name__}: {str(exc)[:200]}", "?"
    own = [f for f in frames if f.filename.startswith(str(ROOT)) and not f.filename.endswith("bench/fuzz.py")]
    where = [f"{os.path.relpath(f.filename, ROOT)}:{f.lineno}" for f in (own[-1:] + frames[-1:])]
    return f"{type(exc).__name__}: {str(exc)[:200]}", " <- ".join(dict.fromkeys(reversed(where)))


class Recorder:
    def __init__(self, crash_dir: Path) -> None:
        self.crash_dir = crash_dir
        self.stats: dict[str, EntryStats] = {}

    def entry(self, name: str) -> EntryStats:
        return self.stats.setdefault(name, EntryStats(name))

    def record(self, stats: EntryStats, raw: bytes, elapsed_ns: int, exc: BaseException | None, ok: bool) -> None:
        stats.inputs += 1
        stats.accepted += ok
        ms = elapsed_ns / 1e6
        if ms > stats.slowest_ms:
            stats.slowest_ms, stats.slowest_size = ms, len(raw)
        if exc is None:
            return
        stats.crashes += 1
        if len(stats.samples) < MAX_SAMPLES:
            error, where = _describe(exc)
            self.crash_dir.mkdir(parents=True, exist_ok=True)
            path = self.crash_dir / f"{stats.name}-{hashlib.sha256(raw).hexdigest()[:12]}.bin"
            path.write_bytes(raw)
            stats.samples.append(CrashSample(stats.name, error, where, len(raw), str(path)))


def drive(
    rec: Recorder,
    name: str,
    n: int,
    make: Callable[[random.Random], tuple[bytes, Any]],
    target: Callable[[bytes, Any], bool],
    clean: tuple[type[BaseException], ...],
    seed: int,
) -> None:
    """Feed `n` inputs from `make` to `target`; `clean` exceptions are rejections, anything else a crash."""
    stats = rec.entry(name)
    rng = random.Random(f"{seed}:{name}")
    start = time.perf_counter()
    for _ in range(n):
        raw, extra = make(rng)
        t0 = time.perf_counter_ns()
        exc: BaseException | None = None
        ok = False
        try:
            ok = target(raw, extra)
        except clean:
            pass
        except Exception as err:  # the point of the harness: everything else is a crash
            exc = err
        rec.record(stats, raw, time.perf_counter_ns() - t0, exc, ok)
    stats.seconds += time.perf_counter() - start


# --- entry points -------------------------------------------------------------------------------------


def reencodes(message: Message) -> None:
    try:
        encode_message(message)
    except ProtocolError as exc:
        raise Invariant(f"accepted {message.kind} does not re-encode: {exc}") from exc


OPEN_OPTIONS: list[dict[str, Any]] = [
    {},
    {"expect": {MessageKind.RESULT}, "transport_peer_id": NODE.peer_id},
    {"expect": TASK_RESPONSE_KINDS, "trusted": {COORDINATOR.public_key}, "transport_peer_id": COORDINATOR.peer_id},
    {"expect": {MessageKind.TASK_OFFER}, "trusted": {COORDINATOR.public_key}},
    {"expect": {MessageKind.NODE_STATUS, MessageKind.COORDINATOR_ANNOUNCE}},
]
"""The ways the network layer calls open_envelope: any kind, a coordinator's result stream, a node's
claim responses, offer gossip, status gossip."""


class Envelopes:
    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        # Small, so eviction runs too; shared across inputs, as a host's is.
        self.cache = ReplayCache(capacity=5_000)

    def open(self, raw: bytes, extra: tuple[int, int]) -> bool:
        options, now = extra
        opened = open_envelope(raw, now_ms=now, replay_cache=self.cache, **OPEN_OPTIONS[options])
        reencodes(opened.message)
        return True

    def random_input(self, rng: random.Random) -> tuple[bytes, tuple[int, int]]:
        n = rng.choice((0, 1, 2, 8, 32, 100, 300, 600, 3000))
        raw = rng.randbytes(rng.randrange(n + 1))
        if raw and rng.random() < 0.3:
            raw = bytes([rng.choice((0x88, 0x87, 0x89, 0xDE, 0x80, 0x98))]) + raw  # a map header: get past byte 0
        return raw, (rng.randrange(len(OPEN_OPTIONS)), NOW)

    def mutated_input(self, rng: random.Random) -> tuple[bytes, tuple[int, int]]:
        raw = mutate_bytes(rng.choice(self.corpus.envelopes), rng, self.corpus.envelopes)
        return raw, (rng.randrange(len(OPEN_OPTIONS)), NOW + rng.choice((0, 1000, 59_000)))

    def resigned_input(self, rng: random.Random) -> tuple[bytes, tuple[int, int]]:
        """Field-level mutations, then a valid signature, so every check after the signature runs too."""
        fields = dict(rng.choice(self.corpus.envelope_fields))
        if rng.random() < 0.5:
            kind = MessageKind(fields["kind"])
            body = mutate_body(self.corpus, kind, rng)
            if body is not None:
                fields["body"] = body
        if rng.random() < 0.6:
            mutated = mutate_value(fields, rng, self.corpus.envelope_fields, [(k,) for k in fields if k != "body"])
            fields = mutated if isinstance(mutated, dict) else fields
        if rng.random() < 0.5 and isinstance(fields.get("nonce"), bytes):
            fields["nonce"] = rng.randbytes(NONCE_LEN)  # fresh, so the replay cache lets some through
        fields.pop("sig", None)
        sender = fields.get("sender")
        signer = IDENTITIES.get(sender, MALLORY) if isinstance(sender, bytes) and rng.random() < 0.9 else MALLORY
        try:
            signed = SIGNING_DOMAIN + encoding.encode(fields)
            fields["sig"] = signer.sign(signed)
        except (ProtocolError, RecursionError, ValueError, TypeError, OverflowError):
            pass  # unencodable fields: the envelope goes out unsigned
        raw = pack_value(fields, rng) or b""
        now = NOW + rng.choice((0, 0, 1000, -40_000, 31_000, 70_000, 16 * 60_000))
        return raw, (rng.randrange(len(OPEN_OPTIONS)), now)


def mutate_body(corpus: Corpus, kind: MessageKind, rng: random.Random) -> bytes | None:
    """A body for `kind`: msgpack-level mutations of its seeds mostly, byte mutations, other kinds, noise."""
    pick = rng.random()
    values = corpus.values[kind]
    if pick < 0.6 and values:
        return pack_value(mutate_value(rng.choice(values), rng, values), rng)
    if pick < 0.9 and corpus.bodies[kind]:
        return mutate_bytes(rng.choice(corpus.bodies[kind]), rng, corpus.bodies[kind])
    if pick < 0.95:
        return rng.choice(corpus.all_bodies)
    return rng.randbytes(rng.randrange(200))


def body_entry(corpus: Corpus, kind: MessageKind) -> tuple[Callable[..., Any], Callable[[bytes, Any], bool]]:
    def make(rng: random.Random) -> tuple[bytes, None]:
        return mutate_body(corpus, kind, rng) or b"", None

    def target(raw: bytes, _: None) -> bool:
        reencodes(decode_body(kind, raw))
        return True

    return make, target


def grant_entry(corpus: Corpus) -> tuple[Callable[..., Any], Callable[[bytes, Any], bool]]:
    """What a node does with a Grant from its trusted coordinator, after the envelope verified."""

    def make(rng: random.Random) -> tuple[bytes, int]:
        i = rng.randrange(len(corpus.grants))
        value = corpus.grant_values[i]
        raw = pack_value(mutate_value(value, rng, corpus.grant_values), rng) if rng.random() < 0.8 else None
        return raw or mutate_bytes(encode_message(corpus.grants[i][0]), rng, corpus.bodies[MessageKind.GRANT]), i

    def target(raw: bytes, i: int) -> bool:
        grant = decode_body(MessageKind.GRANT, raw)
        assert isinstance(grant, Grant)
        _, offer = corpus.grants[i]
        problem = node_runtime.grant_problem(offer, grant, peer_id=NODE.peer_id, models=[MODEL])
        if problem is not None and not isinstance(problem, str):
            raise Invariant(f"grant_problem returned {problem!r}")
        node_runtime.SlotPool.pool_of(t.TaskKind(grant.payload.kind))  # what _execute indexes executors with
        reencodes(grant)
        return True

    return make, target


def result_entry(corpus: Corpus) -> tuple[Callable[..., Any], Callable[[bytes, Any], bool]]:
    """What the coordinator does with a Result body: decode, check against its own grant, digest for the receipt."""

    def make(rng: random.Random) -> tuple[bytes, int]:
        i = rng.randrange(len(corpus.pairs))
        value = corpus.pair_values[i]
        raw = pack_value(mutate_value(value, rng, corpus.pair_values), rng) if rng.random() < 0.85 else None
        return raw or mutate_bytes(encode_message(corpus.pairs[i][1]), rng, corpus.bodies[MessageKind.RESULT]), i

    def target(raw: bytes, i: int) -> bool:
        result = decode_body(MessageKind.RESULT, raw)
        assert isinstance(result, Result)
        grant, _ = corpus.pairs[i]
        signer = NODE.peer_id if raw[-1] & 1 else MALLORY.peer_id
        failures = checks.check_result(result, signer_peer_id=signer, grant=grant, allowed_models=[MODEL], now_ms=NOW)
        if not isinstance(failures, list):
            raise Invariant(f"check_result returned {failures!r}")
        receipts.result_sha256(result)
        receipts.work_units(t.TaskKind(result.output.kind), result)
        return True

    return make, target


def varint_entry() -> tuple[Callable[..., Any], Callable[[bytes, Any], bool]]:
    def make(rng: random.Random) -> tuple[bytes, None]:
        if rng.random() < 0.5:
            return mutate_bytes(framing.encode_uvarint(rng.choice(INTS) % 2**35), rng, []), None
        return rng.randbytes(rng.randrange(8)), None

    def target(raw: bytes, _: None) -> bool:
        header = framing.decode_uvarint(raw)
        if header is None:
            if len(raw) >= 5 or any(not b & 0x80 for b in raw):
                raise Invariant(f"{raw.hex()} holds a complete or overlong prefix but decoded as incomplete")
            return False
        value, length = header
        if framing.encode_uvarint(value) != raw[:length]:
            raise Invariant(f"{raw[:length].hex()} decoded to {value}, whose minimal encoding differs")
        return True

    return make, target


class Fragmenting:
    """An in-memory ByteStream that hands its bytes out in pieces of random size, as a real stream may."""

    def __init__(self, data: bytes, rng: random.Random) -> None:
        self.data = data
        self.pos = 0
        self.rng = rng

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = self.rng.choice((1, 2, 3, 7, 64, 1 << 16))
        size = min(size, max_bytes or size)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        raise AssertionError("the reader never sends")


FRAME_TYPES = (rpc.REQUEST, rpc.RESPONSE, rpc.ERROR)


def stream_input(corpus: Corpus, rng: random.Random) -> tuple[bytes, tuple[int, int]]:
    """A stream of rpc frames (envelopes in REQUEST/RESPONSE/ERROR frames), then mutated, or noise."""
    if rng.random() < 0.1:
        return rng.randbytes(rng.randrange(64)), (rng.randrange(1 << 30), 1 << 21)
    frames = [
        rpc.pack(rng.choice(FRAME_TYPES), rng.choice(INTS) % 2**64, rng.choice(corpus.envelopes)[:300])
        for _ in range(rng.choice((1, 1, 2, 3)))
    ]
    raw = b"".join(frames)
    if rng.random() < 0.8:
        raw = mutate_bytes(raw, rng, [framing.encode_frame(b"")])
    return raw, (rng.randrange(1 << 30), rng.choice((9, 64, 400, 1 << 21)))


async def read_stream(raw: bytes, extra: tuple[int, int]) -> bool:
    chunk_seed, max_frame = extra
    reader = framing.FrameReader(Fragmenting(raw, random.Random(chunk_seed)), max_frame=max_frame, frame_timeout=5.0)
    consumed = 0
    while (payload := await reader.read_frame()) is not None:
        frame = framing.encode_frame(payload)
        if raw[consumed : consumed + len(frame)] != frame:
            raise Invariant(f"frame at byte {consumed} does not re-encode to the bytes it was read from")
        consumed += len(frame)
        rpc.unpack(payload)
    if consumed != len(raw):
        raise Invariant(f"clean end of stream after {consumed} of {len(raw)} bytes")
    return True


async def drive_stream(rec: Recorder, n: int, corpus: Corpus, seed: int) -> None:
    """framing.stream runs inside one trio loop: FrameReader keeps its deadline in a cancel scope."""
    stats = rec.entry("framing.stream")
    rng = random.Random(f"{seed}:framing.stream")
    start = time.perf_counter()
    for _ in range(n):
        raw, extra = stream_input(corpus, rng)
        t0 = time.perf_counter_ns()
        exc: BaseException | None = None
        ok = False
        try:
            ok = await read_stream(raw, extra)
        except FrameError:
            pass
        except Exception as err:
            exc = err
        rec.record(stats, raw, time.perf_counter_ns() - t0, exc, ok)
    stats.seconds += time.perf_counter() - start


# --- the HTTP API -------------------------------------------------------------------------------------


@dataclass
class ApiStats:
    cases: int = 0
    failures: int = 0
    server_errors: int = 0
    seconds: float = 0.0
    slowest_ms: float = 0.0
    slowest: str = ""
    by_operation: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)


def fuzz_api(total: int, seed: int, log: Callable[[str], None]) -> ApiStats:
    """schemathesis against the live API (coordinator and hypercorn in a thread, on 127.0.0.1:0).

    The checks of tests/api/test_schema.py (all of schemathesis's, minus "valid data is accepted" where a
    schema-valid request may still be refused on meaning), over many more cases. Operations whose input
    space runs out early (no parameters) hand their share to the others."""
    import requests
    import schemathesis
    from schemathesis import GenerationMode

    live_api: Any = importlib.import_module("tests.api.support").LiveApi  # by name: see node_runtime

    stats = ApiStats()
    start = time.perf_counter()
    # No request rate: 10^4 cases in a few minutes would be 429 after the first 600 (tests/api/test_quotas.py).
    unlimited = {"api_requests_per_minute": 0}
    with tempfile.TemporaryDirectory(prefix="dataswarm-fuzz-api-") as tmp, live_api(Path(tmp), **unlimited) as live:
        schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {live.token}"
        operations = [op.ok() for op in schema.get_all_operations()]  # type: ignore[union-attr]
        plan = [(op, mode) for op in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
        last = -1
        for round_ in range(8):  # operations whose input space runs out hand their share on; stop when none adds
            if stats.cases >= total or stats.cases == last:
                break
            last = stats.cases
            for i, (operation, mode) in enumerate(plan):
                share = math.ceil((total - stats.cases) / (len(plan) - i))
                if share <= 0:
                    break
                ran = _api_operation(live.url, session, operation, mode, share, seed * 1000 + round_ * 100 + i, stats)
                stats.cases += ran
                key = f"{operation.method.upper()} {operation.path} {mode.value}"
                stats.by_operation[key] = stats.by_operation.get(key, 0) + ran
            log(f"  api round {round_ + 1}: {stats.cases} cases, {stats.failures} failures")
    stats.seconds = time.perf_counter() - start
    return stats


SEMANTIC = {("POST", "/v1/jobs"), ("GET", "/v1/spec"), ("POST", "/v1/spec")}
"""As in tests/api/test_schema.py: there a schema-valid request may be a 422 (a sentence the rules cannot read)."""


def _api_operation(url: str, session: Any, operation: Any, mode: Any, n: int, seed: int, stats: ApiStats) -> int:
    """Up to `n` cases of one operation; returns how many ran (hypothesis stops early on small input spaces)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Unsatisfiable
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    method = operation.method.upper()
    key = f"{method} {operation.path} {mode.value}"
    excluded = [positive_data_acceptance] if (method, operation.path) in SEMANTIC else []
    ran = 0

    @hypothesis_seed(seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        nonlocal ran
        ran += 1
        body = case.body
        if isinstance(body, dict) and type(body.get("rows")) is int and 1 <= body["rows"] <= t.MAX_ROWS:
            body["rows"] = min(body["rows"], 20)  # still valid; a 100 000-row job would plan 30 000 tasks
        t0 = time.perf_counter()
        try:
            response = case.call(base_url=url, session=session, timeout=15)
        except Exception as exc:  # no answer at all (timeout, reset): a failure
            stats.failures += 1
            _sample(stats, f"{key}: no response: {exc!r}")
            return
        ms = (time.perf_counter() - t0) * 1000
        if ms > stats.slowest_ms:
            stats.slowest_ms, stats.slowest = ms, key
        if response.status_code >= 500:
            stats.server_errors += 1
        try:
            case.validate_response(response, excluded_checks=excluded)
        except Exception as exc:  # a failed check: count it, keep the first few, go on
            stats.failures += 1
            _sample(stats, f"{key}: {str(exc)[:1500]}\n  reproduce: {case.as_curl_command()}")
        if method == "POST" and operation.path == "/v1/jobs" and response.status_code in (200, 201):
            # Cancel what was created: thousands of live jobs would slow later cases for reasons of their own.
            job_id = response.json().get("job_id")
            if isinstance(job_id, str):
                session.delete(f"{url}/v1/jobs/{job_id}", timeout=15)

    with contextlib.suppress(Unsatisfiable):  # negative mode of an operation without inputs: nothing to break
        check()
    return ran


def _sample(stats: ApiStats, text: str) -> None:
    if len(stats.samples) < MAX_SAMPLES:
        stats.samples.append(text)


# --- the run ------------------------------------------------------------------------------------------


@dataclass
class Report:
    entries: list[EntryStats]
    api: ApiStats | None
    seconds: float
    seed: int
    budget: float

    @property
    def inputs(self) -> int:
        return sum(e.inputs for e in self.entries)

    @property
    def crashes(self) -> int:
        return sum(e.crashes for e in self.entries)


def run(
    budget: float,
    *,
    seed: int = 0,
    api_cases: int | None = None,
    crash_dir: Path | None = None,
    only: Collection[str] | None = None,
    log: Callable[[str], None] = print,
) -> Report:
    """The whole harness; `budget` scales every entry point's input count (and the API cases unless given)."""
    start = time.perf_counter()
    rec = Recorder(crash_dir or Path(tempfile.gettempdir()) / "dataswarm-fuzz-crashes")
    counts = {name: max(1, round(n * budget)) for name, n in BASE_INPUTS.items() if not only or name in only}
    if counts:
        _fuzz_bytes(rec, counts, budget, seed, log)
    api = None
    n_api = api_cases if api_cases is not None else round(BASE_API_CASES * budget)
    if n_api > 0 and (not only or "api" in only):
        api = fuzz_api(n_api, seed, log)
    return Report(list(rec.stats.values()), api, time.perf_counter() - start, seed, budget)


def _fuzz_bytes(rec: Recorder, counts: dict[str, int], budget: float, seed: int, log: Callable[[str], None]) -> None:
    start = time.perf_counter()
    corpus = build_corpus(max(40, min(400, round(4000 * budget))), seed)
    log(f"corpus: {sum(len(b) for b in corpus.bodies.values())} bodies, {len(corpus.envelopes)} envelopes "
        f"({time.perf_counter() - start:.1f} s)")  # fmt: skip
    env = Envelopes(corpus)
    entries: dict[str, tuple[Callable[..., Any], Callable[[bytes, Any], bool], tuple[type[BaseException], ...]]] = {
        "envelope.random": (env.random_input, env.open, (ProtocolError,)),
        "envelope.mutated": (env.mutated_input, env.open, (ProtocolError,)),
        "envelope.resigned": (env.resigned_input, env.open, (ProtocolError,)),
        **{f"body.{k.value}": (*body_entry(corpus, k), (DecodeError,)) for k in MessageKind},
        "framing.varint": (*varint_entry(), (FrameError,)),
        "grant.payload": (*grant_entry(corpus), (DecodeError,)),
        "result.check": (*result_entry(corpus), (DecodeError,)),
    }
    for name, n in counts.items():
        if name == "framing.stream":
            trio.run(drive_stream, rec, n, corpus, seed)
        else:
            make, target, clean = entries[name]
            drive(rec, name, n, make, target, clean, seed)
        s = rec.stats[name]
        log(f"  {name:<28} {s.inputs:>8} inputs {s.crashes:>4} crashes  {s.per_s:>8.0f}/s")


def render(report: Report) -> str:
    lines = [
        f"{'entry point':<28} {'inputs':>9} {'accepted':>9} {'crashes':>7} {'slowest ms':>10} {'inputs/s':>9}",
    ]
    for e in report.entries:
        lines.append(f"{e.name:<28} {e.inputs:>9} {e.accepted:>9} {e.crashes:>7} {e.slowest_ms:>10.2f} {e.per_s:>9.0f}")
    lines.append(f"{'total':<28} {report.inputs:>9} {sum(e.accepted for e in report.entries):>9} "
                 f"{report.crashes:>7} {max((e.slowest_ms for e in report.entries), default=0):>10.2f} "
                 f"{report.inputs / max(1e-9, sum(e.seconds for e in report.entries)):>9.0f}")  # fmt: skip
    for e in report.entries:
        for s in e.samples:
            lines.append(f"CRASH {s.entry}: {s.error} at {s.where} ({s.size} B, {s.file})")
    if report.api is not None:
        a = report.api
        lines.append(
            f"api: {a.cases} cases, {a.failures} failures ({a.server_errors} 5xx), {a.seconds:.0f} s, "
            f"{a.cases / max(a.seconds, 1e-9):.1f} cases/s, slowest {a.slowest_ms:.0f} ms ({a.slowest})"
        )
        for key, n in sorted(a.by_operation.items()):
            lines.append(f"  {key:<40} {n:>6}")
        lines += [f"API FAILURE {s}" for s in a.samples]
    return "\n".join(lines)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return out.stdout.strip() + (" + uncommitted changes" if dirty.strip() else "")
    except OSError:
        return "?"


def figures(report: Report) -> str:
    """The short block for bench/RESULTS.md."""
    worst = max(report.entries, key=lambda e: e.slowest_ms, default=EntryStats("none"))
    a = report.api
    api = (f"{a.cases} API cases, {a.failures} failures ({a.server_errors} 5xx), {a.cases / a.seconds:.1f} cases/s"
           if a and a.seconds else "API not run")  # fmt: skip
    return "\n".join(
        [
            f"- date {time.strftime('%Y-%m-%d %H:%M')}, commit {_commit()}, python {platform.python_version()}, "
            f"{os.cpu_count()} cores, --budget {report.budget:g} --seed {report.seed}, {report.seconds / 60:.1f} min",
            f"- {report.inputs} inputs over {len(report.entries)} entry points, {report.crashes} crashes; "
            f"slowest input {worst.slowest_ms:.1f} ms ({worst.name}, {worst.slowest_size} B)",
            f"- {api}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    total = sum(BASE_INPUTS.values())
    parser.add_argument("--budget", type=float, default=1.0, help=f"scale: 1 = {total:.3g} inputs, 1e4 API cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-cases", type=int, default=None, help="API cases (default 1e4 x budget; 0 skips)")
    parser.add_argument("--only", default="", help="comma-separated entry points (names as printed, or 'api')")
    parser.add_argument("--crash-dir", type=Path, default=None, help="where crash inputs are written")
    parser.add_argument("--figures", type=Path, default=None, help="also write the figures block here")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s] or None
    report = run(args.budget, seed=args.seed, api_cases=args.api_cases, crash_dir=args.crash_dir, only=only)
    print(render(report))
    block = figures(report)
    print(block)
    if args.figures:
        args.figures.write_text(block + "\n\n```\n" + render(report) + "\n```\n")
    api_bad = report.api.failures if report.api else 0
    sys.exit(1 if report.crashes or api_bad else 0)


if __name__ == "__main__":
    main()

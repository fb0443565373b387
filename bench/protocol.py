"""Protocol throughput: encode+sign and verify+decode rates for a typical Grant and Result.

Run: .venv/bin/python bench/protocol.py [--seconds S]
Prints messages/s per operation; absolute numbers depend on the machine, so compare
them only with figures from the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol.envelope import ReplayCache, open_envelope, seal
from protocol.identity import Identity
from protocol.messages import GenerationStats, Grant, Message, MessageKind, Result
from protocol.tasks import (
    DecodingParams,
    GeneratedRow,
    SourceChunk,
    SynthesizeOutput,
    SynthesizePayload,
)

CHUNK = ("The heapq module provides an implementation of the heap queue algorithm. " * 40)[:3000]


def typical_grant(node: Identity) -> Grant:
    schema = {
        "type": "object",
        "properties": {
            "question": {"type": "string", "maxLength": 200},
            "answer": {"type": "string", "maxLength": 400},
        },
        "required": ["question", "answer"],
    }
    return Grant(
        task_id="job-1:synth:000042",
        job_id="job-1",
        lease_id="lease-000042-0",
        attempt=0,
        node_peer_id=node.peer_id,
        payload=SynthesizePayload(
            instruction="Write one question a Python developer would ask, answered only from the source.",
            chunk=SourceChunk(
                url="http://127.0.0.1:8000/library/heapq.html",
                content_sha256="ab" * 32,
                start=0,
                end=len(CHUNK),
                text=CHUNK,
            ),
            row_schema=schema,
        ),
        decoding=DecodingParams(seed=42, temperature=0.7, max_tokens=400, json_schema=schema),
        model_sha256="cd" * 32,
        lease_deadline_ms=1_700_000_060_000,
    )


def typical_result() -> Result:
    answer = "Use heapq.heappush to add items and heapq.heappop to remove the smallest one. " * 8
    return Result(
        task_id="job-1:synth:000042",
        job_id="job-1",
        lease_id="lease-000042-0",
        attempt=0,
        output=SynthesizeOutput(
            rows=[GeneratedRow(data={"question": "How do I use a heap?", "answer": answer[:400]}, evidence=CHUNK[:200])]
        ),
        model_sha256="cd" * 32,
        decoding=DecodingParams(seed=42, temperature=0.7, max_tokens=400),
        prompt="",
        raw_text=answer[:900],
        stats=GenerationStats(prompt_tokens=700, completion_tokens=180, mean_logprob=-0.8, seconds=3.1),
    )


def rate(fn: Callable[[int], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn(n)
            n += 1
    return n / elapsed


def bench(name: str, message: Message, signer: Identity, seconds: float) -> None:
    now = 1_700_000_000_000
    raw = seal(signer, message, now_ms=now)
    envelopes = [seal(signer, message, now_ms=now) for _ in range(2000)]
    kind = {MessageKind(message.kind)}
    seal_rate = rate(lambda _: seal(signer, message, now_ms=now), seconds)
    open_rate = rate(lambda i: open_envelope(envelopes[i % 2000], now_ms=now, replay_cache=None, expect=kind), seconds)
    cache = ReplayCache()
    start = time.perf_counter()
    for env in envelopes:
        open_envelope(env, now_ms=now, replay_cache=cache, expect=kind)
    cached_rate = len(envelopes) / (time.perf_counter() - start)
    print(
        f"{name:<7} {len(raw):>6} B  encode+sign {seal_rate:>8.0f} msg/s   verify+decode {open_rate:>8.0f} msg/s"
        f"   verify+decode+replay-check {cached_rate:>8.0f} msg/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    coordinator, node = Identity.generate(), Identity.generate()
    print(f"python {sys.version.split()[0]}; {args.seconds:.1f} s per measurement")
    bench("Grant", typical_grant(node), coordinator, args.seconds)
    bench("Result", typical_result(), node, args.seconds)


if __name__ == "__main__":
    main()

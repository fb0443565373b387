"""The start-up self-benchmark and the speed rules built on it.

Owns: measuring a loaded model's generation speed (`ModelInfo.tok_s`), the
minimum speed at which a node serves a model at all, and whether a task's
expected output fits a deadline. Blocking; runs on an engine worker thread.

What is measured: decode tokens per second of a *grammar-constrained* JSON
generation through `LlamaBackend.generate`, the exact path every generative
task takes, after the prompt is prefilled. Unconstrained speed would overstate
what tasks see (grammar sampling is the biggest single cost on a node,
docs/notes/llama.md). All runs together are capped at `BENCH_MAX_SECONDS`.
"""

from __future__ import annotations

import time

from node.llm.backend import LlamaBackend, SamplingParams
from node.llm.schema import compile_schema

BENCH_RUNS = 3
BENCH_MAX_TOKENS = 32
BENCH_MAX_SECONDS = 3.0
"""A slow model stops at 3 s in all; the best run counts, so a transient dip at start-up does not get a
model refused (docs/notes/llama.md#self-benchmark)."""

MIN_TOK_S = 5.0
"""Below this constrained-generation speed a node does not offer a model at all.

About 10 tok/s unconstrained, where Dria drops nodes; slower nodes would mostly produce
expired leases (docs/notes/llama.md#minimum-speed)."""

DEADLINE_SAFETY = 2.0
"""A node claims a task only if its expected time is under half the time left: the benchmark
ran on an idle machine, and a volunteer's rarely stays idle (docs/notes/llama.md#deadline-margin)."""

PREFILL_SPEEDUP = 2.3
"""Prefill runs about 2.3x faster per token than generation on a CPU (docs/notes/llama.md)."""

_BENCH_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "minLength": 400, "maxLength": 600}},
}
_BENCH_MESSAGES = [
    {"role": "system", "content": "You reply with JSON only."},
    {"role": "user", "content": "Explain in detail how rain forms, step by step."},
]


def self_benchmark(backend: LlamaBackend) -> float:
    """Constrained-generation decode speed of `backend`, in tokens per second (best of a few short runs)."""
    if backend.has_chat_template:
        prompt = backend.render_chat(_BENCH_MESSAGES)
    else:
        prompt = "Explain in detail how rain forms, step by step. Answer as JSON:\n"
    grammar = compile_schema(_BENCH_SCHEMA).gbnf
    best = 0.0
    deadline = time.perf_counter() + BENCH_MAX_SECONDS
    for run in range(BENCH_RUNS):
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        result = backend.generate(
            prompt,
            SamplingParams(seed=run, temperature=0.0, max_tokens=BENCH_MAX_TOKENS),
            grammar=grammar,
            max_seconds=left,
        )
        best = max(best, result.decode_tok_s)
    return round(best, 2)


def expected_seconds(prompt_tokens: int, output_tokens: int, tok_s: float) -> float:
    """Time to prefill `prompt_tokens` and generate `output_tokens` at a measured `tok_s`."""
    if tok_s <= 0:
        return float("inf")
    return output_tokens / tok_s + prompt_tokens / (tok_s * PREFILL_SPEEDUP)


def can_meet_deadline(prompt_tokens: int, output_tokens: int, tok_s: float, seconds_left: float) -> bool:
    """Whether to claim a task: expected time x DEADLINE_SAFETY fits in the time left."""
    return expected_seconds(prompt_tokens, output_tokens, tok_s) * DEADLINE_SAFETY <= seconds_left

"""Node benchmarks. Section `bench_llm`: the LLM engine and executors on the bundled SmolLM2 model.

Run: .venv/bin/python bench/node.py [--prompts N] [--repeats R] [--threads T]
Prints, for synthesize prompts built from Python-docs paragraphs:
- P1: tok/s of raw llama-cpp-python (`create_completion` with the same GBNF grammar, same
  greedy decoding, so the very same tokens) vs the executor path (`SynthesizeExecutor`:
  prompt rendering, grammar, generation, parsing); the ratio exec/raw, goal >= 0.95;
- grammar cost on the engine's loop: no grammar vs lazy grammar vs eager grammar, tok/s;
- validate cost / generate cost: the `ValidateExecutor` prefill re-score of each output
  against the time the output took to generate;
- validation separation: mean logprob and top-k rate of own outputs vs the same tokens
  shuffled vs an output written for another prompt, and the producer's claimed mean
  logprob vs the validator's re-score.
Runs are interleaved and medians reported: other processes on a shared machine move
single runs by a factor of several (see tests/node/conftest.py). Absolute numbers depend
on the machine; compare figures from one run.

Other sections (e.g. retrieval pages/s) go in their own `bench_*` function called by `main`.
"""

from __future__ import annotations

import argparse
import functools
import html
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and `node` would be this file.
_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(_ROOT))

import hashlib  # noqa: E402

import trio  # noqa: E402

from node.executors.synthesize import SynthesizeExecutor, messages, output_schema  # noqa: E402
from node.executors.validate import ValidateExecutor  # noqa: E402
from node.llm.backend import LlamaBackend, SamplingParams  # noqa: E402
from node.llm.engine import Engine, LoadedModel  # noqa: E402
from node.llm.hardware import detect_hardware, plan_model  # noqa: E402
from node.llm.models import DigestCache, resolve_model  # noqa: E402
from node.llm.schema import compile_schema  # noqa: E402
from node.llm.structured import sampling_params  # noqa: E402
from protocol.tasks import (  # noqa: E402
    DecodingParams,
    SourceChunk,
    SynthesizePayload,
    ValidateOutput,
    ValidatePayload,
)

PYDOC_TUTORIAL = Path("/usr/share/doc/python3.11/html/tutorial")
ROW_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "maxLength": 160, "description": "A question the source answers."},
        "answer": {"type": "string", "maxLength": 240, "description": "The answer, from the source."},
    },
    "required": ["question", "answer"],
}
FALLBACK_TEXTS = [
    "Python's for statement iterates over the items of any sequence (a list or a string), in the order "
    "that they appear in the sequence. If you do need to iterate over a sequence of numbers, the built-in "
    "function range() comes in handy. It generates arithmetic progressions.",
    "A dictionary is a set of key: value pairs, with the requirement that the keys are unique. A pair of "
    "braces creates an empty dictionary. The main operations on a dictionary are storing a value with some "
    "key and extracting the value given the key.",
]


def pydoc_paragraphs(n: int) -> list[str]:
    """The first suitable paragraph of each tutorial page (350-800 characters)."""
    out: list[str] = []
    for page in sorted(PYDOC_TUTORIAL.glob("*.html")) if PYDOC_TUTORIAL.is_dir() else []:
        for p in re.findall(r"<p>(.*?)</p>", page.read_text("utf-8"), re.S):
            text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", p)).split())
            if 350 < len(text) < 800:
                out.append(text)
                break
        if len(out) == n:
            break
    return out or FALLBACK_TEXTS[:n]


def payload_for(text: str) -> SynthesizePayload:
    digest = hashlib.sha256(text.encode()).hexdigest()
    chunk = SourceChunk(
        url="https://docs.python.org/3/tutorial/", content_sha256=digest, start=0, end=len(text), text=text
    )
    return SynthesizePayload(
        instruction="Write a question and its answer about this text.", chunk=chunk, row_schema=ROW_SCHEMA, n_rows=1
    )


def raw_completion(backend: LlamaBackend, prompt: str, params: SamplingParams, grammar: Any) -> tuple[float, int, str]:
    """llama-cpp-python's `create_completion` with a grammar: (seconds, completion tokens, text)."""
    backend.llm.reset()  # no KV-cache reuse between runs, as on the engine path
    t0 = time.perf_counter()
    out = backend.llm.create_completion(
        prompt,
        max_tokens=params.max_tokens,
        temperature=0.0,
        top_k=params.top_k,
        top_p=1.0,
        min_p=0.0,
        repeat_penalty=1.0,
        seed=params.seed,
        grammar=grammar,
    )
    return time.perf_counter() - t0, out["usage"]["completion_tokens"], out["choices"][0]["text"]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench_llm(n_prompts: int = 5, repeats: int = 3, threads: int | None = None) -> dict[str, Any]:
    hw = detect_hardware()
    model = resolve_model("smollm2-135m", digests=DigestCache())
    plan = plan_model(model, hw, n_threads=threads)
    backend = LlamaBackend(model.path, n_ctx=plan.n_ctx, n_threads=plan.n_threads, n_batch=plan.n_batch)
    print(f"model {model.name} sha256 {model.sha256[:16]}…  n_threads={plan.n_threads} n_ctx={plan.n_ctx}")
    print(f"cpu: {', '.join(hw.cpu_features)}; gpu offload: {hw.gpu_offload}")
    from llama_cpp.llama_grammar import LlamaGrammar

    decoding = DecodingParams(seed=7, temperature=0.0)
    payloads = [payload_for(t) for t in pydoc_paragraphs(n_prompts)]
    results: dict[str, list[float]] = {k: [] for k in ("raw", "exec", "ratio", "none", "lazy", "eager", "val_ratio")}
    own: list[tuple[float, float]] = []
    shuffled: list[tuple[float, float]] = []
    other: list[tuple[float, float]] = []
    claim_gap: list[float] = []

    async def run() -> None:
        engine = Engine([LoadedModel(plan=plan, backends=[backend])])
        synth = SynthesizeExecutor(engine)
        validate = ValidateExecutor(engine)
        outputs: list[tuple[str, str, float, float | None]] = []
        for i, payload in enumerate(payloads):
            schema, _ = output_schema(payload)
            compiled = compile_schema(schema)
            params = sampling_params(decoding, compiled)
            grammar = LlamaGrammar.from_string(compiled.gbnf, verbose=False)
            prompt = backend.render_chat(messages(payload))
            for _ in range(repeats):
                # P1, raw side: llama-cpp-python's own completion with the same grammar and greedy decoding.
                raw_s, raw_n, raw_text = await trio.to_thread.run_sync(raw_completion, backend, prompt, params, grammar)
                # P1, executor side: the whole synthesize path.
                t0 = time.perf_counter()
                res = await synth.execute(payload, decoding, None)
                exec_s = time.perf_counter() - t0
                exec_n = res.stats.completion_tokens
                if raw_text != res.raw_text:
                    print(f"  prompt {i}: raw and executor texts differ (tokens {raw_n} vs {exec_n})")
                results["raw"].append(raw_n / raw_s)
                # create_completion does not count the end-of-generation token; tokens are the same sequence,
                # so compare time for the same output.
                results["exec"].append(raw_n / exec_s)
                results["ratio"].append(raw_s / exec_s)
                # Grammar cost on the engine's own loop (decode only, same prompt).
                for key, g, lazy in (
                    ("none", None, True),
                    ("lazy", compiled.gbnf, True),
                    ("eager", compiled.gbnf, False),
                ):
                    run_one = functools.partial(backend.generate, prompt, params, grammar=g, lazy_grammar=lazy)
                    r = await trio.to_thread.run_sync(run_one)
                    results[key].append(r.decode_tok_s)
                # validate / generate.
                v = await validate.execute(
                    ValidatePayload(model_sha256=model.sha256, prompt=res.prompt, candidate=res.raw_text), None, None
                )
                results["val_ratio"].append(v.stats.seconds / res.stats.seconds)
            vo = v.output
            assert isinstance(vo, ValidateOutput)
            outputs.append((res.prompt, res.raw_text, vo.mean_logprob, res.stats.mean_logprob))
            own.append((vo.mean_logprob, vo.topk_rate))
            if res.stats.mean_logprob is not None:
                claim_gap.append(vo.mean_logprob - res.stats.mean_logprob)

        rng = random.Random(0)
        for i, (prompt, text, _, _) in enumerate(outputs):
            tokens = backend.tokenize_text(text)
            rng.shuffle(tokens)
            shuffled_text = backend.llm.detokenize(tokens).decode("utf-8", "replace")
            foreign = outputs[(i + 1) % len(outputs)][1]  # the model's output for another prompt
            _, s, f = await engine.rescore_many(model.sha256, prompt, [text, shuffled_text, foreign], 10)
            shuffled.append((s.mean_logprob, s.topk_rate))
            other.append((f.mean_logprob, f.topk_rate))

    trio.run(run)
    backend.close()

    def show(label: str, pairs: list[tuple[float, float]]) -> None:
        lps = [p[0] for p in pairs]
        rates = [p[1] for p in pairs]
        print(
            f"  {label:<22} mean logprob median {median(lps):6.2f} (min {min(lps):6.2f}, max {max(lps):6.2f})   "
            f"top-10 rate median {median(rates):.2f} (min {min(rates):.2f}, max {max(rates):.2f})"
        )

    print(f"\nP1 synthesize, {len(payloads)} prompts x {repeats} interleaved runs, greedy, same grammar, same tokens:")
    print(f"  raw llama-cpp-python create_completion: {median(results['raw']):6.1f} tok/s")
    print(f"  executor path (SynthesizeExecutor):     {median(results['exec']):6.1f} tok/s")
    print(f"  ratio executor/raw: median {median(results['ratio']):.2f} (goal >= 0.95)")
    print("\nGrammar cost on the engine loop (decode tok/s, medians):")
    print(
        f"  no grammar {median(results['none']):6.1f}   lazy grammar {median(results['lazy']):6.1f}   "
        f"eager grammar {median(results['eager']):6.1f}"
    )
    print(f"\nvalidate / generate time: median {median(results['val_ratio']):.2f}")
    print("\nValidation separation (validator = same model, top-10):")
    show("own output", own)
    show("own tokens shuffled", shuffled)
    show("other prompt's output", other)
    print(
        f"  claimed - rescored mean logprob (own): median {median([-g for g in claim_gap]):+.3f} "
        f"(range {min(-g for g in claim_gap):+.3f} .. {max(-g for g in claim_gap):+.3f})"
    )
    return {"results": results, "own": own, "shuffled": shuffled, "other": other, "claim_gap": claim_gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: physical cores)")
    args = parser.parse_args()
    sections: list[Callable[[], object]] = [lambda: bench_llm(args.prompts, args.repeats, args.threads)]
    for section in sections:
        section()


if __name__ == "__main__":
    main()

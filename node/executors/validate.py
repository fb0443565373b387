"""validate: re-score another node's output by a teacher-forced prefill under the declared model.

Owns: checking that this node holds the declared model and turning the
re-score into a `ValidateOutput`. The pass itself is `LlamaBackend.rescore`;
the accept/reject decision (compare with the producer's claimed mean logprob,
thresholds on the top-k rate) is the coordinator's.

No chat template is needed: the payload carries the exact rendered prompt,
so a base model can validate outputs produced under its own digest.

Round trip (answer-first synthesize tasks, PAQ's filter): in the same task,
the validator reads the candidate's question against every sentence of the
chunk: the gain of each sentence is how much it raises the question's
log-likelihood over no sentence at all (mean nats per question token, the
pointwise mutual information of question and sentence). It reports where the
row's answer sentence ranks and by what margin; the coordinator keeps the row
only when that sentence comes first, with a positive gain. A question written
for another sentence of the chunk, or about nothing in particular, fails.
Whether the sentence *answers* the question is not measured here but by the
coordinator's question gates (coordinator/verify/gates.py), which need no
model: the question is built on the sentence's own subject and verb and asks
only about words the sentence contains.

Label-first synthesize tasks are re-scored among the choices, not as free text
(`synthesize.among_choices`), since the grammar forced the label. The label
round trip then reads the label (its first reading is the re-score's own prefill)
back from the text, with the choices listed in their order and reversed, each
time by log P(choice | text) and by its gain over no text, log P(choice | text)
- log P(choice | no text) (the prior taken out). The row's label must come
first in all four readings, and the text must raise its likelihood. The bundled
135M model mostly writes whichever choice is listed first, and the prior-free
reading alone labelled an English sentence "German" in both orders
(docs/notes/quality.md#label-round-trip), so no one reading is enough.
"""

from __future__ import annotations

import math
import time

from node.executors.base import ExecutionError, ExecutionResult
from node.llm.backend import ContextOverflow
from node.llm.engine import Engine, EngineError, ModelNotLoaded
from node.prompts import load_prompts
from protocol.messages import GenerationStats
from protocol.tasks import (
    DecodingParams,
    Frozen,
    QuestionGenPayload,
    RescorablePayload,
    RoundTrip,
    SpecPayload,
    SynthesizePayload,
    TaskKind,
    ValidateOutput,
    ValidatePayload,
)

MAX_TOKEN_LOGPROBS = 8192
"""ValidateOutput's limit; the context already bounds the candidate below it on default settings."""


def task_messages(task: RescorablePayload) -> list[dict[str, str]]:
    """The chat messages the producer of `task` was given (same templates, same version)."""
    from node.executors import judge, question_gen, spec, synthesize

    if isinstance(task, SpecPayload):
        return spec.messages(task)
    if isinstance(task, SynthesizePayload):
        return synthesize.messages(task)
    if isinstance(task, QuestionGenPayload):
        return question_gen.messages(task)
    return judge.messages(task)


def task_prompt(engine: Engine, sha256: str, task: RescorablePayload) -> str:
    """The exact prompt the producer of `task` was given."""
    from node.executors import synthesize

    if isinstance(task, SynthesizePayload) and task.target is not None:
        return synthesize.question_prompt(task)
    if isinstance(task, SynthesizePayload) and task.label is not None:
        return synthesize.label_prompt(task)
    return engine.render_chat(sha256, task_messages(task))


async def round_trip(engine: Engine, sha256: str, task: SynthesizePayload, candidate: str) -> RoundTrip:
    """Where the row's answer sentence ranks among the chunk's sentences as the one `candidate` (the
    question) is about."""
    from node.executors import synthesize

    assert task.target is not None and task.chunk is not None
    sentences = synthesize.evidence_candidates(task.chunk)
    if task.target.sentence not in sentences:
        raise ExecutionError("the target sentence is not one of the chunk's sentences")
    prompts = load_prompts()
    question = " " + " ".join(candidate.split())

    async def score(sentence: str) -> float:
        prompt = prompts.render("roundtrip", "prompt", sentence=" ".join(sentence.split()))
        return (await engine.rescore(sha256, prompt, question, 1)).mean_logprob

    base = await score("")
    gains = [await score(s) - base for s in sentences]
    mine = sentences.index(task.target.sentence)
    others = [g for i, g in enumerate(gains) if i != mine]
    return RoundTrip(
        answer_rank=sum(g >= gains[mine] for g in others),
        margin=round(gains[mine] - max(others, default=0.0), 4),
        gain=round(gains[mine], 4),
        n_sentences=len(sentences),
    )


async def label_trip(
    engine: Engine, sha256: str, task: SynthesizePayload, candidate: str, listed: dict[str, float] | None = None
) -> RoundTrip:
    """Where the row's label (`candidate`) ranks among the choices as the label of the text: the worst of
    four readings, the choices listed in their order and reversed, each by log P(choice | text) and by
    its gain over no text. `listed`: the scores of the first reading, when the caller has them
    (`synthesize.label_scores` under the task's own prompt, which the re-score reads too)."""
    from node.executors import synthesize

    assert task.label is not None
    choices = task.label.choices
    mine = candidate.strip()
    if mine not in choices:
        return RoundTrip(answer_rank=len(choices), margin=-1e9, gain=-1e9, n_sentences=len(choices), reading="label")
    rank, margin, gain = 0, math.inf, math.inf
    for order in (choices, tuple(reversed(choices))):
        if listed is not None and order == choices:
            raw = listed
        else:
            raw = await synthesize.label_scores(engine, sha256, task, order)
        prior = await synthesize.label_scores(engine, sha256, task, order, text="")
        pmi = {c: raw[c] - prior[c] for c in choices}
        for scores in (raw, pmi):
            others = [v for c, v in scores.items() if c != mine]
            rank = max(rank, sum(v >= scores[mine] for v in others))
            margin = min(margin, scores[mine] - max(others))
        gain = min(gain, pmi[mine])
    return RoundTrip(
        answer_rank=rank, margin=round(margin, 4), gain=round(gain, 4), n_sentences=len(choices), reading="label"
    )


class ValidateExecutor:
    kind = TaskKind.VALIDATE

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def _label(
        self, sha256: str, task: SynthesizePayload, candidate: str, matches: bool | None
    ) -> ExecutionResult:
        """A label-first candidate is re-scored among the choices (`synthesize.label_logprob`), as one
        token whose top-k is the choices, and read back by the label round trip."""
        from node.executors import synthesize

        assert task.label is not None
        t0 = time.perf_counter()
        label = candidate.strip()
        known = label in task.label.choices
        # One prefill of the task's own prompt serves the re-score and the round trip's first reading.
        listed = await synthesize.label_scores(self.engine, sha256, task) if known else None
        lp = synthesize.among_choices(listed, label) if listed is not None else -1e9
        output = ValidateOutput(
            n_tokens=1,
            mean_logprob=lp,
            topk_rate=1.0 if known else 0.0,
            token_logprobs=[lp],
            prompt_matches=matches,
            roundtrip=await label_trip(self.engine, sha256, task, candidate, listed),
        )
        stats = GenerationStats(prompt_tokens=0, completion_tokens=0, seconds=round(time.perf_counter() - t0, 4))
        return ExecutionResult(output=output, model_sha256=sha256, stats=stats)

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        if not isinstance(payload, ValidatePayload):
            raise ExecutionError(f"validate executor got a {type(payload).__name__}")
        if model_sha256 is not None and model_sha256 != payload.model_sha256:
            raise ExecutionError(f"grant names model {model_sha256} but the payload declares {payload.model_sha256}")
        try:
            lm = self.engine.model(payload.model_sha256)
            prompt, matches, trip = payload.prompt, None, None
            if payload.task is not None:
                # Re-score under the prompt the task really has, not the one the producer reports.
                prompt = task_prompt(self.engine, lm.sha256, payload.task)
                matches = prompt == payload.prompt
            if isinstance(payload.task, SynthesizePayload) and payload.task.label is not None:
                return await self._label(lm.sha256, payload.task, payload.candidate, matches)
            result = await self.engine.rescore(lm.sha256, prompt, payload.candidate, payload.top_k)
            if isinstance(payload.task, SynthesizePayload) and payload.task.target is not None:
                trip = await round_trip(self.engine, lm.sha256, payload.task, payload.candidate)
        except (ModelNotLoaded, ContextOverflow, EngineError) as exc:
            raise ExecutionError(f"cannot validate: {exc}") from None
        mean = result.mean_logprob
        output = ValidateOutput(
            n_tokens=result.n_tokens,
            mean_logprob=mean if math.isfinite(mean) else -1e9,
            topk_rate=result.topk_rate,
            token_logprobs=[x if math.isfinite(x) else -1e9 for x in result.token_logprobs[:MAX_TOKEN_LOGPROBS]],
            prompt_matches=matches,
            roundtrip=trip,
        )
        return ExecutionResult(
            output=output,
            model_sha256=lm.sha256,
            stats=GenerationStats(
                prompt_tokens=result.prompt_tokens + result.n_tokens,
                completion_tokens=0,
                seconds=round(result.seconds, 4),
            ),
        )

"""validate: re-score another node's output by a teacher-forced prefill under the declared model.

Owns: checking that this node holds the declared model and turning the
re-score into a `ValidateOutput`. The pass itself is `LlamaBackend.rescore`;
the accept/reject decision (compare with the producer's claimed mean logprob,
thresholds on the top-k rate) is the coordinator's.

No chat template is needed: the payload carries the exact rendered prompt,
so a base model can validate outputs produced under its own digest.
"""

from __future__ import annotations

import math

from node.executors.base import ExecutionError, ExecutionResult
from node.llm.backend import ContextOverflow
from node.llm.engine import Engine, ModelNotLoaded
from protocol.messages import GenerationStats
from protocol.tasks import (
    DecodingParams,
    Frozen,
    QuestionGenPayload,
    RescorablePayload,
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


class ValidateExecutor:
    kind = TaskKind.VALIDATE

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        if not isinstance(payload, ValidatePayload):
            raise ExecutionError(f"validate executor got a {type(payload).__name__}")
        if model_sha256 is not None and model_sha256 != payload.model_sha256:
            raise ExecutionError(f"grant names model {model_sha256} but the payload declares {payload.model_sha256}")
        try:
            lm = self.engine.model(payload.model_sha256)
            prompt, matches = payload.prompt, None
            if payload.task is not None:
                # Re-score under the prompt the task really has, not the one the producer reports.
                prompt = self.engine.render_chat(lm.sha256, task_messages(payload.task))
                matches = prompt == payload.prompt
            result = await self.engine.rescore(lm.sha256, prompt, payload.candidate, payload.top_k)
        except ModelNotLoaded as exc:
            raise ExecutionError(f"cannot validate: {exc}") from None
        except ContextOverflow as exc:
            raise ExecutionError(f"cannot validate: {exc}") from None
        mean = result.mean_logprob
        output = ValidateOutput(
            n_tokens=result.n_tokens,
            mean_logprob=mean if math.isfinite(mean) else -1e9,
            topk_rate=result.topk_rate,
            token_logprobs=[x if math.isfinite(x) else -1e9 for x in result.token_logprobs[:MAX_TOKEN_LOGPROBS]],
            prompt_matches=matches,
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

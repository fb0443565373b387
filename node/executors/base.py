"""What every task executor is: payload (+ decoding params, model) in, output out.

Executors are the node's pure-ish core: they take the typed payload from a
Grant and return the typed output for the Result, with no knowledge of the
network. The runtime (`node/runtime.py`) wraps them in claims and leases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from protocol.messages import GenerationStats
from protocol.tasks import DecodingParams, Frozen, TaskKind


class ExecutionError(Exception):
    """The task cannot be done on this node; the message says why (it is sent back)."""


@dataclass(frozen=True)
class ExecutionResult:
    output: Frozen
    """One of the `protocol.tasks` *Output types, matching the executor's kind."""
    model_sha256: str | None = None
    prompt: str = ""
    """The exact rendered prompt (LLM kinds), so a validator can re-score it."""
    raw_text: str = ""
    """The exact generated text the output was parsed from (LLM kinds)."""
    stats: GenerationStats = field(default_factory=GenerationStats)


class Executor(Protocol):
    kind: TaskKind

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        """Run one task. Raise ExecutionError for a task this node cannot do."""
        ...

"""One executor per task kind, and the registry the runtime builds them from.

Each `node/executors/<kind>.py` holds one class implementing the `Executor`
protocol (`base.py`). The registry names classes by import path and imports
them only when built, so a kind whose module (or its dependencies, e.g.
llama_cpp for the LLM kinds) is missing does not break the others.

Construction convention:
- LLM kinds (`protocol.tasks.LLM_KINDS`) are built as `cls(engine=deps.engine)`;
  building one without an engine is a `RegistryError`.
- Every other kind is built as `cls(**deps.options.get(kind, {}))`: the
  runtime passes constructor arguments (search backend, retrieval allowlist...)
  per kind, and the registry stays ignorant of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from node.executors.base import ExecutionError, ExecutionResult, Executor
from protocol.tasks import LLM_KINDS, TaskKind

if TYPE_CHECKING:
    from node.llm.engine import Engine

__all__ = [
    "EXECUTOR_CLASSES",
    "ExecutionError",
    "ExecutionResult",
    "Executor",
    "ExecutorDeps",
    "RegistryError",
    "build_executor",
    "build_executors",
    "executor_class",
]

EXECUTOR_CLASSES: dict[TaskKind, str] = {
    TaskKind.SPEC: "node.executors.spec:SpecExecutor",
    TaskKind.QUESTION_GEN: "node.executors.question_gen:QuestionGenExecutor",
    TaskKind.SEARCH: "node.executors.search:SearchExecutor",
    TaskKind.RETRIEVE: "node.executors.retrieve:RetrieveExecutor",
    TaskKind.CURATE: "node.executors.curate:CurateExecutor",
    TaskKind.SYNTHESIZE: "node.executors.synthesize:SynthesizeExecutor",
    TaskKind.VALIDATE: "node.executors.validate:ValidateExecutor",
    TaskKind.JUDGE: "node.executors.judge:JudgeExecutor",
}


class RegistryError(Exception):
    """An executor cannot be built; the message names the kind and the reason."""


@dataclass(frozen=True)
class ExecutorDeps:
    engine: Engine | None = None
    options: Mapping[TaskKind, Mapping[str, Any]] = field(default_factory=dict)
    """Constructor keyword arguments for the non-LLM kinds."""


def executor_class(kind: TaskKind) -> type[Any]:
    path = EXECUTOR_CLASSES[kind]
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls: type[Any] = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"executor for {kind.value} ({path}) cannot be imported: {exc}") from exc
    return cls


def build_executor(kind: TaskKind, deps: ExecutorDeps) -> Executor:
    cls = executor_class(kind)
    if kind in LLM_KINDS:
        if deps.engine is None:
            raise RegistryError(f"{kind.value} needs an LLM engine; start the node with a model")
        executor: Executor = cls(engine=deps.engine)
    else:
        executor = cls(**deps.options.get(kind, {}))
    return executor


def build_executors(kinds: Iterable[TaskKind], deps: ExecutorDeps) -> dict[TaskKind, Executor]:
    """Build one executor per kind; raises RegistryError naming the first kind that cannot be built."""
    return {kind: build_executor(kind, deps) for kind in kinds}

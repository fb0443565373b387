"""The retrieve executor: a `RetrievePayload` in, the page's main text (`RetrieveOutput`) out.

Owns: only the adaptation between the executor protocol and `node.retrieve.Retriever`;
every rule of what may be fetched lives in `node/retrieve/`. Refusals and failures
become `ExecutionError` with the retriever's message (it is sent back to the coordinator).
"""

from __future__ import annotations

from node.executors.base import ExecutionError, ExecutionResult
from node.retrieve import RetrieveError, Retriever, RetrieverConfig
from protocol.tasks import DecodingParams, Frozen, RetrievePayload, TaskKind


class RetrieveExecutor:
    kind = TaskKind.RETRIEVE

    def __init__(self, config: RetrieverConfig | None = None, *, retriever: Retriever | None = None) -> None:
        """`config` carries the allowlist (`RetrieverConfig.from_allowlist(node_config.retrieve_allow)`);
        `retriever` replaces the one built from it (tests, or a pooled one the runtime entered)."""
        self.retriever = retriever or Retriever(config)

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        if not isinstance(payload, RetrievePayload):
            raise ExecutionError(f"retrieve executor got a {type(payload).__name__}, not a RetrievePayload")
        try:
            output = await self.retriever.retrieve(payload.url, max_bytes=payload.max_bytes)
        except RetrieveError as exc:
            raise ExecutionError(f"retrieve failed ({type(exc).__name__}): {exc}") from exc
        return ExecutionResult(output=output)

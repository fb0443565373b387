"""The search executor: a `SearchPayload` in, ranked hits from the node's backend (`SearchOutput`) out.

Owns: only the adaptation between the executor protocol and a `node.search` backend;
ranking and fetching live in the backends. Backend errors become `ExecutionError`.
"""

from __future__ import annotations

from node.executors.base import ExecutionError, ExecutionResult
from node.search import SearchBackend, SearchBackendError, SearchConfig, build_backend
from protocol.tasks import DecodingParams, Frozen, SearchOutput, SearchPayload, TaskKind


class SearchExecutor:
    kind = TaskKind.SEARCH

    def __init__(self, backend: SearchBackend | None = None, *, config: SearchConfig | None = None) -> None:
        """Use `backend`, or build one from `config` (`build_backend`); with neither, the default
        `SearchConfig()`, which names what is missing. Raises SearchBackendUnavailable."""
        if backend is not None and config is not None:
            raise ValueError("give a search backend or a search config, not both")
        self.backend = backend if backend is not None else build_backend(config or SearchConfig())

    @classmethod
    def from_config(cls, config: SearchConfig) -> SearchExecutor:
        """Build the configured backend; raises SearchBackendUnavailable naming what is missing."""
        return cls(config=config)

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        if not isinstance(payload, SearchPayload):
            raise ExecutionError(f"search executor got a {type(payload).__name__}, not a SearchPayload")
        try:
            hits = await self.backend.search(payload.query, payload.max_results)
        except SearchBackendError as exc:
            raise ExecutionError(f"search backend {self.backend.name!r} failed: {exc}") from exc
        output = SearchOutput(backend=self.backend.name[:64], hits=hits[: payload.max_results])
        return ExecutionResult(output=output)

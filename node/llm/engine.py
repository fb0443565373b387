"""The LLM engine: loaded models, their slots, and async access from trio.

Owns: loading every chosen model (one `LlamaBackend` per slot), the start-up
self-benchmark, and running generation / re-scoring on worker threads without
ever letting two threads into one backend. Must not know about tasks, prompts
or the network: executors build prompts and grammars, the runtime reads
`free_slots` for backpressure and `model_infos()` for NodeStatus.

Concurrency. Each model has N slots; a slot is one `LlamaBackend` (one `Llama`:
weights, KV cache, compute buffers). A `trio.CapacityLimiter(N)` guards the
pool of idle backends, so a backend is handed to exactly one worker thread at
a time (two threads in one `Llama` segfault, docs/notes/llama.md). N > 1
therefore costs N times the memory; we do not share one `Llama` between slots
with llama.cpp sequences because batched decoding changes outputs (notes:
"Batching changes the output"), which would break replica comparison. Default
slots come from `hardware.plan_model`: 1 on a CPU with fewer than 8 cores.

Blocking calls run in `trio.to_thread.run_sync` so the trio loop keeps serving
the network. A cancelled task sets a stop flag the generation loop checks
between tokens, and the slot is only returned once the thread has actually
left the backend (the thread is never abandoned).

Determinism: every request starts from an empty KV cache (`Llama.reset()` +
clearing the cache), so the same seed and params give the same bytes in one
process, in a fresh one and at 1 or 2 threads; a batched prefill differs
slightly from one-token decoding (docs/notes/llama.md#determinism-of-the-engine).
Exact-match comparison therefore holds between nodes with the same wheel,
build flags and CPU features, without batching; across mixed hardware,
compare by re-scoring.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import trio

from node.llm.backend import GenerationResult, LlamaBackend, SamplingParams
from node.llm.hardware import Hardware, ModelPlan, choose_models, detect_hardware, plan_model
from node.llm.models import DEFAULT_MODEL, DigestCache, ModelError, ResolvedModel, resolve_model
from node.llm.rescore import RescoreResult
from node.llm.speed import MIN_TOK_S, self_benchmark
from protocol.messages import ModelInfo

T = TypeVar("T")


class EngineError(Exception):
    """The engine cannot serve a request; the message says why."""


class ModelNotLoaded(EngineError):
    pass


class NoUsableModel(EngineError):
    pass


class _NodeConfigLike(Protocol):
    models: list[str]
    slots: int | None
    n_threads: int | None
    n_gpu_layers: int | None
    data_dir: Path


@dataclass(frozen=True)
class EngineSettings:
    models: Sequence[str] = (DEFAULT_MODEL,)
    slots: int | None = None
    n_threads: int | None = None
    n_gpu_layers: int | None = None
    n_ctx: int | None = None
    max_models: int = 1
    """How many of the configured models to load (largest that fit first)."""
    cache_dir: Path | None = None
    """Where the digest cache lives (default: the platformdirs user cache)."""
    hf_cache: Path | None = None
    benchmark: bool = True
    min_tok_s: float = MIN_TOK_S

    @classmethod
    def from_node_config(cls, config: _NodeConfigLike, **overrides: object) -> EngineSettings:
        values: dict[str, object] = {
            "models": tuple(config.models),
            "slots": config.slots,
            "n_threads": config.n_threads,
            "n_gpu_layers": config.n_gpu_layers,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class LoadedModel:
    plan: ModelPlan
    backends: list[LlamaBackend]
    tok_s: float = 0.0
    idle: list[LlamaBackend] = field(default_factory=list)
    limiter: trio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.idle = list(self.backends)
        self.limiter = trio.CapacityLimiter(len(self.backends))

    @property
    def model(self) -> ResolvedModel:
        return self.plan.model

    @property
    def sha256(self) -> str:
        return self.plan.model.sha256

    @property
    def name(self) -> str:
        return self.plan.model.name

    @property
    def n_ctx(self) -> int:
        return self.backends[0].n_ctx

    @property
    def has_chat_template(self) -> bool:
        return self.backends[0].has_chat_template

    @property
    def slots(self) -> int:
        return len(self.backends)

    @property
    def free_slots(self) -> int:
        return len(self.idle)

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name[:512], sha256=self.sha256, tok_s=self.tok_s, n_ctx=self.n_ctx, slots=self.slots)


class Engine:
    """Loaded models keyed by GGUF sha256. Create with `open_engine` (or `Engine.load` in tests)."""

    def __init__(self, models: Sequence[LoadedModel], skipped: Sequence[str] = ()) -> None:
        if not models:
            raise NoUsableModel("no model loaded")
        self._models = {m.sha256: m for m in models}
        self.default_sha256 = models[0].sha256
        self.skipped = list(skipped)
        """Why configured models were not loaded (for doctor and the logs)."""

    # --- queries (cheap, from the trio thread) ------------------------------

    @property
    def models(self) -> list[LoadedModel]:
        return list(self._models.values())

    def model(self, sha256: str | None = None) -> LoadedModel:
        """The model with this digest (the default model for None); raises ModelNotLoaded."""
        key = sha256 or self.default_sha256
        try:
            return self._models[key]
        except KeyError:
            have = ", ".join(f"{m.name} ({m.sha256[:12]}…)" for m in self._models.values())
            raise ModelNotLoaded(f"model {key} is not loaded on this node (it has {have})") from None

    def model_infos(self) -> list[ModelInfo]:
        return [m.info() for m in self._models.values()]

    @property
    def total_slots(self) -> int:
        return sum(m.slots for m in self._models.values())

    @property
    def free_slots(self) -> int:
        return sum(m.free_slots for m in self._models.values())

    def render_chat(self, sha256: str | None, messages: Sequence[dict[str, str]]) -> str:
        """The exact prompt text for chat `messages` on a model; raises EngineError for a base model."""
        lm = self.model(sha256)
        if not lm.has_chat_template:
            raise EngineError(f"model {lm.name} has no chat template (a base model); chat tasks need an instruct model")
        return lm.backends[0].render_chat(messages)

    # --- work (blocking, on worker threads) ---------------------------------

    async def generate(
        self,
        sha256: str | None,
        prompt: str,
        params: SamplingParams,
        *,
        grammar: str | None = None,
        lazy_grammar: bool = True,
    ) -> GenerationResult:
        def work(backend: LlamaBackend, stop: threading.Event) -> GenerationResult:
            return backend.generate(prompt, params, grammar=grammar, lazy_grammar=lazy_grammar, stop=stop)

        return await self.run(sha256, work)

    async def rescore(self, sha256: str | None, prompt: str, candidate: str, top_k: int) -> RescoreResult:
        return await self.run(sha256, lambda backend, _stop: backend.rescore(prompt, candidate, top_k))

    async def rescore_many(
        self, sha256: str | None, prompt: str, candidates: Sequence[str], top_k: int, *, max_tokens: int | None = None
    ) -> list[RescoreResult]:
        """Re-score several candidates (e.g. disagreeing replicas) of one prompt, prefilling it once."""
        return await self.run(
            sha256, lambda backend, _stop: backend.rescore_many(prompt, candidates, top_k, max_tokens=max_tokens)
        )

    async def run(self, sha256: str | None, fn: Callable[[LlamaBackend, threading.Event], T]) -> T:
        """Run `fn(backend, stop)` on a worker thread with an idle slot of the model."""
        lm = self.model(sha256)
        async with lm.limiter:
            backend = lm.idle.pop()
            try:
                return await _run_blocking(lambda stop: fn(backend, stop))
            finally:
                lm.idle.append(backend)

    # --- lifecycle ------------------------------------------------------------

    @classmethod
    async def load(cls, plans: Sequence[ModelPlan], *, benchmark: bool = True, min_tok_s: float = 0.0) -> Engine:
        """Load every plan's slots on worker threads and benchmark each model once."""
        loaded: list[LoadedModel] = []
        skipped: list[str] = []
        pending: list[LlamaBackend] = []  # loaded but not yet owned by a LoadedModel
        try:
            for plan in plans:
                for _ in range(plan.slots):
                    pending.append(await trio.to_thread.run_sync(_load_backend, plan))
                lm = LoadedModel(plan=plan, backends=pending)
                pending = []
                loaded.append(lm)
                if benchmark:
                    lm.tok_s = await trio.to_thread.run_sync(self_benchmark, lm.backends[0])
                    if lm.tok_s < min_tok_s:
                        skipped.append(
                            f"{plan.model.name}: {lm.tok_s:.1f} tok/s is below the {min_tok_s:.0f} tok/s minimum"
                        )
                        loaded.pop()
                        await trio.to_thread.run_sync(_close_all, lm.backends)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_close_all, pending)
                for lm in loaded:
                    await trio.to_thread.run_sync(_close_all, lm.backends)
            raise
        if not loaded:
            raise NoUsableModel("no configured model can run here: " + "; ".join(skipped or ["nothing configured"]))
        return cls(loaded, skipped)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for lm in self._models.values():
                # Waiting for the limiter means no thread is inside any backend while we free it.
                for _ in range(lm.slots):
                    await lm.limiter.acquire_on_behalf_of(object())
                await trio.to_thread.run_sync(_close_all, lm.backends)


def _load_backend(plan: ModelPlan) -> LlamaBackend:
    return LlamaBackend(
        plan.model.path,
        n_ctx=plan.n_ctx,
        n_threads=plan.n_threads,
        n_gpu_layers=plan.n_gpu_layers,
        n_batch=plan.n_batch,
    )


def _close_all(backends: Sequence[LlamaBackend]) -> None:
    for backend in backends:
        backend.close()


async def _run_blocking(fn: Callable[[threading.Event], T]) -> T:
    """Run `fn(stop)` on a thread; on cancellation set `stop` and wait for the thread to leave."""
    stop = threading.Event()

    async def set_stop_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            stop.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(set_stop_when_cancelled)
        try:
            # Not abandoned on cancel (run_sync's default): the slot must not be reused while this
            # thread is still inside the backend.
            return await trio.to_thread.run_sync(fn, stop)
        finally:
            nursery.cancel_scope.cancel()


def plan_engine(
    settings: EngineSettings, hw: Hardware, *, digests: DigestCache | None = None
) -> tuple[list[ModelPlan], list[str]]:
    """Resolve the configured models and choose what to load; returns (plans, reasons for the rest)."""
    digests = digests or DigestCache(settings.cache_dir)
    plans: list[ModelPlan] = []
    problems: list[str] = []
    for spec in settings.models:
        try:
            model = resolve_model(spec, digests=digests, hf_cache=settings.hf_cache)
        except ModelError as exc:
            problems.append(f"{spec}: {exc}")
            continue
        plans.append(
            plan_model(
                model,
                hw,
                n_ctx=settings.n_ctx,
                slots=settings.slots,
                n_threads=settings.n_threads,
                n_gpu_layers=settings.n_gpu_layers,
            )
        )
    chosen, skipped = choose_models(plans, hw, max_models=settings.max_models)
    return chosen, problems + skipped


@asynccontextmanager
async def open_engine(settings: EngineSettings, *, hardware: Hardware | None = None) -> AsyncIterator[Engine]:
    """Resolve, plan, load and benchmark; the engine is closed when the block exits."""
    hw = hardware if hardware is not None else await trio.to_thread.run_sync(detect_hardware)
    plans, skipped = await trio.to_thread.run_sync(plan_engine, settings, hw)
    if not plans:
        raise NoUsableModel("no configured model can be used: " + "; ".join(skipped or ["nothing configured"]))
    engine = await Engine.load(plans, benchmark=settings.benchmark, min_tok_s=settings.min_tok_s)
    engine.skipped[:0] = skipped
    try:
        yield engine
    finally:
        await engine.aclose()

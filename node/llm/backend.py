"""The one module that touches llama-cpp-python: a blocking wrapper around one `Llama`.

Owns: loading a GGUF file, rendering chat prompts, the token-by-token
generation loop (sampling, grammar, logprobs, cancellation) and the
teacher-forced re-scoring pass. Everything here blocks (ctypes calls into
llama.cpp) and is NOT thread-safe: one `LlamaBackend` must be used by one
thread at a time (docs/notes/llama.md: concurrent use gave
`llama_decode returned -1`, then a segfault). `engine.py` guarantees that
with one slot per backend; `_exclusive` turns any slip into an exception
instead of a crash.

It relies on a few llama-cpp-python internals (`Llama._ctx`, `Llama._batch`,
`_internals.LlamaSampler`, `LlamaTokenDataArray`) pinned to 0.3.36 in
pyproject.toml; nothing else in the code base does.

Why our own generation loop instead of `create_completion`:
- **Grammar cost.** llama-cpp-python puts the grammar sampler in the chain, so
  every token runs the grammar over the whole vocabulary (49k for SmolLM2,
  262k for Gemma): the biggest single cost on a node. Like llama.cpp's own
  `common_sampler_sample`, we first sample without the grammar and run the
  grammar on that one token; only when it is rejected do we apply the grammar
  to the full vocabulary and sample again ("lazy grammar"). At temperature 0
  the result is identical to the eager grammar (the grammar-allowed argmax);
  at temperature > 0 it is a slightly different distribution (mass of the
  rejected draw moves to the constrained resample), still a pure function of
  (prompt, params, seed). It costs next to nothing: the model's own choice is
  usually valid JSON already (docs/notes/llama.md#lazy-grammar).
- **Logprobs without `logits_all`.** `create_completion(logprobs=...)` needs
  `logits_all=True` (an n_ctx x n_vocab float buffer: 800 MB at 4096 x 49k).
  We read the last row of logits at each step and keep log p(sampled token)
  under the raw model distribution (before grammar, top-k or temperature), the
  same quantity `rescore` computes, so a producer's claim and a validator's
  re-score are comparable.
- **Cancellation.** The loop checks a `threading.Event` between tokens.
"""

from __future__ import annotations

import ctypes
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.ext
import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment

from node.llm.gpu import LlamaBuild, build_backends
from node.llm.rescore import RescoreResult, score_rows, token_logprob

FinishReason = Literal["stop", "length", "cancelled"]

RENDER_DATE = datetime(2025, 1, 1)
"""What `strftime_now` returns inside chat templates. Templates that print today's
date (Llama 3) would otherwise make the rendered prompt depend on the day; a
fixed date keeps a prompt reproducible from the task payload alone."""


class ConcurrentUse(RuntimeError):
    """A backend was entered by a second thread while busy: a bug in the caller."""


class ContextOverflow(ValueError):
    """The prompt (plus candidate) does not fit the model's context."""


class GrammarError(ValueError):
    """llama.cpp refused the grammar."""


@dataclass(frozen=True)
class SamplingParams:
    seed: int
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 1.0
    max_tokens: int = 512
    repeat_penalty: float = 1.0
    """1.0 is off. Structured tasks use a mild penalty: small models otherwise loop ("the answer is that
    the answer is that ...") until the field's bound."""
    repeat_last_n: int = 64


@dataclass(frozen=True)
class GenerationResult:
    text: str
    token_ids: tuple[int, ...]
    """Generated tokens, without the end-of-generation token."""
    token_logprobs: tuple[float, ...]
    """log p(token) under the raw model distribution, one per entry of token_ids."""
    prompt_tokens: int
    completion_tokens: int
    """Tokens sampled, including the end-of-generation token when there was one."""
    finish_reason: FinishReason
    prefill_seconds: float
    decode_seconds: float
    grammar_full_passes: int
    """Tokens for which the lazy check failed and the grammar ran on the whole vocabulary."""

    @property
    def mean_logprob(self) -> float | None:
        return float(np.mean(self.token_logprobs)) if self.token_logprobs else None

    @property
    def decode_tok_s(self) -> float:
        return self.completion_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


def _strftime_now(fmt: str) -> str:
    return RENDER_DATE.strftime(fmt)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


class ChatTemplate:
    """A model's Jinja chat template, rendered the way Hugging Face transformers does (sandboxed)."""

    def __init__(self, template: str, bos_token: str, eos_token: str) -> None:
        env = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = _tojson
        self.source = template
        self._template = env.from_string(template)
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        return self._template.render(
            messages=list(messages),
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            add_generation_prompt=True,
            raise_exception=_raise_exception,
            strftime_now=_strftime_now,
        )


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # As transformers' chat templates render `tojson`.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def llama_build_info() -> LlamaBuild:
    """What the installed llama.cpp was built with: GPU offload and its GPU backends. Loads the library, no model.

    The backends are read from the libggml-<backend> files the wheel ships next to libllama
    (llama_print_system_info() names only backends that report features: Vulkan does not).
    """
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    system_info = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    libraries = sorted(p.name for p in lib_dir.iterdir()) if lib_dir.is_dir() else []
    return LlamaBuild(
        gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
        backends=build_backends(libraries, system_info),
        system_info=system_info.strip(),
    )


class LlamaBackend:
    """One loaded model with one context. Blocking; one thread at a time."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        n_threads: int,
        n_gpu_layers: int = 0,
        n_batch: int = 512,
    ) -> None:
        import llama_cpp
        from llama_cpp import _internals

        # llama_cpp ships partial type hints; it is handled as Any here, the one module that uses it.
        self._lib: Any = llama_cpp
        self._internals: Any = _internals
        self.path = path
        self.llm: Any = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_gpu_layers=n_gpu_layers,
            logits_all=False,
            verbose=False,
        )
        self.n_ctx = self.llm.n_ctx()
        self.n_vocab = self.llm.n_vocab()
        self.n_batch = n_batch
        self.n_threads = n_threads
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._busy = threading.Lock()
        self._candidates = _internals.LlamaTokenDataArray(n_vocab=self.n_vocab)
        self._single_data: Any = (llama_cpp.llama_token_data * 1)()
        self._single: Any = llama_cpp.llama_token_data_array(data=self._single_data, size=1, selected=-1, sorted=False)
        model = self.llm._model
        bos_id, eos_id = self.llm.token_bos(), self.llm.token_eos()
        self.bos_text = model.token_get_text(bos_id) if bos_id != -1 else ""
        self.eos_text = model.token_get_text(eos_id) if eos_id != -1 else ""
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.chat_template = ChatTemplate(template, self.bos_text, self.eos_text) if template else None

    # --- housekeeping -----------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._busy.acquire(blocking=False):
            raise ConcurrentUse(f"backend for {self.path.name} entered by two threads at once")
        try:
            yield
        finally:
            self._busy.release()

    def close(self) -> None:
        with self._exclusive():
            self.llm.close()

    @property
    def has_chat_template(self) -> bool:
        return self.chat_template is not None

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        """The exact prompt text for `messages` (pure Python; safe from any thread)."""
        if self.chat_template is None:
            raise ValueError(f"{self.path.name} has no chat template")
        return self.chat_template.render(messages)

    def tokenize_prompt(self, prompt: str) -> list[int]:
        # Special tokens in a rendered prompt (<|im_start|>) are control tokens, not text. BOS is added
        # only when the model asks for it and the template did not already write it.
        add_bos = not (self.bos_text and prompt.startswith(self.bos_text))
        tokens: list[int] = self.llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens

    def tokenize_text(self, text: str) -> list[int]:
        tokens: list[int] = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return tokens

    # --- generation -------------------------------------------------------

    def generate(
        self,
        prompt: str,
        params: SamplingParams,
        *,
        grammar: str | None = None,
        lazy_grammar: bool = True,
        stop: threading.Event | None = None,
        max_seconds: float | None = None,
    ) -> GenerationResult:
        """Generate from `prompt` (already rendered) under `grammar` (GBNF, root rule `root`).

        Starts from an empty KV cache every time: reusing a cached prefix changes the
        output (docs/notes/llama.md, "Determinism").
        """
        lib = self._lib
        with self._exclusive():
            prompt_tokens = self.tokenize_prompt(prompt)
            room = self.n_ctx - len(prompt_tokens)
            if room < 1:
                raise ContextOverflow(f"prompt is {len(prompt_tokens)} tokens; the context holds {self.n_ctx}")
            max_tokens = min(params.max_tokens, room)

            t0 = time.perf_counter()
            self.llm.reset()
            self.llm.eval(prompt_tokens)
            t1 = time.perf_counter()

            chain = self._sampler_chain(params)
            grammar_sampler = None
            if grammar is not None:
                grammar_sampler = lib.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
                if not grammar_sampler:
                    raise GrammarError("llama.cpp could not parse the grammar")
            out: list[int] = []
            logprobs: list[float] = []
            finish: FinishReason = "length"
            full_passes = 0
            sampled = 0
            deadline = t1 + max_seconds if max_seconds is not None else None
            try:
                while sampled < max_tokens:
                    stopped = stop is not None and stop.is_set()
                    if stopped or (deadline is not None and time.perf_counter() > deadline):
                        finish = "cancelled"
                        break
                    logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))
                    token, full = self._sample(logits, chain, grammar_sampler, lazy_grammar)
                    full_passes += full
                    sampled += 1
                    if grammar_sampler is not None:
                        lib.llama_sampler_accept(grammar_sampler, token)
                    chain.accept(token)
                    if lib.llama_vocab_is_eog(self._vocab, token):
                        finish = "stop"
                        break
                    logprobs.append(token_logprob(logits, token))
                    out.append(token)
                    if sampled < max_tokens:
                        self.llm.eval([token])
            finally:
                if grammar_sampler is not None:
                    lib.llama_sampler_free(grammar_sampler)
                chain.close()
                self.llm.reset()
            t2 = time.perf_counter()
            text = self.llm.detokenize(out).decode("utf-8", errors="replace")
            return GenerationResult(
                text=text,
                token_ids=tuple(out),
                token_logprobs=tuple(logprobs),
                prompt_tokens=len(prompt_tokens),
                completion_tokens=sampled,
                finish_reason=finish,
                prefill_seconds=t1 - t0,
                decode_seconds=t2 - t1,
                grammar_full_passes=full_passes,
            )

    def _sampler_chain(self, params: SamplingParams) -> Any:
        chain = self._internals.LlamaSampler()
        if params.repeat_penalty != 1.0:
            # The binding declares (n_vocab, last_n, ...) while llama.cpp now takes (last_n, ...): on
            # x86-64 the ints and floats travel in separate registers, so passing last_n twice is right
            # for either signature.
            chain.add_penalties(params.repeat_last_n, params.repeat_last_n, params.repeat_penalty, 0.0, 0.0)
        if params.temperature <= 0.0:
            chain.add_greedy()
        else:
            if params.top_k > 0:
                chain.add_top_k(params.top_k)
            if params.top_p < 1.0:
                chain.add_top_p(params.top_p, 1)
            chain.add_temp(params.temperature)
            chain.add_dist(params.seed)
        return chain

    def _sample(self, logits: np.ndarray, chain: Any, grammar: Any, lazy: bool) -> tuple[int, int]:
        """Pick the next token; returns (token, 1 if the grammar ran on the full vocabulary else 0)."""
        lib = self._lib
        cand = self._candidates
        cand.copy_logits(logits)
        ptr = ctypes.byref(cand.candidates)
        if grammar is None or lazy:
            lib.llama_sampler_apply(chain.sampler, ptr)
            token = int(cand.candidates_data.id[cand.candidates.selected])
            if grammar is None:
                return token, 0
            one = self._single_data[0]
            one.id, one.logit, one.p = token, 1.0, 0.0
            self._single.size, self._single.selected, self._single.sorted = 1, -1, False
            lib.llama_sampler_apply(grammar, ctypes.byref(self._single))
            if np.isfinite(one.logit):
                return token, 0
            cand.copy_logits(logits)
        lib.llama_sampler_apply(grammar, ptr)
        lib.llama_sampler_apply(chain.sampler, ptr)
        return int(cand.candidates_data.id[cand.candidates.selected]), 1

    # --- re-scoring -------------------------------------------------------

    def rescore(self, prompt: str, candidate: str, top_k: int, *, candidate_batch: int = 128) -> RescoreResult:
        """Teacher-forced pass over prompt + candidate: log p and top-k membership of each candidate token.

        The candidate is tokenized on its own (as text, no special tokens), which is
        what a validator can do from the text alone; a producer whose sampled token
        sequence differs from that canonical tokenization loses a little logprob.
        `candidate_batch=1` decodes the candidate one token at a time, as generation
        does, and reproduces the producer's logprobs exactly, at generation cost.
        """
        return self.rescore_many(prompt, [candidate], top_k, candidate_batch=candidate_batch)[0]

    def rescore_many(
        self,
        prompt: str,
        candidates: Sequence[str],
        top_k: int,
        *,
        candidate_batch: int = 128,
        max_tokens: int | None = None,
    ) -> list[RescoreResult]:
        """`rescore` for several candidates of one prompt, prefilling the prompt once.

        Each candidate continues from the same prompt state (its positions are removed
        from the KV cache afterwards), so each result equals a separate `rescore`.
        `max_tokens` scores only each candidate's first tokens (a round trip needs no more).
        """
        with self._exclusive():
            t0 = time.perf_counter()
            p = self.tokenize_prompt(prompt)
            cands = [self.tokenize_text(c)[:max_tokens] for c in candidates]
            longest = max((len(c) for c in cands), default=0)
            if len(p) + longest > self.n_ctx:
                raise ContextOverflow(
                    f"prompt ({len(p)} tokens) + candidate ({longest} tokens) exceed the context of {self.n_ctx}"
                )
            ctx, batch, lib = self.llm._ctx, self.llm._batch, self._lib
            self.llm.reset()
            ctx.kv_cache_clear()
            results: list[RescoreResult] = []
            try:
                # Prompt: only the very last position's logits are needed (they predict each c[0]).
                pos = 0
                for i in range(0, len(p), self.n_batch):
                    chunk = p[i : i + self.n_batch]
                    batch.set_batch(chunk, n_past=pos, logits_all=False)
                    ctx.decode(batch)
                    pos += len(chunk)
                last = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx.ctx, -1), shape=(1, self.n_vocab)).copy()
                prompt_seconds = time.perf_counter() - t0
                for c in cands:
                    t1 = time.perf_counter()
                    logprobs: list[float] = []
                    hits = 0
                    if c:
                        lp, hits = score_rows(last, np.asarray(c[:1]), top_k)
                        logprobs.extend(lp)
                    # Candidate tokens but the last: row j of the logits predicts c[j + 1].
                    step = max(1, min(candidate_batch, self.n_batch))
                    for i in range(0, len(c) - 1, step):
                        chunk = c[i : min(i + step, len(c) - 1)]
                        batch.set_batch(chunk, n_past=pos + i, logits_all=True)
                        ctx.decode(batch)
                        targets = np.asarray(c[i + 1 : i + 1 + len(chunk)])
                        rows = np.ctypeslib.as_array(lib.llama_get_logits(ctx.ctx), shape=(len(chunk), self.n_vocab))
                        lp, h = score_rows(rows, targets, top_k)
                        logprobs.extend(lp)
                        hits += h
                    ctx.kv_cache_seq_rm(-1, pos, -1)
                    results.append(
                        RescoreResult(
                            n_tokens=len(c),
                            token_logprobs=tuple(logprobs),
                            topk_hits=hits,
                            prompt_tokens=len(p),
                            seconds=prompt_seconds + time.perf_counter() - t1,
                        )
                    )
            finally:
                self.llm.reset()
                ctx.kv_cache_clear()
            return results

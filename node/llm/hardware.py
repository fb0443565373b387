"""What this machine can run: RAM, cores, GPU offload, and the per-model plan.

Owns: detecting the hardware and turning (hardware, resolved models, config
overrides) into a `ModelPlan` per model to load: context size, threads, GPU
layers and slots. It must not load models; `engine.py` does that from a plan.

Rules, each from a measurement in docs/notes/llama.md ("Concurrency"):
- Threads are physical cores (limited by the CPU affinity mask) divided among
  slots, never more: oversubscribed cores collapse throughput.
- A slot is one `Llama` instance (weights + KV cache + compute buffers). On a
  CPU a second slot gains little for double the memory, so CPU nodes get one
  slot per `CORES_PER_CPU_SLOT` physical cores, and a GPU node gets one slot.
- `n_gpu_layers` (unless configured): -1 (everything) when the build can
  offload to a GPU that was found (`gpu.py` says which) and the model fits its
  free VRAM; as many layers as fit when it does not (the rest runs on the CPU);
  0 on a CPU build, or when the GPU build has no GPU it can drive. When no
  detection tool could run, llama.cpp's own answer (offload support) decides,
  as it did before GPU detection: llama.cpp then falls back to the CPU itself.
- With a GPU, models that fit its VRAM whole come first, largest first; then
  partly offloaded ones.

Physical cores stay the default thread count, and the OpenMP wait policy is left
alone; a volunteer whose machine is busy can set `n_threads = 1`
(docs/notes/llama.md#threads-on-a-shared-2-core-box).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from node.llm.gpu import GpuProbe, LlamaBuild, probe_gpus, usable_gpus
from node.llm.models import ResolvedModel

DEFAULT_N_CTX = 4096
"""A synthesize prompt (chunk <= 8000 chars, about 2000 tokens, plus instruction and template)
and its grammar-bounded output fit; larger contexts only cost KV memory."""

DEFAULT_N_BATCH = 512
CORES_PER_CPU_SLOT = 4
"""Physical cores per slot on a CPU-only node (so a 2-core box has one slot)."""

RAM_BUDGET_FRACTION = 0.75
"""Share of *available* RAM the node lets its models take; the rest is for the OS,
retrieval, and whatever the volunteer is doing."""

WEIGHTS_OVERHEAD = 1.15
COMPUTE_OVERHEAD_BYTES = 64 * 2**20
"""A loaded model takes about 1.15 x its file + KV cache + tens of MiB of buffers
(docs/notes/llama.md#memory-per-slot)."""

VRAM_BUDGET_FRACTION = 0.9
"""Share of *free* VRAM the node plans to fill (free VRAM already excludes the desktop's share)."""
GPU_RESERVE_BYTES = 512 * 2**20
"""VRAM kept for the CUDA/Vulkan context and llama.cpp's compute buffers: an estimate, not measured
(docs/notes/llama.md#memory-per-slot)."""

Q4_K_M_SIZES: tuple[tuple[str, int, int], ...] = (
    # (size class, GGUF file bytes, f16 KV cache bytes at n_ctx 4096)
    ("70B", 42_500_000_000, 1_340_000_000),  # Llama 3.1 70B: 80 layers, 8 KV heads x 128
    ("32B", 19_900_000_000, 1_070_000_000),  # Qwen2.5 32B: 64 layers, 8 x 128
    ("14B", 9_000_000_000, 805_000_000),  # Qwen2.5 14B: 48 layers, 8 x 128
    ("8B", 4_900_000_000, 537_000_000),  # Llama 3.1 8B: 32 layers, 8 x 128
    ("3B", 2_000_000_000, 470_000_000),  # Llama 3.2 3B: 28 layers, 8 x 128
    ("1B", 810_000_000, 134_000_000),  # Llama 3.2 1B: 16 layers, 8 x 64
)
"""Common Q4_K_M GGUFs (instruct quantizations on the Hugging Face hub) and their KV cache from each
model's layer and KV-head counts, for telling a volunteer which model size their GPU holds."""


@dataclass(frozen=True)
class Hardware:
    total_ram: int
    available_ram: int
    physical_cores: int
    logical_cores: int
    usable_cores: int
    """Physical cores this process may use (the affinity mask can hide some)."""
    cpu_features: tuple[str, ...]
    gpu_offload: bool
    """llama.cpp's `llama_supports_gpu_offload()`: the build can offload, whether or not a GPU is there."""
    vram_free: int | None
    """Free memory of the GPUs the build can drive, in bytes, when the tools report it, else None."""
    system_info: str
    gpu_backends: tuple[str, ...] = ()
    """GPU backends of the llama.cpp build ("cuda", "vulkan", ...)."""
    gpu_probe: GpuProbe | None = None
    """What the vendor tools found; None when not probed (then only `gpu_offload` counts)."""

    @property
    def build(self) -> LlamaBuild:
        return LlamaBuild(self.gpu_offload, self.gpu_backends, self.system_info)

    @property
    def offload(self) -> bool:
        """Whether models go on the GPU by default (the rules in the module docstring)."""
        if not self.gpu_offload:
            return False
        probe = self.gpu_probe
        if probe is None or usable_gpus(probe, self.build):
            return True
        # No GPU and no tool that could have seen one: llama.cpp's own answer is all there is.
        return not probe.gpus and all(t.status == "missing" for t in probe.tools)


def detect_hardware() -> Hardware:
    """Probe the machine. Loads the llama.cpp shared library (cheap), no model; runs the GPU tools (seconds)."""
    from node.llm.backend import llama_build_info

    logical = psutil.cpu_count(logical=True) or 1
    physical = psutil.cpu_count(logical=False) or logical
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        allowed = logical
    # With SMT, the affinity mask counts logical CPUs; scale to physical ones.
    usable = max(1, min(physical, allowed * physical // logical))
    vm = psutil.virtual_memory()
    build = llama_build_info()
    probe = probe_gpus()
    frees = [g.vram_free for g in usable_gpus(probe, build)]
    # llama.cpp splits layers over all the GPUs it drives, so their free memory adds up.
    vram_free = sum(f for f in frees if f is not None) if frees and None not in frees else None
    return Hardware(
        total_ram=vm.total,
        available_ram=vm.available,
        physical_cores=physical,
        logical_cores=logical,
        usable_cores=usable,
        cpu_features=parse_cpu_features(build.system_info),
        gpu_offload=build.gpu_offload,
        vram_free=vram_free,
        system_info=build.system_info,
        gpu_backends=build.backends,
        gpu_probe=probe,
    )


def parse_cpu_features(system_info: str) -> tuple[str, ...]:
    """`'CPU : SSE3 = 1 | AVX2 = 1 | ...'` -> ('AVX2', 'SSE3', ...), the features turned on."""
    return tuple(sorted(set(re.findall(r"([A-Za-z0-9_]+) = 1\b", system_info))))


@dataclass(frozen=True)
class ModelPlan:
    model: ResolvedModel
    n_ctx: int
    n_threads: int
    """Threads per slot (generation and prompt processing alike)."""
    n_gpu_layers: int
    slots: int
    n_batch: int
    est_bytes: int
    """Estimated memory of all slots together."""
    gpu_bytes: int = 0
    """The part of `est_bytes` in VRAM (the offloaded layers and the GPU reserve)."""

    @property
    def partial_offload(self) -> bool:
        return self.n_gpu_layers > 0 and self.n_gpu_layers <= self.model.info.block_count


def estimate_slot_bytes(model: ResolvedModel, n_ctx: int) -> int:
    """Memory one `Llama` instance of `model` takes with an `n_ctx` context."""
    return int(model.size * WEIGHTS_OVERHEAD) + model.info.kv_cache_bytes(n_ctx) + COMPUTE_OVERHEAD_BYTES


def plan_model(
    model: ResolvedModel,
    hw: Hardware,
    *,
    n_ctx: int | None = None,
    slots: int | None = None,
    n_threads: int | None = None,
    n_gpu_layers: int | None = None,
) -> ModelPlan:
    """The settings to load `model` with on `hw`; explicit arguments override the automatic choice."""
    ctx = n_ctx or DEFAULT_N_CTX
    if model.info.context_length:
        ctx = min(ctx, model.info.context_length)
    if n_gpu_layers is not None:
        gpu_layers = n_gpu_layers
    else:
        gpu_layers = gpu_layers_that_fit(model, ctx, hw.vram_free) if hw.offload else 0
    if slots is None:
        slots = 1 if gpu_layers != 0 else max(1, hw.usable_cores // CORES_PER_CPU_SLOT)
        per_slot = estimate_slot_bytes(model, ctx)
        budget = _budget(hw, gpu_layers)
        slots = max(1, min(slots, budget // max(per_slot, 1)))
    # Never oversubscribe: slots x threads <= usable physical cores.
    slots = max(1, min(slots, hw.usable_cores)) if gpu_layers == 0 else max(1, slots)
    threads = n_threads or max(1, hw.usable_cores // slots)
    est = slots * estimate_slot_bytes(model, ctx)
    if gpu_layers == 0:
        on_gpu = 0
    elif gpu_layers < 0 or gpu_layers > model.info.block_count:
        on_gpu = est
    else:
        on_gpu = min(est, slots * (gpu_layers * _layer_bytes(model, ctx) + GPU_RESERVE_BYTES))
    return ModelPlan(
        model=model,
        n_ctx=ctx,
        n_threads=threads,
        n_gpu_layers=gpu_layers,
        slots=slots,
        n_batch=DEFAULT_N_BATCH,
        est_bytes=est,
        gpu_bytes=on_gpu,
    )


def _layer_bytes(model: ResolvedModel, n_ctx: int) -> int:
    """Weights and KV cache of one repeating layer; the output layer counts as one more."""
    layers = max(1, model.info.block_count)
    return int(model.size * WEIGHTS_OVERHEAD / (layers + 1)) + model.info.kv_cache_bytes(n_ctx) // layers


def gpu_layers_that_fit(model: ResolvedModel, n_ctx: int, vram_free: int | None) -> int:
    """n_gpu_layers for one slot of `model` in `vram_free`: -1 when it all fits (or VRAM is unknown), else
    the number of layers that fit (0: none). llama.cpp offloads the output layer too once n_gpu_layers
    exceeds the repeating layers, so "all" is block_count + 1 layers."""
    if vram_free is None:
        return -1
    budget = int(vram_free * VRAM_BUDGET_FRACTION) - GPU_RESERVE_BYTES
    layers = model.info.block_count
    if layers <= 0:  # a header without the count: all or nothing
        return -1 if estimate_slot_bytes(model, n_ctx) <= budget else 0
    fit = max(0, budget) // max(1, _layer_bytes(model, n_ctx))
    return -1 if fit >= layers + 1 else int(fit)


def largest_model_class(vram_free: int) -> str | None:
    """The largest common model size ("8B") whose Q4_K_M GGUF fits `vram_free` whole, or None."""
    budget = vram_free * VRAM_BUDGET_FRACTION - GPU_RESERVE_BYTES
    return next((name for name, size, kv in Q4_K_M_SIZES if size * WEIGHTS_OVERHEAD + kv <= budget), None)


def _budget(hw: Hardware, gpu_layers: int) -> int:
    if gpu_layers != 0 and hw.vram_free is not None:
        return int(hw.vram_free * VRAM_BUDGET_FRACTION)
    return int(hw.available_ram * RAM_BUDGET_FRACTION)


def _split(plan: ModelPlan, hw: Hardware) -> tuple[int, int]:
    """(host bytes, VRAM bytes) of a plan. With VRAM unknown, all of it is counted against RAM."""
    if hw.vram_free is None:
        return plan.est_bytes, 0
    return plan.est_bytes - plan.gpu_bytes, plan.gpu_bytes


def fits(plan: ModelPlan, hw: Hardware) -> bool:
    host, vram = _split(plan, hw)
    return host <= _budget(hw, 0) and (hw.vram_free is None or vram <= _budget(hw, -1))


def choose_models(
    plans: Sequence[ModelPlan], hw: Hardware, *, max_models: int = 1
) -> tuple[list[ModelPlan], list[str]]:
    """Pick the largest models that fit together; return them and a reason for each one left out.

    With offload and unknown VRAM the RAM budget is used: llama.cpp keeps a host
    copy of mmap'd weights anyway, and a load that then fails on the GPU is
    reported by `doctor`. With VRAM known, a plan's offloaded part counts
    against VRAM and the rest against RAM; plans that fit the GPU whole come
    before partly offloaded ones (a model split over PCIe is much slower).
    """
    chosen: list[ModelPlan] = []
    skipped: list[str] = []
    used = used_vram = 0
    ram_budget, vram_budget = _budget(hw, 0), _budget(hw, -1)
    for plan in sorted(plans, key=lambda p: (p.partial_offload, -p.model.size, p.model.name)):
        host, vram = _split(plan, hw)
        if len(chosen) >= max_models:
            skipped.append(f"{plan.model.name}: not loaded, {max_models} model(s) already chosen")
        elif hw.vram_free is not None and used_vram + vram > vram_budget:
            skipped.append(
                f"{plan.model.name}: needs about {vram / 2**20:.0f} MiB of VRAM, "
                f"only {(vram_budget - used_vram) / 2**20:.0f} MiB is left"
            )
        elif used + host > ram_budget:
            skipped.append(
                f"{plan.model.name}: needs about {host / 2**20:.0f} MiB, "
                f"only {(ram_budget - used) / 2**20:.0f} MiB of the memory budget is left"
            )
        else:
            chosen.append(plan)
            used += host
            used_vram += vram
    return chosen, skipped

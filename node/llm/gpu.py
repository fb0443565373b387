"""GPUs on this machine, and whether the installed llama.cpp build can use them.

Owns: running the vendor tools (nvidia-smi, rocm-smi, vulkaninfo, and
system_profiler + sysctl on macOS) with a short timeout; parsing what they
print into `Gpu`s; reading which GPU backends a llama.cpp build carries; and
`gpu_advice`, the rule that says whether a GPU will be used and, when not, the
one command that fixes it. Parsing and advice are pure functions over text, so
tests run them on recorded outputs (tests/node/fixtures/gpu/) on any machine.
Must not: import llama_cpp (`backend.llama_build_info` reports the build), load
models, or print. The only I/O is `run_tool` and `probe_gpus`.

Advice rules (a GPU "can be driven" by a build when the build offloads and
carries a backend for that vendor; a build whose backends cannot be read is
assumed to match):
- GPU found, build drives it -> ok, offload.
- GPU found, CPU-only build -> warn; fix `make install LLAMA_BACKEND=<backend for the GPU>`.
- GPU found, GPU build for another vendor (a CUDA wheel on an AMD card) -> warn; same fix.
- GPU build, no GPU found -> warn; fix: the driver when a vendor tool is installed but
  failed, else `make install LLAMA_BACKEND=cpu`. (The plan then runs on the CPU, unless no
  tool could look at all: see `hardware.Hardware.offload`.)
- no GPU, CPU build -> info (nothing to fix), or warn when a vendor tool failed (a driver problem).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Vendor = Literal["nvidia", "amd", "apple", "intel", "other"]
ToolStatus = Literal["ok", "missing", "failed", "timeout"]

TOOL_TIMEOUT_S = 5.0
"""vulkaninfo on a broken driver and nvidia-smi on a wedged GPU can hang; doctor and start must not."""

MIB = 2**20

BACKENDS = ("cpu", "cuda", "hip", "vulkan", "metal")
"""The values of `make install LLAMA_BACKEND=...` (see the Makefile)."""

DRIVES: dict[str, frozenset[str]] = {
    # llama.cpp backend -> the vendors whose GPUs it can offload to.
    "cuda": frozenset({"nvidia"}),
    "hip": frozenset({"amd"}),
    "metal": frozenset({"apple", "amd", "intel"}),  # Metal also drives the AMD/Intel GPUs of Intel Macs
    "vulkan": frozenset({"nvidia", "amd", "intel", "apple", "other"}),
}

VULKAN_VENDOR_IDS: dict[str, Vendor] = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel", "0x106b": "apple"}
MAC_VENDORS: dict[str, Vendor] = {"apple": "apple", "amd": "amd", "ati": "amd", "intel": "intel", "nvidia": "nvidia"}


@dataclass(frozen=True)
class Gpu:
    vendor: Vendor
    name: str
    source: str
    """The tool that reported it."""
    vram_total: int | None = None
    """Bytes; None when the tool does not say (vulkaninfo --summary)."""
    vram_free: int | None = None
    driver: str = ""
    unified_memory: bool = False
    """Apple silicon: the GPU uses system RAM, so the RAM budget applies."""


@dataclass(frozen=True)
class ToolRun:
    tool: str
    status: ToolStatus
    output: str = ""
    """stdout when ok; the first line of stderr (or the exit code) when failed."""


@dataclass(frozen=True)
class GpuProbe:
    gpus: tuple[Gpu, ...]
    tools: tuple[ToolRun, ...] = ()

    def tool(self, name: str) -> ToolRun | None:
        return next((t for t in self.tools if t.tool == name), None)


@dataclass(frozen=True)
class LlamaBuild:
    """What the installed llama-cpp-python was compiled with (from `backend.llama_build_info`)."""

    gpu_offload: bool
    """`llama_supports_gpu_offload()`."""
    backends: tuple[str, ...] = ()
    """GPU backends compiled in ("cuda", "vulkan", ...); () for a CPU build or when unreadable."""
    system_info: str = ""


# --- parsing (pure) -----------------------------------------------------------


def _mib(value: str) -> int | None:
    value = value.strip()
    return int(float(value) * MIB) if re.fullmatch(r"\d+(\.\d+)?", value) else None


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv,noheader,nounits`.

    One line per GPU, sizes in MiB; fields a GPU cannot report read "[N/A]" (Jetson, some MIG setups).
    """
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 3)]  # from the right: a name may hold a comma
        if len(parts) != 4 or not parts[0]:
            continue
        name, total, free, driver = parts
        gpus.append(Gpu("nvidia", name, "nvidia-smi", _mib(total), _mib(free), driver))
    return gpus


def parse_rocm_smi(text: str) -> list[Gpu]:
    """`rocm-smi --showproductname --showmeminfo vram --json`.

    Shape: {"card0": {"Card Series": ..., "VRAM Total Memory (B)": ..., "VRAM Total Used Memory (B)": ...}}.

    Key spelling varies between ROCm releases ("Card series" / "Card Series"), so keys are matched
    case-insensitively; the "system" entry is skipped.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    gpus = []
    for card, fields in sorted(data.items()):
        if not re.fullmatch(r"card\d+", card) or not isinstance(fields, dict):
            continue
        f = {str(k).lower(): str(v).strip() for k, v in fields.items()}
        names = ("card series", "device name", "card model", "gfx version")
        name = next((f[k] for k in names if f.get(k, "n/a").lower() not in ("n/a", "")), card)
        total = int(f["vram total memory (b)"]) if f.get("vram total memory (b)", "").isdigit() else None
        used = int(f["vram total used memory (b)"]) if f.get("vram total used memory (b)", "").isdigit() else None
        free = total - used if total is not None and used is not None else None
        gpus.append(Gpu("amd", name, "rocm-smi", total, free, f.get("driver version", "")))
    return gpus


def parse_vulkaninfo_summary(text: str) -> list[Gpu]:
    """`vulkaninfo --summary`: the `GPUn:` blocks under "Devices:"; CPU renderers (llvmpipe) are skipped.

    The summary has no memory sizes, so VRAM stays unknown.
    """
    blocks: list[dict[str, str]] = []
    for line in text.splitlines():
        if re.fullmatch(r"\s*GPU\d+:\s*", line):
            blocks.append({})
        elif blocks and (m := re.fullmatch(r"\s+(\w+)\s*=\s*(.*?)\s*", line)):
            blocks[-1][m.group(1)] = m.group(2)
    gpus = []
    for b in blocks:
        if b.get("deviceType", "") == "PHYSICAL_DEVICE_TYPE_CPU" or "deviceName" not in b:
            continue
        vendor = VULKAN_VENDOR_IDS.get(b.get("vendorID", "").lower(), "other")
        gpus.append(Gpu(vendor, b["deviceName"], "vulkaninfo", driver=b.get("driverInfo", "")))
    return gpus


def parse_system_profiler(text: str, memsize: int | None = None) -> list[Gpu]:
    """`system_profiler SPDisplaysDataType` on macOS: one "Chipset Model:" per GPU.

    Apple silicon reports no VRAM (memory is unified): its size is `memsize`
    (`sysctl -n hw.memsize`). An Intel Mac's discrete GPU reports "VRAM (Total): 4 GB".
    """
    gpus: list[Gpu] = []
    current: dict[str, str] = {}

    def flush() -> None:
        if not current.get("chipset model"):
            return
        name = current["chipset model"]
        m = re.search(r"\b(apple|amd|ati|intel|nvidia)\b", current.get("vendor", name).lower())
        vendor = MAC_VENDORS.get(m.group(1), "other") if m else "other"
        vram = next((current[k] for k in current if k.startswith("vram")), "")
        size = _size(vram)
        unified = vendor == "apple" and size is None
        gpus.append(Gpu(vendor, name, "system_profiler", memsize if unified else size, None, "", unified))

    for line in text.splitlines():
        m = re.fullmatch(r"\s*([^:]+):\s*(.*?)\s*", line)
        if not m:
            continue
        key, value = m.group(1).strip().lower(), m.group(2)
        if key == "chipset model":
            flush()
            current = {}
        current.setdefault(key, value)
    flush()
    return gpus


def _size(text: str) -> int | None:
    m = re.search(r"(\d+(?:\.\d+)?)\s*(GB|MB)", text)
    if not m:
        return None
    return int(float(m.group(1)) * (2**30 if m.group(2) == "GB" else MIB))


def parse_sysctl_memsize(text: str) -> int | None:
    """`sysctl -n hw.memsize` -> bytes."""
    value = text.strip()
    return int(value) if value.isdigit() else None


def build_backends(libraries: Sequence[str], system_info: str = "") -> tuple[str, ...]:
    """GPU backends of a llama.cpp build, from its library file names (libggml-cuda.so, ...) and system info."""
    found = set()
    for lib in libraries:
        if m := re.match(r"(?:lib)?ggml-(cuda|hip|vulkan|metal)\b", lib):
            found.add(m.group(1))
    for name, backend in (("CUDA", "cuda"), ("ROCm", "hip"), ("HIP", "hip"), ("Vulkan", "vulkan"), ("Metal", "metal")):
        if re.search(rf"\b{name}\s*:", system_info):
            found.add(backend)
    return tuple(sorted(found))


# --- advice (pure) --------------------------------------------------------------


def backend_for(gpu: Gpu, probe: GpuProbe, platform: str = sys.platform) -> str:
    """The LLAMA_BACKEND to build for `gpu`."""
    if platform == "darwin":
        return "metal"
    if gpu.vendor == "nvidia":
        return "cuda"
    rocm = probe.tool("rocm-smi")
    if gpu.vendor == "amd" and rocm is not None and rocm.status == "ok":
        return "hip"  # ROCm is installed: HIP is its native path
    return "vulkan"


def drives(build: LlamaBuild, gpu: Gpu) -> bool:
    if not build.gpu_offload:
        return False
    if not build.backends:
        return True  # cannot tell which backend: trust llama_supports_gpu_offload()
    return any(gpu.vendor in DRIVES.get(b, frozenset()) for b in build.backends)


def usable_gpus(probe: GpuProbe, build: LlamaBuild) -> tuple[Gpu, ...]:
    return tuple(g for g in probe.gpus if drives(build, g))


def install_command(backend: str) -> str:
    return f"make install LLAMA_BACKEND={backend}"


def pip_command(backend: str, version: str = "0.3.36") -> str:
    """The same rebuild without the Makefile (a `pip install .` checkout, a container)."""
    flag = {"cuda": "-DGGML_CUDA=on", "hip": "-DGGML_HIP=on", "vulkan": "-DGGML_VULKAN=on", "metal": "-DGGML_METAL=on"}
    args = flag.get(backend, "-DGGML_NATIVE=OFF")
    return f'CMAKE_ARGS="{args}" pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python=={version}'


AdviceState = Literal["offload", "cpu_build", "wrong_backend", "no_gpu", "none", "driver"]


@dataclass(frozen=True)
class GpuAdvice:
    state: AdviceState
    summary: str
    fix: str = ""
    """One command (or one instruction) that fixes it; empty when nothing needs fixing."""
    backend: str | None = None
    """The LLAMA_BACKEND the fix builds."""
    usable: tuple[Gpu, ...] = ()
    data: dict[str, object] = field(default_factory=dict)

    @property
    def needs_fix(self) -> bool:
        return bool(self.fix)


def describe(gpu: Gpu) -> str:
    if gpu.unified_memory:
        mem = f", {gpu.vram_total / 2**30:.0f} GiB unified memory" if gpu.vram_total else ", unified memory"
    elif gpu.vram_total is not None:
        free = f", {gpu.vram_free / 2**30:.1f} GiB free" if gpu.vram_free is not None else ""
        mem = f" ({gpu.vram_total / 2**30:.1f} GiB{free})"
    else:
        mem = ""
    return f"{gpu.name}{mem}"


def _failed_tools(probe: GpuProbe) -> list[ToolRun]:
    return [t for t in probe.tools if t.status in ("failed", "timeout")]


def gpu_advice(probe: GpuProbe, build: LlamaBuild, platform: str = sys.platform) -> GpuAdvice:
    """Whether this node will offload to a GPU, and if not, the one command that fixes it (see the module rules)."""
    tools = {t.tool: t.status for t in probe.tools}
    data: dict[str, object] = {
        "offload": build.gpu_offload,
        "build_backends": list(build.backends),
        "gpus": [describe(g) for g in probe.gpus],
        "tools": tools,
    }
    built = ", ".join(b.upper() for b in build.backends) or "GPU"
    usable = usable_gpus(probe, build)
    if usable:
        names = "; ".join(describe(g) for g in usable)
        return GpuAdvice("offload", f"llama.cpp ({built}) will offload to {names}", usable=usable, data=data)
    failed = _failed_tools(probe)
    if probe.gpus:
        gpu = probe.gpus[0]
        backend = backend_for(gpu, probe, platform)
        data["pip_command"] = pip_command(backend)
        if not build.gpu_offload:
            return GpuAdvice(
                "cpu_build",
                f"{describe(gpu)} found, but this llama-cpp-python build is CPU-only: models run on the CPU",
                install_command(backend),
                backend,
                data=data,
            )
        return GpuAdvice(
            "wrong_backend",
            f"{describe(gpu)} found, but this llama.cpp build offloads with {built}, which cannot drive it",
            install_command(backend),
            backend,
            data=data,
        )
    why = ", ".join(f"{t.tool}: {t.status}" for t in probe.tools) or "no detection tool ran"
    if build.gpu_offload:
        fix = (
            f"Repair the GPU driver until `{failed[0].tool}` works ({failed[0].output or failed[0].status})"
            if failed
            else install_command("cpu")
        )
        return GpuAdvice(
            "no_gpu",
            f"this llama.cpp build offloads ({built}) but no GPU was found ({why}): models run on the CPU",
            fix,
            None if failed else "cpu",
            data=data,
        )
    if failed:
        return GpuAdvice(
            "driver",
            f"{failed[0].tool} is installed but {failed[0].status} ({failed[0].output}): no GPU can be used",
            f"Repair the GPU driver until `{failed[0].tool}` lists the GPU, then run this doctor again.",
            data=data,
        )
    return GpuAdvice("none", f"no GPU found ({why}): models run on the CPU", data=data)


# --- detection (I/O) ------------------------------------------------------------

Runner = Callable[[list[str], float], "subprocess.CompletedProcess[str]"]


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def run_tool(
    argv: list[str],
    *,
    timeout: float = TOOL_TIMEOUT_S,
    which: Callable[[str], str | None] = shutil.which,
    runner: Runner = _run,
) -> ToolRun:
    """Run one detection tool; never raises (a missing, failing or hanging tool is a status)."""
    tool = argv[0]
    exe = which(tool)
    if exe is None:
        return ToolRun(tool, "missing")
    try:
        done = runner([exe, *argv[1:]], timeout)
    except subprocess.TimeoutExpired:
        return ToolRun(tool, "timeout", f"no answer in {timeout:.0f} s")
    except OSError as exc:
        return ToolRun(tool, "failed", str(exc))
    if done.returncode != 0:
        first = next((line.strip() for line in (done.stderr or done.stdout or "").splitlines() if line.strip()), "")
        return ToolRun(tool, "failed", first or f"exit code {done.returncode}")
    return ToolRun(tool, "ok", done.stdout)


NVIDIA_SMI = ["nvidia-smi", "--query-gpu=name,memory.total,memory.free,driver_version", "--format=csv,noheader,nounits"]
ROCM_SMI = ["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json"]
VULKANINFO = ["vulkaninfo", "--summary"]
SYSTEM_PROFILER = ["system_profiler", "SPDisplaysDataType"]
SYSCTL_MEMSIZE = ["sysctl", "-n", "hw.memsize"]


def probe_gpus(
    platform: str = sys.platform,
    *,
    which: Callable[[str], str | None] = shutil.which,
    runner: Runner = _run,
) -> GpuProbe:
    """Ask the vendor tools what GPUs there are (a few seconds at most per tool)."""

    def run(argv: list[str]) -> ToolRun:
        return run_tool(argv, which=which, runner=runner)

    runs: list[ToolRun] = []
    gpus: list[Gpu] = []
    if platform == "darwin":
        profiler, sysctl = run(SYSTEM_PROFILER), run(SYSCTL_MEMSIZE)
        runs += [profiler, sysctl]
        memsize = parse_sysctl_memsize(sysctl.output) if sysctl.status == "ok" else None
        if profiler.status == "ok":
            gpus += parse_system_profiler(profiler.output, memsize)
        return GpuProbe(tuple(gpus), tuple(runs))
    for argv, parse in ((NVIDIA_SMI, parse_nvidia_smi), (ROCM_SMI, parse_rocm_smi)):
        r = run(argv)
        runs.append(r)
        if r.status == "ok":
            gpus += parse(r.output)
    if not gpus:
        # Only when the vendor tools found nothing: vulkaninfo would list the same cards again,
        # without their memory; it is what finds Intel and other GPUs.
        r = run(VULKANINFO)
        runs.append(r)
        if r.status == "ok":
            gpus += parse_vulkaninfo_summary(r.output)
    return GpuProbe(tuple(gpus), tuple(runs))

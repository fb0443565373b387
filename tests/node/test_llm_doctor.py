"""`node doctor`, LLM part: findings about hardware, models, plan, disk and speed, each problem with a fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from node.config import NodeConfig
from node.doctor import Finding, Severity, disk_findings, hardware_findings, llm_findings, model_findings
from node.llm.engine import EngineSettings
from node.llm.gpu import Gpu, GpuProbe, ToolRun
from node.llm.hardware import detect_hardware
from tests.node.test_llm_hardware import machine


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


async def test_llm_findings_on_this_machine(tmp_path: Path) -> None:
    settings = EngineSettings(
        models=("smollm2-135m", str(tmp_path / "missing.gguf")), cache_dir=tmp_path, n_threads=1, n_ctx=1024
    )
    findings = await llm_findings(settings)
    checks = by_check(findings)
    assert checks["hardware.ram"].severity is Severity.OK
    assert checks["gpu"].severity in (Severity.OK, Severity.INFO)
    good = checks["model.smollm2-135m"]
    assert good.severity is Severity.OK and len(good.data["sha256"]) == 64
    bad = checks[f"model.{tmp_path / 'missing.gguf'}"]
    assert bad.severity is Severity.ERROR and "does not exist" in bad.summary and bad.fix
    assert checks["plan.smollm2-135m"].data["slots"] >= 1
    speed = checks["speed.smollm2-135m"]
    assert speed.data["tok_s"] > 0
    assert any(f.check.startswith("disk.") for f in findings)
    # Every problem says how to fix it.
    assert all(f.fix for f in findings if f.severity in (Severity.WARN, Severity.ERROR))


def test_oversubscribed_threads_are_flagged(tmp_path: Path) -> None:
    settings = EngineSettings(n_threads=8, slots=2, cache_dir=tmp_path)
    findings, plans = model_findings(settings, machine(cores=2))
    warning = by_check(findings)["plan.smollm2-135m.threads"]
    assert warning.severity is Severity.WARN and "oversubscribed" in warning.summary and warning.fix
    assert plans and plans[0].n_threads == 8


def test_no_usable_model_is_an_error_with_a_fix(tmp_path: Path) -> None:
    findings, plans = model_findings(EngineSettings(models=("acme/nothing",), cache_dir=tmp_path), machine())
    assert plans == []
    assert by_check(findings)["plan"].severity is Severity.ERROR
    assert "smollm2-135m" in by_check(findings)["plan"].fix


def test_gpu_present_without_offload_support_is_a_warning() -> None:
    rtx = Gpu("nvidia", "NVIDIA GeForce RTX 3060", "nvidia-smi", 12 * 2**30, 11 * 2**30)
    hw = dataclasses.replace(machine(), gpu_probe=GpuProbe((rtx,), (ToolRun("nvidia-smi", "ok"),)))
    gpu = by_check(hardware_findings(hw))["gpu"]
    assert gpu.severity is Severity.WARN and gpu.fix == "make install LLAMA_BACKEND=cuda"
    assert "GGML_CUDA" in str(gpu.data["pip_command"])
    no_avx2 = dataclasses.replace(hw, cpu_features=("SSE3",))
    assert by_check(hardware_findings(no_avx2))["hardware.cpu.avx2"].severity is Severity.WARN


def test_low_disk_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import node.doctor as doctor

    (ok,) = disk_findings([tmp_path / "not" / "yet" / "created"])
    assert ok.data["free"] > 0
    monkeypatch.setattr(doctor, "MIN_FREE_DISK", 1 << 62)
    (low,) = disk_findings([tmp_path])
    assert low.severity is Severity.WARN and "Free at least" in low.fix


def test_engine_settings_from_the_node_config(tmp_path: Path) -> None:
    config = NodeConfig(models=["smollm2-135m", "/x.gguf"], slots=2, n_threads=1, n_gpu_layers=0)
    settings = EngineSettings.from_node_config(config, cache_dir=tmp_path)
    assert settings.models == ("smollm2-135m", "/x.gguf")
    assert (settings.slots, settings.n_threads, settings.n_gpu_layers, settings.cache_dir) == (2, 1, 0, tmp_path)
    assert detect_hardware().usable_cores >= 1

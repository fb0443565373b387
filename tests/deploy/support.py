"""Helpers for the deploy tests: the documented files, rendered configs, and real processes.

Owns: locating deploy/, turning an example TOML into a runnable one by rewriting only the
settings a test must change (every other line, comments included, stays as documented),
starting `dataswarm` processes with a hermetic environment, and stopping only those.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NODE_EXAMPLE = DEPLOY / "config" / "node.example.toml"
COORDINATOR_EXAMPLE = DEPLOY / "config" / "coordinator.example.toml"
ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"
HEALTHCHECK = DEPLOY / "healthcheck.py"
BACKUP = DEPLOY / "backup.py"

SETTING_LINE = re.compile(r"^(#\s?)?([a-z_][a-z0-9_]*) = (.*)$", re.M)
"""`name = value`, or `# name = value` for a documented setting that is off."""


def settings_in(text: str) -> dict[str, bool]:
    """Setting name -> whether it is on (uncommented), for every `[# ]name = ...` line."""
    found: dict[str, bool] = {}
    for m in SETTING_LINE.finditer(text):
        found[m.group(2)] = found.get(m.group(2), False) or m.group(1) is None
    return found


def uncomment_all(text: str) -> str:
    return SETTING_LINE.sub(lambda m: f"{m.group(2)} = {m.group(3)}", text)


def render_config(example: Path, **values: object) -> str:
    """The example with each named setting set (its first line, on or off, replaced)."""
    text = example.read_text()
    for key, value in values.items():
        pattern = re.compile(rf"^(#\s?)?{re.escape(key)} = .*$", re.M)
        m = pattern.search(text)
        assert m, f"{example.name} does not document {key!r}"
        # JSON strings, lists, numbers and booleans are valid TOML values.
        text = text[: m.start()] + f"{key} = {json.dumps(value)}" + text[m.end() :]
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dataswarm_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("dataswarm")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli"]


def hermetic_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any DATASWARM_* setting, with XDG dirs under `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATASWARM_", "COMPOSE_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",  # rich wraps long lines (multiaddrs) at 80 columns otherwise
    )
    env.update(extra)
    return env


def run(cmd: list[str], env: dict[str, str], timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stopped: bool = False
    """Stopped on purpose: its exit is not a failure."""

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, n: int = 3000) -> str:
        return f"--- {self.name} ({self.log}) ---\n{self.output()[-n:]}"


@dataclass
class Procs:
    """Processes a test started; `stop_all` ends them (and only them)."""

    logdir: Path
    started: list[Proc] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> Proc:
        log = self.logdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.started)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            dead = [p for p in self.started if not p.stopped and p.popen.poll() not in (0, None)]
            if dead:
                pytest.fail(
                    f"{dead[0].name} exited ({dead[0].popen.returncode}) while waiting for {what}\n{self.tails()}"
                )
            time.sleep(0.2)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.tails()}")

    def interrupt(self, proc: Proc, timeout: float = 10) -> float:
        """Ctrl-C (what `docker stop` sends, see STOPSIGNAL); seconds until it exited."""
        started = time.monotonic()
        proc.stopped = True
        os.killpg(proc.popen.pid, signal.SIGINT)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()
            pytest.fail(f"{proc.name} ignored SIGINT for {timeout} s\n{proc.tail()}")
        return time.monotonic() - started

    def stop_all(self) -> None:
        for p in self.started:
            if p.popen.poll() is None:
                os.killpg(p.popen.pid, signal.SIGINT)
        deadline = time.monotonic() + 10
        for p in self.started:
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait()


def need_tool(name: str, install: str) -> str:
    """Path of `name`; skip the test when it is missing, but fail under CI (naming the install step)."""
    path = shutil.which(name) or (shutil.which(name, path=str(Path(sys.executable).parent)))
    if path:
        return path
    message = f"{name} is not installed: {install}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must install it: see .ci/run)")
    pytest.skip(message)

"""Run `dataswarm demo` as a real process for an e2e test, and say what went wrong when it fails.

The demo is stopped with SIGINT when it runs past its time, so it stops its nodes and keeps their logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class DemoRun:
    out: Path
    work: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def diagnosis(self) -> str:
        """What a failing run leaves behind: the demo's output, then the warnings of every process."""
        parts = [f"exit code {self.returncode} after {self.seconds:.0f} s", self.stdout[-3000:], self.stderr[-3000:]]
        for log in sorted(self.work.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()
            notable = [line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]
            parts.append(f"--- {log.name}: {len(lines)} lines, last warnings/errors:")
            parts.extend(notable[-40:] or lines[-20:])
        return "\n".join(parts)


def run_demo(base: Path, args: list[str], *, timeout_s: float) -> DemoRun:
    """`dataswarm demo ARGS --out base/dataset --workdir base/work`, waited for up to `timeout_s`."""
    out, work = base / "dataset", base / "work"
    started = time.monotonic()
    with open(base / "stdout.txt", "w+") as stdout, open(base / "stderr.txt", "w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "demo", *args, "--out", str(out), "--workdir", str(work)],
            stdout=stdout, stderr=stderr, text=True, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = -1
        stdout.seek(0)
        stderr.seek(0)
        return DemoRun(out, work, code, stdout.read(), stderr.read(), time.monotonic() - started)

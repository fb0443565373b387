"""Node processes for an e2e test: started with their output in a log file, and checked for an early exit."""

from __future__ import annotations

import subprocess
from pathlib import Path


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def check_alive(procs: list[subprocess.Popen[bytes]], workdir: Path) -> None:
    """Raise with the tail of every log when a node process has exited (it failed to start)."""
    for p in procs:
        if p.poll() is not None:
            logs = "\n".join(f.read_text(errors="replace")[-1500:] for f in workdir.glob("*.log"))
            raise AssertionError(f"a node process exited at start-up: {str(p.args)[:300]}\n{logs}")

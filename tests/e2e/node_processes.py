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


def notable_logs(workdir: Path) -> str:
    """The warnings, errors and tracebacks of every node log in `workdir` (else each log's tail)."""
    parts = []
    for log in sorted(workdir.glob("node-*.log")):
        lines = log.read_text(errors="replace").splitlines()
        notable = [line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]
        parts += [f"--- {log.name}", *(notable[-30:] or lines[-20:])]
    return "\n".join(parts)

"""Shared helpers for the network tests: messages, in-process hosts, and peer processes.

`PeerProcess` drives `tests/network/peer_proc.py` (a real SwarmHost in its own
OS process) over JSON lines: commands on stdin, events on stdout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from network import HostConfig, SwarmHost, now_ms
from protocol import Identity, TaskKind, TaskOffer

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"

Event = dict[str, Any]
Spawn = Callable[[str, list[str]], Awaitable["PeerProcess"]]


def identity(n: int) -> Identity:
    """A fixed identity per small integer, so a restarted process keeps its peer ID."""
    return Identity.from_seed(hashlib.sha256(f"dataswarm-test-{n}".encode()).digest())


def make_offer(i: int, kind: TaskKind = TaskKind.SYNTHESIZE, *, ttl_ms: int = 600_000) -> TaskOffer:
    """An offer as large as the schema allows (16 model digests): ~1.5 KB sealed."""
    return TaskOffer(
        task_id=f"task-{i:06d}",
        job_id="job-0001",
        task_kind=kind,
        payload_sha256=hashlib.sha256(f"payload-{i}".encode()).hexdigest(),
        est_tokens=256,
        model_sha256=[hashlib.sha256(f"model-{k}".encode()).hexdigest() for k in range(16)],
        offer_expires_ms=now_ms() + ttl_ms,
    )


def host_config(ident: Identity, **kwargs: Any) -> HostConfig:
    kwargs.setdefault("listen", [LOOPBACK])
    kwargs.setdefault("mdns", False)
    return HostConfig(ident, **kwargs)


@contextlib.asynccontextmanager
async def hosts(*configs: HostConfig) -> AsyncIterator[list[SwarmHost]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(SwarmHost(c)) for c in configs]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeerProcess:
    """One `peer_proc.py` process; events are collected as they arrive."""

    def __init__(self, name: str, args: list[str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self.events: list[Event] = []
        self._changed = trio.Event()
        self._proc: trio.Process | None = None
        self._reader_scope: trio.CancelScope | None = None

    async def start(self, nursery: trio.Nursery) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            self._proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "tests.network.peer_proc", *self.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=str(REPO),
                env=env,
            )
        self._reader_scope = trio.CancelScope()
        nursery.start_soon(self._read, self._proc, self._reader_scope)

    async def _read(self, proc: trio.Process, scope: trio.CancelScope) -> None:
        assert proc.stdout is not None
        buf = b""
        with scope:
            while chunk := await proc.stdout.receive_some(65536):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        event.setdefault("_t", time.time())
                        self.events.append(event)
                self._changed.set()
                self._changed = trio.Event()
        self._changed.set()

    async def send(self, **command: Any) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        await self._proc.stdin.send_all((json.dumps(command) + "\n").encode())

    def find(self, predicate: Callable[[Event], bool]) -> list[Event]:
        return [e for e in self.events if predicate(e)]

    async def wait_for(self, predicate: Callable[[Event], bool], *, timeout: float, count: int = 1) -> list[Event]:
        """The first `count` events matching `predicate`, waiting up to `timeout` seconds for them."""
        with trio.fail_after(timeout):
            while len(found := self.find(predicate)) < count:
                if self._proc is not None and self._proc.returncode is not None:
                    raise RuntimeError(f"{self.name} exited with {self._proc.returncode}; see {self.log_path}")
                await self._changed.wait()
        return found[:count]

    async def request(self, reply: str, *, timeout: float, **command: Any) -> Event:
        """Send a command and wait for the next event named `reply` after it."""
        seen = len(self.events)
        await self.send(**command)
        with trio.fail_after(timeout):
            while True:
                for event in self.events[seen:]:
                    if event["event"] == reply:
                        return event
                    if event["event"] == "error":
                        raise RuntimeError(f"{self.name}: {event['error']}")
                await self._changed.wait()

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGKILL)

    def signal(self, sig: int) -> None:
        assert self._proc is not None
        self._proc.send_signal(sig)

    async def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.send(cmd="quit")
            with trio.move_on_after(10):
                await self._proc.wait()
            if self._proc.returncode is None:
                self.kill()
        with trio.move_on_after(10):
            await self._proc.wait()
        if self._reader_scope is not None:
            self._reader_scope.cancel()


@contextlib.asynccontextmanager
async def peer_processes(log_dir: Path) -> AsyncIterator[Spawn]:
    """Yields `spawn(name, args) -> awaitable PeerProcess`; every process is stopped on exit."""
    procs: list[PeerProcess] = []
    async with trio.open_nursery() as nursery:

        async def spawn(name: str, args: list[str]) -> PeerProcess:
            proc = PeerProcess(name, args, log_dir)
            await proc.start(nursery)
            procs.append(proc)
            return proc

        try:
            yield spawn
        finally:
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as stopper:
                    for proc in procs:
                        stopper.start_soon(proc.stop)
            nursery.cancel_scope.cancel()

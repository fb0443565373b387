"""`dataswarm node start`'s first-run screen and live line: pure rendering, and one real start without a model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from cli.node_cmd import (
    ModelLine,
    StartView,
    gpu_layers_text,
    reachability,
    start_screen,
    status_line,
)
from node.metrics import RunTotals
from node.runtime import NodeCounters
from protocol.identity import Identity
from protocol.messages import GenerationStats, Receipt, Result, Verdict

ROOT = Path(__file__).resolve().parents[2]
COORD = Identity.generate().peer_id
NODE = Identity.generate().peer_id


def render(renderable: object) -> str:
    console = Console(record=True, width=200, force_terminal=False, color_system=None)
    console.print(renderable)
    return console.export_text()


def view(**changes: object) -> StartView:
    base: dict[str, object] = {
        "peer_id": NODE,
        "models": (ModelLine("qwen2.5-7b-q4_k_m.gguf", "ab" * 32, 41.5, 1, 4096, -1, 29),),
        "kinds": ("synthesize", "validate"),
        "skipped": (("search", "no local index at /x: build one with `dataswarm corpus index DIR`"),),
        "io_slots": 4,
        "trusted": (COORD,),
        "listen": (f"/ip4/192.168.1.20/tcp/4001/p2p/{NODE}",),
        "bootstrap": (f"/ip4/203.0.113.5/tcp/4001/p2p/{COORD}",),
        "mdns": True,
    }
    base.update(changes)
    return StartView(**base)  # type: ignore[arg-type]


def result(tokens: int, seconds: float) -> Result:
    return Result.model_construct(stats=GenerationStats(completion_tokens=tokens, seconds=seconds))


def receipt(lease: str, verdict: Verdict, units: float) -> Receipt:
    return Receipt.model_construct(lease_id=lease, verdict=verdict, work_units=units)


def test_the_screen_says_what_runs_whom_it_trusts_and_how_it_is_reached() -> None:
    text = render(start_screen(view()))
    assert f"dataswarm node {NODE}" in text
    assert "qwen2.5-7b-q4_k_m.gguf" in text and "1 slot(s), 41.5 tok/s" in text
    assert "GPU layers" in text and "all 29 on the GPU" in text
    assert "synthesize, validate" in text and "search: no local index" in text
    assert "1 LLM, 4 search/retrieve" in text
    assert f"trusts        {COORD}" in text
    assert "dials out to 1 bootstrap peer(s)" in text and "LAN only: /ip4/192.168.1.20" in text
    assert "relay: not used" in text
    assert len(text.splitlines()) <= 24  # one screen


def test_the_screen_flags_what_stops_work() -> None:
    text = render(start_screen(view(trusted=(), models=(), bootstrap=(), mdns=False)))
    assert "nobody: no task will run" in text
    assert "none loaded" in text
    assert "no coordinator will be found" in text


def test_gpu_layers_text() -> None:
    assert gpu_layers_text(0, 29) == "none: runs on the CPU"
    assert gpu_layers_text(-1, 29) == "all 29 on the GPU"
    assert gpu_layers_text(12, 29) == "12 of 29 on the GPU, the rest on the CPU"
    assert gpu_layers_text(99, 29) == "all 29 on the GPU"


def test_reachability_names_the_scope_of_each_address() -> None:
    lines = reachability(
        ["/ip4/127.0.0.1/tcp/1/p2p/x", "/ip4/0.0.0.0/tcp/2", "/ip4/8.8.8.8/tcp/3", "/ip6/fe80::1/tcp/4"],
        [],
        True,
    )
    assert lines[0].startswith("no bootstrap peer: only coordinators on this LAN")
    scopes = [line.split(":", 1)[0] for line in lines[1:5]]
    assert scopes == ["this machine only", "all interfaces", "public", "LAN only"]


def test_status_line_counts_tasks_credit_and_speed() -> None:
    totals = RunTotals()
    counters = NodeCounters(offers_seen=9, done=3, accepted=2, rejected=1)
    before = status_line(counters, totals, credits_before=100, bench_tok_s=66.0, free_slots=5, total_slots=5, peers=2)
    assert "done 3 (2 accepted, 1 rejected, 0 failed)" in before
    assert "credit 100 (+0)" in before and "66.0 tok/s (benchmark)" in before
    assert "slots 5/5 free" in before and "2 peers, 9 offers" in before
    totals.observe_result(result(120, 3.0))
    totals.observe_result(result(0, 0.5))  # search/retrieve: no tokens, not in the speed
    totals.observe_result(result(80, 2.0))
    for r in (
        receipt("a", Verdict.PENDING, 10),
        receipt("a", Verdict.ACCEPTED, 10),
        receipt("a", Verdict.ACCEPTED, 10),  # a lease counts once
        receipt("b", Verdict.REJECTED, 7),
        receipt("b", Verdict.ACCEPTED, 7),  # decided already: the first decision stands, as in the ledger
        receipt("c", Verdict.ACCEPTED, 5),
    ):
        totals.observe_receipt(r)
    after = status_line(counters, totals, credits_before=100, bench_tok_s=66.0, free_slots=4, total_slots=5, peers=2)
    assert "credit 115 (+15)" in after
    assert "40.0 tok/s" in after and "benchmark" not in after
    no_llm = status_line(
        counters, RunTotals(), credits_before=0, bench_tok_s=None, free_slots=4, total_slots=4, peers=0
    )
    assert "no LLM" in no_llm


def test_result_hook_counts_and_passes_the_result_on() -> None:
    totals = RunTotals()
    seen: list[Result] = []

    def inner(grant: object, r: Result) -> Result:
        seen.append(r)
        return r

    r = result(50, 1.0)
    assert totals.result_hook(inner)(None, r) is r  # type: ignore[arg-type]
    assert seen == [r] and totals.tok_s == 50.0


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def isolated_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    return env


def test_node_start_help(tmp_path: Path) -> None:
    done = run_cli("node", "start", "--help", env=isolated_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "--trust" in done.stdout and "--quiet" in done.stdout


def test_a_real_start_prints_the_screen_plainly_when_not_on_a_terminal(tmp_path: Path) -> None:
    """A retrieve-only node loads no model: libp2p starts, the screen prints, READY, then SIGINT stops it."""
    argv = [
        sys.executable, "-m", "cli", "node", "start",
        "--kind", "retrieve", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--trust", COORD,
        "--data-dir", str(tmp_path / "node"), "--key", str(tmp_path / "node.key"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip() == "READY":
                break
        out = "".join(lines)
        assert "READY" in out, out
        assert "dataswarm node 12D3Koo" in out and "none loaded" in out and "retrieve" in out
        assert f"trusts        {COORD}" in out and "this machine only: /ip4/127.0.0.1/tcp/" in out
        assert "\x1b[" not in out and "\r" not in out  # no cursor tricks in a log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0

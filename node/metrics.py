"""The node's Prometheus metrics: what it generated, how fast, what it did, and how many slots are free.

Owns: one registry per node (never prometheus_client's global one, so several
nodes in one test process do not collide), the metric names, and a small HTTP
server for `/metrics` on hypercorn's trio worker.
Must not: change what the node does. Gauges and the runtime's own counters are
read at scrape time through the callables it is given; only per-task token and
time figures are pushed in, by `observe` (or `result_hook`).

Wiring (in `open_node`, after the runtime exists):

    metrics = NodeMetrics(status=runtime.status, counters=lambda: dataclasses.asdict(runtime.counters))
    runtime.result_hook = metrics.chain(runtime.result_hook)    # tokens and seconds of each result
    nursery.start_soon(serve_node_metrics, metrics, "127.0.0.1:9471")

`RunTotals` is the same kind of figure for a person instead of a scraper: the
tok/s of this run's results and the credit its receipts brought, for the live
line of `dataswarm node start`. Plain bookkeeping, fed by the runtime's result
and receipt hooks.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from protocol.messages import Grant, NodeStatus, Receipt, Result, Verdict

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (installed with libp2p) shadow trio's own types

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9471"
TASK_SECONDS_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
"""From a search call (~0.1 s) to a long synthesize on a slow CPU (minutes)."""

COUNTER_HELP = {
    "offers_seen": "Task offers received by gossip.",
    "claims": "Claims sent to coordinators.",
    "grants": "Leases granted to this node.",
    "rejects": "Claims the coordinator refused.",
    "done": "Tasks executed and submitted.",
    "failed": "Tasks whose execution failed here.",
    "accepted": "Results the coordinator accepted.",
    "rejected": "Results the coordinator rejected.",
}

ResultHook = Callable[[Grant, Result], Result]


class _LiveCollector(Collector):
    """Read at scrape time: slots and models from the node's status, totals from its counters."""

    def __init__(self, status: Callable[[], NodeStatus], counters: Callable[[], Mapping[str, int]] | None) -> None:
        self.status = status
        self.counters = counters

    def collect(self) -> Iterable[Metric]:
        s = self.status()
        yield GaugeMetricFamily("dataswarm_node_free_slots", "Execution slots free right now.", value=s.free_slots)
        yield GaugeMetricFamily("dataswarm_node_total_slots", "Execution slots in all.", value=s.total_slots)
        tok_s = GaugeMetricFamily(
            "dataswarm_node_model_tokens_per_second",
            "Generation speed measured by the start-up self-benchmark.",
            labels=["model", "sha256"],
        )
        for m in s.models:
            tok_s.add_metric([m.name, m.sha256[:12]], m.tok_s)
        yield tok_s
        if self.counters is not None:
            counts = self.counters()
            for key, help_text in COUNTER_HELP.items():
                if key in counts:
                    yield CounterMetricFamily(f"dataswarm_node_tasks_{key}", help_text, value=counts[key])


class NodeMetrics:
    def __init__(
        self,
        *,
        status: Callable[[], NodeStatus],
        counters: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        """status: the node's current NodeStatus (NodeRuntime.status); counters: its running totals
        (dataclasses.asdict(NodeRuntime.counters)). Both are called on each scrape, on the event loop."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.tokens = Counter(
            "dataswarm_node_tokens_generated", "Tokens generated (completion tokens), by task kind.",
            ["kind"], registry=self.registry,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "dataswarm_node_prompt_tokens", "Prompt tokens processed (prefill), by task kind.",
            ["kind"], registry=self.registry,
        )  # fmt: skip
        self.task_seconds = Histogram(
            "dataswarm_node_task_seconds", "Execution time of a task, by kind.",
            ["kind"], buckets=TASK_SECONDS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.registry.register(_LiveCollector(status, counters))

    def observe(self, result: Result) -> None:
        """Count one executed result's tokens and time (its GenerationStats)."""
        kind = str(result.output.kind)
        stats = result.stats
        if stats.completion_tokens:
            self.tokens.labels(kind).inc(stats.completion_tokens)
        if stats.prompt_tokens:
            self.prompt_tokens.labels(kind).inc(stats.prompt_tokens)
        if stats.seconds:
            self.task_seconds.labels(kind).observe(stats.seconds)

    def chain(self, hook: ResultHook | None = None) -> ResultHook:
        """A NodeRuntime result hook that observes each result, then hands it to `hook` (if any) unchanged."""

        def observed(grant: Grant, result: Result) -> Result:
            out = hook(grant, result) if hook is not None else result
            self.observe(out)
            return out

        return observed

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class RunTotals:
    """Tokens, generation time and credit since this node started (what the live status line shows)."""

    tokens: int = 0
    seconds: float = 0.0
    """Execution time of the results counted in `tokens` (LLM kinds only)."""
    credits: float = 0.0
    """Work units of receipts ACCEPTED during this run."""
    _decided: set[str] = field(default_factory=set)

    def observe_result(self, result: Result) -> None:
        if result.stats.completion_tokens and result.stats.seconds:
            self.tokens += result.stats.completion_tokens
            self.seconds += result.stats.seconds

    def result_hook(self, hook: ResultHook | None = None) -> ResultHook:
        """A NodeRuntime result hook that counts each result, then hands it to `hook` (if any)."""

        def counted(grant: Grant, result: Result) -> Result:
            out = hook(grant, result) if hook is not None else result
            self.observe_result(out)
            return out

        return counted

    def observe_receipt(self, receipt: Receipt) -> None:
        # As the ledger reads it: the first decided receipt of a lease counts; PENDING ones never do.
        if receipt.verdict is Verdict.PENDING or receipt.lease_id in self._decided:
            return
        self._decided.add(receipt.lease_id)
        if receipt.verdict is Verdict.ACCEPTED:
            self.credits += receipt.work_units

    @property
    def tok_s(self) -> float | None:
        """Completion tokens per second of execution over this run's results; None before the first."""
        return self.tokens / self.seconds if self.seconds > 0 else None


def metrics_asgi_app(metrics: NodeMetrics) -> Callable[..., Any]:
    """`GET /metrics` and nothing else; answers ASGI lifespan so hypercorn starts cleanly."""

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
            status, body, ctype = 404, b"only GET /metrics here\n", "text/plain; charset=utf-8"
        else:
            status, body, ctype = 200, metrics.render(), CONTENT_TYPE_LATEST
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app


async def serve_node_metrics(
    metrics: NodeMetrics,
    listen: str = DEFAULT_LISTEN,
    *,
    task_status: TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `/metrics` on `listen` (host:port; port 0 picks one) until cancelled; started() gets the URL.

    Binding beyond loopback exposes the node's figures to anyone who can reach it: say so in the node's config.
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics listen {listen!r} must be host:port, e.g. {DEFAULT_LISTEN}")
    host = host.strip("[]")
    try:
        public = not ipaddress.ip_address(host).is_loopback
    except ValueError:
        public = host != "localhost"
    if public:
        log.warning("node metrics listen on %s, beyond loopback", listen)
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(serve, metrics_asgi_app(metrics), config))
        task_status.started(binds[0] if binds else f"http://{listen}")

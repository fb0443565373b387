"""A running node: identity, LLM engine, executors, libp2p host and runtime, started together.

Owns: turning a `NodeConfig` into those pieces, in one nursery, and stopping
them in reverse order. Used by `dataswarm node start`, `dataswarm demo`, the
deploy checks and the tests (each node of a test network is a process that
calls `open_node`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from functools import partial

import trio

from network import HostConfig, SwarmHost, run_reconnect_watchdog
from node.config import NodeConfig
from node.executors import ExecutorDeps, build_executor
from node.executors.base import Executor
from node.ledger import ReceiptLedger
from node.llm.engine import Engine, EngineSettings, open_engine
from node.retrieve import RetrieverConfig
from node.runtime import NodeRuntime, ResultHook
from node.search.base import SearchConfig
from protocol.identity import Identity, public_key_from_peer_id
from protocol.keyfile import load_or_create_identity
from protocol.tasks import LLM_KINDS, TaskKind

log = logging.getLogger(__name__)

IO_SLOTS = 4
"""Concurrent search/retrieve tasks: network-bound, cheap next to an LLM slot."""


class NodeSetupError(Exception):
    """The node cannot start as configured; the message says what to change."""


@dataclass
class Node:
    config: NodeConfig
    identity: Identity
    host: SwarmHost
    runtime: NodeRuntime
    engine: Engine | None
    skipped_kinds: dict[TaskKind, str]


def trusted_keys(config: NodeConfig) -> set[bytes]:
    keys = set()
    for peer_id in config.trusted_coordinators:
        try:
            keys.add(public_key_from_peer_id(peer_id))
        except ValueError as exc:
            raise NodeSetupError(f"trusted_coordinators: {exc}") from None
    return keys


def executor_options(config: NodeConfig) -> dict[TaskKind, dict[str, object]]:
    return {
        TaskKind.SEARCH: {
            "config": SearchConfig(
                backend=config.search_backend,
                index_path=config.search_db,
                base_url=config.search_base_url,
                searxng_url=config.searxng_url,
            )
        },
        TaskKind.RETRIEVE: {"config": RetrieverConfig.from_allowlist(config.retrieve_allow)},
    }


def build_node_executors(
    config: NodeConfig, engine: Engine | None
) -> tuple[dict[TaskKind, Executor], dict[TaskKind, str]]:
    """Executors for every configured kind that can run here, and why the others cannot."""
    deps = ExecutorDeps(engine=engine, options=executor_options(config))
    built: dict[TaskKind, Executor] = {}
    skipped: dict[TaskKind, str] = {}
    for kind in config.kinds:
        if kind is TaskKind.SEARCH and config.search_backend == "local" and not config.search_db.exists():
            skipped[kind] = f"no local index at {config.search_db}: build one with `dataswarm corpus index DIR`"
            continue
        try:
            built[kind] = build_executor(kind, deps)
        except Exception as exc:  # a backend that cannot start must not stop the others
            skipped[kind] = str(exc)
    return built, skipped


@asynccontextmanager
async def open_node(
    config: NodeConfig, *, identity: Identity | None = None, result_hook: ResultHook | None = None
) -> AsyncIterator[Node]:
    """Start a node; leaving the block stops it."""
    ident = identity or load_or_create_identity(config.key_path)
    trusted = trusted_keys(config)
    if not trusted:
        log.warning("no trusted coordinators configured: this node will execute no task")
    async with AsyncExitStack() as stack:
        engine: Engine | None = None
        if any(k in LLM_KINDS for k in config.kinds) and config.models:
            engine = await stack.enter_async_context(open_engine(EngineSettings.from_node_config(config)))
        executors, skipped = build_node_executors(config, engine)
        for kind, why in skipped.items():
            log.warning("not serving %s: %s", kind.value, why)
        if not executors:
            raise NodeSetupError("no task kind can run on this node: " + "; ".join(skipped.values()))
        host = await stack.enter_async_context(
            SwarmHost(HostConfig(identity=ident, listen=config.listen, bootstrap=config.bootstrap, mdns=config.mdns))
        )
        runtime = NodeRuntime(
            host,
            executors,
            engine.model_infos() if engine else [],
            trusted_coordinators=trusted,
            slots={"llm": engine.total_slots if engine else 0, "io": IO_SLOTS},
            ledger=ReceiptLedger(config.data_dir / "receipts.jsonl"),
            status_interval_s=config.status_interval_s,
            result_hook=result_hook,
        )
        metrics = None
        if config.metrics_listen:
            from node.metrics import NodeMetrics

            # Built after the runtime: registering the collector reads the runtime's status at once.
            metrics = NodeMetrics(status=runtime.status, counters=lambda: asdict(runtime.counters))
            runtime.result_hook = metrics.chain(result_hook)
        nursery = await stack.enter_async_context(trio.open_nursery())
        if config.bootstrap:
            nursery.start_soon(partial(run_reconnect_watchdog, host, config.bootstrap))
        await nursery.start(runtime.run)
        if metrics is not None and config.metrics_listen:
            from node.metrics import serve_node_metrics

            url = await nursery.start(serve_node_metrics, metrics, config.metrics_listen)
            log.info("node metrics at %s", url)
        try:
            yield Node(config, ident, host, runtime, engine, skipped)
        finally:
            nursery.cancel_scope.cancel()

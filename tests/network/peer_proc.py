"""A coordinator or node peer in its own process, for the multi-process tests and the benchmark.

Run: `python -m tests.network.peer_proc coordinator|node [options]` from the repo root.
It prints JSON events, one per line, on stdout, and takes JSON commands on
stdin (see `_command`). It uses the real network layer; the "application" is
the least that exercises it: a coordinator that gossips offers and answers
every Claim with a Reject, a node that claims every offer it hears.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import trio

from network import (
    COORDINATORS_TOPIC,
    STATUS_TOPIC,
    TASK_PROTOCOL,
    TASK_REQUEST_KINDS,
    TASK_RESPONSE_KINDS,
    NetworkError,
    PublishBackpressure,
    SwarmHost,
    now_ms,
    offers_topic,
    run_periodic_publisher,
)
from protocol import Claim, CoordinatorAnnounce, NodeStatus, Opened, Receipt, Reject, Result, TaskKind, seal
from protocol.errors import ProtocolError
from protocol.messages import RejectReason, Verdict
from tests.network.support import host_config, identity, make_offer


def emit(event: str, **fields: Any) -> None:
    # Small lines to a pipe the test drains continuously.
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


async def _commands(handle: Any) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    buf = b""
    while chunk := await stdin.receive_some(65536):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                command = json.loads(line)
                try:
                    if await handle(command):
                        return
                except Exception as exc:
                    emit("error", error=f"{command.get('cmd')}: {exc!r}")


async def _peer_events(host: SwarmHost) -> None:
    async with host.peer_events() as events:
        async for event in events:
            emit("peer", kind=str(event.kind), peer=event.peer_id)


async def _common(host: SwarmHost, command: dict[str, Any]) -> bool:
    if command["cmd"] == "quit":
        return True
    if command["cmd"] == "stats":
        emit("stats", stats=host.stats.snapshot(), connected=host.connected_peers())
    elif command["cmd"] == "security":
        emit("security", peers={p: host.connection_security(p) for p in host.connected_peers()})
    else:
        emit("error", error=f"unknown command {command['cmd']!r}")
    return False


async def coordinator(args: argparse.Namespace) -> None:
    ident = identity(args.key)
    async with SwarmHost(host_config(ident, listen=[args.listen])) as host:

        async def on_request(peer: str, opened: Opened) -> bytes:
            message = opened.message
            if isinstance(message, Claim):
                emit("claim", peer=peer, task_id=message.task_id)
                reply: Reject | Receipt = Reject(task_id=message.task_id, reason=RejectReason.ALREADY_FILLED)
            else:
                assert isinstance(message, Result)
                reply = Receipt(
                    task_id=message.task_id, job_id=message.job_id, lease_id=message.lease_id, node_peer_id=peer,
                    result_sha256="0" * 64, verdict=Verdict.PENDING,
                )
            return seal(ident, reply, now_ms=now_ms())

        host.serve(TASK_PROTOCOL, on_request, expect=TASK_REQUEST_KINDS)
        status = await host.subscribe(STATUS_TOPIC)

        async def statuses() -> None:
            async for opened in status:
                emit("status", peer=opened.sender_peer_id)

        async def publish(command: dict[str, Any]) -> None:
            kinds = [TaskKind(k) for k in command["kinds"]]
            start, count = command.get("start", 0), command["count"]
            began = time.monotonic()
            for i in range(start, start + count):
                kind = kinds[i % len(kinds)]
                envelope = seal(ident, make_offer(i, kind), now_ms=now_ms(), ttl_ms=600_000)
                try:
                    await host.publish(offers_topic(kind), envelope, timeout=command.get("publish_timeout", 30.0))
                except PublishBackpressure as exc:
                    emit("backpressure", index=i, congested=exc.congested, error=str(exc))
                    return
            emit("published", start=start, count=count, seconds=time.monotonic() - began, bytes=len(envelope))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_peer_events, host)
            nursery.start_soon(statuses)
            announce = CoordinatorAnnounce(version="test", addrs=host.listen_addrs[:4])
            nursery.start_soon(lambda: run_periodic_publisher(host, COORDINATORS_TOPIC, lambda: announce, interval=1.0))
            emit("ready", peer_id=host.peer_id, addrs=host.listen_addrs, pubkey=ident.public_key.hex())

            async def handle(command: dict[str, Any]) -> bool:
                if command["cmd"] == "publish":
                    nursery.start_soon(publish, command)
                elif command["cmd"] == "wait_subscribers":
                    await host.wait_for_subscribers(
                        offers_topic(command["kind"]), command["count"], timeout=command.get("timeout", 30)
                    )
                    topic = offers_topic(command["kind"])
                    emit("subscribers", kind=command["kind"], count=host.subscriber_count(topic))
                else:
                    return await _common(host, command)
                return False

            await _commands(handle)
            nursery.cancel_scope.cancel()


async def node(args: argparse.Namespace) -> None:
    ident = identity(args.key)
    trusted = {bytes.fromhex(args.trusted)}
    kinds = [TaskKind(k) for k in args.kinds.split(",")]
    config = host_config(ident, bootstrap=[args.bootstrap])
    async with SwarmHost(config) as host:

        async def claim_all(kind: TaskKind) -> None:
            sub = await host.subscribe(offers_topic(kind), trusted=trusted)
            async for opened in sub:
                offer = opened.message
                emit("offer", task_id=offer.task_id, kind=str(kind))  # type: ignore[union-attr]
                claim = Claim(task_id=offer.task_id, attempt=0, free_slots=1)  # type: ignore[union-attr]
                try:
                    reply = await host.request(
                        opened.sender_peer_id, TASK_PROTOCOL, seal(ident, claim, now_ms=now_ms()),
                        expect=TASK_RESPONSE_KINDS, trusted=trusted, timeout=10,
                    )
                    emit("reply", task_id=claim.task_id, kind=str(reply.kind))
                except (NetworkError, ProtocolError) as exc:
                    emit("claim_error", task_id=claim.task_id, error=repr(exc))

        async def announcements() -> None:
            sub = await host.subscribe(COORDINATORS_TOPIC, trusted=trusted)
            async for opened in sub:
                emit("announce", peer=opened.sender_peer_id)

        def status() -> NodeStatus:
            return NodeStatus(version="test", models=[], task_kinds=kinds, free_slots=1, total_slots=1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_peer_events, host)
            for kind in kinds:
                nursery.start_soon(claim_all, kind)
            nursery.start_soon(announcements)
            nursery.start_soon(lambda: run_periodic_publisher(host, STATUS_TOPIC, status, interval=1.0))
            emit("ready", peer_id=host.peer_id, addrs=host.listen_addrs)

            async def handle(command: dict[str, Any]) -> bool:
                return await _common(host, command)

            await _commands(handle)
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["coordinator", "node"])
    parser.add_argument("--key", type=int, required=True, help="identity number (same number, same peer ID)")
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--bootstrap", help="coordinator multiaddr (node)")
    parser.add_argument("--trusted", help="coordinator public key, hex (node)")
    parser.add_argument("--kinds", default="synthesize", help="task kinds to subscribe to (node)")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    trio.run(coordinator if args.role == "coordinator" else node, args)


if __name__ == "__main__":
    main()

"""The nodes the coordinator hears from: their last NodeStatus, which are live, what each serves, and who may
re-score whose output. Held in memory (gossip refills it within a status interval after a restart)."""

from __future__ import annotations

from collections.abc import Callable, Collection

from coordinator.scheduler.config import LIVE_NODE_MS
from coordinator.store import Store
from protocol.messages import NodeStatus
from protocol.tasks import TaskKind

Validators = Callable[[Collection[str], str | None], list[str]]
"""(producers of the candidates, model digest) -> the live nodes that may re-score them (see `choose_validators`)."""


def choose_validators(serving: Collection[str], producers: Collection[str], trusted: Collection[str]) -> list[str]:
    """Of the live nodes `serving` the model: any that produced none of the candidates; when there is none
    and every producer is the operator's own node, those producers themselves (a separate pass, reported
    on the card as checked by the operator's node only)."""
    independent = [p for p in serving if p not in producers]
    if independent or not producers or not set(producers) <= set(trusted):
        return independent
    return [p for p in serving if p in producers]


class Nodes:
    def __init__(self, store: Store, trusted: frozenset[str]) -> None:
        self.store = store
        self.trusted = trusted
        self._status: dict[str, NodeStatus] = {}
        self._seen_ms: dict[str, int] = {}

    def note(self, peer_id: str, status: NodeStatus, now_ms: int) -> None:
        self._status[peer_id] = status
        self._seen_ms[peer_id] = now_ms
        self.store.touch_node(peer_id, now_ms=now_ms)

    def statuses(self) -> dict[str, NodeStatus]:
        return dict(self._status)

    def status(self, peer_id: str) -> NodeStatus | None:
        return self._status.get(peer_id)

    def last_seen_ms(self, peer_id: str) -> int | None:
        return self._seen_ms.get(peer_id)

    def live(self, now_ms: int) -> list[str]:
        """Nodes whose status arrived within LIVE_NODE_MS and that are not blacklisted."""
        out = []
        for peer, seen in self._seen_ms.items():
            rep = self.store.reputation(peer)
            if now_ms - seen <= LIVE_NODE_MS and not (rep is not None and rep.blacklisted):
                out.append(peer)
        return out

    def serves(self, peer_id: str, kind: TaskKind, models: Collection[str | None] = ()) -> bool:
        """Whether the node's last status lists `kind` and, if `models` names any, holds one of them
        (a node whose status lists no models is taken at its word)."""
        status = self._status.get(peer_id)
        if status is None or kind not in status.task_kinds:
            return False
        named = {m for m in models if m}
        return not named or not status.models or any(m.sha256 in named for m in status.models)

    def validators_for(self, producers: Collection[str], model: str | None, now_ms: int) -> list[str]:
        """Live nodes that may re-score a candidate of these producers (see `choose_validators`)."""
        serving = [p for p in self.live(now_ms) if self.serves(p, TaskKind.VALIDATE, [model])]
        return choose_validators(serving, producers, self.trusted)

    def validators_at(self, now_ms: int) -> Validators:
        """`validators_for` at one moment, reading which nodes are live once, on first use."""
        live: list[str] | None = None

        def validators(producers: Collection[str], model: str | None) -> list[str]:
            nonlocal live
            if live is None:
                live = self.live(now_ms)
            serving = [p for p in live if self.serves(p, TaskKind.VALIDATE, [model])]
            return choose_validators(serving, producers, self.trusted)

        return validators

"""Offers: the signed TaskOffers gossiped for open replicas, each re-gossiped no sooner than `reoffer_ms`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from coordinator.scheduler.config import ACTIVE_JOB_STATES, SchedulerConfig
from coordinator.store import Store, TaskRecord
from protocol.envelope import seal
from protocol.identity import Identity
from protocol.messages import TaskOffer
from protocol.tasks import TaskKind


class Offers:
    def __init__(
        self,
        store: Store,
        identity: Identity,
        config: SchedulerConfig,
        allowed_models: Callable[[TaskRecord], list[str]],
    ) -> None:
        self.store = store
        self.identity = identity
        self.config = config
        self.allowed_models = allowed_models
        self._last: dict[tuple[str, int], int] = {}

    def forget(self, key: tuple[str, int]) -> None:
        """Offer (task id, attempt) again on the next round."""
        self._last.pop(key, None)

    def due(self, now_ms: int) -> list[tuple[TaskKind, bytes]]:
        """Signed offers to gossip now: open replicas not offered within `reoffer_ms`."""
        out: list[tuple[TaskKind, bytes]] = []
        waiting: Counter[tuple[str, int]] = Counter()
        for offered in self.store.offered_replicas(limit=self.config.max_offers_per_tick * 4):
            waiting[(offered.task_id, offered.attempt)] += 1
        for (task_id, attempt), n in waiting.items():
            if len(out) >= self.config.max_offers_per_tick:
                break
            last = self._last.get((task_id, attempt))
            if last is not None and now_ms - last < self.config.reoffer_ms:
                continue
            task = self.store.task(task_id)
            if task.kind is not TaskKind.VALIDATE and self.store.job(task.job_id).state not in ACTIVE_JOB_STATES:
                continue  # validation of work already submitted goes on: it decides verdicts, credit and reputation
            offer = TaskOffer(
                task_id=task_id,
                job_id=task.job_id,
                task_kind=task.kind,
                attempt=attempt,
                payload_sha256=task.payload_sha256,
                est_tokens=task.est_tokens,
                model_sha256=self.allowed_models(task),
                replicas_wanted=min(n, 16),
                offer_expires_ms=now_ms + self.config.offer_ttl_ms,
            )
            self._last[(task_id, attempt)] = now_ms
            out.append((task.kind, seal(self.identity, offer, now_ms=now_ms, ttl_ms=self.config.offer_ttl_ms)))
        return out

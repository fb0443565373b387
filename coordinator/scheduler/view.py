"""One task as the store holds it now: the snapshot `decide` reads, and nothing else.

`read_view` reads only what `decide` will look at: a closed task is its record alone, a task with a
replica still out has no results read, and only a generative task reads its payload, spot-check pick
and audits. Payloads never change once written, so a bounded cache (`Payloads`) reads each once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from coordinator.scheduler.audits import audited, read_audits
from coordinator.scheduler.config import LIVE
from coordinator.scheduler.nodes import Validators
from coordinator.store import ReplicaRecord, ResultRecord, Store, TaskRecord, TaskState
from protocol.messages import Result
from protocol.tasks import DETERMINISTIC_KINDS, TaskKind, TaskPayload, ValidateOutput

PAYLOAD_CACHE = 512
"""Payloads kept by `Payloads` (a synthesize payload holds its chunk: a few KB each)."""


def no_validators(producers: Collection[str], model: str | None) -> list[str]:
    return []


@dataclass(frozen=True)
class TaskView:
    task: TaskRecord
    replicas: tuple[ReplicaRecord, ...] = ()
    results: tuple[ResultRecord, ...] = ()
    """Every result recorded for the task (their nodes are its producers), counted or not."""
    pending: tuple[ResultRecord, ...] = ()
    """Counted results without a verdict: what a decision judges."""
    messages: Mapping[int, Result] = field(default_factory=dict)
    """The pending results' messages, by result id."""
    payload: TaskPayload | None = None
    """Read for generative tasks only (answer-first targets, rows, validate payloads)."""
    spot_checked: bool = False
    audits: Mapping[int, tuple[ValidateOutput, ...] | None] = field(default_factory=dict)
    """Per candidate with a validate task: None while it runs, else its agreeing validators' outputs
    (empty when it failed or was abandoned)."""
    validators: Validators = no_validators
    """Who may re-score a candidate now (the nodes' liveness is not in the store: the registry's, read once)."""

    @property
    def producers(self) -> set[str]:
        return {r.node for r in self.results}

    @property
    def audited(self) -> bool:
        """Whether every result of the task goes to a validator (answer-first synthesize tasks)."""
        return audited(self.payload)


class Payloads:
    """Task payloads by task id, read from the store once (they are immutable: a task id is never reused)."""

    def __init__(self, store: Store, limit: int = PAYLOAD_CACHE) -> None:
        self.store = store
        self.limit = limit
        self._cache: OrderedDict[str, TaskPayload] = OrderedDict()

    def get(self, task_id: str) -> TaskPayload:
        payload = self._cache.get(task_id)
        if payload is not None:
            self._cache.move_to_end(task_id)
            return payload
        payload = self.store.task_payload(task_id)
        self._cache[task_id] = payload
        if len(self._cache) > self.limit:
            self._cache.popitem(last=False)
        return payload


def read_view(store: Store, task_id: str, *, payloads: Payloads, validators: Validators) -> TaskView:
    task = store.task(task_id)
    if task.state is not TaskState.OPEN:
        return TaskView(task)
    replicas = tuple(store.replicas(task_id))
    if any(r.state in LIVE for r in replicas):
        return TaskView(task, replicas)
    results = tuple(store.results_for(task_id))
    pending = tuple(r for r in results if r.counted and store.verdict(r.result_id) is None)
    if not pending:
        return TaskView(task, replicas, results)
    messages = {r.result_id: store.result_message(r.result_id) for r in pending}
    if task.kind in DETERMINISTIC_KINDS or task.kind is TaskKind.VALIDATE:
        return TaskView(task, replicas, results, pending, messages)
    return TaskView(
        task,
        replicas,
        results,
        pending,
        messages,
        payload=payloads.get(task_id),
        spot_checked=store.spot_checked(task_id),
        audits=read_audits(store, task_id, results),
        validators=validators,
    )

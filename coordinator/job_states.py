"""A job's states, in one place: the runner, the service, the API, the metrics and the CLI import them.

Owns: the state names, the table of the moves between them (`MOVES`, checked by `check_move`, which
the store applies inside the transaction that writes the state) and the sets that group them (final,
delivered, resumed, offered, cancellable); and a stage's states (`StageState`, `STAGE_MOVES`).
Must not: import from the rest of the coordinator (everything imports this), or decide when a job moves
(the job runner and the service do).

    open → running ⇄ waiting_for_nodes → compiling → done | partial
    failed follows any state that is not final; cancelled any of open, running, waiting_for_nodes.
    A restart resumes open, running, waiting_for_nodes and compiling jobs as running.

A job's event is the move to a named state (the runner and the service ask for the state they want):
an illegal one raises `IllegalTransition` naming the state and the move.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from protocol.errors import IllegalTransition

OPEN = "open"
RUNNING = "running"
WAITING_FOR_NODES = "waiting_for_nodes"
"""Running, but the current stage's tasks wait: fewer live nodes serve its kind than its tasks need to be
run and verified (coordinator/pipeline/waiting.py). The stall clock does not run in this state."""
COMPILING = "compiling"
DONE = "done"
PARTIAL = "partial"
"""Final: compiled with fewer rows than asked (the job's job document says why under "partial")."""
FAILED = "failed"
CANCELLED = "cancelled"

ALL = (OPEN, RUNNING, WAITING_FOR_NODES, COMPILING, DONE, PARTIAL, FAILED, CANCELLED)
FINAL = frozenset({DONE, PARTIAL, FAILED, CANCELLED})
DELIVERED = frozenset({DONE, PARTIAL})
"""Final states with a compiled dataset."""
RESUMED = (OPEN, RUNNING, WAITING_FOR_NODES, COMPILING)
"""States a restart resumes."""
OFFERED = frozenset({OPEN, RUNNING})
"""Jobs whose tasks the scheduler offers and grants (its ACTIVE_JOB_STATES): not a job waiting for nodes,
whose work too few nodes could verify. Validate tasks are offered whatever their job's state."""

MOVES: Mapping[str, frozenset[str]] = {
    OPEN: frozenset({RUNNING, FAILED, CANCELLED}),
    RUNNING: frozenset({RUNNING, WAITING_FOR_NODES, COMPILING, FAILED, CANCELLED}),
    WAITING_FOR_NODES: frozenset({RUNNING, COMPILING, FAILED, CANCELLED}),
    COMPILING: frozenset({RUNNING, COMPILING, DONE, PARTIAL, FAILED}),
    DONE: frozenset(),
    PARTIAL: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}
"""The states each state may move to (running to running: a restart resumes a running job)."""

CANCELLABLE = frozenset(s for s, to in MOVES.items() if CANCELLED in to)
"""open, running, waiting_for_nodes."""


def check_move(state: str, to: str) -> str:
    """`to`, if a job in `state` may move there; else IllegalTransition naming both."""
    if to not in MOVES.get(state, frozenset()):
        raise IllegalTransition(state, to, machine="job")
    return to


class StageState(StrEnum):
    """A job's stage (one per task kind it runs): open while its tasks run, done once they all settled."""

    OPEN = "open"
    DONE = "done"


STAGE_MOVES: Mapping[StageState, frozenset[StageState]] = {
    StageState.OPEN: frozenset({StageState.DONE}),
    StageState.DONE: frozenset(),
}
"""A stage is added open and closed once; a restart skips a done stage rather than closing it again."""


def check_stage_move(state: str, to: StageState) -> StageState:
    """`to`, if a stage in `state` may move there; else IllegalTransition naming both."""
    if to not in STAGE_MOVES.get(StageState(state), frozenset()):
        raise IllegalTransition(state, to.value, machine="stage")
    return to

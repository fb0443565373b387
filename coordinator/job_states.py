"""A job's states, in one place: the runner, the service, the API, the metrics and the CLI import them.

Owns: the state names and the sets that group them (final, delivered, resumed, offered, cancellable).
Must not: import from the rest of the coordinator (everything imports this), or make transitions (the
job runner, the service and the store do).

    open → running ⇄ waiting_for_nodes → compiling → done | partial
    failed follows any state that is not final; cancelled any of open, running, waiting_for_nodes.
"""

from __future__ import annotations

OPEN = "open"
RUNNING = "running"
WAITING_FOR_NODES = "waiting_for_nodes"
"""Running, but the current stage's tasks wait: fewer live nodes serve its kind than its tasks need to be
run and verified (coordinator/pipeline/waiting.py). The stall clock does not run in this state."""
COMPILING = "compiling"
DONE = "done"
PARTIAL = "partial"
"""Final: compiled with fewer rows than asked (the job's spec document says why under "partial")."""
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
CANCELLABLE = frozenset({OPEN, RUNNING, WAITING_FOR_NODES})

"""The coordinator's durable state as one facade: `Store`, joined from one mixin per concept.

Owns: the `Store` class callers use, and what holds for all of it: threading,
durability and crash recovery (below). Each concept lives in its own module:
- `connection.py`: opening the database, the lock, one transaction per call;
- `jobs.py`: jobs and stages;
- `tasks.py`: tasks and their payloads (inline or in the blob folder);
- `replicas.py`: replicas and leases, every replica transition short of a verdict
  (claim, grant, expiry, cancel), each decided by `protocol.state.next_replica_state`
  in one SQLite transaction (an illegal event raises `IllegalTransition` and
  the transaction rolls back, leaving the database as it was);
- `results.py`: results, verdicts, receipts, rows and row drops (`settle`);
- `nodes.py`: nodes, reputation and spot-check picks;
- `records.py`: the immutable records and values they return, and the row
  mappers; `verified.py`: the verified-result cache; `errors.py`: refusals.
Must not: hold a query of its own, read the clock (every method takes
`now_ms`), sign or verify anything, decide verdicts (that is
`coordinator.verify`), or do network I/O.

Threading
---------
The store is synchronous (stdlib `sqlite3`). One `Store` holds one connection
guarded by a lock, so it may be called from the trio thread directly or from
`trio.to_thread.run_sync` workers, one call at a time. Each call is one short
transaction: a fraction of a millisecond with NORMAL, a few with FULL
(docs/notes/coordinator.md#store-call-latency). The runtime still calls writes
through `trio.to_thread.run_sync`, so a checkpoint's fsync never stalls the
event loop.

Durability and crash recovery
-----------------------------
WAL mode with `synchronous=NORMAL` (the default): a committed transaction is in
the WAL file when COMMIT returns, so it survives a kill of the coordinator
process (SIGKILL, OOM, crash: tests/coordinator/test_store_crash.py), which is
what the coordinator promises. A power cut or kernel crash may lose the last
transactions before a checkpoint, never consistency. `synchronous="FULL"`
adds an fsync per commit and survives a power cut too, at 20x the cost of a
write (docs/notes/coordinator.md#store-call-latency). Recovery
after a crash needs no special step: open the store, then call
`expire_due(now_ms)` to turn leases that ran out while the coordinator was
down into retries. Accepted results are immutable (a verdict is written once),
and a task marked done is never offered or claimed again.

Verified results are cached (`verified.py`): `result_message` re-verifies a
stored envelope unless these very bytes were verified before.

Digests are `protocol.digests`'s: a payload's is sha256 of its canonical
msgpack (what `TaskOffer.payload_sha256` carries); a result's is sha256 of the
canonical `Result` body bytes (what `Receipt.result_sha256` carries, and the
idempotency key: the same result arriving twice is recorded once).
"""

from __future__ import annotations

from coordinator.store.jobs import JobStore
from coordinator.store.nodes import NodeStore
from coordinator.store.records import ReplicaRecord as ReplicaRecord
from coordinator.store.records import ResultRecord as ResultRecord  # re-exported for coordinator.scheduler
from coordinator.store.records import TaskRecord as TaskRecord
from coordinator.store.replicas import ReplicaStore
from coordinator.store.results import ResultStore


class Store(JobStore, ReplicaStore, ResultStore, NodeStore):
    """The coordinator database plus its blob folder. See the module docstring for threading.

    Opened as `Store(path, *, blob_dir=None, synchronous="NORMAL", inline_limit=INLINE_PAYLOAD_LIMIT)`
    (`coordinator.store.connection.Database`); each base holds one concept (module docstring).
    """

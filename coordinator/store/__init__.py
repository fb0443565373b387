"""The coordinator's durable state (SQLite in WAL mode) and its blob folder.

Public API: `Store` and the records it returns; `BlobStore`; `migrate`.
Synchronous by design: see `coordinator.store.db` for how the trio runtime calls it, and
which module holds each concept.
"""

from coordinator.store.blobs import BlobCorrupted, BlobMissing, BlobStore
from coordinator.store.db import Store
from coordinator.store.errors import Conflict, NotFound, StoreError
from coordinator.store.records import (
    Expiry,
    JobRecord,
    Judgement,
    LeaseRecord,
    NewRow,
    Recorded,
    ReplicaRecord,
    ResultRecord,
    RowRecord,
    Settled,
    TaskRecord,
    VerdictRecord,
)
from coordinator.store.schema import LATEST_VERSION, SchemaTooNew, migrate
from protocol.digests import payload_sha256
from protocol.state import TaskState

__all__ = [
    "LATEST_VERSION",
    "BlobCorrupted",
    "BlobMissing",
    "BlobStore",
    "Conflict",
    "Expiry",
    "JobRecord",
    "Judgement",
    "LeaseRecord",
    "NewRow",
    "NotFound",
    "Recorded",
    "ReplicaRecord",
    "ResultRecord",
    "RowRecord",
    "SchemaTooNew",
    "Settled",
    "Store",
    "StoreError",
    "TaskRecord",
    "TaskState",
    "VerdictRecord",
    "migrate",
    "payload_sha256",
]

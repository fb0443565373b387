"""The coordinator database schema, as numbered migrations.

Owns: the table layout and how a database moves from one version to the next.
Must not: hold queries of the running coordinator (those live in the concept
modules beside it: jobs.py, tasks.py, replicas.py, results.py, nodes.py), or read
the clock.

Rules
-----
- `MIGRATIONS[i]` takes the schema from version i to version i + 1. A released
  migration is never edited; a change is a new migration appended to the list.
- Each migration runs in one `BEGIN IMMEDIATE` transaction together with the
  `schema_version` bump, so a crash mid-migration leaves the previous version
  intact and the next start simply runs it again.
- A database newer than this code is refused (`SchemaTooNew`) rather than
  guessed at.

Conventions in the tables: times are integer unix milliseconds supplied by the
caller; digests are lowercase sha256 hex; the `slots` table holds the replicas
(its name predates the word), and their states are the values of
`protocol.state.ReplicaState`; messages are stored as their canonical msgpack
bytes (the bytes that were signed), so a stored result can be re-verified
offline.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

Migration = Sequence[str]
"""The SQL statements of one migration, run in order inside one transaction."""

_V1_SCHEDULING: Migration = (
    """
    CREATE TABLE jobs (
        job_id          TEXT PRIMARY KEY,
        spec            TEXT NOT NULL,              -- JSON of the dataset spec
        allowed_models  TEXT NOT NULL DEFAULT '[]', -- JSON list of model sha256 allowed for LLM kinds
        state           TEXT NOT NULL DEFAULT 'open',
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE stages (
        job_id      TEXT NOT NULL REFERENCES jobs(job_id),
        stage       TEXT NOT NULL,
        state       TEXT NOT NULL DEFAULT 'open',
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL,
        PRIMARY KEY (job_id, stage)
    )
    """,
    """
    CREATE TABLE tasks (
        task_id         TEXT PRIMARY KEY,
        job_id          TEXT NOT NULL REFERENCES jobs(job_id),
        stage           TEXT NOT NULL,
        kind            TEXT NOT NULL,
        payload_sha256  TEXT NOT NULL,
        payload         BLOB,             -- canonical bytes, or NULL when kept in the blob folder
        est_tokens      INTEGER NOT NULL DEFAULT 0,
        max_attempts    INTEGER NOT NULL,
        state           TEXT NOT NULL DEFAULT 'open',   -- open | done | failed
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE slots (
        task_id     TEXT NOT NULL REFERENCES tasks(task_id),
        replica     INTEGER NOT NULL,
        state       TEXT NOT NULL,
        attempt     INTEGER NOT NULL DEFAULT 0,
        node        TEXT,       -- peer id holding the claim/lease, NULL when offered
        lease_id    TEXT,
        deadline_ms INTEGER,
        updated_ms  INTEGER NOT NULL,
        PRIMARY KEY (task_id, replica)
    )
    """,
    """
    CREATE TABLE offers (
        offer_id    INTEGER PRIMARY KEY,
        task_id     TEXT NOT NULL REFERENCES tasks(task_id),
        attempt     INTEGER NOT NULL,
        envelope    BLOB,
        created_ms  INTEGER NOT NULL,
        expires_ms  INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE leases (
        lease_id        TEXT PRIMARY KEY,
        task_id         TEXT NOT NULL REFERENCES tasks(task_id),
        replica         INTEGER NOT NULL,
        attempt         INTEGER NOT NULL,
        node            TEXT NOT NULL,
        model_sha256    TEXT,
        decoding        BLOB,   -- canonical msgpack of the granted DecodingParams, or NULL
        granted_ms      INTEGER NOT NULL,
        deadline_ms     INTEGER NOT NULL,
        state           TEXT NOT NULL DEFAULT 'live'   -- live | submitted | expired
    )
    """,
    """
    CREATE TABLE results (
        result_id       INTEGER PRIMARY KEY,
        result_sha256   TEXT NOT NULL UNIQUE,   -- sha256 of the canonical Result body: the idempotency key
        task_id         TEXT NOT NULL REFERENCES tasks(task_id),
        lease_id        TEXT NOT NULL REFERENCES leases(lease_id),
        replica         INTEGER NOT NULL,
        attempt         INTEGER NOT NULL,
        node            TEXT NOT NULL,          -- the signer
        envelope        BLOB NOT NULL,          -- the envelope as received, signature included
        counted         INTEGER NOT NULL,       -- 1 if it filled its replica, 0 if recorded only (late, stray)
        received_ms     INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE nodes (
        peer_id         TEXT PRIMARY KEY,
        first_seen_ms   INTEGER NOT NULL,
        last_seen_ms    INTEGER NOT NULL,
        status          BLOB    -- canonical msgpack of the last NodeStatus, or NULL
    )
    """,
)

# Version 2 adds what verification produces. It is a separate step because the
# scheduling tables shipped first; it also serves as the upgrade-path test.
_V2_VERIFICATION: Migration = (
    """
    CREATE TABLE verdicts (
        result_id   INTEGER PRIMARY KEY REFERENCES results(result_id),
        verdict     TEXT NOT NULL,      -- protocol.messages.Verdict value
        reason      TEXT NOT NULL,      -- coordinator.verify.reasons.Reason value ('' when accepted)
        detail      TEXT NOT NULL DEFAULT '',
        decided_ms  INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE rows (
        row_id      INTEGER PRIMARY KEY,
        job_id      TEXT NOT NULL REFERENCES jobs(job_id),
        task_id     TEXT NOT NULL REFERENCES tasks(task_id),
        result_id   INTEGER NOT NULL REFERENCES results(result_id),
        idx         INTEGER NOT NULL,
        data        TEXT NOT NULL,      -- JSON of the row
        evidence    TEXT NOT NULL DEFAULT '',
        row_sha256  TEXT NOT NULL,
        accepted_ms INTEGER NOT NULL,
        UNIQUE (result_id, idx)
    )
    """,
    """
    CREATE TABLE reputation (
        peer_id         TEXT PRIMARY KEY,
        score           REAL NOT NULL,
        accepted        INTEGER NOT NULL DEFAULT 0,
        rejected        INTEGER NOT NULL DEFAULT 0,
        expired         INTEGER NOT NULL DEFAULT 0,
        consecutive_ok  INTEGER NOT NULL DEFAULT 0,
        blacklisted     INTEGER NOT NULL DEFAULT 0,
        updated_ms      INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE receipts (
        result_id   INTEGER PRIMARY KEY REFERENCES results(result_id),
        lease_id    TEXT NOT NULL,
        node        TEXT NOT NULL,
        envelope    BLOB NOT NULL,
        issued_ms   INTEGER NOT NULL
    )
    """,
    # Which accepted result a done task settled on (its rows come from it).
    "ALTER TABLE tasks ADD COLUMN canonical_result INTEGER REFERENCES results(result_id)",
    # The hot queries: expired leases, claimable replicas, a job's rows.
    "CREATE INDEX slots_by_state_deadline ON slots(state, deadline_ms)",
    "CREATE INDEX tasks_by_job ON tasks(job_id, state)",
    "CREATE INDEX results_by_task ON results(task_id)",
    "CREATE INDEX rows_by_job ON rows(job_id, row_id)",
)

_V3_ROW_DROPS: Migration = (
    # Rows of accepted results that a quality gate kept out of the dataset: the
    # dataset card reports them by reason (grounding, duplicates, length, language).
    """
    CREATE TABLE row_drops (
        job_id      TEXT NOT NULL REFERENCES jobs(job_id),
        task_id     TEXT NOT NULL REFERENCES tasks(task_id),
        idx         INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        dropped_ms  INTEGER NOT NULL,
        PRIMARY KEY (task_id, idx)
    )
    """,
    "CREATE INDEX slots_by_node ON slots(node, state)",
    # Lapsed leases in a row: a node that never answers is a cheater, not a slow machine.
    "ALTER TABLE reputation ADD COLUMN consecutive_expired INTEGER NOT NULL DEFAULT 0",
)

_V4_SPOT_CHECKS: Migration = (
    # Tasks whose result is re-scored by a validator rather than taken on trust: a trusted node's task
    # picked for a spot-check, or a task abandoned with its replica missing. In the database, so that a
    # coordinator restarted between the pick and the result still re-scores that result.
    """
    CREATE TABLE spot_checks (
        task_id     TEXT PRIMARY KEY REFERENCES tasks(task_id),
        picked_ms   INTEGER NOT NULL
    )
    """,
    # Version 1 created a table of gossiped offers that no coordinator ever wrote (offers are signed
    # afresh from the offered replicas each round); no table references it, so an old database drops it as it is.
    "DROP TABLE offers",
)

_V5_VALIDATIONS: Migration = (
    # Which candidate each validate task re-scores, as data: the link was parsed out of the validate task's
    # id (`<parent>.v<result id>`), and every reader of it had to know that format.
    """
    CREATE TABLE validations (
        validate_task_id    TEXT PRIMARY KEY REFERENCES tasks(task_id),
        parent_task_id      TEXT NOT NULL REFERENCES tasks(task_id),
        result_id           INTEGER NOT NULL REFERENCES results(result_id),
        UNIQUE (parent_task_id, result_id)
    )
    """,
    # An older database: its validate tasks' ids hold the link; joining on the id the candidate's would
    # have is exact, and nothing parses it.
    """
    INSERT INTO validations (validate_task_id, parent_task_id, result_id)
    SELECT t.task_id, r.task_id, r.result_id FROM tasks t
    JOIN results r ON t.task_id = r.task_id || '.v' || r.result_id
    WHERE t.kind = 'validate'
    """,
)

MIGRATIONS: tuple[Migration, ...] = (
    _V1_SCHEDULING, _V2_VERIFICATION, _V3_ROW_DROPS, _V4_SPOT_CHECKS, _V5_VALIDATIONS,
)  # fmt: skip
LATEST_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer coordinator than this one."""


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database (0 for an empty one)."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(
    conn: sqlite3.Connection,
    *,
    target: int | None = None,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> int:
    """Apply pending migrations up to `target` (default: the latest); return the new version.

    `conn` must be in autocommit mode (isolation_level=None): transactions are
    opened here explicitly so that each migration is exactly one of them.
    """
    goal = len(migrations) if target is None else target
    if not 0 <= goal <= len(migrations):
        raise ValueError(f"target version {goal} is outside 0..{len(migrations)}")
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    version = current_version(conn)
    if version > len(migrations):
        raise SchemaTooNew(f"database schema is version {version}; this coordinator knows up to {len(migrations)}")
    while version < goal:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = current_version(conn)
            if version >= goal:
                conn.execute("COMMIT")
                break
            for statement in migrations[version]:
                conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version += 1
    return version

"""Nodes in the store: when each was seen, its reputation, and the spot-checks that audit it.

Owns: the nodes table (first and last seen, last status), the reputation rows
(`coordinator.verify.reputation.NodeReputation`, upserted whole), and the
spot-check picks: tasks whose result a validator must re-score rather than take
on trust, stored so that a coordinator restarted between the pick and the
result still re-scores it.
Must not: compute a score or decide a pick (`coordinator.verify` and the
scheduler do), touch replicas or results, or read the clock.
"""

from __future__ import annotations

import sqlite3

from coordinator.store.connection import Database
from coordinator.store.records import reputation_from
from coordinator.verify.reputation import NodeReputation


def touch_node_row(c: sqlite3.Connection, peer_id: str, now_ms: int, status: bytes | None = None) -> None:
    c.execute(
        "INSERT INTO nodes (peer_id, first_seen_ms, last_seen_ms, status) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(peer_id) DO UPDATE SET last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms),"
        " status = COALESCE(excluded.status, status)",
        (peer_id, now_ms, now_ms, status),
    )


def save_reputation_row(c: sqlite3.Connection, rep: NodeReputation) -> None:
    c.execute(
        "INSERT INTO reputation (peer_id, score, accepted, rejected, expired, consecutive_ok, blacklisted,"
        " updated_ms, consecutive_expired) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(peer_id) DO UPDATE SET"
        " score = excluded.score, accepted = excluded.accepted, rejected = excluded.rejected,"
        " expired = excluded.expired, consecutive_ok = excluded.consecutive_ok,"
        " blacklisted = excluded.blacklisted, updated_ms = excluded.updated_ms,"
        " consecutive_expired = excluded.consecutive_expired",
        (
            rep.peer_id,
            rep.score,
            rep.accepted,
            rep.rejected,
            rep.expired,
            rep.consecutive_ok,
            int(rep.blacklisted),
            rep.updated_ms,
            rep.consecutive_expired,
        ),
    )


class NodeStore(Database):
    def touch_node(self, peer_id: str, *, now_ms: int, status: bytes | None = None) -> None:
        with self._tx() as c:
            touch_node_row(c, peer_id, now_ms, status)

    def nodes(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT peer_id FROM nodes ORDER BY peer_id")]

    def reputation(self, peer_id: str) -> NodeReputation | None:
        with self._lock:
            r = self._conn.execute("SELECT * FROM reputation WHERE peer_id = ?", (peer_id,)).fetchone()
        return None if r is None else reputation_from(r)

    def reputations(self) -> list[NodeReputation]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM reputation ORDER BY score DESC, peer_id").fetchall()
        return [reputation_from(r) for r in rows]

    def save_reputation(self, rep: NodeReputation) -> None:
        with self._tx() as c:
            save_reputation_row(c, rep)

    # --- spot-checks ------------------------------------------------------------

    def pick_spot_check(self, task_id: str, *, now_ms: int) -> None:
        """Mark a task whose result a validator must re-score rather than take on trust (idempotent).

        Stored, not kept in the scheduler's memory: a coordinator restarted between the pick and the
        result (a trusted node runs the task meanwhile) must still re-score that result.
        """
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO spot_checks (task_id, picked_ms) VALUES (?, ?)", (task_id, now_ms))

    def spot_checked(self, task_id: str) -> bool:
        """Whether the task is picked for a spot-check that is not yet decided."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM spot_checks WHERE task_id = ?", (task_id,)).fetchone()
        return row is not None

    def clear_spot_check(self, task_id: str) -> None:
        """The spot-check was decided (its re-scores are in): a later replica is not picked by it."""
        with self._tx() as c:
            c.execute("DELETE FROM spot_checks WHERE task_id = ?", (task_id,))

"""Schema migrations: fresh databases, upgrades from an older version, and failed migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from coordinator.store import LATEST_VERSION, SchemaTooNew, Store, TaskState, migrate
from coordinator.store.schema import MIGRATIONS, current_version
from protocol.digests import payload_bytes, payload_sha256
from protocol.tasks import TaskPayload
from tests.coordinator.factories import T0, synth_payload


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_fresh_database_is_latest_version_in_wal_mode(tmp_path: Path) -> None:
    with Store(tmp_path / "c.db") as store:
        assert store.job is not None
    conn = _connect(tmp_path / "c.db")
    assert current_version(conn) == LATEST_VERSION == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    expected = {"jobs", "stages", "tasks", "slots", "leases", "results", "verdicts", "rows", "nodes", "spot_checks"}
    assert expected | {"reputation", "receipts", "row_drops", "schema_version"} <= tables
    assert "offers" not in tables  # version 1 made it, nothing wrote it, version 4 drops it


def _old_job_and_task(conn: sqlite3.Connection) -> TaskPayload:
    """Job 'j1' with task 't1', as a version-1 coordinator would have written them; returns the payload."""
    conn.execute("INSERT INTO jobs (job_id, spec, state, created_ms, updated_ms) VALUES ('j1', '{}', 'open', 1, 1)")
    payload = synth_payload()
    conn.execute(
        "INSERT INTO tasks (task_id, job_id, stage, kind, payload_sha256, payload, max_attempts, state, created_ms,"
        " updated_ms) VALUES ('t1', 'j1', 'synthesize', 'synthesize', ?, ?, 3, 'open', 1, 1)",
        (payload_sha256(payload), payload_bytes(payload)),
    )
    return payload


def test_database_created_at_version_1_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = _connect(path)
    assert migrate(conn, target=1) == 1
    payload = _old_job_and_task(conn)
    conn.execute("INSERT INTO slots (task_id, replica, state, attempt, updated_ms) VALUES ('t1', 0, 'offered', 0, 1)")
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}.isdisjoint({"verdicts", "rows"})
    conn.close()

    with Store(path) as store:
        task = store.task("t1")
        assert task.state is TaskState.OPEN
        assert task.canonical_result_id is None  # the column version 2 added
        assert store.task_payload("t1") == payload
        assert store.claim("t1", "node-x", claim_deadline_ms=T0 + 1, now_ms=T0) is not None
        assert store.rows("j1") == []
    assert current_version(_connect(path)) == LATEST_VERSION


def test_a_version_3_database_drops_the_unused_offers_table_and_gains_spot_checks(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    conn = _connect(path)
    assert migrate(conn, target=3) == 3
    conn.execute("PRAGMA foreign_keys=ON")  # as the Store runs
    _old_job_and_task(conn)
    conn.execute("INSERT INTO offers (task_id, attempt, created_ms, expires_ms) VALUES ('t1', 0, 1, 2)")
    conn.close()

    with Store(path) as store:
        assert store.task("t1").state is TaskState.OPEN
        assert not store.spot_checked("t1")
        store.pick_spot_check("t1", now_ms=T0)
        assert store.spot_checked("t1")
    conn = _connect(path)
    assert current_version(conn) == LATEST_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "offers" not in tables and "spot_checks" in tables


def test_a_version_4_database_gets_its_validation_links_from_the_validate_tasks_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    conn = _connect(path)
    assert migrate(conn, target=4) == 4
    conn.execute("PRAGMA foreign_keys=ON")
    payload = _old_job_and_task(conn)
    conn.execute(
        "INSERT INTO leases (lease_id, task_id, replica, attempt, node, granted_ms, deadline_ms)"
        " VALUES ('t1.r0.a0', 't1', 0, 0, 'node-a', 1, 2)"
    )
    conn.execute(
        "INSERT INTO results (result_id, result_sha256, task_id, lease_id, replica, attempt, node, envelope, counted,"
        " received_ms) VALUES (7, 'ab', 't1', 't1.r0.a0', 0, 0, 'node-a', x'00', 1, 2)"
    )
    for task_id, kind in (("t1.v7", "validate"), ("t1.v8", "validate"), ("notes.v7", "synthesize")):
        conn.execute(
            "INSERT INTO tasks (task_id, job_id, stage, kind, payload_sha256, payload, max_attempts, state,"
            " created_ms, updated_ms) VALUES (?, 'j1', 'validate', ?, ?, ?, 3, 'open', 1, 1)",
            (task_id, kind, payload_sha256(payload), payload_bytes(payload)),
        )
    conn.close()

    with Store(path) as store:
        assert store.validated_by("t1.v7") == ("t1", 7)
        assert store.validations("t1") == {7: "t1.v7"}
        assert store.validated_by("t1.v8") is None  # no candidate 8 exists: no link is made up
        assert store.validated_by("notes.v7") is None and store.validated_by("t1") is None


def test_a_failing_migration_rolls_back_entirely(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "bad.db")
    broken = (
        MIGRATIONS[0],
        ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL"),
    )
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, migrations=broken)
    assert current_version(conn) == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half_done" not in tables
    # The fixed migration then applies cleanly from where it stopped.
    fixed = (MIGRATIONS[0], ("CREATE TABLE half_done (x INTEGER)",))
    assert migrate(conn, migrations=fixed) == 2


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "c.db")
    assert migrate(conn) == LATEST_VERSION
    assert migrate(conn) == LATEST_VERSION


def test_a_database_from_a_newer_coordinator_is_refused(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "new.db")
    migrate(conn)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(SchemaTooNew):
        Store(tmp_path / "new.db")

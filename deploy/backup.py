#!/usr/bin/env python3
"""Back up a coordinator while it runs: a consistent copy of everything a restore needs.

Owns: what goes into a backup, and in which order. Must not: stop the coordinator,
or copy a live SQLite file byte for byte (with WAL, the newest commits live in
coordinator.db-wal, and a file copy taken mid-checkpoint can be torn).

DEST (created; it must not exist yet or be empty) receives:
    coordinator.db      the store, through SQLite's online backup API, then integrity-checked
    api_tokens.db       the API's token hashes, the same way (when the API has made one)
    coordinator.key     the identity, mode 0600: volunteers trust its peer ID; without it,
                        every volunteer has to change their config
    blobs/              large task payloads, copied *after* the store: the store writes a blob
                        before the row naming it, so every blob the copied store needs is there
    datasets/           compiled datasets under the data directory (jobs given --out elsewhere
                        keep theirs there: back those up with the rest of your files)
    model_digests.json  a cache, copied for a faster first start

Restore: stop the coordinator, put these back into data_dir (and the key at key_path),
delete any coordinator.db-wal / -shm left beside the restored coordinator.db, start.

Usage:
    backup.py [--config FILE] [--data-dir DIR] DEST
In the container image: `python /opt/dataswarm/backup.py /var/lib/dataswarm/backups/$(date +%F)`.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
from pathlib import Path

PAGES_PER_STEP = 1024
"""Copy 4 MiB (at SQLite's 4 KiB pages) per step, so the coordinator's writers wait at most one step."""


def backup_sqlite(source: Path, target: Path) -> None:
    # Not `mode=ro`: a read-only connection cannot open a WAL database whose -shm is gone
    # (the coordinator removes it on a clean stop). This connection only reads.
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=PAGES_PER_STEP)
        (verdict,) = dst.execute("PRAGMA integrity_check").fetchone()
        if verdict != "ok":
            raise RuntimeError(f"{target}: integrity check says {verdict}")
    finally:
        dst.close()
        src.close()


def run_backup(data_dir: Path, key_path: Path, dest: Path) -> list[str]:
    """Write the backup; returns what was written, in order."""
    if not (data_dir / "coordinator.db").exists():
        raise FileNotFoundError(f"no coordinator.db in {data_dir}: is this the coordinator's data_dir?")
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty: back up into a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o700)
    written = []
    for name in ("coordinator.db", "api_tokens.db"):
        if (data_dir / name).exists():
            backup_sqlite(data_dir / name, dest / name)
            written.append(name)
    if key_path.exists():
        shutil.copy2(key_path, dest / "coordinator.key")
        (dest / "coordinator.key").chmod(0o600)
        written.append("coordinator.key")
    for name in ("blobs", "datasets"):  # after the store (see the module docstring)
        if (data_dir / name).is_dir():
            shutil.copytree(data_dir / name, dest / name, ignore=shutil.ignore_patterns("tmp"))
            written.append(f"{name}/")
    if (data_dir / "model_digests.json").exists():
        shutil.copy2(data_dir / "model_digests.json", dest / "model_digests.json")
        written.append("model_digests.json")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--config", type=Path, default=None, help="the coordinator's TOML config")
    parser.add_argument("--data-dir", type=Path, default=None, help="overrides the config's data_dir")
    args = parser.parse_args(argv)

    from coordinator.config import load_coordinator_config

    cfg = load_coordinator_config(args.config, data_dir=args.data_dir)
    try:
        written = run_backup(cfg.data_dir, cfg.key_path, args.dest)
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {cfg.data_dir} to {args.dest}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A compiled dataset directory as one download: tar.gz or zip, everything under a `<job_id>/` folder.

Owns: writing the archive to a temporary file (synchronous: the API runs it in a
worker thread). Only regular files go in, in sorted order, so the same directory
gives the same member list; symlinks are left out rather than followed.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import zipfile
from enum import StrEnum
from pathlib import Path


class ArchiveFormat(StrEnum):
    TAR_GZ = "tar.gz"
    ZIP = "zip"

    @property
    def media_type(self) -> str:
        return "application/gzip" if self is ArchiveFormat.TAR_GZ else "application/zip"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def write_archive(src: Path, fmt: ArchiveFormat, *, root_name: str, tmp_dir: Path | None = None) -> Path:
    """Archive `src` into a new temporary file and return its path (the caller deletes it)."""
    fd, name = tempfile.mkstemp(prefix="dataset-", suffix=f".{fmt.value}", dir=tmp_dir)
    os.close(fd)
    path = Path(name)
    try:
        if fmt is ArchiveFormat.TAR_GZ:
            with tarfile.open(path, "w:gz", compresslevel=6) as tar:
                for f in _files(src):
                    info = tar.gettarinfo(str(f), arcname=f"{root_name}/{f.relative_to(src).as_posix()}")
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with f.open("rb") as fh:
                        tar.addfile(info, fh)
        else:
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for f in _files(src):
                    zf.write(f, arcname=f"{root_name}/{f.relative_to(src).as_posix()}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path

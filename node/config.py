"""The node's configuration: defaults < TOML file < environment < command-line flags.

Environment variables are `DATASWARM_NODE_<FIELD>` (lists as JSON, e.g.
`DATASWARM_NODE_BOOTSTRAP='["/ip4/1.2.3.4/tcp/4001/p2p/12D3Koo..."]'`).
Unknown keys in the file are an error that names the key, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from protocol.tasks import TaskKind
from settings import CONFIG_DIR, DATA_DIR, TomlSettings, load_settings
from settings import ConfigError as ConfigError

DEFAULT_CONFIG_FILE = CONFIG_DIR / "node.toml"


class NodeConfig(TomlSettings):
    model_config = SettingsConfigDict(env_prefix="DATASWARM_NODE_", extra="forbid")

    key_path: Path = Field(CONFIG_DIR / "node.key", description="Ed25519 identity (created on first start, 0600).")
    listen: list[str] = Field(["/ip4/0.0.0.0/tcp/4001"], description="libp2p listen multiaddrs.")
    bootstrap: list[str] = Field(default_factory=list, description="Peers to dial at start (…/p2p/<peer id>).")
    trusted_coordinators: list[str] = Field(
        default_factory=list, description="Peer IDs whose task offers this node executes; empty means none."
    )
    mdns: bool = Field(True, description="Discover peers on the local network.")
    models: list[str] = Field(["smollm2-135m"], description="GGUF paths, Hugging Face cache names, or built-ins.")
    slots: int | None = Field(None, ge=1, le=64, description="Concurrent LLM tasks (default: chosen by hardware).")
    n_threads: int | None = Field(None, ge=1, le=256, description="llama.cpp threads (default: physical cores).")
    n_gpu_layers: int | None = Field(None, ge=-1, description="Layers to offload (-1 all; default: auto).")
    kinds: list[TaskKind] = Field(default_factory=lambda: list(TaskKind), description="Task kinds to accept.")
    search_backend: Literal["local", "searxng", "ddgs"] = Field(
        "local", description="Search backend: local (SQLite FTS5 index), searxng (self-hosted), ddgs (internet)."
    )
    search_db: Path = Field(DATA_DIR / "corpus.sqlite", description="Index used by the local search backend.")
    search_base_url: str | None = Field(
        None, description="Where the local index's pages are served now (moves hits onto that host:port)."
    )
    searxng_url: str | None = Field(None, description="Base URL of a SearXNG instance (search_backend=searxng).")
    retrieve_allow: list[str] = Field(
        default_factory=list,
        description="CIDRs or host:port that retrieval may fetch despite the private-address guard.",
    )
    data_dir: Path = Field(DATA_DIR / "node", description="Receipts ledger and caches.")
    status_interval_s: float = Field(10.0, gt=0, description="Seconds between NodeStatus broadcasts.")
    metrics_listen: str | None = Field(
        None, description="host:port for Prometheus /metrics (e.g. 127.0.0.1:9471); off when unset."
    )


def load_node_config(path: Path | None = None, **flags: Any) -> NodeConfig:
    """Load the effective config. `flags` are command-line values (None means not given)."""
    return load_settings(NodeConfig, DEFAULT_CONFIG_FILE, path, **flags)

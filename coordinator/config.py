"""The coordinator's configuration: defaults < TOML file < environment < command-line flags.

Environment variables are `DATASWARM_COORDINATOR_<FIELD>` (lists as JSON).
Unknown keys in the file are an error that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from protocol.identity import public_key_from_peer_id
from settings import CONFIG_DIR, DATA_DIR, TomlSettings, load_settings
from settings import ConfigError as ConfigError

DEFAULT_CONFIG_FILE = CONFIG_DIR / "coordinator.toml"
ENV_PREFIX = "DATASWARM_COORDINATOR_"


class CoordinatorConfig(TomlSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    key_path: Path = Field(CONFIG_DIR / "coordinator.key", description="Ed25519 identity that signs offers.")
    listen: list[str] = Field(["/ip4/0.0.0.0/tcp/4001"], description="libp2p listen multiaddrs.")
    announce: list[str] = Field(default_factory=list, description="Addresses to advertise instead of listen.")
    bootstrap: list[str] = Field(default_factory=list, description="Other peers to dial at start.")
    mdns: bool = Field(True, description="Discover peers on the local network.")
    relay_hop: bool = Field(True, description="Relay (circuit v2) for nodes that cannot be dialled directly.")
    data_dir: Path = Field(DATA_DIR / "coordinator", description="SQLite store, blobs and datasets.")
    allowed_models: list[str] = Field(
        default_factory=list,
        description="GGUF sha256 digests accepted for LLM tasks; empty means the digest of the bundled model.",
    )
    judge_models: list[str] = Field(
        default_factory=list,
        description="GGUF sha256 digests of models strong enough to judge rows that have no round trip "
        "(specs other than question/answer and text/label): each such row is then scored against its source "
        "by a node running one of them that did not write it, and only rows that pass are delivered. Empty: "
        "no judge, and the card says those rows passed the word-overlap gates only.",
    )
    judge_min_score: int = Field(4, ge=1, le=5, description="Lowest judge score (1-5) a judged row passes with.")
    api_listen: str = Field("127.0.0.1:8470", description="host:port of the HTTP API and dashboard.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature of generative tasks.")
    spot_check_p: float = Field(0.1, ge=0.0, le=1.0, description="Spot-check probability for trusted nodes.")
    trusted_nodes: list[str] = Field(
        default_factory=list,
        description="Peer IDs of nodes this operator runs: they run at r = 1 with spot-checks, and alone they "
        "verify their own generations in a separate re-scoring pass.",
    )
    max_attempts: int = Field(4, ge=1, le=20, description="Attempts per task replica before it fails.")
    stall_s: float = Field(
        60.0,
        ge=1.0,
        le=86_400.0,
        description="Seconds a running stage may see no replica activity before the tasks no live node takes "
        "are abandoned (the clock stands still while a job waits for nodes).",
    )
    max_job_tasks: int = Field(
        100_000,
        ge=1,
        description="A job whose plan has more tasks than this is refused before anything is written "
        "(100,000 tasks is about 27,000 grounded rows).",
    )
    api_requests_per_minute: int = Field(
        600, ge=0, description="Requests per minute one API token may make (0: no limit); over it, 429."
    )
    api_jobs_per_token: int = Field(8, ge=0, description="Jobs one API token may have running (0: no cap).")
    api_rows_per_token: int = Field(
        50_000, ge=0, description="Rows one API token may have in running jobs (0: no cap)."
    )
    llm_spec: bool = Field(
        True,
        description="Begin jobs given as a sentence with a `spec` task: an LLM node drafts what the rules defaulted.",
    )

    @field_validator("judge_models")
    @classmethod
    def _digests(cls, value: list[str]) -> list[str]:
        for digest in value:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"{digest!r} is not a GGUF sha256 digest (64 lowercase hex digits)")
        return value

    @field_validator("trusted_nodes")
    @classmethod
    def _peer_ids(cls, value: list[str]) -> list[str]:
        for peer_id in value:
            public_key_from_peer_id(peer_id)  # ValueError names the bad ID
        return value


def load_coordinator_config(path: Path | None = None, **flags: Any) -> CoordinatorConfig:
    """The effective config. `flags` are command-line values (None means not given)."""
    return load_settings(CoordinatorConfig, DEFAULT_CONFIG_FILE, path, **flags)

"""The messages peers exchange, each carried as the body of a signed envelope.

Flow: coordinator gossips `TaskOffer`; a node with a free slot sends `Claim`
on its stream; the coordinator answers `Grant` (with the full payload) or
`Reject`; the node sends `Result`; the coordinator answers `Receipt`.
`NodeStatus` and `CoordinatorAnnounce` are periodic liveness gossip.

Times are integer unix milliseconds supplied by the caller (no clock here).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from protocol.tasks import (
    DecodingParams,
    Frozen,
    Sha256Hex,
    ShortText,
    TaskKind,
    TaskOutput,
    TaskPayload,
)

PeerIdStr = Annotated[str, Field(min_length=1, max_length=128)]
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class MessageKind(StrEnum):
    NODE_STATUS = "node_status"
    COORDINATOR_ANNOUNCE = "coordinator_announce"
    TASK_OFFER = "task_offer"
    CLAIM = "claim"
    PULL = "pull"
    GRANT = "grant"
    REJECT = "reject"
    RESULT = "result"
    RECEIPT = "receipt"


class ModelInfo(Frozen):
    name: ShortText
    sha256: Sha256Hex
    tok_s: float = Field(ge=0.0)
    """Generation speed measured by the node's start-up self-benchmark."""
    n_ctx: int = Field(ge=0)
    slots: int = Field(ge=0, le=256)


class NodeStatus(Frozen):
    kind: Literal[MessageKind.NODE_STATUS] = MessageKind.NODE_STATUS
    version: ShortText
    models: Annotated[list[ModelInfo], Field(max_length=16)]
    task_kinds: Annotated[list[TaskKind], Field(max_length=16)]
    free_slots: int = Field(ge=0, le=1024)
    total_slots: int = Field(ge=0, le=1024)
    tasks_done: int = Field(default=0, ge=0)


class CoordinatorAnnounce(Frozen):
    kind: Literal[MessageKind.COORDINATOR_ANNOUNCE] = MessageKind.COORDINATOR_ANNOUNCE
    version: ShortText
    addrs: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=16)]
    api_url: Annotated[str, Field(max_length=512)] = ""
    open_offers: int = Field(default=0, ge=0)


class TaskOffer(Frozen):
    """Small enough for gossip: the payload itself travels in the Grant."""

    kind: Literal[MessageKind.TASK_OFFER] = MessageKind.TASK_OFFER
    task_id: Id
    job_id: Id
    task_kind: TaskKind
    attempt: int = Field(default=0, ge=0, le=1000)
    payload_sha256: Sha256Hex
    est_tokens: int = Field(default=0, ge=0, le=1_000_000)
    """Expected generated tokens: lets a node judge whether it can meet the deadline."""
    model_sha256: Annotated[list[Sha256Hex], Field(default_factory=list, max_length=16)]
    """Allowed model digests (empty: any model, for kinds without an LLM)."""
    replicas_wanted: int = Field(default=1, ge=1, le=16)
    offer_expires_ms: int = Field(ge=0)


class Claim(Frozen):
    kind: Literal[MessageKind.CLAIM] = MessageKind.CLAIM
    task_id: Id
    attempt: int = Field(ge=0, le=1000)
    model_sha256: Sha256Hex | None = None
    free_slots: int = Field(ge=0, le=1024)
    tok_s: float = Field(default=0.0, ge=0.0)


class Pull(Frozen):
    """A node with a free slot asks for any open task it can run, on the stream it already uses: answered
    with a Grant, or a Reject (NONE_OPEN) when there is none for it. It keeps a busy node from waiting for
    the next re-offer; gossip offers stay for discovery and for nodes that have just joined."""

    kind: Literal[MessageKind.PULL] = MessageKind.PULL
    task_kinds: Annotated[list[TaskKind], Field(min_length=1, max_length=16)]
    model_sha256: Annotated[list[Sha256Hex], Field(default_factory=list, max_length=8)]
    """Models the node holds, for the LLM kinds."""
    free_slots: int = Field(ge=1, le=1024)
    tok_s: float = Field(default=0.0, ge=0.0)


class Grant(Frozen):
    kind: Literal[MessageKind.GRANT] = MessageKind.GRANT
    task_id: Id
    job_id: Id
    lease_id: Id
    attempt: int = Field(ge=0, le=1000)
    node_peer_id: PeerIdStr
    payload: TaskPayload
    decoding: DecodingParams | None = None
    model_sha256: Sha256Hex | None = None
    """The model the node must use (None for kinds without an LLM)."""
    lease_deadline_ms: int = Field(ge=0)


class RejectReason(StrEnum):
    TASK_UNKNOWN = "task_unknown"
    ALREADY_FILLED = "already_filled"
    ALREADY_HELD = "already_held"
    NODE_BLACKLISTED = "node_blacklisted"
    NO_CAPACITY = "no_capacity"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    SENDER_MISMATCH = "sender_mismatch"
    LEASE_EXPIRED = "lease_expired"
    INVALID = "invalid"
    DEFERRED = "deferred"
    """Take the validate offer the coordinator is sending again now: a finished result waits on it."""
    NONE_OPEN = "none_open"
    """A Pull found no open task this node may take now (it goes back to waiting for offers)."""


class Reject(Frozen):
    kind: Literal[MessageKind.REJECT] = MessageKind.REJECT
    task_id: Id
    reason: RejectReason
    detail: Annotated[str, Field(max_length=1000)] = ""


class GenerationStats(Frozen):
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    mean_logprob: float | None = None
    seconds: float = Field(default=0.0, ge=0.0)
    finish_reason: ShortText = ""


class Result(Frozen):
    kind: Literal[MessageKind.RESULT] = MessageKind.RESULT
    task_id: Id
    job_id: Id
    lease_id: Id
    attempt: int = Field(ge=0, le=1000)
    output: TaskOutput
    model_sha256: Sha256Hex | None = None
    decoding: DecodingParams | None = None
    """Echo of the grant's decoding params; the verifier checks they match."""
    prompt: Annotated[str, Field(max_length=64_000)] = ""
    """The exact rendered prompt (LLM kinds), so a validator can re-score it."""
    raw_text: Annotated[str, Field(max_length=32_000)] = ""
    """The exact generated text the output was parsed from (LLM kinds)."""
    stats: GenerationStats = GenerationStats()


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PENDING = "pending"


class Receipt(Frozen):
    kind: Literal[MessageKind.RECEIPT] = MessageKind.RECEIPT
    task_id: Id
    job_id: Id
    lease_id: Id
    node_peer_id: PeerIdStr
    result_sha256: Sha256Hex
    verdict: Verdict
    work_units: float = Field(default=0.0, ge=0.0)
    detail: Annotated[str, Field(max_length=1000)] = ""


Message = NodeStatus | CoordinatorAnnounce | TaskOffer | Claim | Pull | Grant | Reject | Result | Receipt

MESSAGE_TYPES: dict[MessageKind, type[Frozen]] = {
    MessageKind.NODE_STATUS: NodeStatus,
    MessageKind.COORDINATOR_ANNOUNCE: CoordinatorAnnounce,
    MessageKind.TASK_OFFER: TaskOffer,
    MessageKind.CLAIM: Claim,
    MessageKind.PULL: Pull,
    MessageKind.GRANT: Grant,
    MessageKind.REJECT: Reject,
    MessageKind.RESULT: Result,
    MessageKind.RECEIPT: Receipt,
}

# Hard byte limits on the *body* per kind, checked before decoding. Gossip kinds
# stay far below py-libp2p's silent 1 MiB drop; Grant/Result carry documents.
BODY_LIMITS: dict[MessageKind, int] = {
    MessageKind.NODE_STATUS: 8 * 1024,
    MessageKind.COORDINATOR_ANNOUNCE: 8 * 1024,
    MessageKind.TASK_OFFER: 8 * 1024,
    MessageKind.CLAIM: 2 * 1024,
    MessageKind.PULL: 2 * 1024,
    MessageKind.GRANT: 2 * 1024 * 1024,
    MessageKind.REJECT: 4 * 1024,
    MessageKind.RESULT: 2 * 1024 * 1024,
    MessageKind.RECEIPT: 4 * 1024,
}

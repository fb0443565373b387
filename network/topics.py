"""Names on the wire: gossip topics and direct-stream protocol IDs.

Every name carries the protocol version, so peers speaking another version
never meet on a topic or a stream. Each topic also fixes which message kinds
may travel on it; validators refuse anything else before parsing the body.
"""

from __future__ import annotations

from protocol.envelope import PROTOCOL_VERSION
from protocol.messages import MessageKind
from protocol.tasks import TaskKind

PREFIX = f"/dataswarm/{PROTOCOL_VERSION}"

STATUS_TOPIC = f"{PREFIX}/status"
COORDINATORS_TOPIC = f"{PREFIX}/coordinators"
OFFERS_PREFIX = f"{PREFIX}/offers/"

TASK_PROTOCOL = f"{PREFIX}/task"
"""Direct stream: Claim -> Grant | Reject, Result -> Receipt."""

RECEIPTS_PROTOCOL = f"{PREFIX}/receipts"
"""Direct stream, coordinator to node: a Receipt decided after its Result was answered -> the node's NodeStatus."""

TASK_REQUEST_KINDS = frozenset({MessageKind.CLAIM, MessageKind.PULL, MessageKind.RESULT})
TASK_RESPONSE_KINDS = frozenset({MessageKind.GRANT, MessageKind.REJECT, MessageKind.RECEIPT})


def offers_topic(kind: TaskKind | str) -> str:
    """The topic for offers of one task kind (`/dataswarm/1/offers/synthesize`)."""
    return OFFERS_PREFIX + TaskKind(kind).value


def topic_kinds(topic: str) -> frozenset[MessageKind]:
    """The message kinds allowed on `topic`; ValueError for a topic we do not define."""
    if topic == STATUS_TOPIC:
        return frozenset({MessageKind.NODE_STATUS})
    if topic == COORDINATORS_TOPIC:
        return frozenset({MessageKind.COORDINATOR_ANNOUNCE})
    if topic.startswith(OFFERS_PREFIX):
        try:
            TaskKind(topic.removeprefix(OFFERS_PREFIX))
        except ValueError:
            raise ValueError(f"{topic!r} names no task kind") from None
        return frozenset({MessageKind.TASK_OFFER})
    raise ValueError(f"{topic!r} is not a dataswarm topic (expected {PREFIX}/status, /coordinators or /offers/<kind>)")

"""dataswarm's network layer: libp2p hosts, gossip topics, direct streams, liveness, diagnosis.

`node/` and `coordinator/` use only what this package re-exports; `host.py`
is the one module that touches libp2p (see its docstring for the py-libp2p
workarounds it holds).
"""

from network.checks import NetworkStats, WrongTopic, now_ms, reason_of
from network.doctor import Finding, Level, run_doctor
from network.errors import (
    AlreadySubscribed,
    ConnectionLost,
    DialError,
    FrameError,
    FrameTimeout,
    FrameTooLarge,
    ListenError,
    NetworkError,
    PublishBackpressure,
    PublishTooLarge,
    RemoteError,
    RequestError,
    RequestTimeout,
)
from network.events import PeerEvent, PeerEventKind, peer_id_of
from network.host import (
    MAX_GOSSIP_BYTES,
    NOISE,
    GossipConfig,
    HostConfig,
    RawStream,
    RefusalHook,
    RequestHandler,
    Subscription,
    SwarmHost,
    libp2p_peer_id,
)
from network.liveness import keep_connected, run_periodic_publisher, run_reconnect_watchdog
from network.rpc import Refused
from network.topics import (
    COORDINATORS_TOPIC,
    STATUS_TOPIC,
    TASK_PROTOCOL,
    TASK_REQUEST_KINDS,
    TASK_RESPONSE_KINDS,
    offers_topic,
    topic_kinds,
)

__all__ = [
    "COORDINATORS_TOPIC",
    "MAX_GOSSIP_BYTES",
    "NOISE",
    "STATUS_TOPIC",
    "TASK_PROTOCOL",
    "TASK_REQUEST_KINDS",
    "TASK_RESPONSE_KINDS",
    "AlreadySubscribed",
    "ConnectionLost",
    "DialError",
    "Finding",
    "FrameError",
    "FrameTimeout",
    "FrameTooLarge",
    "GossipConfig",
    "HostConfig",
    "Level",
    "ListenError",
    "NetworkError",
    "NetworkStats",
    "PeerEvent",
    "PeerEventKind",
    "PublishBackpressure",
    "PublishTooLarge",
    "RawStream",
    "RefusalHook",
    "Refused",
    "RemoteError",
    "RequestError",
    "RequestHandler",
    "RequestTimeout",
    "Subscription",
    "SwarmHost",
    "WrongTopic",
    "keep_connected",
    "libp2p_peer_id",
    "now_ms",
    "offers_topic",
    "peer_id_of",
    "reason_of",
    "run_doctor",
    "run_periodic_publisher",
    "run_reconnect_watchdog",
    "topic_kinds",
]

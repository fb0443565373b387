"""dataswarm's network layer: libp2p hosts, gossip topics, direct streams, liveness, diagnosis.

`node/` and `coordinator/` use only what this package re-exports, and their
runtimes only the `Transport` protocol (transport.py), so a unit test can run
them on `network.memory.MemoryTransport` (a test double, not re-exported here)
instead of `SwarmHost`.

Only the modules that need it import `libp2p` (or `multiaddr`): host.py (the
host: lifecycle, connections, discovery), gossip.py (pubsub), relay.py
(circuit relay v2) and patches.py (the py-libp2p workarounds, numbered as in
docs/notes/libp2p.md). Everything else here is libp2p-free: streams.py,
rpc.py and framing.py (request/response on any byte stream), transport.py,
memory.py, checks.py, errors.py (with the one function that maps foreign
failures to our errors), peers.py, queue.py, events.py, topics.py,
liveness.py and doctor.py.
"""

from network.checks import MAX_GOSSIP_BYTES, NetworkStats, WrongTopic, now_ms, reason_of
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
    network_error,
)
from network.events import PeerEvent, PeerEventKind, peer_id_of
from network.gossip import GossipConfig
from network.host import HostConfig, RawStream, SwarmHost, libp2p_peer_id
from network.liveness import keep_connected, run_periodic_publisher, run_reconnect_watchdog
from network.patches import NOISE
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
from network.transport import RefusalHook, RequestHandler, Subscription, Transport

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
    "Transport",
    "WrongTopic",
    "keep_connected",
    "libp2p_peer_id",
    "network_error",
    "now_ms",
    "offers_topic",
    "peer_id_of",
    "reason_of",
    "run_doctor",
    "run_periodic_publisher",
    "run_reconnect_watchdog",
    "topic_kinds",
]

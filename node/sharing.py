"""How a node shares its slots among the coordinators it trusts: whom a freed slot asks first.

Owns: `SharePolicy`, which remembers when each coordinator last offered a kind this node runs and how
many tasks the node has run for each, and `pull_order`, the order a freed slot pulls in: every
coordinator that has offered within `OFFER_MEMORY_S`, fewest tasks run first, the one just served
last among equals. A coordinator with a long job therefore cannot keep a node to itself while another
one has offered work, and a coordinator alone on the network gets every slot. Time is passed in.
Must not: talk to the network, or decide anything about a task itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

OFFER_MEMORY_S = 10.0
"""How long an offer says "this coordinator has work": longer than the 3 s re-offer interval, so a
coordinator with open tasks stays in the order between its offers, and short enough that one whose
job ended drops out."""


@dataclass
class SharePolicy:
    offered_at: dict[str, float] = field(default_factory=dict)
    served: Counter[str] = field(default_factory=Counter)

    def offered(self, coordinator: str, now: float) -> None:
        self.offered_at[coordinator] = now

    def ran(self, coordinator: str) -> None:
        self.served[coordinator] += 1

    def pull_order(self, current: str, now: float) -> list[str]:
        """Whom a slot freed after a task for `current` asks, in order: `current` and every coordinator
        that offered within OFFER_MEMORY_S, by tasks run here (fewest first; `current` last among ties)."""
        recent = {c for c, t in self.offered_at.items() if now - t <= OFFER_MEMORY_S} | {current}
        return sorted(recent, key=lambda c: (self.served[c], c == current, c))

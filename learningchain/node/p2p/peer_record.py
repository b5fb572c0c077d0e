"""One peer's record in the table: where it came from, how it has behaved, what it was sent.

Split from :mod:`learningchain.node.p2p.peer_table` (the table of these records).
A peer given on the command line is *pinned* (never evicted); a learned peer
that delivered a block to our own sync is *protected* (evicted only after
:data:`PROTECTED_EVICT_AFTER` consecutive failures instead of
:data:`EVICT_AFTER_FAILURES`). After a failure a peer is skipped for
:data:`BACKOFF_START` seconds, doubling up to :data:`BACKOFF_MAX`.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
#: consecutive failures after which a learned peer may make room for a newcomer.
EVICT_AFTER_FAILURES = 3
#: consecutive failures after which even a protected learned peer may be evicted.
PROTECTED_EVICT_AFTER = 20
#: a peer that lists us is told about us again only this often (to learn its new peers).
ANNOUNCE_SECONDS = 30.0


@dataclass
class Peer:
    url: str
    pinned: bool = False     # given with --peers: never evicted
    seed: str = ""           # the --peers DNS name that found it (peer_dns.py)
    delivered: bool = False  # our sync from it connected a block: protected
    failures: int = 0        # consecutive; reset by any answer
    next_try: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    last_error: str = ""
    last_seen: float = 0.0
    height: int | None = None
    ahead: bool = False  # its last tip poll claimed more work than our tip (what readiness believes)
    seen: "OrderedDict[str, None]" = field(default_factory=OrderedDict)
    peers: frozenset = frozenset()  # the peer's own peers, from its answer to our announce
    announced: float = -ANNOUNCE_SECONDS  # when it last answered an announce listing us
    gzip: bool = True  # False once it refused a gzip body (an older node): send it plain
    cost: float = 0.0  # decayed seconds of our time (and bytes) it cost; see PeerCounters._charge
    quick_sends: int = 0  # gossip sends (tx, inv, block) it answered within FREE_SECONDS
    cost_at: float = 0.0

    def available(self, now: float) -> bool:
        return now >= self.next_try

    @property
    def evictable(self) -> bool:
        return not self.pinned and self.failures >= (PROTECTED_EVICT_AFTER if self.delivered
                                                      else EVICT_AFTER_FAILURES)

    def to_dict(self) -> dict:
        return {"url": self.url, "failures": self.failures, "height": self.height, "ahead": self.ahead,
                "source": f"DNS {self.seed}" if self.seed else ("command line" if self.pinned else "learned"),
                "delivered": self.delivered,
                "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
                "last_error": self.last_error, "cost": round(self.cost, 2),
                "last_seen_s_ago": round(time.monotonic() - self.last_seen, 1) if self.last_seen else None,
                "backoff_seconds": round(max(0.0, self.next_try - time.monotonic()), 1),
                "peers": sorted(self.peers)}  # its own peers, as it answered our announce (the explorer's graph)

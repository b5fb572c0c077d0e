"""The peer table: whom we know, how each peer has behaved, and what it was sent.

Split from :mod:`learningchain.peers` (which gossips and syncs over this table).

* Membership. Peers given on the command line (``--peers``) are *pinned*; peers
  learned from another peer's list or from ``POST /peers`` are *learned*. A
  learned peer that delivered a block that connected when *we* synced from it
  (a URL we chose, never the client-supplied ``X-Peer`` header, which anyone
  can set) is *protected*: at most :data:`MAX_PROTECTED` of them, like
  Bitcoin's handful of protected outbound peers.
  When the table is full, a newcomer may take the place of a learned peer only
  after :data:`EVICT_AFTER_FAILURES` consecutive failures
  (:data:`PROTECTED_EVICT_AFTER` for a protected one: a peer that once worked
  and then died must not hold its slot for good). Otherwise anyone could
  push honest peers out with ``POST /peers`` or a crafted peer list (an eclipse:
  Heilman et al., "Eclipse Attacks on Bitcoin's Peer-to-Peer Network", USENIX
  Security 2015, whose counter-measures keep tried, working peers over new ones).
* Back-off. After a failure a peer is skipped for :data:`BACKOFF_START` seconds,
  doubling up to :data:`BACKOFF_MAX`, and reset on success, so a dead peer costs
  one timed-out request now and then, never a stall.
* Counters. Bytes sent and received per peer and per message type (request and
  response bodies plus :data:`HEADER_ESTIMATE` per exchange for the HTTP header
  lines), served in ``/peers`` and ``/status``; the set of ids each peer was
  sent or has sent us (bounded), so nothing is sent to a peer twice.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlsplit

from learningchain.errors import ConfigError

BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
MAX_PEERS = 64
#: consecutive failures after which a learned peer may make room for a newcomer.
EVICT_AFTER_FAILURES = 3
#: learned peers at most kept as protected (delivered blocks to our own sync).
MAX_PROTECTED = 8
#: consecutive failures after which even a protected learned peer may be evicted.
PROTECTED_EVICT_AFTER = 20
SEEN_CAPACITY = 20_000
#: rough size of the HTTP request/response header lines, counted per exchange.
HEADER_ESTIMATE = 200
#: a peer that lists us is told about us again only this often (to learn its new peers).
ANNOUNCE_SECONDS = 30.0


def message_type(method: str, path: str, compact: bool = False) -> str:
    """What an exchange carries, for the per-type byte counters in ``/status``."""
    if path.startswith("/txs"):
        return "tx body" if method == "POST" else "tx fetch"
    if path == "/blocks":
        return "compact block" if compact else "full block"
    return {"/inv": "inv", "/tip": "tip poll", "/status": "status poll", "/peers": "peer announce",
            "/sync/blocks": "sync"}.get(path, "other")


def check_peer_url(url: Any) -> str | None:
    """None if ``url`` is an acceptable peer URL (http/https, any host), else why not."""
    if not isinstance(url, str) or not url or len(url) > 200:
        return "url must be a string of at most 200 characters"
    try:
        parts = urlsplit(url)
        parts.port  # raises on a bad port
    except ValueError:
        return f"url {url!r} is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"url must be http(s)://host[:port], got {url!r}"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "url must not carry a query, fragment or credentials"
    return None


def parse_peer_list(text: str) -> list[str]:
    """``--peers`` (comma-separated URLs) as a list; raises ConfigError naming the
    first URL that :func:`check_peer_url` refuses, instead of dropping it."""
    urls = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        problem = check_peer_url(part)
        if problem is not None:
            raise ConfigError(f"--peers: {problem} (give comma-separated URLs such as "
                              f"http://127.0.0.1:5001)")
        urls.append(normalize(part))
    return urls


def normalize(url: str) -> str:
    return url.rstrip("/")


@dataclass
class Peer:
    url: str
    pinned: bool = False     # given with --peers: never evicted
    delivered: bool = False  # our sync from it connected a block: protected
    failures: int = 0        # consecutive; reset by any answer
    next_try: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    last_error: str = ""
    last_seen: float = 0.0
    height: int | None = None
    seen: "OrderedDict[str, None]" = field(default_factory=OrderedDict)
    peers: frozenset = frozenset()  # the peer's own peers, from its answer to our announce
    announced: float = -ANNOUNCE_SECONDS  # when it last answered an announce listing us
    gzip: bool = True  # False once it refused a gzip body (an older node): send it plain

    def available(self, now: float) -> bool:
        return now >= self.next_try

    @property
    def evictable(self) -> bool:
        return not self.pinned and self.failures >= (PROTECTED_EVICT_AFTER if self.delivered
                                                      else EVICT_AFTER_FAILURES)

    def to_dict(self) -> dict:
        return {"url": self.url, "failures": self.failures, "height": self.height,
                "source": "command line" if self.pinned else "learned", "delivered": self.delivered,
                "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
                "last_error": self.last_error,
                "last_seen_s_ago": round(time.monotonic() - self.last_seen, 1) if self.last_seen else None,
                "backoff_seconds": round(max(0.0, self.next_try - time.monotonic()), 1)}


class PeerTable:
    """Known peers with back-off, eviction, seen-sets and byte counters; thread-safe
    (one lock, held only for dictionary work, never during I/O)."""

    def __init__(self, self_url: str, urls: Iterable[str] = ()):
        self.self_url = normalize(self_url)
        self._peers: dict[str, Peer] = {}
        self._lock = threading.Lock()
        #: message type -> [bytes sent, bytes received, messages, seconds in our requests, requests]
        self._by_type: dict[str, list] = {}
        for url in urls:
            self.add(url, pinned=True)

    # --- membership -------------------------------------------------------------
    def add(self, url: str, pinned: bool = False) -> bool:
        """Add a peer (False if it is us, already known, or the table is full of
        peers that may not be evicted). ``pinned``: given on the command line.
        When full, the learned peer with the most consecutive failures (at least
        :data:`EVICT_AFTER_FAILURES`, or :data:`PROTECTED_EVICT_AFTER` if it is
        protected) makes room."""
        if check_peer_url(url) is not None:
            return False
        url = normalize(url)
        with self._lock:
            if url == self.self_url or url in self._peers:
                return False
            if len(self._peers) >= MAX_PEERS:
                candidates = [p for p in self._peers.values() if p.evictable]
                if not candidates:
                    return False
                worst = max(candidates, key=lambda p: (p.failures, -p.last_seen))
                del self._peers[worst.url]
            self._peers[url] = Peer(url, pinned=pinned)
        return True

    def is_peer(self, url: str | None) -> bool:
        """Is ``url`` in our peer table? (``X-Peer`` is only the client's word.)"""
        if not url:
            return False
        with self._lock:
            return normalize(url) in self._peers

    def mark_delivered(self, url: str | None) -> bool:
        """Our own sync from ``url`` connected a block: protect that learned peer,
        if fewer than :data:`MAX_PROTECTED` are. Call it only for exchanges we
        started with a URL from our table, never for an inbound ``X-Peer``."""
        if not url:
            return False
        with self._lock:
            peer = self._peers.get(normalize(url))
            if peer is None or peer.pinned or peer.delivered:
                return False
            if sum(p.delivered for p in self._peers.values()) >= MAX_PROTECTED:
                return False
            peer.delivered = True
            return True

    def urls(self) -> list[str]:
        with self._lock:
            return list(self._peers)

    def available_urls(self) -> list[str]:
        """Peers not backing off now."""
        now = time.monotonic()
        with self._lock:
            return [u for u, p in self._peers.items() if p.available(now)]

    def __len__(self) -> int:
        return len(self._peers)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [p.to_dict() for p in self._peers.values()]

    # --- outcomes of exchanges ------------------------------------------------------
    def _succeeded(self, peer: Peer | None) -> None:
        if peer is not None:
            with self._lock:
                peer.failures, peer.next_try, peer.last_seen = 0, 0.0, time.monotonic()

    def _failed(self, peer: Peer | None, why: str) -> None:
        if peer is None:
            return
        with self._lock:
            peer.failures += 1
            peer.last_error = why
            delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** (peer.failures - 1))
            peer.next_try = time.monotonic() + delay

    # --- counters -------------------------------------------------------------------
    def traffic(self) -> dict:
        with self._lock:
            by_type = {k: {"sent": v[0], "received": v[1], "messages": v[2]}
                       for k, v in sorted(self._by_type.items())}
            return {"sent": sum(p.bytes_sent for p in self._peers.values()),
                    "received": sum(p.bytes_received for p in self._peers.values()),
                    "by_type": by_type}

    def gossip_time(self) -> tuple[float, int]:
        """Seconds spent in our own requests to peers (send + answer), and how many."""
        with self._lock:
            return sum(v[3] for v in self._by_type.values()), sum(v[4] for v in self._by_type.values())

    def _count(self, kind: str, sent: int, received: int, seconds: float | None = None) -> None:
        """(lock held) add one exchange to the per-type counters."""
        row = self._by_type.setdefault(kind, [0, 0, 0, 0.0, 0])
        row[0] += sent
        row[1] += received
        row[2] += 1
        if seconds is not None:
            row[3] += seconds
            row[4] += 1

    def _count_outbound(self, peer: Peer | None, kind: str, sent: int, received: int, seconds: float) -> None:
        if peer is None:
            return
        with self._lock:
            peer.bytes_sent += sent + HEADER_ESTIMATE
            peer.bytes_received += received + HEADER_ESTIMATE
            self._count(kind, sent + HEADER_ESTIMATE, received + HEADER_ESTIMATE, seconds)

    def count_inbound(self, url: str | None, received: int, sent: int, kind: str = "other") -> None:
        """Bytes of a request a peer made to us (``received``) and of our answer (``sent``)."""
        if not url:
            return
        with self._lock:
            peer = self._peers.get(normalize(url))
            if peer is not None:
                peer.bytes_received += received
                peer.bytes_sent += sent
                self._count(kind, sent, received)

    # --- seen-sets ------------------------------------------------------------------
    def _targets(self, key: str, exclude: str | None) -> list[str]:
        """Peers that have not been sent ``key`` yet and are not backing off. When
        ``key`` came from peer ``exclude``, its own peers are skipped too: it sends to
        them itself (in a fully connected network nobody relays)."""
        now, out = time.monotonic(), []
        with self._lock:
            theirs = self._peers[exclude].peers if exclude in self._peers else frozenset()
            for url, peer in self._peers.items():
                if url == exclude or url in theirs or key in peer.seen or not peer.available(now):
                    continue
                peer.seen[key] = None
                while len(peer.seen) > SEEN_CAPACITY:
                    peer.seen.popitem(last=False)
                out.append(url)
        return out

    def mark_seen(self, url: str | None, key: str) -> None:
        """The peer at ``url`` sent us ``key``: never send it back."""
        if not url:
            return
        with self._lock:
            peer = self._peers.get(normalize(url))
            if peer is not None:
                peer.seen[key] = None

    def _unsee(self, url: str, key: str) -> None:
        with self._lock:
            peer = self._peers.get(url)
            if peer is not None:
                peer.seen.pop(key, None)

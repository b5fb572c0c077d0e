"""The peer table: whom we know, how each peer has behaved, and what it was sent.

Split from :mod:`learningchain.node.p2p.peers` (which gossips and syncs over this table).

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
* Hosts, bounded. A peer is a host: ``scheme://host[:port]``, no path (a URL
  with a path is refused, ``peer-url-path``: 60 paths on one slow server once
  filled every table). One entry per host:port; a learned peer is refused past
  :data:`PORTS_PER_HOST` entries on one IP address and :data:`PEERS_PER_SUBNET`
  in one /24 (IPv4) or /64 (IPv6), and past :data:`LOOPBACK_PEERS` on loopback
  (tests and the demo run every node on 127.0.0.1, each on its own port), the
  per-group limits of Bitcoin Core's address manager (``addrman`` buckets by
  /16, Heilman et al.) in small. Pinned peers are never refused.
* Cost. Every exchange we start costs a peer its wall time over
  :data:`FREE_SECONDS` plus one second per :data:`BYTES_PER_COST_SECOND`
  received or sent over :data:`FREE_BYTES`; the cost decays with a
  half-life of :data:`COST_HALF_LIFE`, and past :data:`COST_BUDGET` the peer
  backs off in proportion (up to :data:`BACKOFF_MAX`): a peer serving 40 MiB
  sync pages or answering slowly is asked less, not forever.
* Evicted is not forgotten: a learned peer that made room for a newcomer is kept
  in a bounded list of *former* peers, offered again (through the handshake)
  after :data:`FORMER_RETRY_SECONDS`, so an honest peer that was down a while
  comes back.
* Counters. Bytes sent and received per peer and per message type (request and
  response bodies plus :data:`HEADER_ESTIMATE` per exchange for the HTTP header
  lines), served in ``/peers`` and ``/status``; the set of ids each peer was
  sent or has sent us (bounded), so nothing is sent to a peer twice.
"""
from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlsplit

from learningchain.core import errors
from learningchain.core.errors import ConfigError

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
#: learned peers at most on one IP address (ports), in one /24 or /64, and on loopback.
PORTS_PER_HOST = 4
PEERS_PER_SUBNET = 8
LOOPBACK_PEERS = 16
#: the cost of an exchange: its seconds over FREE_SECONDS plus one per this many
#: bytes on the wire over FREE_BYTES (so a peer pays for slow or huge exchanges,
#: not for many quick ones: a busy honest peer stays at 0).
BYTES_PER_COST_SECOND = 8 << 20
FREE_SECONDS, FREE_BYTES = 0.5, 1 << 20
#: the message types of gossip sends (see message_type).
GOSSIP_KINDS = ("tx body", "inv", "compact block", "full block")
#: cost (decayed with this half-life, seconds) a peer may run up before it backs off;
#: a peer's back-off is COST_BACKOFF seconds per cost second over the budget. An
#: honest peer costs ~0.1 per half-life (a /tip poll every 2 s: a few ms each).
COST_HALF_LIFE, COST_BUDGET, COST_BACKOFF = 30.0, 4.0, 2.0
#: evicted learned peers remembered to be offered again, and after how long.
MAX_FORMER, FORMER_RETRY_SECONDS = 256, 60.0


def message_type(method: str, path: str, compact: bool = False) -> str:
    """What an exchange carries, for the per-type byte counters in ``/status``."""
    if path.startswith("/txs"):
        return "tx body" if method == "POST" else "tx fetch"
    if path == "/blocks":
        return "compact block" if compact else "full block"
    return {"/inv": "inv", "/tip": "tip poll", "/status": "status poll", "/peers": "peer announce",
            "/sync/blocks": "sync", "/sync/headers": "sync"}.get(path, "other")


def peer_url_refusal(url: Any) -> tuple[str, str] | None:
    """None if ``url`` names a peer (``http(s)://host[:port]``, at most a trailing
    ``/``), else ``(reason code, why)``: ``peer-url-path`` for a path, else
    ``bad-peer-url``."""
    if not isinstance(url, str) or not url or len(url) > 200:
        return "bad-peer-url", "url must be a string of at most 200 characters"
    try:
        parts = urlsplit(url)
        parts.port  # raises on a bad port
    except ValueError:
        return "bad-peer-url", f"url {url!r} is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "bad-peer-url", f"url must be http(s)://host[:port], got {url!r}"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "bad-peer-url", "url must not carry a query, fragment or credentials"
    if parts.path not in ("", "/"):
        return errors.PEER_URL_PATH, f"a peer is a host, http(s)://host[:port] without a path; got {url!r}"
    return None


def check_peer_url(url: Any) -> str | None:
    """None if ``url`` is an acceptable peer URL (:func:`peer_url_refusal`), else why not."""
    refusal = peer_url_refusal(url)
    return refusal[1] if refusal else None


def host_groups(url: str) -> tuple[str, str, str]:
    """``(host:port, host, subnet)`` of a peer URL: what the per-host and
    per-subnet caps count. Every loopback address (and ``localhost``) is one
    host, ``loopback``; a host name is its own host and subnet (never resolved:
    a lookup per offer would be a cost anyone could impose)."""
    parts = urlsplit(url)
    name = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        if name == "localhost" or name.endswith(".localhost"):
            return f"loopback:{port}", "loopback", "loopback"
        return f"{name}:{port}", name, name
    if ip.is_loopback:
        return f"loopback:{port}", "loopback", "loopback"
    subnet = ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}", str(ip), str(subnet)


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
    """The table's spelling of a peer URL: scheme and host in lower case, no
    trailing ``/``."""
    url = url.rstrip("/")
    scheme, sep, rest = url.partition("://")
    return f"{scheme.lower()}{sep}{rest.lower()}" if sep and "/" not in rest else url


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
    cost: float = 0.0  # decayed seconds of our time (and bytes) it cost; see PeerTable._charge
    quick_sends: int = 0  # gossip sends (tx, inv, block) it answered within FREE_SECONDS
    cost_at: float = 0.0

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
                "last_error": self.last_error, "cost": round(self.cost, 2),
                "last_seen_s_ago": round(time.monotonic() - self.last_seen, 1) if self.last_seen else None,
                "backoff_seconds": round(max(0.0, self.next_try - time.monotonic()), 1)}


class PeerTable:
    """Known peers with back-off, eviction, seen-sets and byte counters; thread-safe
    (one lock, held only for dictionary work, never during I/O)."""

    def __init__(self, self_url: str, urls: Iterable[str] = ()):
        self.self_url = normalize(self_url)
        self._peers: dict[str, Peer] = {}
        self._lock = threading.Lock()
        self.self_key = host_groups(self.self_url)[0] if check_peer_url(self.self_url) is None else self.self_url
        # the caps, per table (a test of eviction may lift them)
        self.ports_per_host, self.peers_per_subnet, self.loopback_peers = (PORTS_PER_HOST, PEERS_PER_SUBNET,
                                                                           LOOPBACK_PEERS)
        self._former: OrderedDict[str, float] = OrderedDict()  # evicted learned peer -> retry after
        self.refused_peers: dict[str, int] = {}  # reason -> peers refused since start
        #: message type -> [bytes sent, bytes received, messages, seconds in our requests, requests]
        self._by_type: dict[str, list] = {}
        for url in urls:
            self.add(url, pinned=True)

    # --- membership -------------------------------------------------------------
    def add(self, url: str, pinned: bool = False) -> bool:
        """Add a peer (False if it is us, already known, or refused: see :meth:`admit`)."""
        return self.admit(url, pinned) is None

    def admit(self, url: str, pinned: bool = False) -> str | None:
        """Add a peer; None if added, else why not (``known``, ``self``, or a reason
        code: a bad URL, ``peer-host-full``, ``peer-subnet-full``,
        ``peer-table-full``). ``pinned``: given on the command line, never refused
        by the caps. When full, the learned peer with the most consecutive
        failures (at least :data:`EVICT_AFTER_FAILURES`, or
        :data:`PROTECTED_EVICT_AFTER` if it is protected) makes room and becomes
        a *former* peer, offered again later."""
        refusal = peer_url_refusal(url)
        if refusal is not None:
            return refusal[0]
        url = normalize(url)
        with self._lock:
            problem, group = self._refusal(url, pinned)
            if problem is None and len(self._peers) >= MAX_PEERS:
                problem, group = errors.PEER_TABLE_FULL, (lambda _url: True)
            if problem in (errors.PEER_HOST_FULL, errors.PEER_SUBNET_FULL, errors.PEER_TABLE_FULL):
                candidates = [p for p in self._peers.values() if p.evictable and group(p.url)]
                if candidates:  # a learned peer of the same group (or any, if the table is full) that keeps failing
                    worst = max(candidates, key=lambda p: (p.failures, -p.last_seen))
                    del self._peers[worst.url]
                    self._remember_former(worst.url)
                    problem = None
            if problem is not None:
                if problem not in ("known", "self"):
                    self.refused_peers[problem] = self.refused_peers.get(problem, 0) + 1
                return problem
            self._peers[url] = Peer(url, pinned=pinned)
            self._former.pop(url, None)
        return None

    def refusal(self, url: str) -> str | None:
        """Why :meth:`admit` would refuse ``url`` as a learned peer now (no change)."""
        refusal = peer_url_refusal(url)
        if refusal is not None:
            return refusal[0]
        with self._lock:
            problem, group = self._refusal(normalize(url), False)
            if problem is None and len(self._peers) >= MAX_PEERS:
                problem, group = errors.PEER_TABLE_FULL, (lambda _url: True)
            if problem in (errors.PEER_HOST_FULL, errors.PEER_SUBNET_FULL, errors.PEER_TABLE_FULL) and any(
                    p.evictable and group(p.url) for p in self._peers.values()):
                problem = None
            return problem

    def _refusal(self, url: str, pinned: bool):
        """(lock held) ``(problem, group)``: us, known, or over a per-host /
        per-subnet cap (``group``: which peers that cap counts, the ones that may
        make room), else ``(None, None)``."""
        key, host, subnet = host_groups(url)
        if url == self.self_url or key == self.self_key:
            return "self", None
        if url in self._peers:
            return "known", None
        same_host = same_subnet = 0
        for other in self._peers:
            k, h, n = host_groups(other)
            if k == key:
                return "known", None  # one entry per host:port (http and https alike)
            same_host += h == host
            same_subnet += n == subnet
        if pinned:
            return None, None
        on_host = lambda other: host_groups(other)[1] == host  # noqa: E731
        if host == "loopback":
            return (errors.PEER_HOST_FULL, on_host) if same_host >= self.loopback_peers else (None, None)
        if same_host >= self.ports_per_host:
            return errors.PEER_HOST_FULL, on_host
        if same_subnet >= self.peers_per_subnet:
            return errors.PEER_SUBNET_FULL, lambda other: host_groups(other)[2] == subnet
        return None, None

    def _remember_former(self, url: str) -> None:
        """(lock held) an evicted learned peer: offered again after a while."""
        self._former[url] = time.monotonic() + FORMER_RETRY_SECONDS
        self._former.move_to_end(url)
        while len(self._former) > MAX_FORMER:
            self._former.popitem(last=False)

    def former_due(self, limit: int = 2) -> list[str]:
        """Up to ``limit`` former peers whose retry time has come (taken off the list)."""
        now, out = time.monotonic(), []
        with self._lock:
            if len(self._peers) >= MAX_PEERS:
                return []
            for url, when in list(self._former.items()):
                if len(out) >= limit:
                    break
                if when <= now:
                    del self._former[url]
                    out.append(url)
        return out

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
                peer.failures, peer.last_seen = 0, time.monotonic()
                if peer.cost <= COST_BUDGET:  # an answer ends a failure back-off, not a cost one
                    peer.next_try = 0.0

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
            if seconds <= FREE_SECONDS and kind in GOSSIP_KINDS:
                peer.quick_sends += 1
            self._charge(peer, max(0.0, seconds - FREE_SECONDS)
                         + max(0, sent + received - FREE_BYTES) / BYTES_PER_COST_SECOND)

    def _charge(self, peer: Peer, cost: float) -> None:
        """(lock held) add ``cost`` to the peer's decayed cost; over the budget it
        backs off :data:`COST_BACKOFF` seconds per cost second over (at most
        :data:`BACKOFF_MAX`)."""
        now = time.monotonic()
        peer.cost = peer.cost * 0.5 ** ((now - peer.cost_at) / COST_HALF_LIFE) + cost
        peer.cost_at = now
        if peer.cost > COST_BUDGET:
            peer.next_try = max(peer.next_try, now + min(BACKOFF_MAX, (peer.cost - COST_BUDGET) * COST_BACKOFF))

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

"""The peer table: whom we know, which newcomers may join or take a failing peer's place, and what each was sent.

Gossip and sync run over it (:mod:`learningchain.node.p2p.peers`); one peer's
record is :mod:`learningchain.node.p2p.peer_record`, peer URLs and their host
groups :mod:`learningchain.node.p2p.peer_urls`, traffic counters and cost
:mod:`learningchain.node.p2p.peer_counters`.

* Membership. Peers given on the command line (``--peers``) are *pinned*; peers
  learned from another peer's list or from ``POST /peers`` are *learned*. A
  learned peer that delivered a block that connected when *we* synced from it
  (a URL we chose, never the client-supplied ``X-Peer`` header, which anyone
  can set) is *protected*: at most :data:`MAX_PROTECTED` of them, like
  Bitcoin's handful of protected outbound peers.
  When the table is full, a newcomer may take the place of a learned peer only
  after :data:`~learningchain.node.p2p.peer_record.EVICT_AFTER_FAILURES`
  consecutive failures
  (:data:`~learningchain.node.p2p.peer_record.PROTECTED_EVICT_AFTER` for a
  protected one: a peer that once worked and then died must not hold its slot
  for good). Otherwise anyone could
  push honest peers out with ``POST /peers`` or a crafted peer list (an eclipse:
  Heilman et al., "Eclipse Attacks on Bitcoin's Peer-to-Peer Network", USENIX
  Security 2015, whose counter-measures keep tried, working peers over new ones).
* Back-off. After a failure a peer is skipped for
  :data:`~learningchain.node.p2p.peer_record.BACKOFF_START` seconds, doubling up
  to :data:`~learningchain.node.p2p.peer_record.BACKOFF_MAX`, and reset on
  success, so a dead peer costs one timed-out request now and then, never a stall.
* Hosts, bounded. One entry per host:port; a learned peer is refused past
  :data:`PORTS_PER_HOST` entries on one IP address and :data:`PEERS_PER_SUBNET`
  in one /24 (IPv4) or /64 (IPv6), and past :data:`LOOPBACK_PEERS` on loopback
  (tests and the demo run every node on 127.0.0.1, each on its own port), the
  per-group limits of Bitcoin Core's address manager (``addrman`` buckets by
  /16, Heilman et al.) in small. Pinned peers are never refused.
* Evicted is not forgotten: a learned peer that made room for a newcomer is kept
  in a bounded list of *former* peers, offered again (through the handshake)
  after :data:`FORMER_RETRY_SECONDS`, so an honest peer that was down a while
  comes back.
* Seen-sets: the ids each peer was sent or has sent us (bounded), so nothing is
  sent to a peer twice.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Iterable

from learningchain.core import errors
from learningchain.node.p2p.peer_counters import COST_BUDGET, PeerCounters
from learningchain.node.p2p.peer_record import BACKOFF_MAX, BACKOFF_START, Peer
from learningchain.node.p2p.peer_urls import check_peer_url, host_groups, normalize, peer_url_refusal

MAX_PEERS = 64
#: learned peers at most kept as protected (delivered blocks to our own sync).
MAX_PROTECTED = 8
SEEN_CAPACITY = 20_000
#: learned peers at most on one IP address (ports), in one /24 or /64, and on loopback.
PORTS_PER_HOST = 4
PEERS_PER_SUBNET = 8
LOOPBACK_PEERS = 16
#: evicted learned peers remembered to be offered again, and after how long.
MAX_FORMER, FORMER_RETRY_SECONDS = 256, 60.0


class PeerTable(PeerCounters):
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
        self._init_counters()  # peer_counters.py
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
        failures (at least
        :data:`~learningchain.node.p2p.peer_record.EVICT_AFTER_FAILURES`, or
        :data:`~learningchain.node.p2p.peer_record.PROTECTED_EVICT_AFTER` if it
        is protected) makes room and becomes
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

    def heard_from(self, url: str | None) -> None:
        """A peer of our table sent us a new block whose proof of work checked out:
        it is reachable again, so its failure back-off ends (after a partition heals,
        up to :data:`BACKOFF_MAX` of waiting on each side otherwise). Only new work
        counts: a replayed or invalid block costs the sender nothing and resets nothing."""
        if not url:
            return
        with self._lock:
            peer = self._peers.get(normalize(url))
        self._succeeded(peer)

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

"""Peers: who we talk to, gossip out, and catching up with longer chains.

* :class:`PeerSet` keeps known peer URLs with a failure count and an
  exponential back-off (next try doubling from 0.5 s up to :data:`BACKOFF_MAX`),
  so a dead peer costs one timed-out request now and then, never a stall.
* Gossip is fire-and-forget from a small thread pool with short timeouts
  (:data:`TIMEOUT`: connect 1 s, read 3 s), a deadline on each whole exchange
  and a cap on reply size (:mod:`learningchain.httpclient`). Each id/hash is
  sent to each peer at most once (bounded seen-set).
* Transactions we relay (not our own) are *announced* first
  (``POST /inv {"txs": [id]}``); the peer answers which ids it wants, and only
  those bodies travel. Our own transaction is pushed whole: nobody has it yet.
* Blocks travel *compact* (the idea of BIP 152): header, commitment and tx ids;
  the receiver rebuilds the block from its mempool and fetches only the txs it
  lacks with ``GET /txs/<id>`` from the sender. Weights therefore cross each
  link about once per round.
* Sync: on start and every :data:`SYNC_SECONDS`, poll each peer's ``/tip``
  (height, tip, work); if it claims more work, fetch its main-chain blocks after our locator
  (``POST /sync/blocks``) page by page and submit them. Orphans trigger the
  same sync with the peer that sent them.

Bytes sent and received are counted per peer (request and response bodies plus
a fixed estimate of the HTTP headers) and served in ``/peers`` and ``/status``.
See docs/api.md, "Gossip and sync".
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from learningchain.compact import COMPACT_UNKNOWN_PEER, compact_block
from learningchain.encoding import EncodingError, canonical_json, parse_json
from learningchain.errors import ConfigError, ValidationError
from learningchain.httpclient import BoundedSession, PeerReplyError

if TYPE_CHECKING:
    from learningchain.service import Node

TIMEOUT = (1.0, 3.0)  # (connect, read) seconds, per socket operation
#: seconds for a whole exchange with a peer, however it trickles (httpclient.py).
REQUEST_DEADLINE = 10.0
#: bytes of one sync page the serving node aims at (it sends at least one block).
SYNC_PAGE_BYTES = 8 << 20
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
SYNC_SECONDS = 2.0
SYNC_PAGE = 100
MAX_PEERS = 64
SEEN_CAPACITY = 20_000
#: rough size of the HTTP request/response header lines, counted per exchange.
HEADER_ESTIMATE = 200
#: a peer refusing a tx for these reasons is probably behind us: offer it again later.
RETRY_REASONS = ("tx-round-not-open", "tx-wrong-base-model")
#: a peer that lists us is told about us again only this often (to learn its new peers).
ANNOUNCE_SECONDS = 30.0
#: after answering "want" to one announcer, other announcers of the same tx id are
#: refused for this long: the body is on its way (Bitcoin's in-flight request table).
EXPECT_SECONDS = 5.0
EXPECT_CAPACITY = 10_000


def max_reply_bytes(max_block_bytes: int) -> int:
    """The largest reply we read from a peer: a sync page (:data:`SYNC_PAGE_BYTES`
    plus the one block that may overshoot it) with room for JSON framing."""
    return SYNC_PAGE_BYTES + 2 * max_block_bytes + (1 << 20)


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
    failures: int = 0
    next_try: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    last_error: str = ""
    last_seen: float = 0.0
    height: int | None = None
    seen: "OrderedDict[str, None]" = field(default_factory=OrderedDict)
    peers: frozenset = frozenset()  # the peer's own peers, from its answer to our announce
    announced: float = -ANNOUNCE_SECONDS  # when it last answered an announce listing us

    def available(self, now: float) -> bool:
        return now >= self.next_try

    def to_dict(self) -> dict:
        return {"url": self.url, "failures": self.failures, "height": self.height,
                "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
                "last_error": self.last_error,
                "last_seen_s_ago": round(time.monotonic() - self.last_seen, 1) if self.last_seen else None,
                "backoff_seconds": round(max(0.0, self.next_try - time.monotonic()), 1)}


class PeerSet:
    def __init__(self, node: "Node", self_url: str, urls=(), deadline: float = REQUEST_DEADLINE,
                 max_reply: int | None = None):
        self.node = node
        self.self_url = normalize(self_url)
        self._peers: dict[str, Peer] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gossip")
        self._session = BoundedSession(TIMEOUT, deadline, max_reply or max_reply_bytes(node.config.max_block_bytes))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._syncing: set[str] = set()
        self._expected: OrderedDict[str, float] = OrderedDict()  # tx id -> deadline of its body
        #: message type -> [bytes sent, bytes received, messages, seconds in our requests, requests]
        self._by_type: dict[str, list] = {}
        for url in urls:
            self.add(url)

    # --- membership -------------------------------------------------------------
    def add(self, url: str) -> bool:
        """Add a peer (False if it is us, already known, or the set is full of peers
        that answer). When full, the peer with the most consecutive failures makes
        room, if it has failed at all: otherwise anyone could fill the table with
        dead URLs through ``POST /peers`` and keep every real peer out for good."""
        if check_peer_url(url) is not None:
            return False
        url = normalize(url)
        with self._lock:
            if url == self.self_url or url in self._peers:
                return False
            if len(self._peers) >= MAX_PEERS:
                worst = max(self._peers.values(), key=lambda p: (p.failures, -p.last_seen))
                if worst.failures == 0:
                    return False
                del self._peers[worst.url]
            self._peers[url] = Peer(url)
        return True

    def is_peer(self, url: str | None) -> bool:
        """Is ``url`` in our peer table? (``X-Peer`` is only the client's word.)"""
        if not url:
            return False
        with self._lock:
            return normalize(url) in self._peers

    def urls(self) -> list[str]:
        with self._lock:
            return list(self._peers)

    def __len__(self) -> int:
        return len(self._peers)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [p.to_dict() for p in self._peers.values()]

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

    # --- one HTTP exchange ----------------------------------------------------------
    def request(self, url: str, method: str, path: str, body: Any = None) -> tuple[int, Any] | None:
        """One exchange with a peer; None when it failed (the peer then backs off).
        The reply body is decoded with :func:`parse_json` (NaN and deep nesting refused)."""
        peer = self._peers.get(url)
        data = canonical_json(body) if body is not None else None
        headers = {"X-Peer": self.self_url}
        if data is not None:
            headers["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        try:
            code, content = self._session.request(method, url + path, data=data, headers=headers)
            doc = parse_json(content) if content else None
        except PeerReplyError as exc:
            self._failed(peer, str(exc))
            return None
        except (requests.RequestException, EncodingError) as exc:
            self._failed(peer, type(exc).__name__)
            return None
        if peer is not None:
            kind = message_type(method, path, isinstance(body, dict) and "compact" in body)
            with self._lock:
                peer.bytes_sent += len(data or b"") + HEADER_ESTIMATE
                peer.bytes_received += len(content) + HEADER_ESTIMATE
                self._count(kind, len(data or b"") + HEADER_ESTIMATE, len(content) + HEADER_ESTIMATE,
                            time.perf_counter() - t0)
        if code >= 500:
            self._failed(peer, f"HTTP {code}")
            return None
        if peer is not None:
            with self._lock:
                peer.failures, peer.next_try, peer.last_seen = 0, 0.0, time.monotonic()
        return code, doc

    def _failed(self, peer: Peer | None, why: str) -> None:
        if peer is None:
            return
        with self._lock:
            peer.failures += 1
            peer.last_error = why
            delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** (peer.failures - 1))
            peer.next_try = time.monotonic() + delay

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

    # --- gossip -------------------------------------------------------------------------
    def broadcast_tx(self, tx, exclude: str | None = None, push: bool = False) -> list:
        """Send ``tx`` to every peer once; returns the futures (tests may wait on them).
        ``push``: send the body without announcing it first. Only for an update we
        have just signed: nobody else can hold it yet, so an announcement would cost
        a round trip and save nothing."""
        futures = []
        for url in self._targets(tx.id, exclude and normalize(exclude)):
            futures.append(self._pool.submit(self._send_tx, url, tx, push))
        return futures

    def _send_tx(self, url: str, tx, push: bool) -> None:
        """Announce, then send the body only if the peer wants it (it does not want
        what it has, nor what another peer has just promised to send it)."""
        if not push:
            reply = self.request(url, "POST", "/inv", {"txs": [tx.id]})
            if reply is None:
                return self._unsee(url, tx.id)
            if reply[0] != 200 or not isinstance(reply[1], dict) or tx.id not in (reply[1].get("want") or []):
                return
        reply = self.request(url, "POST", "/txs", tx.to_dict())
        if reply is None or (isinstance(reply[1], dict) and reply[1].get("reason") in RETRY_REASONS):
            self._unsee(url, tx.id)  # not delivered, or the peer is behind: a rebroadcast retries

    def wanted(self, ids: list[str], announcer: str | None) -> list[str]:
        """Answer to ``POST /inv``: the ids we neither hold nor were promised by
        another announcer within :data:`EXPECT_SECONDS`. The announcer has them
        all, so we never send them to it."""
        now, want = time.monotonic(), []
        for txid in ids:
            self.mark_seen(announcer, txid)
            if self.node.lookup_tx(txid) is not None:
                continue
            with self._lock:
                if self._expected.get(txid, 0.0) > now:
                    continue
                self._expected[txid] = now + EXPECT_SECONDS
                self._expected.move_to_end(txid)
                while len(self._expected) > EXPECT_CAPACITY:
                    self._expected.popitem(last=False)
            want.append(txid)
        return want

    def _unsee(self, url: str, key: str) -> None:
        with self._lock:
            peer = self._peers.get(url)
            if peer is not None:
                peer.seen.pop(key, None)

    def broadcast_block(self, block, exclude: str | None = None) -> list:
        futures = []
        compact = compact_block(block)
        for url in self._targets(block.hash, exclude and normalize(exclude)):
            futures.append(self._pool.submit(self._send_block, url, block, compact))
        return futures

    def _send_block(self, url: str, block, compact: dict) -> None:
        reply = self.request(url, "POST", "/blocks", {"compact": compact})
        if reply is None:
            self._unsee(url, block.hash)
        elif isinstance(reply[1], dict) and (reply[1].get("status") == "missing-txs"
                                             or reply[1].get("reason") == COMPACT_UNKNOWN_PEER):
            self.request(url, "POST", "/blocks", block.to_dict())  # the peer could not rebuild it

    def fetch_source(self, url: str | None) -> str:
        """``url`` normalised, if it is a peer in our table that is not backing off:
        the only kind of sender we fetch a compact block's missing txs from."""
        url = normalize(url) if url else None
        with self._lock:
            peer = self._peers.get(url) if url else None
            if peer is not None and peer.available(time.monotonic()):
                return url
        why = ("no X-Peer header" if url is None else
               f"{url} is not in our peer table" if peer is None else f"{url} is backing off")
        raise ValidationError(COMPACT_UNKNOWN_PEER, f"some transactions of this compact block are unknown "
                                                    f"here and {why}: send the full block")

    def fetch_tx(self, url: str, txid: str) -> dict | None:
        reply = self.request(normalize(url), "GET", f"/txs/{txid}")
        if reply is None or reply[0] != 200 or not isinstance(reply[1], dict):
            return None
        return reply[1].get("tx")

    def announce(self) -> None:
        """Tell every peer about us (``POST /peers``) and learn the peers they know.
        Peers backing off are skipped: a peer that never answers must not cost the
        sync loop a read timeout on every tick. A peer whose answer listed us is
        announced to again only after :data:`ANNOUNCE_SECONDS`; its list tells
        gossip whom it reaches itself."""
        now = time.monotonic()
        with self._lock:
            urls = [u for u, p in self._peers.items()
                    if p.available(now) and now - p.announced >= ANNOUNCE_SECONDS]
        for url in urls:
            reply = self.request(url, "POST", "/peers", {"url": self.self_url})
            if not reply or not isinstance(reply[1], dict) or not isinstance(reply[1].get("peers"), list):
                continue
            listed = frozenset(normalize(o) for o in reply[1]["peers"][:MAX_PEERS]
                               if isinstance(o, str) and check_peer_url(o) is None)
            for other in listed:
                self.add(other)
            with self._lock:
                peer = self._peers.get(url)
                if peer is not None:
                    if self.self_url in listed and listed == peer.peers:
                        peer.announced = now  # it knows us and its list has settled
                    peer.peers = listed

    # --- sync -----------------------------------------------------------------------------
    def sync_with(self, url: str) -> int:
        """Fetch and submit the peer's main-chain blocks after our locator until
        caught up; returns how many blocks were new to us."""
        url = normalize(url)
        with self._lock:
            if url in self._syncing:
                return 0
            self._syncing.add(url)
        added = 0
        try:
            for _ in range(1000):  # bounded: 1000 pages
                reply = self.request(url, "POST", "/sync/blocks",
                                     {"locator": self.node.locator(), "limit": SYNC_PAGE})
                if reply is None or reply[0] != 200 or not isinstance(reply[1], dict):
                    return added
                docs = reply[1].get("blocks")
                if not isinstance(docs, list) or not docs:
                    return added
                new = 0
                for doc in docs:
                    status = self.node.receive_block_doc(doc, peer=url, relay=False)
                    if status in ("connected", "reorg", "side"):
                        new += 1
                    elif status not in ("known",):
                        return added + new
                added += new
                if (len(docs) < SYNC_PAGE and not reply[1].get("more")) or new == 0:
                    return added
            return added
        finally:
            with self._lock:
                self._syncing.discard(url)

    def sync_once(self) -> None:
        now = time.monotonic()
        with self._lock:
            urls = [u for u, p in self._peers.items() if p.available(now)]
        my_height, my_tip = self.node.tip_info()
        for url in urls:
            reply = self.request(url, "GET", "/tip")  # height, tip, work: a tenth of /status
            if reply is None or reply[0] != 200 or not isinstance(reply[1], dict):
                continue
            height, tip, work = reply[1].get("height"), reply[1].get("tip"), reply[1].get("work")
            if isinstance(height, int):
                with self._lock:
                    if url in self._peers:
                        self._peers[url].height = height
            if self._ahead(height, tip, work, my_height, my_tip) and self.sync_with(url):
                my_height, my_tip = self.node.tip_info()

    def _ahead(self, height, tip, work, my_height: int, my_tip: str) -> bool:
        """Does the peer claim more work than us (or, without a work figure, more height)?"""
        if not isinstance(tip, str) or tip == my_tip or self.node.knows_block(tip):
            return False
        if isinstance(work, str) and 0 < len(work) <= 80:
            try:
                return int(work, 16) > self.node.tip_work()
            except ValueError:
                pass
        return isinstance(height, int) and height >= my_height

    def sync_in_background(self, url: str | None) -> None:
        if url and check_peer_url(url) is None:
            self.add(url)
            self._pool.submit(self.sync_with, url)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.announce()  # cheap; peers started after us learn of us too
                self.sync_once()
                self.node.rebroadcast_own()
            except Exception as exc:  # the loop must survive anything a peer sends
                self.node.log(f"sync error: {type(exc).__name__}: {exc}")
            self._stop.wait(SYNC_SECONDS)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="peer-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._session.close()

"""The peer set the node uses: the peer table, one HTTP exchange with a peer, and the peer loop.

Its parts (the table its base class, the others mixins of :class:`PeerSet`):

* :mod:`learningchain.node.p2p.peer_table`: membership, back-off, eviction,
  counters (with :mod:`~learningchain.node.p2p.peer_record`,
  :mod:`~learningchain.node.p2p.peer_urls`, :mod:`~learningchain.node.p2p.peer_counters`);
* :mod:`learningchain.node.p2p.gossip`: what gossip sends (tx announce and push,
  compact blocks, our address), on bounded per-peer queues and lanes
  (:mod:`learningchain.node.p2p.gossip_lanes`);
* :mod:`learningchain.node.p2p.tx_fetch`: a compact block's missing txs from its sender;
* :mod:`learningchain.node.p2p.peer_sync`: headers-first sync;
* :mod:`learningchain.node.p2p.peer_offers`: learned peers join only after a handshake;
* :mod:`learningchain.node.p2p.peer_dns`: a ``--peers`` DNS name with several
  addresses is one peer per address, resolved again every 30 s.

What it needs of the node is :class:`~learningchain.node.p2p.peer_host.PeerHost`.

* An exchange (:meth:`PeerSet.request`) has short timeouts (:data:`TIMEOUT`:
  connect 1 s, read 3 s), a deadline on the whole exchange and a cap on reply
  size per kind of request (:func:`reply_cap`,
  :mod:`learningchain.node.p2p.httpclient`). Bodies over 1 KiB travel
  gzip-encoded, replies too (:mod:`learningchain.node.p2p.wire`); a peer that
  refuses a gzip body is sent plain. Small requests (:data:`SMALL_REQUESTS`)
  have a :data:`SMALL_REQUEST_DEADLINE` instead of :data:`REQUEST_DEADLINE`.
* The peer loop, every :data:`SYNC_SECONDS`: announce, sync with peers ahead of
  us, rebroadcast the mempool; the peer list is saved every
  :data:`SAVE_PEERS_TICKS` passes (:mod:`learningchain.node.p2p.peer_file`).

See docs/api.md, "Gossip and sync".
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterable

import requests

from learningchain.core.encoding import EncodingError, canonical_json, parse_json
from learningchain.ledger.headers import MAX_HEADERS_PAGE
from learningchain.node.p2p.gossip import Gossip
from learningchain.node.p2p.gossip_lanes import GossipLanes
from learningchain.node.p2p.httpclient import BoundedSession, PeerReplyError
from learningchain.node.p2p.peer_counters import message_type
from learningchain.node.p2p.peer_dns import DnsSeeds, Resolver, ReverseResolver
from learningchain.node.p2p.peer_file import load_peers, save_peers
from learningchain.node.p2p.peer_host import PeerHost
from learningchain.node.p2p.peer_offers import PeerOffers
from learningchain.node.p2p.peer_sync import PeerSync
from learningchain.node.p2p.peer_table import PeerTable
from learningchain.node.p2p.tx_fetch import TxFetch
from learningchain.node.p2p.wire import gzip_for_wire
from learningchain.node.tls import TlsConfig

TIMEOUT = (1.0, 3.0)  # (connect, read) seconds, per socket operation
#: seconds for a whole exchange with a peer, however it trickles (httpclient.py).
REQUEST_DEADLINE = 10.0
#: bytes of one sync page the serving node aims at (it sends at least one block).
SYNC_PAGE_BYTES = 8 << 20
SYNC_SECONDS = 2.0
#: sync-loop passes between two saves of the peer list (about a minute).
SAVE_PEERS_TICKS = 30
#: the largest reply to a request whose answer is a few fields or a peer list
#: (/tip, /status, /peers, /inv, and our POSTs of txs and blocks).
SMALL_REPLY_BYTES = 64 << 10
#: an upper bound on one header as JSON (about 560 bytes).
HEADER_JSON_BYTES = 1024
#: requests whose answer is a few fields get this deadline, not REQUEST_DEADLINE: a
#: peer that trickles them must not hold the (serial) sync loop for 10 s a poll.
SMALL_REQUEST_DEADLINE = 3.0
SMALL_REQUESTS = (("GET", "/tip"), ("GET", "/status"), ("POST", "/peers"), ("POST", "/inv"))


def max_reply_bytes(max_block_bytes: int) -> int:
    """The largest sync page we read from a peer: :data:`SYNC_PAGE_BYTES` plus the
    one block that may overshoot it, with room for JSON framing."""
    return SYNC_PAGE_BYTES + 2 * max_block_bytes + (1 << 20)


def refuses_gzip(code: int, doc: Any) -> bool:
    """Did a peer refuse a gzip body as a node without gzip support would? A
    server that knows no content codings answers 415 (RFC 9110 section 15.5.16);
    our nodes before gzip support read the gzip bytes as JSON: 400 ``bad-json``."""
    return code == 415 or (code == 400 and isinstance(doc, dict) and doc.get("reason") == "bad-json")


def reply_cap(method: str, path: str, max_tx_bytes: int, max_block_bytes: int) -> int:
    """The largest reply we read for one kind of request: a sync page for
    ``/sync/blocks``, a block for ``GET /blocks/...``, a tx with its status for
    ``GET /txs/<id>``, :data:`SMALL_REPLY_BYTES` for everything else (``/tip`` is
    polled every 2 s: a peer must not make each poll cost megabytes)."""
    if path == "/sync/blocks":
        return max_reply_bytes(max_block_bytes)
    if path == "/sync/headers":
        return MAX_HEADERS_PAGE * HEADER_JSON_BYTES + SMALL_REPLY_BYTES
    if method == "GET" and path.startswith("/blocks/"):
        return max_block_bytes + SMALL_REPLY_BYTES
    if method == "GET" and path.startswith("/txs/"):
        return max_tx_bytes + SMALL_REPLY_BYTES
    return SMALL_REPLY_BYTES


class PeerSet(Gossip, TxFetch, PeerSync, PeerOffers, DnsSeeds, GossipLanes, PeerTable):
    """The peer table plus what the node does with it: gossip (on bounded per-peer
    queues, :mod:`learningchain.node.p2p.gossip_lanes`), offers and handshakes
    (:mod:`learningchain.node.p2p.peer_offers`), announce, compact blocks' tx
    fetches, sync."""

    def __init__(self, node: PeerHost, self_url: str, urls: Iterable[str] = (), deadline: float = REQUEST_DEADLINE,
                 max_reply: int | None = None, resolver: Resolver | None = None,
                 reverse: ReverseResolver | None = None, tls: TlsConfig | None = None):
        urls = list(urls)
        super().__init__(self_url, urls)
        self.node = node
        self._init_dns(urls, resolver, reverse)  # peer_dns.py: DNS names among --peers
        self._init_lanes()  # gossip_lanes.py
        self._init_sync()  # peer_sync.py
        self._max_reply = max_reply  # a ceiling over reply_cap (tests)
        self._session = BoundedSession(TIMEOUT, deadline, max_reply or max_reply_bytes(node.config.max_block_bytes),
                                       tls)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._init_gossip()  # gossip.py
        self._init_fetch()  # tx_fetch.py
        # the handshake's session (peer_offers.py), also for SMALL_REQUESTS (short deadline, small replies)
        self._handshake_session = BoundedSession(TIMEOUT, min(deadline, SMALL_REQUEST_DEADLINE), SMALL_REPLY_BYTES,
                                                 tls)
        self._init_offers()

    # --- one HTTP exchange ----------------------------------------------------------
    def request(self, url: str, method: str, path: str, body: Any = None) -> tuple[int, Any] | None:
        """One exchange with a peer; None when it failed (the peer then backs off).
        A body is sent gzip-encoded when :func:`~learningchain.node.p2p.wire.gzip_for_wire`
        says so (large enough, and within the receivers' ratio rule), unless the
        peer refused gzip once (then plain from now on); the reply is
        read up to :func:`reply_cap` bytes (decoded) and decoded with
        :func:`parse_json` (NaN and deep nesting refused). The traffic counters
        count the bytes on the wire."""
        peer = self._peers.get(url)
        data = canonical_json(body) if body is not None else None
        encoded = gzip_for_wire(data) if data is not None and (peer is None or peer.gzip) else None
        gzip = encoded is not None
        kind = message_type(method, path, isinstance(body, dict) and "compact" in body)
        reply = self._exchange(peer, url, method, path, encoded if gzip else data, gzip, kind)
        if gzip and reply is not None and refuses_gzip(*reply):
            if peer is not None:
                with self._lock:
                    peer.gzip = False  # an older node: remember, and send it plain from now on
            reply = self._exchange(peer, url, method, path, data, False, kind)
        if reply is None:
            return None
        if reply[0] >= 500:
            self._failed(peer, f"HTTP {reply[0]}")
            return None
        self._succeeded(peer)
        return reply

    def _exchange(self, peer, url: str, method: str, path: str, data: bytes | None, gzip: bool,
                  kind: str) -> tuple[int, Any] | None:
        headers = {"X-Peer": self.self_url}
        if data is not None:
            headers["Content-Type"] = "application/json"
            if gzip:  # ``data`` is already gzip_for_wire's encoding
                headers["Content-Encoding"] = "gzip"
        cap = reply_cap(method, path, self.node.config.max_tx_bytes, self.node.config.max_block_bytes)
        if self._max_reply is not None:
            cap = min(cap, self._max_reply)
        session = self._handshake_session if (method, path) in SMALL_REQUESTS else self._session
        t0 = time.perf_counter()
        try:
            code, content, wire = session.request(method, url + path, data=data, headers=headers,
                                                  max_bytes=cap)
            doc = parse_json(content) if content else None
        except PeerReplyError as exc:
            self._failed(peer, str(exc))
            return None
        except (requests.RequestException, EncodingError) as exc:
            self._failed(peer, type(exc).__name__)
            return None
        self._count_outbound(peer, kind, len(data or b""), wire, time.perf_counter() - t0)
        return code, doc

    # --- counters and the peer loop -----------------------------------------------------
    def traffic(self) -> dict:
        doc = super().traffic()
        doc.update(self.lanes_report())
        with self._lock:
            doc["refused_peers"] = dict(self.refused_peers)
        return doc

    def _loop(self) -> None:
        ticks = 0
        while not self._stop.is_set():
            try:
                self.announce()  # cheap; peers started after us learn of us too
                self.sync_once()
                self.node.rebroadcast_mempool()
                ticks += 1
                if ticks % SAVE_PEERS_TICKS == 0:
                    self.save()
            except Exception as exc:  # the loop must survive anything a peer sends
                self.node.log(f"sync error: {type(exc).__name__}: {exc}")
            self._stop.wait(SYNC_SECONDS)

    def save(self) -> None:
        """The table's URLs to ``<data-dir>/peers.json`` (peer_file.py)."""
        with self._lock:
            urls = list(self._peers)
        try:
            save_peers(self.node.data_dir, urls)
        except OSError as exc:  # a full disk: the file is a hint, the node goes on
            self.node.log(f"could not save the peer list: {exc}")

    def offer_saved(self) -> int:
        """Offer the peers of the last run again (each joins after its handshake)."""
        urls, problem = load_peers(self.node.data_dir)
        if problem:
            self.node.log(f"ignoring the saved peer list: {problem}")
        return sum(self.offer(u) == "pending" for u in urls)

    def start(self) -> None:
        self.offer_saved()
        self.start_dns()  # peer_dns.py: the first resolution of --peers DNS names, then every 30 s
        self._thread = threading.Thread(target=self._loop, name="peer-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._stop_relays()
        self._stop_dns()
        self._stop_lanes()
        self._stop_sync()
        self._stop_fetch()
        self._handshakes.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.save()
        self._session.close()
        self._handshake_session.close()

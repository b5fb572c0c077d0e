"""Gossip out and catch up with longer chains, over the peer table
(:mod:`learningchain.node.p2p.peer_table`: membership, back-off, eviction, counters).

* Gossip is fire-and-forget from a small thread pool with short timeouts
  (:data:`TIMEOUT`: connect 1 s, read 3 s), a deadline on each whole exchange
  and a cap on reply size per kind of request (:func:`reply_cap`,
  :mod:`learningchain.node.p2p.httpclient`). Each id/hash is sent to each peer at most
  once (bounded seen-set). Bodies over 1 KiB travel gzip-encoded, replies too
  (:mod:`learningchain.node.p2p.wire`); a peer that refuses a gzip body is sent plain.
* Transactions we relay (not our own) are *announced* first
  (``POST /inv {"txs": [id]}``); the peer answers which ids it wants, and only
  those bodies travel. Our own transaction is pushed whole: nobody has it yet.
* Blocks travel *compact* (the idea of BIP 152): header, commitment and tx ids;
  the receiver rebuilds the block from its mempool and fetches only the txs it
  lacks with ``GET /txs/<id>`` from the sender. Weights therefore cross each
  link about once per round.
* Sync: on start and every :data:`SYNC_SECONDS`, poll each peer's ``/tip``
  (height, tip, work); if it claims more work, sync headers first
  (:meth:`PeerSet.sync_with`): its headers after our locator (``POST
  /sync/headers``), checked as they come, then, once they show more work than our
  tip, the blocks along them by hash (``POST /sync/blocks {"hashes"}``). An orphan from a peer
  already in our table queues the same sync with it, on a pool of its own
  (:data:`SYNC_WORKERS` threads, at most one pending sync per peer), so syncs
  never delay gossip.
* Learned peers (``POST /peers``, a peer's list) enter the table only after a
  handshake (:mod:`learningchain.node.p2p.peer_offers`); gossip sends wait on bounded
  per-peer queues and run on lanes chosen by each peer's record
  (:mod:`learningchain.node.p2p.gossip_lanes`); announces run there too, never in the
  serial sync loop, and small requests (:data:`SMALL_REQUESTS`) have a
  :data:`SMALL_REQUEST_DEADLINE` instead of :data:`REQUEST_DEADLINE`.

See docs/api.md, "Gossip and sync".
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable

import requests

from learningchain.core import errors
from learningchain.ledger.block import BlockHeader
from learningchain.ledger.compact import compact_block
from learningchain.core.encoding import EncodingError, canonical_json, parse_json
from learningchain.core.errors import ValidationError
from learningchain.ledger.headers import MAX_HEADERS_PAGE, MAX_SYNC_HEADERS, HeaderChain
from learningchain.node.p2p.gossip_lanes import GossipLanes
from learningchain.node.p2p.httpclient import BoundedSession, PeerReplyError
from learningchain.node.p2p.peer_file import load_peers, save_peers
from learningchain.node.p2p.peer_offers import PeerOffers
from learningchain.node.p2p.peer_table import ANNOUNCE_SECONDS, MAX_PEERS, PeerTable, check_peer_url, message_type, normalize
from learningchain.node.p2p.wire import gzip_for_wire

if TYPE_CHECKING:
    from learningchain.node.service import Node

TIMEOUT = (1.0, 3.0)  # (connect, read) seconds, per socket operation
#: seconds for a whole exchange with a peer, however it trickles (httpclient.py).
REQUEST_DEADLINE = 10.0
#: bytes of one sync page the serving node aims at (it sends at least one block).
SYNC_PAGE_BYTES = 8 << 20
SYNC_SECONDS = 2.0
#: sync-loop passes between two saves of the peer list (about a minute).
SAVE_PEERS_TICKS = 30
#: blocks asked for in one ``POST /sync/blocks {"hashes"}``.
SYNC_PAGE = 100
#: seconds one whole sync with one peer may take (headers and blocks).
SYNC_DEADLINE = 300.0
#: a sync that has fetched no block after this many seconds ends and the peer is
#: penalised: sync runs on the serial peer loop, so one peer answering page after
#: page just inside the request deadline must not hold it for SYNC_DEADLINE.
SYNC_IDLE_SECONDS = 60.0
#: header pages in a row without fetching blocks before a sync gives up.
MAX_HEADER_PAGES = MAX_SYNC_HEADERS // MAX_HEADERS_PAGE + 10
#: seconds a peer whose sync data broke a rule is not synced from again.
SYNC_PENALTY_SECONDS = 600.0
#: hashes in a locator we send (the server's limit is 200).
MAX_LOCATOR = 200
#: threads that run syncs queued by orphans (gossip has its own 8).
SYNC_WORKERS = 2
#: the largest reply to a request whose answer is a few fields or a peer list
#: (/tip, /status, /peers, /inv, and our POSTs of txs and blocks).
SMALL_REPLY_BYTES = 64 << 10
#: an upper bound on one header as JSON (about 560 bytes).
HEADER_JSON_BYTES = 1024
#: a peer refusing a tx for these reasons is probably behind us: offer it again later.
RETRY_REASONS = ("tx-round-not-open", "tx-wrong-base-model")
#: a peer refusing our compact block for these reasons gets the full block instead.
FULL_BLOCK_REASONS = (errors.COMPACT_UNKNOWN_PEER, errors.COMPACT_TOO_MANY_TXIDS)
#: a compact block's missing txs: fetched this many at a time (one pool for all
#: compact blocks), within a budget per sender and window of
#: FETCH_BUDGET_TXS txs and FETCH_BUDGET_BLOCKS * max_block_bytes bytes.
FETCH_PARALLEL = 4
FETCH_WINDOW_SECONDS = 10.0
FETCH_BUDGET_TXS = 512
FETCH_BUDGET_BLOCKS = 2
#: after answering "want" to one announcer, other announcers of the same tx id are
#: refused for this long: the body is on its way (Bitcoin's in-flight request table).
EXPECT_SECONDS = 5.0
EXPECT_CAPACITY = 10_000
#: requests whose answer is a few fields get this deadline, not REQUEST_DEADLINE: a
#: peer that trickles them must not hold the (serial) sync loop for 10 s a poll.
SMALL_REQUEST_DEADLINE = 3.0
SMALL_REQUESTS = (("GET", "/tip"), ("GET", "/status"), ("POST", "/peers"), ("POST", "/inv"))


def _now_ms() -> int:
    return int(time.time() * 1000)


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


class PeerSet(PeerOffers, GossipLanes, PeerTable):
    """The peer table plus what the node does with it: gossip (on bounded per-peer
    queues, :mod:`learningchain.node.p2p.gossip_lanes`), offers and handshakes
    (:mod:`learningchain.node.p2p.peer_offers`), announce, sync."""

    def __init__(self, node: "Node", self_url: str, urls: Iterable[str] = (), deadline: float = REQUEST_DEADLINE,
                 max_reply: int | None = None):
        super().__init__(self_url, urls)
        self.node = node
        self._init_lanes()  # gossip_lanes.py
        self._sync_pool = ThreadPoolExecutor(max_workers=SYNC_WORKERS, thread_name_prefix="sync")
        self._sync_pending: set[str] = set()  # peers with a queued or running background sync
        self._max_reply = max_reply  # a ceiling over reply_cap (tests)
        self._session = BoundedSession(TIMEOUT, deadline, max_reply or max_reply_bytes(node.config.max_block_bytes))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._syncing: set[str] = set()
        self._expected: OrderedDict[str, float] = OrderedDict()  # tx id -> deadline of its body
        # compact blocks' missing txs: a small pool of its own and a budget per peer
        self._fetch_pool = ThreadPoolExecutor(max_workers=FETCH_PARALLEL, thread_name_prefix="fetch")
        self._sync_penalty: OrderedDict[str, float] = OrderedDict()  # url -> no sync before (monotonic)
        self._fetch_budget: OrderedDict[str, tuple[float, int, int]] = OrderedDict()  # url -> (start, txs, bytes)
        # the handshake's session (peer_offers.py), also for SMALL_REQUESTS (short deadline, small replies)
        self._handshake_session = BoundedSession(TIMEOUT, min(deadline, SMALL_REQUEST_DEADLINE), SMALL_REPLY_BYTES)
        self._init_offers()
        self._announcing: set[str] = set()  # peers with an announce queued or running

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

    # --- gossip -------------------------------------------------------------------------
    def traffic(self) -> dict:
        doc = super().traffic()
        doc.update(self.lanes_report())
        with self._lock:
            doc["refused_peers"] = dict(self.refused_peers)
        return doc

    def broadcast_tx(self, tx, exclude: str | None = None, push: bool = False) -> list[Future]:
        """Send ``tx`` to every peer once; returns the futures (tests may wait on them).
        ``push``: send the body without announcing it first. Only for an update we
        have just signed: nobody else can hold it yet, so an announcement would cost
        a round trip and save nothing."""
        futures = []
        for url in self._targets(tx.id, exclude and normalize(exclude)):
            future = self._submit(url, tx.id, self._send_tx, tx, push)
            if future is not None:
                futures.append(future)
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
            if self.node.has_tx(txid):
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

    def broadcast_block(self, block, exclude: str | None = None) -> list[Future]:
        futures = []
        compact = compact_block(block)
        for url in self._targets(block.hash, exclude and normalize(exclude)):
            future = self._submit(url, block.hash, self._send_block, block, compact)
            if future is not None:
                futures.append(future)
        return futures

    def _send_block(self, url: str, block, compact: dict) -> None:
        reply = self.request(url, "POST", "/blocks", {"compact": compact})
        if reply is None:
            self._unsee(url, block.hash)
        elif isinstance(reply[1], dict) and (reply[1].get("status") == "missing-txs"
                                             or reply[1].get("reason") in FULL_BLOCK_REASONS):
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
        raise ValidationError(errors.COMPACT_UNKNOWN_PEER, f"some transactions of this compact block are "
                                                           f"unknown here and {why}: send the full block")

    def fetch_txs(self, url: str, txids: list[str]) -> list[dict] | None:
        """The tx documents of ``txids`` from ``url`` (``GET /txs/<id>``), at most
        :data:`FETCH_PARALLEL` at a time, or None as soon as one fails or the
        peer's budget is spent (the compact block's sender then posts the full
        block). Budget per peer and :data:`FETCH_WINDOW_SECONDS` window:
        :data:`FETCH_BUDGET_TXS` txs and :data:`FETCH_BUDGET_BLOCKS` blocks' worth
        of bytes (``max_block_bytes``); one compact block's fetches also stop past
        ``max_block_bytes`` (its block could not be valid)."""
        url = normalize(url)
        block_cap = self.node.config.max_block_bytes
        if not self._charge_fetch(url, len(txids), 0):
            return None
        out: list[dict | None] = [None] * len(txids)
        failed = threading.Event()
        spent = [0]
        spent_lock = threading.Lock()

        def one(i: int) -> None:
            if failed.is_set():
                return
            reply = self.request(url, "GET", f"/txs/{txids[i]}")
            doc = reply[1].get("tx") if reply and reply[0] == 200 and isinstance(reply[1], dict) else None
            size = len(canonical_json(doc)) if isinstance(doc, dict) else 0
            with spent_lock:
                spent[0] += size
                over = spent[0] > block_cap
            if not isinstance(doc, dict) or over or not self._charge_fetch(url, 0, size):
                failed.set()  # the first failure ends it: a slow sender holds us once, not per tx
                return
            out[i] = doc

        try:
            futures = [self._fetch_pool.submit(one, i) for i in range(len(txids))]
        except RuntimeError:  # the pool is shut down: the node is stopping
            return None
        for f in futures:
            try:
                f.result()
            except Exception:  # cancelled at shutdown
                failed.set()
        if failed.is_set() or any(d is None for d in out):
            return None
        return out  # type: ignore[return-value]

    def _charge_fetch(self, url: str, count: int, size: int) -> bool:
        """Charge ``count`` txs and ``size`` bytes to ``url``'s fetch budget; False
        (nothing charged) if that would pass it."""
        now = time.monotonic()
        byte_budget = FETCH_BUDGET_BLOCKS * self.node.config.max_block_bytes
        with self._lock:
            start, txs, used = self._fetch_budget.get(url, (now, 0, 0))
            if now - start >= FETCH_WINDOW_SECONDS:
                start, txs, used = now, 0, 0
            if txs + count > FETCH_BUDGET_TXS or used + size > byte_budget:
                self._fetch_budget[url] = (start, txs, used)
                return False
            self._fetch_budget[url] = (start, txs + count, used + size)
            self._fetch_budget.move_to_end(url)
            while len(self._fetch_budget) > MAX_PEERS:
                self._fetch_budget.popitem(last=False)
            return True

    def announce(self) -> None:
        """Tell every peer about us (``POST /peers``) and learn the peers they know
        (offered: each joins after its handshake). Peers backing off are skipped:
        a peer that never answers must not cost the sync loop a read timeout on
        every tick. A peer whose answer listed us is announced to again only after
        :data:`ANNOUNCE_SECONDS`; its list tells gossip whom it reaches itself.
        Former peers (evicted for room) are offered again when their time comes."""
        for url in self.former_due():
            self.offer(url)
        now = time.monotonic()
        with self._lock:
            urls = [u for u, p in self._peers.items() if u not in self._announcing
                    and p.available(now) and now - p.announced >= ANNOUNCE_SECONDS]
            self._announcing.update(urls)
        for url in urls:  # on the gossip lanes: a peer that answers slowly must not hold the sync loop
            if self._submit(url, "announce", self._announce_one, now) is None:
                with self._lock:
                    self._announcing.discard(url)

    def _announce_one(self, url: str, now: float) -> None:
        try:
            reply = self.request(url, "POST", "/peers", {"url": self.self_url})
            if not reply or not isinstance(reply[1], dict) or not isinstance(reply[1].get("peers"), list):
                return
            listed = frozenset(normalize(o) for o in reply[1]["peers"][:MAX_PEERS]
                               if isinstance(o, str) and check_peer_url(o) is None)
            for other in listed:
                self.offer(other)
            with self._lock:
                peer = self._peers.get(url)
                if peer is not None:
                    if self.self_url in listed and listed == peer.peers:
                        peer.announced = now  # it knows us and its list has settled
                    peer.peers = listed
        finally:
            with self._lock:
                self._announcing.discard(url)

    # --- sync -----------------------------------------------------------------------------
    def sync_with(self, url: str) -> int:
        """Headers-first sync with one peer (docs/protocol.md section 8, "Sync"):
        download its headers after a locator built from the header chain received
        so far (:class:`~learningchain.ledger.headers.HeaderChain`, each header checked
        against its parent), and only once that chain has more work than our tip
        download its blocks by hash, in order, page by page; then go on from the
        last block until the peer has no more headers, at any fork depth. Bounded:
        :data:`SYNC_DEADLINE` seconds, :data:`~learningchain.ledger.headers.MAX_SYNC_HEADERS`
        headers in memory. A peer whose headers do not connect or break a rule,
        or whose blocks do not match its headers, counts a failure and the sync
        ends. Returns how many blocks were new to us."""
        url = normalize(url)
        with self._lock:
            if url in self._syncing or self._sync_penalty.get(url, 0.0) > time.monotonic():
                return 0
            self._syncing.add(url)
        try:
            return self._sync_headers_first(url, time.monotonic() + SYNC_DEADLINE)
        finally:
            with self._lock:
                self._syncing.discard(url)

    def _sync_headers_first(self, url: str, deadline: float) -> int:
        node, added = self.node, 0
        base = node.chain_entry(node.tip_info()[1])
        if base is None:
            return 0
        hc = HeaderChain(base, node.config)
        pages = 0  # header pages since blocks were last fetched: bounds a peer that never gets heavier
        idle_until = time.monotonic() + SYNC_IDLE_SECONDS  # a first block by then, or the peer stalls us
        while (time.monotonic() < min(deadline, idle_until if added == 0 else deadline)
               and not self.node.stop_event.is_set() and pages <= MAX_HEADER_PAGES):
            before, pages = hc.tip, pages + 1
            hc.our_height = node.tip_info()[0]
            locator = list(dict.fromkeys(hc.locator() + node.locator()))[:MAX_LOCATOR]
            reply = self.request(url, "POST", "/sync/headers", {"locator": locator, "limit": MAX_HEADERS_PAGE})
            if reply is None or reply[0] != 200 or not isinstance(reply[1], dict):
                return added
            docs, more = reply[1].get("headers"), reply[1].get("more") is True
            try:
                if not isinstance(docs, list) or len(docs) > MAX_HEADERS_PAGE:
                    raise ValidationError(errors.BLOCK_MALFORMED, f"headers must be a list of at most "
                                                                  f"{MAX_HEADERS_PAGE}")
                hc.extend([BlockHeader.parse(d) for d in docs], node.chain_entry, _now_ms())
            except ValidationError as exc:
                self._sync_fault(url, f"headers: {exc.code}: {exc.detail}",
                                 penalize=exc.code != errors.BLOCK_TIME_TOO_NEW)  # our clock may be behind
                return added
            if docs and hc.tip is before:  # a page must move the header chain, or the peer stalls us
                self._sync_fault(url, "headers: a page that does not extend the header chain", penalize=True)
                return added
            if hc.nodes and hc.work > node.tip_work():  # heavier than our tip: fetch its blocks
                got, ok = self._fetch_blocks(url, hc.hashes(), deadline)
                added += got
                held = node.chain_entry(hc.tip.hash) if ok else None
                if held is None:
                    return added
                hc.rebase(held)  # memory: only headers we have no block for are kept
                pages = 0
            elif not more:
                return added  # the peer's chain has no more work than ours: nothing to fetch
        if pages > MAX_HEADER_PAGES or (added == 0 and time.monotonic() >= min(deadline, idle_until)):
            # page after page that never got heavier than our tip, or a whole sync
            # that delivered nothing: a peer that stalls the (serial) sync loop
            self._sync_fault(url, f"headers: {pages} pages, {added} blocks in the sync's time", penalize=True)
        return added

    def _fetch_blocks(self, url: str, hashes: list[str], deadline: float) -> tuple[int, bool]:
        """Fetch and submit the blocks ``hashes`` (a header chain, lowest first) from
        ``url``, :data:`SYNC_PAGE` a request; (new blocks, all fetched and accepted)."""
        added, i = 0, 0
        while i < len(hashes):
            if time.monotonic() >= deadline or self.node.stop_event.is_set():
                return added, False
            batch = hashes[i:i + SYNC_PAGE]
            reply = self.request(url, "POST", "/sync/blocks", {"hashes": batch})
            if reply is None or reply[0] != 200 or not isinstance(reply[1], dict):
                return added, False
            docs = reply[1].get("blocks")
            if not isinstance(docs, list) or not docs:
                self._sync_fault(url, "blocks: the peer did not send the blocks of its own headers")
                return added, False
            for want, doc in zip(batch, docs):
                status = self.node.receive_block_doc(doc, peer=url, relay=False, solicited=True, expect=want)
                if status in ("connected", "reorg", "side"):
                    added += 1
                    if status != "side":  # a URL we chose delivered work: protect it
                        self.mark_delivered(url)
                elif status == errors.STORE_WRITE_FAILED:  # our disk, not the peer's fault
                    self.node.log(f"sync with {url} paused: our store cannot be written")
                    return added, False
                elif status != "known":  # a block that is not its header's, or invalid: the peer lied
                    self._sync_fault(url, f"blocks: {status}",
                                     penalize=status not in ("orphan", errors.BLOCK_TIME_TOO_NEW))
                    return added, False
            i += min(len(docs), len(batch))  # zip ignored any extra blocks
        return added, True

    def _sync_fault(self, url: str, why: str, penalize: bool = False) -> None:
        """A peer sent sync data we cannot use: log it and count a failure.
        ``penalize``: the data broke a rule (a header or block that is invalid or
        not what it claims, headers that do not connect, too many cheap ones):
        no sync with it for :data:`SYNC_PENALTY_SECONDS`, so a peer feeding cheap
        headers costs us one bounded sync (about 75 us of CPU per header) per
        penalty, not one every sync tick."""
        self.node.log(f"sync with {url} stopped: {why[:200]}"
                      + (f"; no sync with it for {SYNC_PENALTY_SECONDS:.0f} s" if penalize else ""))
        with self._lock:
            peer = self._peers.get(url)
            if penalize:
                self._sync_penalty[url] = time.monotonic() + SYNC_PENALTY_SECONDS
                self._sync_penalty.move_to_end(url)
                while len(self._sync_penalty) > 4 * MAX_PEERS:
                    self._sync_penalty.popitem(last=False)
        self._failed(peer, f"sync: {why[:80]}")

    def sync_penalized(self, url: str) -> bool:
        """Is ``url`` barred from syncing with us after breaking a rule?"""
        with self._lock:
            return self._sync_penalty.get(normalize(url), 0.0) > time.monotonic()

    def sync_once(self) -> None:
        my_height, my_tip = self.node.tip_info()
        for url in self.available_urls():
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

    def sync_in_background(self, url: str | None) -> bool:
        """Queue a sync with ``url`` (an orphan's sender) on the sync pool; False if
        ``url`` is not in our peer table (``X-Peer`` is the client's word: following
        it would let anyone add peers and queue work) or a sync with it is already
        queued or running. At most one pending sync per peer, so the queue holds at
        most :data:`~learningchain.node.p2p.peer_table.MAX_PEERS` tasks."""
        if not url or not self.is_peer(url):
            return False
        url = normalize(url)
        with self._lock:
            if url in self._sync_pending:
                return False
            self._sync_pending.add(url)
        try:
            self._sync_pool.submit(self._background_sync, url)
        except RuntimeError:  # the pool is shut down: the node is stopping
            with self._lock:
                self._sync_pending.discard(url)
            return False
        return True

    def _background_sync(self, url: str) -> None:
        try:
            self.sync_with(url)
        except Exception as exc:  # a sync thread must survive anything a peer sends
            self.node.log(f"sync with {url} failed: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._sync_pending.discard(url)

    def pending_syncs(self) -> list[str]:
        """Peers with a background sync queued or running."""
        with self._lock:
            return sorted(self._sync_pending)

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
        self._thread = threading.Thread(target=self._loop, name="peer-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._stop_lanes()
        self._sync_pool.shutdown(wait=False, cancel_futures=True)
        self._fetch_pool.shutdown(wait=False, cancel_futures=True)
        self._handshakes.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.save()
        self._session.close()
        self._handshake_session.close()

"""What gossip sends: txs announced or pushed, blocks compact, and our own address to every peer.

The lanes these sends run on are :mod:`learningchain.node.p2p.gossip_lanes`.

* Each id/hash is sent to each peer at most once (bounded seen-set,
  :mod:`learningchain.node.p2p.peer_table`).
* Transactions we relay (not our own) are *announced* first
  (``POST /inv {"txs": [id]}``); the peer answers which ids it wants
  (:meth:`Gossip.wanted`), and only those bodies travel. Our own transaction is
  pushed whole: nobody has it yet. A relay is announced :data:`RELAY_DELAY_S`
  after the tx reached us, to the peers that have not sent it to us by then
  (a trickle, as Bitcoin delays its inv): its sender pushes it to its own peers
  at the same moment, and an announcement that overtook that push made the peer
  ask us for a body it was already receiving (12 % of all bodies on a
  4-node network).
* Blocks travel *compact* (the idea of BIP 152): header, commitment and tx ids;
  a peer that cannot rebuild one is sent the full block. Weights therefore
  cross each link about once per round.
* Announce (``POST /peers``): tell every peer about us and learn the peers it
  knows (offered: each joins after its handshake,
  :mod:`learningchain.node.p2p.peer_offers`); announces run on the gossip
  lanes, never in the serial sync loop.

Mixed into :class:`~learningchain.node.p2p.peers.PeerSet` (uses its ``node``,
``_lock``, ``_peers``, ``self_url``, ``request``, ``_submit``, ``_targets``,
``_unsee``, ``mark_seen``, ``offer`` and ``former_due``).
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future

from learningchain.core import errors
from learningchain.ledger.compact import compact_block
from learningchain.node.p2p.peer_record import ANNOUNCE_SECONDS
from learningchain.node.p2p.peer_host import PeerHost
from learningchain.node.p2p.peer_table import MAX_PEERS
from learningchain.node.p2p.peer_urls import check_peer_url, normalize

#: a peer refusing a tx for these reasons is probably behind us: offer it again later.
RETRY_REASONS = ("tx-round-not-open", "tx-wrong-base-model")
#: a peer refusing our compact block for these reasons gets the full block instead.
FULL_BLOCK_REASONS = (errors.COMPACT_UNKNOWN_PEER, errors.COMPACT_TOO_MANY_TXIDS)
#: after answering "want" to one announcer, other announcers of the same tx id are
#: refused for this long: the body is on its way (Bitcoin's in-flight request table).
EXPECT_SECONDS = 5.0
EXPECT_CAPACITY = 10_000
#: a tx we relay is announced this long after it reached us (seconds): see above. It is
#: on a round's path where peers are not all connected to each other (one hop each).
RELAY_DELAY_S = 0.1
#: relays waiting for their moment at most; more are announced at once.
RELAY_CAPACITY = 10_000


class Gossip:
    """Broadcast txs and blocks, answer announcements, announce ourselves."""

    node: PeerHost

    def _init_gossip(self) -> None:
        self._expected: OrderedDict[str, float] = OrderedDict()  # tx id -> deadline of its body
        self._announcing: set[str] = set()  # peers with an announce queued or running
        self._relays: list = []  # heap of (due, seq, tx, exclude): relays waiting for RELAY_DELAY_S
        self._relay_seq = itertools.count()
        self._relay_cv = threading.Condition()
        self._relay_thread: threading.Thread | None = None

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

    def relay_tx(self, tx, exclude: str | None = None) -> None:
        """Announce a tx that reached us from ``exclude`` to our other peers in
        :data:`RELAY_DELAY_S` (:meth:`broadcast_tx` then; peers that sent it to us
        meanwhile are skipped, the seen-set knows them)."""
        with self._relay_cv:
            if len(self._relays) >= RELAY_CAPACITY or self._stop.is_set():
                due = None
            else:
                due = time.monotonic() + RELAY_DELAY_S
                heapq.heappush(self._relays, (due, next(self._relay_seq), tx, exclude))
                if self._relay_thread is None:
                    self._relay_thread = threading.Thread(target=self._relay_loop, name="gossip-relay",
                                                          daemon=True)
                    self._relay_thread.start()
                self._relay_cv.notify()
        if due is None:
            self.broadcast_tx(tx, exclude=exclude)

    def _relay_loop(self) -> None:
        while not self._stop.is_set():
            with self._relay_cv:
                now = time.monotonic()
                if not self._relays or self._relays[0][0] > now:
                    self._relay_cv.wait(self._relays[0][0] - now if self._relays else 1.0)
                    continue
                _due, _seq, tx, exclude = heapq.heappop(self._relays)
            try:
                self.broadcast_tx(tx, exclude=exclude)
            except Exception:  # a relay must never end the loop
                pass

    def _stop_relays(self) -> None:
        with self._relay_cv:
            self._relays.clear()
            self._relay_cv.notify_all()

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
            future = self._submit(url, block.hash, self._send_block, block, compact, urgent=True)
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

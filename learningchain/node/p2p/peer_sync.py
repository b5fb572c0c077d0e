"""Headers-first sync with peers that claim more work: the sync driver of the peer set.

On start and every :data:`~learningchain.node.p2p.peers.SYNC_SECONDS` the peer
loop polls each peer's ``/tip`` (height, tip, work) (:meth:`PeerSync.sync_once`);
if it claims more work, sync headers first (:meth:`PeerSync.sync_with`): its
headers after our locator (``POST /sync/headers``), checked as they come, then,
once they show more work than our tip, the blocks along them by hash
(``POST /sync/blocks {"hashes"}``). An orphan from a peer already in our table
queues the same sync with it, on a pool of its own (:data:`SYNC_WORKERS`
threads, at most one pending sync per peer), so syncs never delay gossip. A
peer whose sync data broke a rule is not synced from for
:data:`SYNC_PENALTY_SECONDS`.

Mixed into :class:`~learningchain.node.p2p.peers.PeerSet` (uses its ``node``, ``_lock``, ``_peers``, ``request``,
``_failed``, ``is_peer``, ``available_urls`` and ``mark_delivered``).
See docs/protocol.md section 8, "Sync".
"""
from __future__ import annotations

import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

from learningchain.core import errors
from learningchain.core.errors import ValidationError
from learningchain.ledger.block import BlockHeader, work_of
from learningchain.ledger.headers import MAX_HEADERS_PAGE, MAX_SYNC_HEADERS, HeaderChain
from learningchain.node.p2p.peer_host import PeerHost
from learningchain.node.p2p.peer_table import MAX_PEERS
from learningchain.node.p2p.peer_urls import normalize
from learningchain.node.p2p.sync_progress import SyncProgress

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
#: a peer at most this many blocks' work ahead, with a tip new since the last
#: tick, is left to gossip for one tick (PeerSet._gossip_will_bring).
GOSSIP_GRACE_BLOCKS = 2
#: ... and only while our own tip moved within this many seconds.
GOSSIP_FRESH_S = 1.0
#: hashes in a locator we send (the server's limit is 200).
MAX_LOCATOR = 200
#: threads that run syncs queued by orphans (gossip has its own lanes).
SYNC_WORKERS = 2


def _now_ms() -> int:
    return int(time.time() * 1000)


class PeerSync:
    """Sync with one peer (foreground or queued by an orphan), and the poll of
    every peer's tip that starts it."""

    node: PeerHost

    def _init_sync(self) -> None:
        self._sync_pool = ThreadPoolExecutor(max_workers=SYNC_WORKERS, thread_name_prefix="sync")
        self._sync_pending: set[str] = set()  # peers with a queued or running background sync
        self._syncing: set[str] = set()
        self._sync_penalty: OrderedDict[str, float] = OrderedDict()  # url -> no sync before (monotonic)
        self._ahead_last: dict[str, str] = {}  # url -> its tip, for the peers ahead of us at the last tick

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
        node = self.node
        base = node.chain_entry(node.tip_info()[1])
        if base is None:
            return 0
        hc = HeaderChain(base, node.config)
        with self._lock:
            record = self._peers.get(url)
        progress = SyncProgress(node.log, url, record.height if record else None, node.tip_info()[0])
        try:
            return self._headers_then_blocks(url, deadline, hc, progress)
        finally:
            progress.done(node.tip_info()[0])

    def _headers_then_blocks(self, url: str, deadline: float, hc: HeaderChain, progress: SyncProgress) -> int:
        node, added = self.node, 0
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
                got, ok = self._fetch_blocks(url, hc.hashes(), deadline, progress)
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

    def _fetch_blocks(self, url: str, hashes: list[str], deadline: float,
                      progress: SyncProgress | None = None) -> tuple[int, bool]:
        """Fetch and submit the blocks ``hashes`` (a header chain, lowest first) from
        ``url``, :data:`SYNC_PAGE` a request; (new blocks, all fetched and accepted).
        The next page is requested while this one is validated (one request ahead,
        so at most two pages in memory): the peer serves and the network carries
        it while we check, instead of after."""
        added, i = 0, 0
        ahead: tuple[int, Future] | None = None  # (offset, reply) of the page asked for ahead
        prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-fetch")
        try:
            while i < len(hashes):
                if time.monotonic() >= deadline or self.node.stop_event.is_set():
                    return added, False
                batch = hashes[i:i + SYNC_PAGE]
                if ahead is not None and ahead[0] == i:
                    reply = ahead[1].result()
                else:  # nothing ahead, or the peer sent a shorter page than asked
                    reply = self._blocks_page(url, batch)
                ahead = None
                if reply is None or reply[0] != 200 or not isinstance(reply[1], dict):
                    return added, False
                docs = reply[1].get("blocks")
                if not isinstance(docs, list) or not docs:
                    self._sync_fault(url, "blocks: the peer did not send the blocks of its own headers")
                    return added, False
                following = i + min(len(docs), len(batch))  # zip below ignores any extra blocks
                if following < len(hashes):
                    ahead = (following, prefetch.submit(self._blocks_page, url,
                                                        hashes[following:following + SYNC_PAGE]))
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
                i = following
                if progress is not None:
                    progress.update(self.node.tip_info()[0])
            return added, True
        finally:
            prefetch.shutdown(wait=False, cancel_futures=True)  # a request in flight ends on its own deadline

    def _blocks_page(self, url: str, batch: list[str]):
        return self.request(url, "POST", "/sync/blocks", {"hashes": batch})

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
        """Poll every peer's tip; sync with one that is ahead, unless gossip is about
        to bring what it has (:meth:`_gossip_will_bring`)."""
        my_height, my_tip = self.node.tip_info()
        ahead_now: dict[str, str] = {}
        for url in self.available_urls():
            reply = self.request(url, "GET", "/tip")  # height, tip, work: a tenth of /status
            if reply is None or reply[0] != 200 or not isinstance(reply[1], dict):
                continue
            height, tip, work = reply[1].get("height"), reply[1].get("tip"), reply[1].get("work")
            ahead = self._ahead(height, tip, work, my_height, my_tip)
            if isinstance(height, int):
                with self._lock:
                    if url in self._peers:
                        self._peers[url].height, self._peers[url].ahead = height, bool(ahead)
            if not ahead:
                continue
            ahead_now[url] = tip
            if self._gossip_will_bring(url, tip, work):
                continue
            if self.sync_with(url):
                my_height, my_tip = self.node.tip_info()
        self._ahead_last = ahead_now

    def _gossip_will_bring(self, url: str, tip: str, work) -> bool:
        """A peer ahead of us by at most :data:`GOSSIP_GRACE_BLOCKS` blocks' work
        that was not ahead at the last tick, while blocks reach us
        (our tip moved within :data:`GOSSIP_FRESH_S`): its block is most likely
        in flight to us (at 5 to 20 blocks a second a peer is a block ahead at almost
        every tick). A full sync then fetched by request what gossip delivered a
        few ms later, and was most of a node's CPU. Still ahead at the next tick
        (whatever its tip), or further ahead now, and we sync: one tick of delay
        at most."""
        if url in self._ahead_last or self.node.tip_age() > GOSSIP_FRESH_S:
            return False  # ahead at the last tick too (one tick of grace in a row at most), or no block
            # reached us lately: gossip is not bringing it
        entry = self.node.chain_entry(self.node.tip_info()[1])
        if entry is None or not isinstance(work, str):
            return False
        try:
            lead = int(work, 16) - self.node.tip_work()
        except ValueError:
            return False
        return lead <= GOSSIP_GRACE_BLOCKS * work_of(entry.header.target)

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

    def _stop_sync(self) -> None:
        self._sync_pool.shutdown(wait=False, cancel_futures=True)

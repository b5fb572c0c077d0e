"""A compact block's missing txs, fetched from its sender in parallel within a budget per peer.

Blocks travel compact (the idea of BIP 152, :mod:`learningchain.ledger.compact`):
the receiver rebuilds the block from its mempool and fetches only the txs it
lacks with ``GET /txs/<id>`` from the sender, and only from a sender in our
peer table that is not backing off (:meth:`TxFetch.fetch_source`). Mixed into
:class:`~learningchain.node.p2p.peers.PeerSet` (uses its ``node``, ``_lock``,
``_peers`` and ``request``).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from learningchain.core import errors
from learningchain.core.encoding import canonical_json
from learningchain.core.errors import ValidationError
from learningchain.node.p2p.peer_host import PeerHost
from learningchain.node.p2p.peer_table import MAX_PEERS
from learningchain.node.p2p.peer_urls import normalize

#: a compact block's missing txs: fetched this many at a time (one pool for all
#: compact blocks), within a budget per sender and window of
#: FETCH_BUDGET_TXS txs and FETCH_BUDGET_BLOCKS * max_block_bytes bytes.
FETCH_PARALLEL = 4
FETCH_WINDOW_SECONDS = 10.0
FETCH_BUDGET_TXS = 512
FETCH_BUDGET_BLOCKS = 2


class TxFetch:
    """Where a compact block's missing txs may come from, and their fetch."""

    node: PeerHost

    def _init_fetch(self) -> None:
        # a small pool of its own and a budget per peer
        self._fetch_pool = ThreadPoolExecutor(max_workers=FETCH_PARALLEL, thread_name_prefix="fetch")
        self._fetch_budget: OrderedDict[str, tuple[float, int, int]] = OrderedDict()  # url -> (start, txs, bytes)

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

    def _stop_fetch(self) -> None:
        self._fetch_pool.shutdown(wait=False, cancel_futures=True)

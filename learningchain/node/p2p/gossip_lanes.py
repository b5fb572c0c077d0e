"""Gossip sends on bounded per-peer queues and lanes: the part of
:class:`learningchain.node.p2p.peers.PeerSet` that decides when a send to a peer runs.

Issue 10, item 5: gossip once ran on one 8-thread pool with an unbounded queue,
so a few peers that answer slowly held every thread and the queue grew without
end. Now:

* each peer has its own queue of at most :data:`PEER_QUEUE` sends (and one of
  blocks beside it: blocks never wait behind tx bodies); past it a send is
  dropped and counted (``dropped``), and its id un-marked so a later
  rebroadcast retries;
* each of a peer's two queues (blocks, the rest) has one send running at a
  time, so a slow peer holds at most two lane threads, and each next send goes to the lane
  the peer's record earns *then* (:meth:`GossipLanes._lane`): peers we chose
  (``--peers``) or that delivered blocks to our sync (:data:`TRUSTED_WORKERS`
  threads); peers failing or costing more than :data:`COSTLY` (peer_counters.py:
  cost) and peers that never answered a send within ``FREE_SECONDS``
  (peer_counters.py) (:data:`SMALL_LANE_WORKERS` threads each); everyone else (:data:`WORKERS`).
  A peer that turned slow therefore leaves no backlog on the lane everyone
  shares, and strangers that answer slowly wait behind each other.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

#: gossip sends queued or running for one peer at most; more are dropped and counted.
PEER_QUEUE = 32
#: threads of the shared lane, of the lane for --peers and block-delivering peers,
#: and of each of the two small lanes (costly or failing peers; peers on probation).
WORKERS, TRUSTED_WORKERS, SMALL_LANE_WORKERS = 8, 4, 2
#: a peer costing more than this (peer_counters.py: cost) sends on the costly lane.
COSTLY = 1.0


class GossipLanes:
    """Mixed into :class:`~learningchain.node.p2p.peers.PeerSet` (uses its ``_lock``,
    ``_peers`` and ``_unsee``)."""

    def _init_lanes(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="gossip")
        self._trusted_pool = ThreadPoolExecutor(max_workers=TRUSTED_WORKERS, thread_name_prefix="gossip-trusted")
        self._costly_pool = ThreadPoolExecutor(max_workers=SMALL_LANE_WORKERS, thread_name_prefix="gossip-costly")
        self._new_pool = ThreadPoolExecutor(max_workers=SMALL_LANE_WORKERS, thread_name_prefix="gossip-new")
        #: (peer, urgent) -> its gossip sends waiting (see _submit): blocks and the rest queue apart
        self._queues: dict[tuple[str, bool], deque] = {}
        self._running: set[tuple[str, bool]] = set()  # queues with a send queued on a lane or running
        self.dropped = 0  # gossip sends dropped because a peer's queue was full

    def _submit(self, url: str, key: str, fn, *args, urgent: bool = False) -> Future | None:
        """Queue one gossip send to ``url`` on that peer's own queue, unless
        :data:`PEER_QUEUE` are queued or running there already (then drop it,
        count it, and un-mark ``key`` so a rebroadcast retries). A queue has at
        most one send running; each next one goes to the lane (:meth:`_lane`) its
        cost earns *then*, so a peer that turned slow never leaves a backlog on
        the lane everyone shares. ``urgent`` (blocks): a queue of their own per
        peer, on the same lane, in order among themselves and never behind a tx
        body for that peer: a block that waited for a 13 kB push (and the peer's
        validation of it) reached the other miner 80 ms late, and every ms a
        block spends in flight the other miners search a stale tip. (One block
        lane for all peers let slow peers hold its threads: the lane by cost stays.)"""
        future: Future = Future()
        qkey = (url, urgent)
        with self._lock:
            queue = self._queues.setdefault(qkey, deque())
            if len(queue) + (qkey in self._running) >= PEER_QUEUE:
                self.dropped += 1
                full = True
            else:
                queue.append((future, key, fn, args))
                full = False
                start = qkey not in self._running
                if start:
                    self._running.add(qkey)
        if full:
            self._unsee(url, key)
            return None
        if start:
            self._kick(qkey)
        return future

    def _lane(self, url: str) -> ThreadPoolExecutor:
        with self._lock:
            peer = self._peers.get(url)
            if peer is not None and (peer.pinned or peer.delivered):
                return self._trusted_pool
            if peer is None or peer.failures or peer.cost > COSTLY:
                return self._costly_pool
            if not peer.quick_sends:  # on probation until it answered one send quickly
                return self._new_pool
            return self._pool

    def _kick(self, qkey: tuple[str, bool]) -> None:
        try:
            self._lane(qkey[0]).submit(self._run_next, qkey)
        except RuntimeError:  # shut down: the node is stopping
            with self._lock:
                queue = self._queues.pop(qkey, deque())
                self._running.discard(qkey)
            for future, *_ in queue:
                future.cancel()

    def _run_next(self, qkey: tuple[str, bool]) -> None:
        with self._lock:
            queue = self._queues.get(qkey)
            item = queue.popleft() if queue else None
        if item is not None:
            future, _key, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    fn(qkey[0], *args)
                    future.set_result(None)
                except Exception as exc:  # a send must never kill the lane
                    future.set_exception(exc)
        with self._lock:
            queue = self._queues.get(qkey)
            more = bool(queue)
            if not more:
                self._queues.pop(qkey, None)
                self._running.discard(qkey)
        if more:
            self._kick(qkey)

    def lanes_report(self) -> dict:
        """``dropped`` (since start) and ``queued`` (now) gossip sends."""
        with self._lock:
            return {"dropped": self.dropped,
                    "queued": sum(len(q) for q in self._queues.values()) + len(self._running)}

    def _stop_lanes(self) -> None:
        for pool in (self._pool, self._trusted_pool, self._costly_pool, self._new_pool):
            pool.shutdown(wait=False, cancel_futures=True)

"""Traffic counters and cost per peer: bytes and time per message type, and the decayed cost that backs a peer off.

Split from :mod:`learningchain.node.p2p.peer_table`; mixed into
:class:`~learningchain.node.p2p.peer_table.PeerTable` (uses its ``_lock`` and
``_peers``).

* Counters. Bytes sent and received per peer and per message type
  (:func:`message_type`: request and response bodies plus
  :data:`HEADER_ESTIMATE` per exchange for the HTTP header lines), served in
  ``/peers`` and ``/status``.
* Cost. Every exchange we start costs a peer its wall time over
  :data:`FREE_SECONDS` plus one second per :data:`BYTES_PER_COST_SECOND`
  received or sent over :data:`FREE_BYTES`; the cost decays with a
  half-life of :data:`COST_HALF_LIFE`, and past :data:`COST_BUDGET` the peer
  backs off in proportion (up to
  :data:`~learningchain.node.p2p.peer_record.BACKOFF_MAX`): a peer serving
  40 MiB sync pages or answering slowly is asked less, not forever.
"""
from __future__ import annotations

import time

from learningchain.node.p2p.peer_record import BACKOFF_MAX, Peer
from learningchain.node.p2p.peer_urls import normalize

#: rough size of the HTTP request/response header lines, counted per exchange.
HEADER_ESTIMATE = 200
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


def message_type(method: str, path: str, compact: bool = False) -> str:
    """What an exchange carries, for the per-type byte counters in ``/status``."""
    if path.startswith("/txs"):
        return "tx body" if method == "POST" else "tx fetch"
    if path == "/blocks":
        return "compact block" if compact else "full block"
    return {"/inv": "inv", "/tip": "tip poll", "/status": "status poll", "/peers": "peer announce",
            "/sync/blocks": "sync", "/sync/headers": "sync"}.get(path, "other")


class PeerCounters:
    """Byte, message and time counters per message type, and each peer's cost."""

    def _init_counters(self) -> None:
        #: message type -> [bytes sent, bytes received, messages, seconds in our requests, requests]
        self._by_type: dict[str, list] = {}

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
        :data:`~learningchain.node.p2p.peer_record.BACKOFF_MAX`)."""
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

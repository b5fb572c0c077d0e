"""Offers and handshakes: how a peer someone told us about (``POST /peers``, a
peer's list) joins :class:`learningchain.node.p2p.peers.PeerSet`'s table.

Issue 10, item 5: a table that took every URL it was told made 60 slow URLs
spread to every node within 30 s. Now an offered URL joins only after a
*handshake*: ``GET /tip`` answered within the small-request deadline (3 s) with
our genesis hash, on a pool of :data:`HANDSHAKE_WORKERS` threads with at most
:data:`MAX_PENDING_HANDSHAKES` waiting (more: ``peer-handshake-busy``); a URL
that failed is refused for :data:`HANDSHAKE_RETRY_SECONDS`
(``peer-handshake-failed``). Nothing an outsider posts costs a request thread,
and nothing that is not a node of our network spreads. The caps per host and
subnet (peer_table.py) are checked before the handshake and again when it
succeeds. Bitcoin Core likewise keeps addresses it was told in a separate
"new" table until it has connected to them (``addrman``'s new/tried split).
"""
from __future__ import annotations

import socket
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import requests

from learningchain.core import errors
from learningchain.core.encoding import EncodingError, parse_json
from learningchain.node.p2p.httpclient import PeerReplyError
from learningchain.node.p2p.peer_host import PeerHost
from learningchain.node.p2p.peer_urls import normalize, peer_url_refusal

HANDSHAKE_WORKERS = 2
MAX_PENDING_HANDSHAKES = 32
#: a URL whose handshake failed is not tried again for this long (bounded memory).
HANDSHAKE_RETRY_SECONDS, MAX_HANDSHAKE_FAILED = 60.0, 4096


class PeerOffers:
    """Mixed into :class:`~learningchain.node.p2p.peers.PeerSet` (uses its ``_lock``,
    ``node``, ``self_url``, ``refusal``, ``admit``, ``refused_peers`` and
    ``_handshake_session``)."""

    node: PeerHost

    def _init_offers(self) -> None:
        self._handshakes = ThreadPoolExecutor(max_workers=HANDSHAKE_WORKERS, thread_name_prefix="handshake")
        self._pending_handshakes: set[str] = set()
        self._handshake_failed: OrderedDict[str, float] = OrderedDict()  # url -> retry after

    def offer(self, url: Any, resolves_to: str | None = None) -> str:
        """A peer URL someone told us about (``POST /peers``, a peer's list):
        ``"known"``, ``"self"``, ``"pending"`` (its handshake is queued: it joins
        the table if it answers ``/tip`` with our genesis) or the reason code it
        was refused for. Never does I/O itself. ``resolves_to``: the URL's host
        name must resolve to this address (a caller announcing itself by name),
        checked by the handshake."""
        refusal = self.refusal(url) if isinstance(url, str) else peer_url_refusal(url)[0]
        if refusal is not None:
            return refusal
        url = normalize(url)
        now = time.monotonic()
        with self._lock:
            if self._handshake_failed.get(url, 0.0) > now:
                return errors.PEER_HANDSHAKE_FAILED
            if url in self._pending_handshakes:
                return "pending"
            if len(self._pending_handshakes) >= MAX_PENDING_HANDSHAKES:
                self.refused_peers[errors.PEER_HANDSHAKE_BUSY] = self.refused_peers.get(
                    errors.PEER_HANDSHAKE_BUSY, 0) + 1
                return errors.PEER_HANDSHAKE_BUSY
            self._pending_handshakes.add(url)
        try:
            self._handshakes.submit(self._handshake, url, resolves_to)
        except RuntimeError:  # shut down
            with self._lock:
                self._pending_handshakes.discard(url)
            return errors.PEER_HANDSHAKE_BUSY
        return "pending"

    def _handshake(self, url: str, resolves_to: str | None = None) -> None:
        try:
            why = self.name_problem(url, resolves_to) if resolves_to else None
            why = why or self.handshake_problem(url)
            if why is None:
                status = self.admit(url)
                if status is None:
                    who = self._handshake_session.identity(url)
                    self.node.log(f"peer {url} answered the handshake: added"
                                  + (f" (TLS, chain key {who[:16]}...)" if who else ""))
                return
            with self._lock:
                self.refused_peers[errors.PEER_HANDSHAKE_FAILED] = self.refused_peers.get(
                    errors.PEER_HANDSHAKE_FAILED, 0) + 1
                self._handshake_failed[url] = time.monotonic() + HANDSHAKE_RETRY_SECONDS
                self._handshake_failed.move_to_end(url)
                while len(self._handshake_failed) > MAX_HANDSHAKE_FAILED:
                    self._handshake_failed.popitem(last=False)
        finally:
            with self._lock:
                self._pending_handshakes.discard(url)

    @staticmethod
    def name_problem(url: str, addr: str) -> str | None:
        """None if ``url``'s host name resolves to ``addr`` (among its addresses)."""
        host, port = urlsplit(url).hostname, urlsplit(url).port
        try:
            found = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
        except (OSError, UnicodeError):
            return "its name does not resolve"
        if addr not in {a.removeprefix("::ffff:") for a in found}:
            return f"its name resolves to {sorted(found)[:3]}, not to the caller {addr}"
        return None

    def handshake_problem(self, url: str) -> str | None:
        """None if ``url`` answers ``GET /tip`` with our genesis within the
        small-request deadline, else what went wrong. A TLS node takes only
        https peers and a plain node only http ones: a TLS node would otherwise
        gossip in the clear to a peer that proved no identity."""
        ours, theirs = self.self_url.partition(":")[0], url.partition(":")[0]
        if ours != theirs:
            return f"a {theirs} peer of a{'n' if ours == 'http' else ''} {ours} node (peers share one scheme)"
        try:
            code, content, _wire = self._handshake_session.request("GET", url + "/tip",
                                                                   headers={"X-Peer": self.self_url})
            doc = parse_json(content) if content else None
        except (PeerReplyError, requests.RequestException, EncodingError) as exc:
            return type(exc).__name__
        if code != 200 or not isinstance(doc, dict):
            return f"HTTP {code}"
        if doc.get("genesis") != self.node.genesis.hash:
            return "another network (genesis differs)"
        if url.startswith("https://") and self._handshake_session.identity(url) is None:
            return "no chain identity proved over TLS"  # httpclient checks the binding on connect
        return None

    def pending_handshakes(self) -> list[str]:
        with self._lock:
            return sorted(self._pending_handshakes)

"""HTTP requests to peers with a deadline on the whole exchange and a cap on the reply.

``requests``' ``timeout=(connect, read)`` bounds each socket operation, not the
exchange: a peer that sends one byte every second never trips a 3 s read
timeout and can hold the caller for as long as it likes (the "slowloris" shape,
here against a client). A :class:`BoundedSession` therefore

* registers the socket of every exchange with a single watchdog thread, which
  shuts the socket down when the exchange's deadline passes, whatever phase it
  is in (waiting for the status line, trickled headers, trickled body); and
* reads the body in chunks and stops at ``max_bytes`` (a Content-Length above
  the cap is refused before reading anything). Replies may come gzip-encoded
  (we send ``Accept-Encoding: gzip``); the body is read as it crossed the
  socket (``decode_content=False``) and decoded here by
  :class:`learningchain.node.p2p.wire.CappedGunzip`, so the cap holds on the decoded
  bytes too and a small reply cannot expand past it (a decompression bomb),
  whatever urllib3 version is installed: urllib3 before 2.6 decoded each raw
  chunk in one piece, unbounded (CVE-2025-66471); 2.6+ bounds each ``read(amt)``.
  A gzip reply that decodes to more than :data:`~learningchain.node.p2p.wire.MAX_RATIO`
  times its wire size is cut too, so a few KB cannot become megabytes to parse.
  :class:`Reply` also says how many body bytes crossed the wire, for the
  traffic counters.

Either way the caller gets :class:`PeerReplyError` (or a ``requests``
exception), never a stall longer than the deadline plus the connect timeout.
The socket is found through a urllib3 connection subclass that records it at
``getresponse()``, the first moment it exists for a new or a reused connection.

With a :class:`~learningchain.node.tls.TlsConfig` (a node run with
``--tls-*``) requests go over HTTPS verified against the network CA only (no
system bundle, no environment: ``trust_env`` is off), the hostname checked
against the certificate's subjectAltName, and our own certificate presented
(mutual TLS). Every new HTTPS connection also checks, right after the
handshake and before the request is sent, that the peer's certificate is bound
to the chain key it names (:func:`~learningchain.node.tls.check_binding`); the
verified key is :meth:`BoundedSession.identity` of the peer's URL.

A socket goes back to urllib3's pool as soon as its body has been read, and
another thread may take it at once. So the exchange lets go of its socket when
the pool takes the connection back (``_put_conn``), and that, the end of the
exchange and the watchdog's shutdown all happen under the watchdog's lock: a
finished exchange's socket is never shut down. A connection whose exchange
expired is closed instead of pooled.
"""
from __future__ import annotations

import heapq
import socket
import ssl
import threading
import time
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_ import create_urllib3_context

from learningchain.node.p2p.wire import (MAX_RATIO, CappedGunzip, ContentEncodingError, RatioError, TooLargeError, is_gzip,
                                is_identity)
from learningchain.node.tls import TlsConfig, check_binding

CHUNK = 64 << 10


class PeerReplyError(Exception):
    """A peer's reply broke a bound: too slow in total, or too large."""


class Reply(NamedTuple):
    status: int
    body: bytes       # decoded (gzip undone)
    wire_bytes: int   # body bytes as they crossed the socket


class _Exchange:
    """One request in flight: its deadline and, once known, its socket."""

    __slots__ = ("deadline", "sock", "expired", "done", "identity")

    def __init__(self, deadline: float):
        self.deadline, self.sock, self.expired, self.done = deadline, None, False, False
        self.identity: str | None = None  # the peer's verified chain key (HTTPS)


_current = threading.local()  # .exchange: the _Exchange of this thread's request


class _Watchdog:
    """One thread for all sessions: shuts down the socket of each exchange that
    outlives its deadline (shutdown, not close: it wakes a blocked recv in the
    requesting thread, which then sees EOF and fails)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Exchange]] = []
        self._cond = threading.Condition()
        self._seq = 0
        self._thread: threading.Thread | None = None

    def watch(self, exchange: _Exchange) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (exchange.deadline, self._seq, exchange))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def attach(self, exchange: _Exchange, sock: Any) -> bool:
        """``sock`` now carries ``exchange``; False if its deadline has already passed."""
        with self._cond:
            exchange.sock = sock
            return not exchange.expired

    def detach(self, exchange: _Exchange, done: bool = False) -> bool:
        """``exchange`` no longer owns its socket (the pool took it back, or the
        exchange ended: ``done``); True if it expired, i.e. the socket may have
        been shut down and must not be reused."""
        with self._cond:
            exchange.sock = None
            exchange.done = exchange.done or done
            return exchange.expired

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(60)
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                exchange = heapq.heappop(self._heap)[2]
                exchange.expired = True
                if exchange.sock is not None:  # still owned by the exchange: the lock is held
                    try:
                        exchange.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # already closed


_WATCHDOG = _Watchdog()


class _Recorded:
    """Mixin: tell this thread's exchange which socket carries it."""

    def getresponse(self):  # type: ignore[no-untyped-def]
        exchange = getattr(_current, "exchange", None)
        if exchange is not None and not _WATCHDOG.attach(exchange, self.sock):
            raise PeerReplyError("deadline exceeded before the reply")  # it passed while sending
        if exchange is not None:
            exchange.identity = getattr(self, "peer_identity", None)
        return super().getresponse()


class _HTTPConnection(_Recorded, HTTPConnection):
    pass


class _HTTPSConnection(_Recorded, HTTPSConnection):
    peer_identity: str | None = None

    def connect(self) -> None:
        """The TLS handshake (CA and hostname verified by urllib3), then the
        chain-identity binding of the peer's certificate: a certificate the CA
        signed that names another node's key is refused here, before any
        request goes out (an ``ssl.SSLError``: requests raises ``SSLError``)."""
        super().connect()
        try:
            self.peer_identity = check_binding(self.sock.getpeercert(binary_form=True))
        except Exception:
            self.close()
            raise


class _Releasing:
    """Mixin for pools: a connection coming back detaches from this thread's
    exchange before another thread can take it; if that exchange expired, its
    socket may be shut down, so it is closed and a fresh one made next time."""

    def _put_conn(self, conn):  # type: ignore[no-untyped-def]
        exchange = getattr(_current, "exchange", None)
        if conn is not None and exchange is not None and _WATCHDOG.detach(exchange):
            conn.close()
            conn = None  # urllib3 keeps None as the placeholder of a free slot
        return super()._put_conn(conn)


class _HTTPPool(_Releasing, HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_Releasing, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    """Our pools; with ``ssl_context`` every HTTPS connection uses that one
    context (the network CA and our certificate, loaded once: urllib3 would
    otherwise build a context and load both files per connection, ~2.5 ms with
    OpenSSL 3) and nothing from requests' CA settings."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if self._ssl_context is None:
            return super().cert_verify(conn, url, verify, cert)
        # the context holds the CA and our certificate; no bundle file (certifi) on top
        conn.cert_reqs, conn.ca_certs, conn.ca_cert_dir = "CERT_REQUIRED", None, None
        conn.cert_file = conn.key_file = None
        return None


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """TLS 1.2+, the network CA as the only trust anchor, our certificate for mutual TLS."""
    context = create_urllib3_context(ssl_minimum_version=ssl.TLSVersion.TLSv1_2)
    context.load_verify_locations(tls.ca)
    context.load_cert_chain(tls.cert, tls.key)
    return context


class BoundedSession:
    """``request()`` returns a :class:`Reply` within ``deadline`` seconds (plus the
    connect timeout) and reads at most ``max_bytes`` of body, counted both on the
    wire and decoded."""

    def __init__(self, timeout: tuple[float, float], deadline: float, max_bytes: int,
                 tls: TlsConfig | None = None):
        self.timeout, self.deadline, self.max_bytes = timeout, deadline, max_bytes
        self._session = requests.Session()
        self._identities: dict[str, str] = {}  # scheme://host:port -> verified chain key
        # Peers are addressed directly: no proxy, .netrc or CA bundle from the environment.
        # With trust_env, requests scanned all of os.environ for proxies on every
        # request (getproxies_environment): the largest single cost of a node's gossip.
        self._session.trust_env = False
        self._session.headers["Accept-Encoding"] = "gzip"  # the only coding _read decodes
        adapter = _Adapter(client_context(tls) if tls is not None else None)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def request(self, method: str, url: str, data: bytes | None = None,
                headers: dict | None = None, max_bytes: int | None = None) -> Reply:
        """Raises ``requests.RequestException`` or :class:`PeerReplyError`.
        ``max_bytes``: this reply's cap, if not the session's. ``data`` is sent as
        given (a caller that gzips it sets ``Content-Encoding`` itself)."""
        exchange = _Exchange(time.monotonic() + self.deadline)
        _current.exchange = exchange
        _WATCHDOG.watch(exchange)
        try:
            resp = self._session.request(method, url, data=data, headers=headers, timeout=self.timeout,
                                         stream=True, allow_redirects=False)
            try:
                reply = Reply(resp.status_code, *self._read(resp, exchange, max_bytes or self.max_bytes))
            finally:
                resp.close()
            if exchange.identity is not None:
                if len(self._identities) >= MAX_IDENTITIES:
                    self._identities.clear()  # bounded: a lost entry is learned again on the next request
                self._identities[_origin(url)] = exchange.identity
            return reply
        except requests.RequestException:
            if exchange.expired:
                raise PeerReplyError(f"no complete reply within {self.deadline:g} s") from None
            raise
        finally:
            _WATCHDOG.detach(exchange, done=True)
            _current.exchange = None

    def _read(self, resp: requests.Response, exchange: _Exchange, cap: int) -> tuple[bytes, int]:
        """(decoded body, bytes on the wire); both at most ``cap``."""
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise PeerReplyError(f"reply of {declared} bytes is over the cap of {cap}")
        coding = resp.headers.get("Content-Encoding")
        if not (is_identity(coding) or is_gzip(coding)):
            raise PeerReplyError(f"reply has Content-Encoding {coding!r}; we accept only gzip")
        size = int(declared) if declared.isdigit() else None
        gunzip = CappedGunzip(cap, MAX_RATIO, encoded_size=size) if is_gzip(coding) else None
        chunks, wire = [], 0
        try:
            for chunk in resp.raw.stream(CHUNK, decode_content=False):
                wire += len(chunk)
                if wire > cap:
                    raise PeerReplyError(f"reply is over the cap of {cap} bytes")
                chunks.append(gunzip.feed(chunk) if gunzip else chunk)
            if gunzip:
                gunzip.finish()
        except RatioError as exc:
            raise PeerReplyError(f"reply cut: {exc}") from None
        except TooLargeError:
            raise PeerReplyError(f"gzip reply decodes to more than the cap of {cap} bytes") from None
        except ContentEncodingError as exc:
            if not exchange.expired:  # else: cut off by the deadline, said below
                raise PeerReplyError(f"reply {exc}") from None
        except urllib3.exceptions.HTTPError as exc:  # what iter_content would have wrapped
            raise requests.ConnectionError(exc) from None
        if exchange.expired:
            raise PeerReplyError(f"no complete reply within {self.deadline:g} s")
        return b"".join(chunks), wire

    def identity(self, url: str) -> str | None:
        """The chain key (hex) the peer at ``url`` proved over TLS in our last
        exchange with it (its certificate's binding); None for plain HTTP."""
        return self._identities.get(_origin(url))

    def close(self) -> None:
        self._session.close()


#: peers whose verified identity a session remembers at most
MAX_IDENTITIES = 4096


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}"

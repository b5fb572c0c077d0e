"""Serving the API with waitress: the server that :func:`learningchain.node.run.run_node`
(and the tests that start a real node) run :func:`learningchain.node.web.api.create_app` in.

waitress answers some refusals itself, before the app runs (a body over
``max_request_body_size``, headers too large, a malformed request line);
:class:`JsonErrorTask` gives them the API's JSON shape and counts them.
:func:`serve_until` runs the event loop until a stop event and closes every
connection from that same thread.

With a :class:`~learningchain.node.tls.TlsConfig` the server speaks HTTPS only:
waitress has no TLS, so :class:`TlsChannel` terminates it in-process with the
standard :mod:`ssl` module on each accepted socket (non-blocking handshake on
the event loop, see its docstring), and :class:`ConnectionGuard` guards TLS
connections exactly as plain ones.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import threading
import time
from collections import Counter

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

from learningchain.node.tls import IdentityError, TlsConfig, check_binding


class JsonErrorTask(ErrorTask):
    """waitress's own refusals (body over ``max_request_body_size``, headers too
    large, a malformed request line) in our JSON shape, and counted like the
    app's. waitress answers them before the app runs, from its parser."""

    def execute(self) -> None:
        err = self.request.error
        reason = {413: "body-too-large", 431: "headers-too-large"}.get(err.code, "bad-request")
        app = self.channel.flask_app
        if err.code == 413:
            text = f"request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        else:
            text = f"{err.reason}: {err.body}"
        node_obj = app.config.get("NODE")
        if node_obj is not None:
            node_obj.refused[reason] += 1
        body = json.dumps({"error": text, "reason": reason}).encode()
        self.status = f"{err.code} {err.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask
    flask_app: Flask  # set per server by create_http_server (waitress wraps the app it holds)
    #: when the request being read began (None: between requests); see ConnectionGuard
    partial_since: float | None = None
    _partial = None
    #: the client sent at least one byte (an attacker's idle socket never does)
    spoke = False

    def send_continue(self) -> None:
        """``100 Continue``, queued for the event loop to send, never written here.
        waitress writes it at once, also from a worker thread at the end of a
        pipelined request, while the loop may be reading or flushing the same
        socket: two threads on one OpenSSL object under TLS (a corrupted stream,
        seen as DECRYPTION_FAILED_OR_BAD_RECORD_MAC), and in plain HTTP the same
        25 bytes flushed twice ("Can't skip 25 bytes", a traceback per request)."""
        self.request.expect_continue = False
        payload = b"HTTP/1.1 100 Continue\r\n\r\n"
        with self.outbuf_lock:
            self.outbufs[-1].append(payload)
            self.current_outbuf_count += len(payload)
            self.total_outbufs_len += len(payload)
            self.sent_continue = True
        self.request.completed = False
        self.server.pull_trigger()  # the loop wakes, finds the channel writable and sends it

    def received(self, data: bytes) -> bool:
        self.spoke = self.spoke or bool(data)
        done = super().received(data)
        if self.request is None:
            self.partial_since, self._partial = None, None
        elif self.request is not self._partial:  # a new request began in this data
            self.partial_since, self._partial = time.time(), self.request
        return done

    @property
    def busy(self) -> bool:
        """Serving a request, or flushing an answer the client is reading: never
        closed by the guard. An answer the client has not read for the server's
        ``stall_seconds`` does not count: a client that asks for big replies and
        never reads them would otherwise hold its connections (and their
        buffers) for good, and enough of them refuse every newcomer."""
        if self.requests:
            return True
        stall = getattr(self.server, "stall_seconds", IDLE_SECONDS)
        return bool(self.total_outbufs_len) and time.time() - self.last_activity < stall

    @property
    def waiting(self) -> bool:
        """The client's bytes sit in the kernel, not yet read by the event loop:
        a fresh client whose request arrived while the loop was busy accepting
        an attacker's sockets. Such a connection is not idle, whatever
        ``last_activity`` says (it is set by reads). One ``recv(MSG_PEEK)``."""
        try:
            return bool(self.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return False  # reset or closed: nothing to protect


#: the first byte of a TLS record carrying a handshake (a ClientHello starts with it)
TLS_HANDSHAKE_RECORD = 0x16
_NEW, _HANDSHAKE, _OPEN = "new", "handshake", "open"


def _plain_refusal() -> bytes:
    body = json.dumps({"error": "this node serves HTTPS only: use https:// and the network CA",
                       "reason": "tls-required"}).encode()
    return (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body


class TlsChannel(JsonErrorChannel):
    """A waitress channel that terminates TLS on its accepted (non-blocking) socket.

    * First read event: the first byte is peeked. A TLS handshake record
      (0x16) wraps the socket (``do_handshake_on_connect=False``); anything
      else is a plain-HTTP client, answered ``400 {"reason": "tls-required"}``
      in the clear and closed (counted in the node's refusals).
    * Handshake: one ``do_handshake()`` per read or write event;
      ``SSLWantReadError`` waits for the next read event, ``SSLWantWriteError``
      makes the channel writable until it can go on. A failure (no common
      protocol, a client certificate not from the CA) closes it
      (``tls-handshake``); a client certificate that is not bound to its chain
      key (:func:`~learningchain.node.tls.check_binding`) too (``tls-identity``).
      The verified key is ``peer_identity``.
    * Reads loop while the ``ssl`` object holds decrypted bytes
      (``pending()``): ``poll`` sees the socket, not OpenSSL's buffer. When the
      channel cannot read them yet (a request is being served), it reports
      itself writable once it can, and its write event reads them.
    * Writes: ``SSLWantWriteError`` (or ``WantRead``) is "sent nothing yet";
      waitress retries with the same bytes first, as OpenSSL requires.

    The guard: the handshake counts as the start of a request (``partial_since``),
    so a client that stalls mid-handshake is closed after ``header_seconds``;
    a socket that never sends a byte is mute and idle as before.
    """

    _state = _NEW
    _want_write = False
    peer_identity: str | None = None

    def _refuse(self, reason: str, answer: bytes = b"") -> None:
        """Count ``reason``, then send ``answer`` in the clear (if any) and close:
        counted first, so whoever reads the answer finds it counted."""
        refusals = self.server.tls_refused
        refusals[reason] += 1
        node_obj = self.flask_app.config.get("NODE")
        if node_obj is not None:
            node_obj.refused[reason] += 1
        if answer:
            try:  # read what it sent (closing on unread bytes resets the answer away), answer
                self.socket.recv(1 << 16)
                self.socket.send(answer)
            except OSError:
                pass
        self.handle_close()

    def _start(self) -> bool:
        """Peek at the first byte; True once the socket is wrapped for the handshake."""
        try:
            first = self.socket.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.handle_close()
            return False
        if not first:
            self.handle_close()
            return False
        self.spoke, self.partial_since = True, time.time()
        if first[0] != TLS_HANDSHAKE_RECORD:
            self._refuse("tls-required", _plain_refusal())
            return False
        self.socket = self.server.ssl_context.wrap_socket(self.socket, server_side=True,
                                                          do_handshake_on_connect=False)
        self._state = _HANDSHAKE
        return True

    def _handshake(self) -> bool:
        """One handshake step; True once it is done and the peer accepted."""
        try:
            self.socket.do_handshake()
        except ssl.SSLWantReadError:
            self._want_write = False
            return False
        except ssl.SSLWantWriteError:
            self._want_write = True
            return False
        except OSError:  # ssl.SSLError included: bad certificate, no shared protocol, a reset
            self._refuse("tls-handshake")
            return False
        self._want_write, self._state, self.partial_since = False, _OPEN, None
        self.last_activity = time.time()
        der = self.socket.getpeercert(binary_form=True)
        if der:
            try:
                self.peer_identity = check_binding(der)
            except IdentityError:
                self._refuse("tls-identity")
                return False
        return True

    def _pending(self) -> bool:
        """Decrypted bytes wait in the ssl object and we could read them now.
        Asked only with no request in service (no worker writes on the socket)."""
        return (self._state == _OPEN and self.socket is not None and not self.requests
                and super().readable() and self.socket.pending() > 0)

    def readable(self) -> bool:
        return True if self._state != _OPEN else super().readable()

    def writable(self) -> bool:
        if self._state != _OPEN:
            return bool(self.will_close or self._want_write)
        return bool(super().writable()) or self._pending()

    def handle_read(self) -> None:
        if self._state == _NEW and not self._start():
            return
        if self._state == _HANDSHAKE and not self._handshake():
            return
        while self.socket is not None:
            try:
                data = self.socket.recv(self.adj.recv_bytes)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError:
                self.handle_close()
                return
            if not data:  # the client closed
                self.handle_close()
                return
            self.last_activity = time.time()
            self.received(data)
            if not self._pending():
                return

    def handle_write(self) -> None:
        if self._state != _OPEN:
            if self.will_close:
                self.handle_close()
            elif self._state == _HANDSHAKE:
                self._handshake()
            return
        if self._pending():
            self.handle_read()
            if self.socket is None:
                return
        super().handle_write()

    def send(self, data, do_close: bool = True) -> int:
        try:
            return self.socket.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            return 0
        except OSError:
            if do_close:
                self.handle_close()
            return 0

    @property
    def waiting(self) -> bool:
        """As :attr:`JsonErrorChannel.waiting`, also counting the ssl object's
        buffer; the peek goes through a duplicate of the descriptor (an
        ``SSLSocket`` refuses ``recv`` flags)."""
        if self._state == _NEW or self.socket is None:
            return super().waiting
        if self._state == _OPEN and not self.requests and self.socket.pending() > 0:
            return True
        try:
            dup = socket.socket(fileno=os.dup(self.socket.fileno()))
        except OSError:
            return False
        try:
            return bool(dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:
            return False
        finally:
            dup.close()


#: connections from one IP address at most (loopback included: tests and the demo
#: run every node on 127.0.0.1, and a node there holds a few per peer).
PER_IP_CONNECTIONS = 32
#: connections at most in all; waitress's own ``connection_limit`` is set above it.
TOTAL_CONNECTIONS = 512
#: seconds a connection may stay silent between requests (waitress's default: 120).
IDLE_SECONDS = 10
#: seconds to send a request's header lines once it began (a slowloris trickle).
HEADER_SECONDS = 10
#: seconds after which a connection that never sent a byte is evicted first.
MUTE_SECONDS = 1.0
#: seconds to send a whole request (headers and body) once it began.
REQUEST_SECONDS = 30


def client_group(addr) -> str | None:
    """Whom the per-client cap counts together: an IPv4 address, or an IPv6 /64
    (one host commonly holds a whole /64, 2^64 addresses, so counting IPv6
    addresses one by one would cap nothing)."""
    if not addr:
        return None
    try:
        ip = ipaddress.ip_address(addr[0])
    except ValueError:
        return str(addr[0])
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class ConnectionGuard:
    """Mixed into waitress's server: no lock-out by idle or trickling sockets
    (issue 10, item 4: ~110 idle sockets made waitress stop accepting, as its
    ``connection_limit`` does by design).

    * Over :data:`PER_IP_CONNECTIONS` from the new connection's address, or over
      :data:`TOTAL_CONNECTIONS` in all, the new connection is still accepted and
      the *oldest idle* one (from that address, or from anywhere) is closed:
      first one that has been mute for :data:`MUTE_SECONDS`, else the longest
      silent. Not idle: serving a request, flushing an answer, or holding bytes
      the loop has not read yet (a fresh client's request that arrived while
      the loop was accepting the attacker's sockets). Only when none is idle
      is the new one refused. An attacker's sockets thus push out each other,
      not the fresh client.
    * A request must send its header lines within :data:`HEADER_SECONDS` and
      all of itself within :data:`REQUEST_SECONDS` once begun; a connection
      silent between requests is closed after :data:`IDLE_SECONDS`
      (waitress's ``channel_timeout``). Checked every second.

    Apache's ``mod_reqtimeout`` (header and body deadlines) and nginx's
    ``client_header_timeout`` answer slowloris the same way.
    """
    per_ip = PER_IP_CONNECTIONS
    total = TOTAL_CONNECTIONS
    header_seconds = HEADER_SECONDS
    request_seconds = REQUEST_SECONDS
    #: an answer unread this long no longer makes its connection busy (evictable)
    stall_seconds = IDLE_SECONDS
    refused_connections = 0
    evicted_connections = 0
    timed_out_requests = 0
    stalled_replies = 0  # answers dropped after request_seconds unread

    def handle_accept(self) -> None:
        before = set(self.active_channels)
        super().handle_accept()
        new = [c for fd, c in self.active_channels.items() if fd not in before]
        if new:
            self._make_room(new[0])

    def _make_room(self, channel) -> None:
        live = [c for c in self.active_channels.values() if c is not channel and not c.will_close]
        ip = channel.group = client_group(channel.addr)
        same = [c for c in live if getattr(c, "group", None) == ip]
        for pool, cap in ((same, self.per_ip), (live, self.total)):
            if len(pool) < cap:
                continue
            # a socket mute for a second goes first (an honest client speaks at
            # once), then the longest silent; a fresh one is thus evicted last.
            # ``waiting`` costs a syscall: asked only of the one about to go
            now = time.time()
            order = sorted((c for c in pool if not c.busy),
                           key=lambda c: (c.spoke or now - c.last_activity < MUTE_SECONDS, c.last_activity))
            oldest = next((c for c in order if not c.waiting), None)
            if oldest is None:
                self.refused_connections += 1
                channel.handle_close()
                return
            self.evicted_connections += 1
            oldest.handle_close()
            live.remove(oldest)
            if oldest in same:
                same.remove(oldest)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle between requests > channel_timeout
        for channel in list(self.active_channels.values()):
            if (not channel.requests and channel.total_outbufs_len
                    and now - channel.last_activity > self.request_seconds):
                self.stalled_replies += 1  # an answer nobody reads: drop it and its buffer
                channel.handle_close()
                continue
            began = getattr(channel, "partial_since", None)
            if began is None or channel.requests or channel.will_close:
                continue
            headers_done = getattr(channel.request, "headers_finished", False)
            if now - began > self.request_seconds or (not headers_done and now - began > self.header_seconds):
                self.timed_out_requests += 1
                channel.will_close = True

    def guard_report(self) -> dict:
        return {"open": len(self.active_channels), "evicted": self.evicted_connections,
                "refused": self.refused_connections, "timed_out": self.timed_out_requests,
                "stalled": self.stalled_replies}


def create_http_server(app: Flask, host: str, port: int, threads: int = 8, *,
                       per_ip: int = PER_IP_CONNECTIONS, total: int = TOTAL_CONNECTIONS,
                       tls: TlsConfig | None = None):
    """A waitress server for ``app`` that refuses an oversized body from its
    Content-Length header, before reading it. Without ``max_request_body_size``
    waitress buffers up to 1 GiB per request (spilling to temp files) before
    Flask sees ``MAX_CONTENT_LENGTH``. waitress refuses ``length >= limit`` and
    werkzeug ``length > MAX_CONTENT_LENGTH``, hence the + 1: both agree on the
    largest body allowed. See https://docs.pylonsproject.org/projects/waitress/en/latest/arguments.html

    Connections are guarded by :class:`ConnectionGuard` (``per_ip`` and
    ``total`` caps with eviction of the oldest idle, request deadlines);
    ``poll()`` instead of ``select()``, which fails past 1024 descriptors.
    With ``tls`` every connection is HTTPS (:class:`TlsChannel`); TLS refusals
    are counted in the server's ``tls_refused`` and the node's ``refused``.
    """
    server = create_server(app, host=host, port=port, threads=threads,
                           max_request_body_size=app.config["MAX_CONTENT_LENGTH"] + 1,
                           connection_limit=total + 64, channel_timeout=IDLE_SECONDS, cleanup_interval=1,
                           asyncore_use_poll=True, url_scheme="https" if tls else "http")
    context = tls.server_context() if tls else None
    channel_class = type("NodeChannel", (TlsChannel if tls else JsonErrorChannel,), {"flask_app": app})
    listeners = [server] if hasattr(server, "active_channels") else [
        s for s in server.map.values() if hasattr(s, "active_channels")]
    for listener in listeners:
        # read per accepted connection: a subclass that knows our app
        listener.channel_class = channel_class
        listener.__class__ = type("GuardedServer", (ConnectionGuard, type(listener)),
                                  {"per_ip": per_ip, "total": total})
        listener.ssl_context, listener.tls_refused = context, Counter()
    return server


def serve_until(server, stop: threading.Event, tick: float = 0.2) -> None:
    """Run a waitress server's event loop until ``stop`` is set, then close it and
    every open connection from this same thread (closing sockets from another
    thread while the loop selects on them is a race)."""
    try:
        while not stop.is_set():
            server.asyncore.loop(timeout=tick, map=server._map, use_poll=server.adj.asyncore_use_poll,
                                 count=1)
    finally:
        # Let the worker threads finish their requests while the loop still
        # flushes their output; closing first makes a late worker write to a
        # closed trigger (EBADF in waitress's pull_trigger).
        dispatcher = server.task_dispatcher
        dispatcher.set_thread_count(0)
        deadline = time.monotonic() + 3.0
        while dispatcher.threads and time.monotonic() < deadline:
            server.asyncore.loop(timeout=0.05, map=server._map, use_poll=server.adj.asyncore_use_poll,
                                 count=1)
        dispatcher.shutdown(timeout=0.5)
        server.close()
        for channel in list(server._map.values()):
            try:
                channel.close()
            except OSError:
                pass

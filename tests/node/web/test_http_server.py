"""The node's app behind the real waitress server
(:mod:`learningchain.node.web.http_server`): a body over the cap refused from its
header alone, the connection guard's caps and deadlines, and answers nobody reads."""
from __future__ import annotations

import json

import pytest

from learningchain.node.web.api import create_app
from tests.node.web.api_client import started_node


@pytest.fixture
def node(tmp_path):
    yield from started_node(tmp_path)


@pytest.fixture
def served(node):
    """``node`` behind the real waitress server ``run_node`` uses, on 127.0.0.1."""
    import threading

    from learningchain.node.web.http_server import create_http_server, serve_until
    from learningchain.cli.processes import free_port
    port = free_port()
    app = create_app(node)
    server = create_http_server(app, "127.0.0.1", port, threads=2)
    stop = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, stop), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", app.config["MAX_CONTENT_LENGTH"]
    stop.set()
    thread.join(timeout=5)


def test_waitress_refuses_an_oversized_body_from_its_header_alone(served, node):
    import socket

    import requests
    url, limit = served
    port = int(url.rsplit(":", 1)[1])
    # headers announcing 1 GiB and no body at all: the answer comes without reading any
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1073741824\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    head, _, doc = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"application/json" in head, head
    assert json.loads(doc) == {"error": f"request body is larger than {limit} bytes", "reason": "body-too-large"}
    r = requests.post(url + "/txs", data=b" " * (limit + 1), headers={"Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 413 and r.json()["reason"] == "body-too-large"
    r = requests.post(url + "/blocks", data=b" " * limit, headers={"Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 400 and r.json()["reason"] == "bad-json"  # the largest body reaches the app
    assert requests.get(url + "/status", timeout=10).json()["refused"] == {"body-too-large": 2, "bad-json": 1}


def test_connection_guard_evicts_idle_sockets_and_times_out_trickled_headers(node):
    """Over the per-IP cap the oldest idle connection goes, not the newcomer; a
    request whose header lines trickle is closed at the header deadline."""
    import socket
    import threading

    import requests

    from learningchain.node.web.http_server import create_http_server, serve_until
    from learningchain.cli.processes import free_port
    from tests.served import wait_for
    port = free_port()
    server = create_http_server(create_app(node), "127.0.0.1", port, threads=2, per_ip=4, total=6)
    server.header_seconds = 1  # the instance's deadline, short for the test
    stop = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, stop), daemon=True)
    thread.start()
    try:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
        trickle = socket.create_connection(("127.0.0.1", port), timeout=5)
        trickle.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            assert requests.get(f"http://127.0.0.1:{port}/status", timeout=5).status_code == 200
        wait_for(lambda: len(server.active_channels) <= 4, 5, "at most 4 connections from 127.0.0.1")
        assert server.evicted_connections >= 7
        assert trickle.recv(1) == b""  # closed by the node (evicted or at the header deadline)
        trickle = socket.create_connection(("127.0.0.1", port), timeout=5)
        trickle.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        trickle.settimeout(5)
        assert trickle.recv(1) == b""
        assert server.timed_out_requests >= 1
        for s in idle:
            s.close()
    finally:
        stop.set()
        thread.join(timeout=5)


def test_connections_holding_unread_replies_do_not_lock_out_newcomers():
    """A client that asks for big answers and never reads them: its connections
    stay "busy" flushing, and with the cap full of them every newcomer was refused.
    An answer unread for ``stall_seconds`` no longer counts as busy (the oldest
    such connection makes room), and one unread for ``request_seconds`` is dropped."""
    import socket
    import threading

    import requests
    from flask import Flask

    from learningchain.node.web.http_server import create_http_server, serve_until
    from learningchain.cli.processes import free_port
    from tests.served import wait_for
    app = Flask("big")
    app.config["MAX_CONTENT_LENGTH"] = 1 << 16
    app.add_url_rule("/big", "big", lambda: "x" * (8 << 20))
    app.add_url_rule("/small", "small", lambda: "ok")
    port = free_port()
    server = create_http_server(app, "127.0.0.1", port, threads=2, per_ip=3, total=6)
    server.stall_seconds, server.request_seconds = 1, 3
    stop = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, stop), daemon=True)
    thread.start()
    hogs = []
    try:
        for _ in range(3):  # fill the per-client cap with answers nobody reads
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            hogs.append(s)
        wait_for(lambda: sum(bool(c.total_outbufs_len) for c in server.active_channels.values()) == 3, 10,
                 "three answers stuck in the server's buffers")
        import time
        wait_for(lambda: all(time.time() - c.last_activity > server.stall_seconds
                             for c in server.active_channels.values()), 10, "the answers to stall")
        assert requests.get(f"http://127.0.0.1:{port}/small", timeout=5).text == "ok"  # stalled: made room
        assert server.evicted_connections >= 1 and server.refused_connections == 0
        wait_for(lambda: server.stalled_replies + server.evicted_connections >= 3, 10,
                 "the unread answers dropped")
        # the buffers go as the server loop closes each evicted channel: poll, on a loaded run it lags
        wait_for(lambda: not any(c.total_outbufs_len for c in list(server.active_channels.values())), 10,
                 "no channel holding an unread answer")
    finally:
        for s in hogs:
            s.close()
        stop.set()
        thread.join(timeout=5)


def test_a_pipelined_expect_continue_is_answered_once_and_only_by_the_event_loop(served, caplog):
    """waitress wrote "100 Continue" from the worker thread at the end of a pipelined
    request while the event loop flushed the same socket: the bytes went out twice and
    waitress logged "Can't skip 25 bytes" (a traceback per request; under TLS, two threads
    on one OpenSSL object, a corrupted stream). Now only the loop writes it."""
    import logging
    import socket
    import threading

    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    body = b'{"url": "http://127.0.0.1:9"}'
    caplog.set_level(logging.ERROR, logger="waitress")
    bad: list[bytes] = []

    def client() -> None:
        for _ in range(60):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3
                             + b"POST /peers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                             % len(body))
                for byte in body:  # the loop keeps reading while the worker answers the GETs
                    sock.send(bytes([byte]))
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            if reply.count(b"HTTP/1.1 100 Continue") > 1 or reply.count(b"HTTP/1.1 200") != 4:
                bad.append(reply)
    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, bad[0][-300:]
    assert not [r for r in caplog.records if "skip" in r.getMessage() or r.exc_info], caplog.text[:500]

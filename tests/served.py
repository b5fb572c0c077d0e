"""In-process nodes for tests that need real HTTP without extra processes: a
:class:`Node` behind the real waitress server on its own 127.0.0.1 port, and a
``network`` fixture factory that closes every node it started. Every wait polls
with a deadline (:func:`wait_for`)."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from learningchain.node.web.api import create_app
from learningchain.ledger.block import Block
from learningchain.node.web.http_server import create_http_server, serve_until
from learningchain.cli.processes import free_port
from learningchain.node.service import Node
from miner.pow import search
from tests.helpers import tiny_config


def wait_for(predicate, seconds: float = 10.0, what: str = "condition"):
    """Poll ``predicate()`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


class Served:
    """A node (config ``cfg``, default :func:`tiny_config`) and its waitress server in a thread."""

    def __init__(self, root, name: str, cfg=None, peers=(), threads: int = 8, tls=None):
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.tls = tls  # a TlsConfig: HTTPS (node/tls.py)
        self.node = Node(root / name, cfg or tiny_config(), peers=peers, port=self.port, quiet=True, tls=tls)
        self.app = create_app(self.node)
        self.server = create_http_server(self.app, host="127.0.0.1", port=self.port, threads=threads, tls=tls)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=serve_until, args=(self.server, self.stop), daemon=True)
        self.thread.start()
        self.node.start()

    def status(self) -> dict:
        return requests.get(self.url + "/status", timeout=10, verify=self.tls.ca if self.tls else True).json()

    def mine_one(self) -> Block:
        """Mine the node's current template in-process and submit it."""
        _tid, block = self.node.new_template()
        nonce, _ = search(block.header.prefix(), block.header.target, 0, 1 << 32)
        mined = Block(block.header.with_nonce(nonce), block.txs, block.commitment, block.config)
        assert self.node.submit_block(mined) == "connected"
        return mined

    def close(self) -> None:
        self.node.stop()
        self.stop.set()
        self.thread.join(timeout=5)


def network_factory(tmp_path):
    """Body of a ``network`` fixture: ``start(name, peers=(), **config)`` starts a
    :class:`Served` node; every node is closed at the end."""
    nodes: list[Served] = []

    def start(name: str, peers=(), **cfg):
        nodes.append(Served(tmp_path, name, tiny_config(**cfg) if cfg else None, peers))
        return nodes[-1]
    yield start
    for s in nodes:
        s.close()


def serve_handler(handler_class) -> tuple[ThreadingHTTPServer, str]:
    """A scripted peer: ``handler_class`` (a BaseHTTPRequestHandler) served on a
    free 127.0.0.1 port in a daemon thread. Returns the server and its URL;
    stop it with :func:`stop_server`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def send_json(handler, code: int, body: bytes) -> None:
    """A scripted peer's reply (from a BaseHTTPRequestHandler): ``body``, already JSON, with ``code``."""
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def stop_server(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def stop_sync_loop(served: "Served") -> None:
    """No periodic sync: peer states and syncs change only as the test drives them."""
    served.node.peers._stop.set()
    served.node.peers._thread.join(timeout=10)


class FakePeer:
    """A small HTTP server on 127.0.0.1 standing in for a peer: it records the paths
    asked of it and answers each with ``reply``. ``trickle``: seconds between
    single bytes of the body (a peer that answers slowly; ``trickle_head`` also
    trickles the status line and headers). ``length``: the Content-Length to
    declare (None: the real one; -1: none, the body ends when the peer closes).
    ``status``: the HTTP status of every answer."""

    def __init__(self, reply: bytes = b"{}", trickle: float = 0.0, trickle_head: bool = False,
                 length: int | None = None, status: int = 200):
        self.paths: list[str] = []
        self.closed = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _answer(self):
                outer.paths.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                declared = len(reply) if length is None else length
                phrase = "OK" if status == 200 else "Error"
                head = f"HTTP/1.0 {status} {phrase}\r\nContent-Type: application/json\r\n".encode()
                if declared >= 0:
                    head += f"Content-Length: {declared}\r\n".encode()
                head += b"\r\n"
                try:
                    self.send(head, trickle if trickle_head else 0.0)
                    self.send(reply, trickle)
                except OSError:
                    pass  # the client gave up: what a trickling peer sees

            def send(self, data: bytes, pause: float) -> None:
                if not pause:
                    self.wfile.write(data)
                    return
                for i in range(len(data)):
                    if outer.closed.wait(pause):
                        return
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server, self.url = serve_handler(Handler)

    def close(self) -> None:
        self.closed.set()
        stop_server(self.server)


def fake_peer_factory():
    """Body of a ``fake_peer`` fixture: ``start(**kw)`` starts a :class:`FakePeer`;
    every one is closed at the end."""
    peers: list[FakePeer] = []

    def start(**kw) -> FakePeer:
        peers.append(FakePeer(**kw))
        return peers[-1]
    yield start
    for p in peers:
        p.close()

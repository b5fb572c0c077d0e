"""The demo's per-round counters (``learningchain.cli.demo_rounds.counters``) against
real HTTP servers on 127.0.0.1: a node that misses one /status counts with its last
answer, so a round's traffic is never read as 0 or negative because of a timeout."""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

from learningchain.cli.demo_rounds import counters
from tests.served import send_json, serve_handler, stop_server


class FakeStatus:
    """A /status server whose answer the test sets; ``None`` answers 503."""

    def __init__(self):
        self.doc: dict | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                ok = owner.doc is not None and self.path == "/status"
                send_json(self, 200 if ok else 503, json.dumps(owner.doc if ok else {}).encode())

            def log_message(self, *args):
                pass

        self.server, self.url = serve_handler(Handler)

    def close(self):
        stop_server(self.server)


def status(sent: int, train: float) -> dict:
    return {"traffic": {"sent": sent}, "timings": {"train_s": train}}


def node(name: str, fake: FakeStatus) -> SimpleNamespace:
    return SimpleNamespace(name=name, url=fake.url)


def test_a_node_that_misses_a_status_counts_with_its_last_answer():
    a, b = FakeStatus(), FakeStatus()
    net = SimpleNamespace(nodes=[node("node0", a), node("node1", b)])
    last: dict[str, dict] = {}
    try:
        a.doc, b.doc = status(1000, 1.0), status(500, 2.0)
        assert counters(net, last) == (1500, {"train": 3.0})
        a.doc, b.doc = status(1800, 1.5), None  # node1 does not answer this time
        assert counters(net, last) == (2300, {"train": 3.5})  # node1's 500 bytes and 2.0 s kept
        b.doc = status(900, 2.5)
        assert counters(net, last) == (2700, {"train": 4.0})  # its growth lands in the next round
    finally:
        a.close()
        b.close()


def test_a_node_that_never_answered_counts_as_nothing():
    a = FakeStatus()
    net = SimpleNamespace(nodes=[node("node0", a)])
    try:
        assert counters(net, {}) == (0, {})
    finally:
        a.close()

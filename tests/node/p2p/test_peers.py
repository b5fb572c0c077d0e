"""PeerSet, the node's peer set: one exchange with a peer (timeouts, the
whole-exchange deadline, reply caps per kind of request) against real and
scripted peers on 127.0.0.1. Every wait polls with a deadline."""
from __future__ import annotations

import time

import pytest

from learningchain.cli.processes import free_port
from learningchain.node.p2p.peers import PeerSet, TIMEOUT
from tests.served import fake_peer_factory, network_factory, wait_for
from tests.helpers import KEYS, update_tx


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)

@pytest.fixture
def fake_peer():
    yield from fake_peer_factory()


def test_unreachable_peer_does_not_block_gossip(network, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    a = network("a")
    b = network("b", [a.url])
    wait_for(lambda: len(a.node.peers) == 1, what="a to learn b")
    a.node.peers.add(dead)
    tx = update_tx(a.node.chain, KEYS[2])
    t0 = time.monotonic()
    a.node.submit_tx(tx)
    assert time.monotonic() - t0 < 0.5  # gossip is asynchronous
    wait_for(lambda: b.status()["mempool"] == 1, seconds=5, what="tx on the live peer")
    wait_for(lambda: any(p["url"] == dead and p["failures"] >= 1 for p in a.node.peers.snapshot()),
             seconds=TIMEOUT[0] + TIMEOUT[1] + 2, what="the dead peer to be marked failed")
    # a request to a black hole returns within the timeout and backs the peer off
    ps = PeerSet(a.node, "http://127.0.0.1:1", [dead])
    t0 = time.monotonic()
    assert ps.request(dead, "GET", "/status") is None
    assert time.monotonic() - t0 < TIMEOUT[0] + TIMEOUT[1] + 0.5
    assert ps.snapshot()[0]["failures"] == 1 and ps.snapshot()[0]["backoff_seconds"] > 0
    ps.stop()

def test_a_trickling_peer_is_cut_off_at_the_deadline(network, fake_peer):
    """One byte every 0.2 s passes every per-read timeout; the whole-exchange
    deadline (1 s here) still ends it, the peer backs off, and a sync round
    over [trickler, live peer] reaches the live peer's chain."""
    a = network("a")
    blocks = [a.mine_one() for _ in range(2)]
    d = network("d")
    d.node.peers._stop.set()  # we drive d's sync by hand below
    d.node.peers._thread.join(timeout=10)
    body = b'{"height": 9, "tip": "' + b"ab" * 32 + b'", "work": "ffff"}'  # 20 s at 0.2 s a byte
    slow_body = fake_peer(reply=body, trickle=0.2)
    slow_head = fake_peer(reply=body, trickle=0.2, trickle_head=True)
    ps = PeerSet(d.node, "http://127.0.0.1:1", [slow_body.url, slow_head.url, a.url], deadline=1.0)
    try:
        for slow in (slow_body, slow_head):
            t0 = time.monotonic()
            assert ps.request(slow.url, "GET", "/tip") is None
            spent = time.monotonic() - t0
            assert spent < len(body) * 0.2 / 2  # gave up long before the reply could end
            peer = next(p for p in ps.snapshot() if p["url"] == slow.url)
            assert peer["failures"] == 1 and "within 1 s" in peer["last_error"], peer
            assert peer["backoff_seconds"] > 0
        with ps._lock:  # make both tricklers available again for the sync round
            for url in (slow_body.url, slow_head.url):
                ps._peers[url].next_try = 0.0
        ps.sync_once()  # the tricklers come first in the peer order
        assert d.node.tip_info() == (2, blocks[-1].hash)
        failures = {p["url"]: p["failures"] for p in ps.snapshot()}
        assert failures == {slow_body.url: 2, slow_head.url: 2, a.url: 0}
    finally:
        ps.stop()

def test_an_oversized_reply_is_cut_off_at_the_cap(network, fake_peer):
    a = network("a")
    big = b'{"x": "' + b"y" * 5000 + b'"}'
    declared = fake_peer(reply=b"{}", length=10_000_000)  # says 10 MB, sends 2 bytes
    undeclared = fake_peer(reply=big, length=-1)          # no Content-Length, 5 kB
    ps = PeerSet(a.node, "http://127.0.0.1:1", [declared.url, undeclared.url], max_reply=4096)
    try:
        for peer in (declared, undeclared):
            assert ps.request(peer.url, "GET", "/tip") is None
        errors = {p["url"]: p["last_error"] for p in ps.snapshot()}
        assert "10000000 bytes is over the cap of 4096" in errors[declared.url]
        assert "over the cap of 4096 bytes" in errors[undeclared.url]
        ps2 = PeerSet(a.node, "http://127.0.0.1:1", [undeclared.url], max_reply=8192)
        assert ps2.request(undeclared.url, "GET", "/tip") == (200, {"x": "y" * 5000})  # under the cap
        ps2.stop()
    finally:
        ps.stop()

def test_each_kind_of_request_has_its_own_reply_cap(network, fake_peer):
    from learningchain.node.p2p.peers import SMALL_REPLY_BYTES, reply_cap
    a = network("a")
    big = b'{"blocks": [], "pad": "' + b"y" * (SMALL_REPLY_BYTES + 1000) + b'"}'
    peer = fake_peer(reply=big)
    ps = PeerSet(a.node, "http://127.0.0.1:1", [peer.url])
    try:
        assert ps.request(peer.url, "GET", "/tip") is None  # polled every 2 s: a small cap
        assert f"over the cap of {SMALL_REPLY_BYTES}" in ps.snapshot()[0]["last_error"]
        with ps._lock:
            ps._peers[peer.url].next_try = 0.0
        code, doc = ps.request(peer.url, "POST", "/sync/blocks", {"locator": [], "limit": 1})
        assert code == 200 and doc["blocks"] == []  # a sync page may be megabytes
        cfg = a.node.config
        assert reply_cap("GET", "/txs/" + "ab" * 32, cfg.max_tx_bytes, cfg.max_block_bytes) > cfg.max_tx_bytes
        assert reply_cap("GET", "/peers", cfg.max_tx_bytes, cfg.max_block_bytes) == SMALL_REPLY_BYTES
    finally:
        ps.stop()

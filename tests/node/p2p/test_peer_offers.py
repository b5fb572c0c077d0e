"""Offers and handshakes (peer_offers.py): a learned peer joins only after it
answers ``/tip`` with our genesis."""
from __future__ import annotations

import pytest
import requests

from tests.served import fake_peer_factory, network_factory, stop_sync_loop, wait_for


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)

@pytest.fixture
def fake_peer():
    yield from fake_peer_factory()


def test_a_learned_peer_joins_only_after_a_handshake_with_our_genesis(network, fake_peer):
    a = network("a")
    b = network("b")
    stop_sync_loop(a)
    stranger = fake_peer(reply=b'{"height": 0, "tip": "00", "work": "1", "genesis": "' + b"ab" * 32 + b'"}')
    for url in (b.url, stranger.url):
        r = requests.post(a.url + "/peers", json={"url": url}, timeout=10).json()
        assert r["added"] is False and r["status"] == "pending"
    wait_for(lambda: a.node.peers.pending_handshakes() == [], what="both handshakes")
    assert a.node.peers.urls() == [b.url]  # another network's node is not added
    assert stranger.paths == ["/tip"]
    r = requests.post(a.url + "/peers", json={"url": stranger.url}, timeout=10).json()
    assert r["status"] == "peer-handshake-failed" and stranger.paths == ["/tip"]
    assert a.node.peers.traffic()["refused_peers"] == {"peer-handshake-failed": 1}

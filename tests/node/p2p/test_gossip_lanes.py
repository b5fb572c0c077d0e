"""Gossip sends on bounded per-peer queues (gossip_lanes.py): a slow peer's
queue fills, and the sends past it are dropped and counted."""
from __future__ import annotations

import pytest

from tests.served import fake_peer_factory, network_factory, stop_sync_loop
from tests.helpers import KEYS, update_tx


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)

@pytest.fixture
def fake_peer():
    yield from fake_peer_factory()


def test_gossip_to_a_slow_peer_is_bounded_and_dropped_with_a_counter(network, fake_peer):
    from learningchain.node.p2p.gossip_lanes import PEER_QUEUE
    a = network("a")
    stop_sync_loop(a)
    slow = fake_peer(reply=b"{}", trickle=0.5, trickle_head=True)
    a.node.peers.add(slow.url)
    txs = [update_tx(a.node.chain, k) for k in KEYS[:4]]
    futures = []
    for i in range(PEER_QUEUE + 20):  # more sends to one peer than its queue holds
        tx = txs[i % len(txs)]
        with a.node.peers._lock:
            a.node.peers._peers[slow.url].seen.pop(tx.id, None)
        futures += a.node.peers.broadcast_tx(tx, push=True)
    assert len(futures) == PEER_QUEUE
    traffic = a.node.peers.traffic()
    assert traffic["dropped"] == 20 and traffic["queued"] <= PEER_QUEUE


def test_blocks_never_wait_behind_tx_sends_and_stay_in_order(network):
    import threading
    a = network("a")
    stop_sync_loop(a)
    peers, url = a.node.peers, "http://127.0.0.1:9"  # never contacted: the sends are recorded
    release, order = threading.Event(), []

    def send(_url, name):
        if name == "tx1":
            release.wait(10)  # the peer's one running send: the others queue behind it
        order.append(name)
    futures = [peers._submit(url, "tx1", send, "tx1")]
    futures += [peers._submit(url, "tx2", send, "tx2"), peers._submit(url, "b1", send, "b1", urgent=True),
                peers._submit(url, "tx3", send, "tx3"), peers._submit(url, "b2", send, "b2", urgent=True)]
    futures[2].result(10)
    futures[4].result(10)
    assert order == ["b1", "b2"]  # sent while tx1 still runs: the blocks' own queue
    release.set()
    for f in futures:
        f.result(10)
    assert order == ["b1", "b2", "tx1", "tx2", "tx3"]

"""Headers-first sync (peer_sync.py): a late node catches up, an orphan syncs
only from a peer in our table on a bounded queue of its own, a bad block from
sync is counted once."""
from __future__ import annotations

import json
import time

import pytest
import requests

from tests.served import fake_peer_factory, network_factory, stop_sync_loop, wait_for
from tests.helpers import KEYS, update_tx


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)

@pytest.fixture
def fake_peer():
    yield from fake_peer_factory()


def test_late_node_syncs_to_the_same_tip(network):
    a = network("a")
    for _ in range(5):
        block = a.mine_one()
    d = network("d", [a.url])
    wait_for(lambda: d.status()["tip"] == block.hash, seconds=15, what="the late node to sync")
    assert d.status()["height"] == 5

def test_an_orphan_syncs_only_from_a_peer_already_in_the_table(network, fake_peer):
    a = network("a")
    b = network("b")  # not peered with a
    stop_sync_loop(b)
    spy = fake_peer()
    blocks = [a.mine_one() for _ in range(3)]
    orphan = blocks[-1].to_dict()

    def send(sender):
        r = requests.post(b.url + "/blocks", json=orphan, headers={"X-Peer": sender}, timeout=10)
        assert r.status_code == 202 and r.json()["status"] == "orphan", r.text
    for sender in (spy.url, a.url):  # X-Peer is the client's word: neither added nor synced from
        send(sender)
    assert b.node.peers.urls() == [] and b.node.peers.pending_syncs() == [] and spy.paths == []
    assert b.status()["orphans"] == 2 and b.status()["height"] == 0
    b.node.peers.add(a.url)
    send(a.url)  # a peer we know: its chain is fetched
    wait_for(lambda: b.status()["tip"] == blocks[-1].hash, what="b to fetch the orphan's ancestors")

def test_orphan_syncs_have_their_own_bounded_queue(network, fake_peer):
    """Peers that trickle their /sync/blocks answer hold sync workers until the
    10 s deadline; a queued sync per peer, never more, and gossip still flows."""
    from tests.helpers import rebuild
    a = network("a")
    b = network("b")
    stop_sync_loop(b)
    b.node.peers.add(a.url)  # first in b's table: gossip reaches it first
    slow = [fake_peer(reply=b"x" * 1000, trickle=0.5, trickle_head=True) for _ in range(9)]
    template = b.node.ledger.template(b.node.pubkey, b.node.genesis.header.timestamp + 1000)
    orphan = rebuild(template, prev_hash="11" * 32).to_dict()
    for peer in slow:
        b.node.peers.add(peer.url)
        for _ in range(3):  # repeats do not queue more syncs
            r = requests.post(b.url + "/blocks", json=orphan, headers={"X-Peer": peer.url}, timeout=10)
            assert r.json()["status"] == "orphan", r.text
    assert b.node.peers.pending_syncs() == sorted(p.url for p in slow)
    wait_for(lambda: sum(len(p.paths) for p in slow) == 2, what="two syncs to start")  # SYNC_WORKERS
    tx = update_tx(b.node.chain, KEYS[5])
    b.node.submit_tx(tx, own=True)
    wait_for(lambda: a.status()["mempool"] == 1, seconds=5, what="the tx on a while syncs hang")
    assert sum(len(p.paths) for p in slow) <= 2 + 9  # two syncs, then at most the tx push to each

def test_a_bad_block_from_sync_is_counted_once(network, fake_peer):
    from dataclasses import replace

    from tests.helpers import rebuild
    b = network("b")
    b.node.peers._stop.set()
    b.node.peers._thread.join(timeout=10)
    _tid, template = b.node.new_template()
    forged = replace(update_tx(b.node.chain, KEYS[0]), signature=update_tx(b.node.chain, KEYS[1]).signature)
    bad = rebuild(template, txs=[forged])  # a block holding an invalid tx
    # one reply for every path: headers for /sync/headers, blocks for /sync/blocks
    page = json.dumps({"height": 1, "headers": [bad.header.to_dict()], "more": False,
                       "blocks": [bad.to_dict(), {"header": 5}]}).encode()
    source = fake_peer(reply=page)
    b.node.peers.add(source.url)
    assert b.node.peers.sync_with(source.url) == 0  # the first refusal ends the page
    assert [p for p in source.paths if p.startswith("/sync/")] == ["/sync/headers", "/sync/blocks"]
    assert b.status()["refused"] == {"block-bad-tx": 1}
    assert b.node.receive_block_doc({"header": 5}, peer=source.url) == "block-malformed"
    assert b.status()["refused"] == {"block-bad-tx": 1, "block-malformed": 1}


def test_the_sync_tick_leaves_a_near_peer_to_gossip_for_one_tick_at_most(tmp_path):
    """peer_sync._gossip_will_bring (issue 13): a peer 1 block ahead is left to
    gossip while our tip moved lately, but synced at the next tick if it is still
    ahead; a node whose tip has not moved lately syncs at once."""
    from tests.served import network_factory
    factory = network_factory(tmp_path)
    start = next(factory)
    try:
        a = start("a")
        b = start("b")
        for s in (a, b):
            s.node.peers._stop.set()
            s.node.peers._thread.join(timeout=10)
        b.node.peers.add(a.url)
        a.mine_one()  # a is one block ahead; b learns of it only by syncing
        b.node.tip_moved_at = time.monotonic()  # as if blocks reached b a moment ago
        b.node.peers.sync_once()
        assert b.node.chain.height == 0  # left to gossip for this tick
        b.node.peers.sync_once()
        assert b.node.chain.height == 1  # still ahead at the next tick: synced
        a.mine_one()
        b.node.tip_moved_at = time.monotonic() - 60  # nothing reached b lately
        b.node.peers.sync_once()
        assert b.node.chain.height == 2  # no grace: synced at once
    finally:
        next(factory, None)

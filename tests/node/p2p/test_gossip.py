"""Gossip between real nodes (gossip.py): txs announced or pushed, blocks
compact, the mempool rebroadcast, no relay in a fully connected network. Each
node is a Node served by waitress on its own 127.0.0.1 port. Every wait polls
with a deadline."""
from __future__ import annotations

import pytest
import requests

from tests.served import network_factory, wait_for
from tests.helpers import KEYS, update_tx


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)


def three(network):
    a = network("a")
    b = network("b", [a.url])
    c = network("c", [a.url, b.url])
    # announcing (POST /peers) makes the links two-way
    wait_for(lambda: len(a.node.peers) == 2 and len(b.node.peers) == 2, what="peers to learn each other")
    return a, b, c

def test_tx_and_block_reach_every_node(network):
    a, b, c = three(network)
    tx = update_tx(a.node.chain, KEYS[0])
    r = requests.post(a.url + "/txs", json=tx.to_dict(), timeout=3)
    assert r.status_code == 202
    for s in (b, c):
        wait_for(lambda: s.status()["mempool"] == 1, what=f"tx on {s.url}")
        assert requests.get(f"{s.url}/txs/{tx.id}", timeout=3).json()["status"] == "mempool"
    block = a.mine_one()
    for s in (b, c):
        wait_for(lambda: s.status()["tip"] == block.hash, what=f"block on {s.url}")
        assert s.status()["mempool"] == 0
        assert requests.get(f"{s.url}/txs/{tx.id}", timeout=3).json()["block"] == block.hash
    # blocks travel compact: far fewer bytes than the block itself was sent to each peer
    sent = {p["url"]: p["bytes_sent"] for p in requests.get(a.url + "/peers", timeout=3).json()["peers"]}
    assert all(v > 0 for v in sent.values())

def test_a_node_rebroadcasts_txs_it_holds_not_only_its_own(network):
    """A tx from another sender that reached only ``a`` (its sender and first relay
    died, say) still reaches ``b``: every sync tick ``a`` offers its mempool again."""
    a = network("a")
    b = network("b", [a.url])
    wait_for(lambda: len(a.node.peers) == 1, what="a to learn b")
    tx = update_tx(a.node.chain, KEYS[2])
    assert tx.sender != a.node.pubkey
    with a.node.lock:  # into a's ledger only, without gossip
        a.node.ledger.submit_tx(tx)
    wait_for(lambda: b.node.ledger.mempool.get(tx.id) is not None, seconds=15, what="the tx to reach b")
    assert a.node.rebroadcast_mempool() == 1  # b has it: offered, but no request is sent again

def test_an_announced_tx_is_wanted_from_one_announcer_only(network):
    a = network("a")
    tx = update_tx(a.node.chain, KEYS[3])
    assert a.node.peers.wanted([tx.id], "http://127.0.0.1:1") == [tx.id]
    assert a.node.peers.wanted([tx.id], "http://127.0.0.1:2") == []  # its body is on the way
    a.node.submit_tx(tx)
    assert a.node.peers.wanted([tx.id], None) == []  # known

def test_fully_connected_nodes_do_not_relay(network):
    a, b, c = three(network)

    def settled():  # every node knows the others' peer lists (from announce answers)
        return all(len(p.peers) >= 3 for s in (a, b, c) for p in s.node.peers._peers.values())
    wait_for(settled, seconds=15, what="peer lists to settle")
    tx = update_tx(a.node.chain, KEYS[4])
    a.node.submit_tx(tx, own=True)  # pushed whole to b and c
    for s in (b, c):
        wait_for(lambda: s.status()["mempool"] == 1, what=f"tx on {s.url}")
    block = a.mine_one()
    for s in (b, c):
        wait_for(lambda: s.status()["tip"] == block.hash, what=f"block on {s.url}")
    for s in (b, c):  # each answered a's push and a's compact block, and sent nothing on
        by_type = s.status()["traffic"]["by_type"]
        assert by_type["tx body"]["messages"] == 1 and by_type["tx body"]["sent"] < tx.size
        assert by_type["compact block"]["messages"] == 1
        assert "inv" not in by_type


def test_a_relay_waits_and_skips_peers_that_sent_the_tx_meanwhile(network):
    """Relays trickle (gossip.RELAY_DELAY_S): a tx from a peer is announced to our
    other peers only after the delay, and not to one that sent it to us meanwhile
    (the origin's push usually reaches every peer first: no duplicate body)."""
    from learningchain.node.p2p.gossip import RELAY_DELAY_S
    a, b, c = three(network)
    sent = []
    a.node.peers.broadcast_tx = lambda tx, exclude=None, push=False: sent.append((tx.id, exclude)) or []
    tx = update_tx(a.node.chain, KEYS[0])
    a.node.peers.relay_tx(tx, exclude=b.url)
    assert sent == []  # not at once
    wait_for(lambda: sent, seconds=10 + RELAY_DELAY_S, what="the delayed relay")
    assert sent == [(tx.id, b.url)]
    del a.node.peers.broadcast_tx  # the real one again: c already sent us the tx, b is its source
    queued, submit = [], a.node.peers._submit
    a.node.peers._submit = lambda url, key, *args, **kw: queued.append((url, key)) or submit(url, key, *args, **kw)
    tx2, tx3 = update_tx(a.node.chain, KEYS[1]), update_tx(a.node.chain, KEYS[2])
    a.node.peers.mark_seen(c.url, tx2.id)
    a.node.peers.relay_tx(tx2, exclude=b.url)
    a.node.peers.relay_tx(tx3, exclude=b.url)  # nobody sent it back: c gets an announcement
    wait_for(lambda: queued, seconds=10 + RELAY_DELAY_S, what="the relays to run")
    assert queued == [(c.url, tx3.id)]


def test_a_flood_of_free_work_blocks_over_http_never_touches_the_miner(network):
    """Attack on issue 13's miner hold, over real HTTP: blocks on the tip claiming
    target 2^256-1 (any nonce passes its own target) are refused with their reason,
    and neither hold the node's miner nor make any template stale."""
    from miner.pow import Miner
    from learningchain.ledger.block import make_block
    from tests.helpers import next_block
    a = network("a", initial_target=1 << 240, pow_limit=1 << 255)
    a.node.miner = Miner(workers=1)
    h = next_block(a.node.chain).header
    epoch = a.node.template_epoch
    for i in range(30):
        fake = make_block(height=h.height, prev_hash=h.prev_hash, timestamp=h.timestamp + i,
                          target=(1 << 256) - 1, miner=h.miner, txs=(), commitment=None)
        r = requests.post(a.url + "/blocks", json=fake.to_dict(), headers={"X-Peer": "http://127.0.0.1:9"},
                          timeout=5)
        assert r.status_code == 400 and r.json()["reason"] == "block-wrong-target", r.text
    assert a.node.miner_hold_until == 0.0 and a.node.template_epoch == epoch
    assert a.node.status()["refused"]["block-wrong-target"] == 30

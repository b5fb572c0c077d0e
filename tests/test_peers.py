"""Gossip and sync between real nodes: each a Node served by waitress on its own
127.0.0.1 port, talking real HTTP. Every wait polls with a deadline."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from waitress.server import create_server

from learningchain.api import create_app
from learningchain.block import Block
from learningchain.processes import free_port
from learningchain.peers import PeerSet, TIMEOUT, check_peer_url
from learningchain.service import Node, serve_until
from miner.pow import search
from tests.helpers import KEYS, tiny_config, update_tx


def wait_for(predicate, seconds: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


class Served:
    """A node and its waitress server in a thread."""

    def __init__(self, root, name: str, peers=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.node = Node(root / name, tiny_config(), peers=peers, port=self.port, quiet=True)
        self.server = create_server(create_app(self.node), host="127.0.0.1", port=self.port, threads=8)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=serve_until, args=(self.server, self.stop), daemon=True)
        self.thread.start()
        self.node.start()

    def status(self) -> dict:
        return requests.get(self.url + "/status", timeout=3).json()

    def mine_one(self) -> Block:
        _tid, block = self.node.new_template()
        nonce, _ = search(block.header.prefix(), block.header.target, 0, 1 << 32)
        mined = Block(block.header.with_nonce(nonce), block.txs, block.commitment, block.config)
        assert self.node.submit_block(mined) == "connected"
        return mined

    def close(self) -> None:
        self.node.stop()
        self.stop.set()
        self.thread.join(timeout=5)


@pytest.fixture
def network(tmp_path):
    nodes: list[Served] = []

    def start(name: str, peers=()):
        s = Served(tmp_path, name, peers)
        nodes.append(s)
        return s
    yield start
    for s in nodes:
        s.close()


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


def test_compact_block_fetches_missing_txs(network):
    a = network("a")
    b = network("b", [a.url])
    wait_for(lambda: len(a.node.peers) == 1, what="a to learn b")
    tx = update_tx(a.node.chain, KEYS[1])
    with a.node.lock:  # into a's ledger only, without gossip: b has to fetch it
        a.node.ledger.submit_tx(tx)
    block = a.mine_one()
    assert block.txs == (tx,)
    wait_for(lambda: b.status()["tip"] == block.hash, what="b to rebuild the compact block")


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


def test_late_node_syncs_to_the_same_tip(network):
    a = network("a")
    for _ in range(5):
        block = a.mine_one()
    d = network("d", [a.url])
    wait_for(lambda: d.status()["tip"] == block.hash, seconds=15, what="the late node to sync")
    assert d.status()["height"] == 5


def test_orphan_block_triggers_fetch_of_ancestors(network):
    a = network("a")
    b = network("b")  # not peered: b learns of a only through the orphan's X-Peer header
    blocks = [a.mine_one() for _ in range(3)]
    r = requests.post(b.url + "/blocks", json=blocks[-1].to_dict(), headers={"X-Peer": a.url}, timeout=3)
    assert r.status_code == 202 and r.json()["status"] == "orphan"
    wait_for(lambda: b.status()["tip"] == blocks[-1].hash, what="b to fetch the orphan's ancestors")


def test_peer_url_syntax():
    assert check_peer_url("http://10.0.0.1:5000") is None
    assert check_peer_url("https://example.org") is None
    for bad in ("ftp://x", "http://", "x", "http://a:99999", "http://u:p@h:1", None):
        assert check_peer_url(bad) is not None


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

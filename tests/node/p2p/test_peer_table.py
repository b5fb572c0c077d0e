"""The peer table (peer_table.py): eviction of learned peers that keep failing,
protection earned only by our own sync, caps per host and subnet."""
from __future__ import annotations

import time

import pytest
import requests

from learningchain.ledger.block import Block
from miner.pow import search
from tests.served import network_factory, stop_sync_loop


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)


def mined_block(node) -> Block:
    _tid, template = node.new_template()
    nonce, _ = search(template.header.prefix(), template.header.target, 0, 1 << 32)
    return Block(template.header.with_nonce(nonce), template.txs, template.commitment, template.config)

def test_a_full_peer_table_evicts_only_learned_peers_that_keep_failing(network):
    from learningchain.node.p2p.peer_record import EVICT_AFTER_FAILURES, PROTECTED_EVICT_AFTER
    from learningchain.node.p2p.peer_table import MAX_PEERS
    pinned = "http://127.0.0.1:19999"  # from --peers: never evicted, however often it fails
    a = network("a", [pinned])
    stop_sync_loop(a)
    ps = a.node.peers
    ps.loopback_peers = MAX_PEERS  # the policy under test is eviction, not the per-host cap
    learned = [f"http://127.0.0.1:{20000 + i}" for i in range(MAX_PEERS - 1)]
    for url in learned:  # as if each had answered its handshake
        assert ps.admit(url) is None
    newcomer = "http://127.0.0.1:30001"

    def offer(url: str) -> bool:
        return ps.admit(url) is None
    assert offer(newcomer) is False  # full of peers that have never failed: nobody is evicted
    assert ps.mark_delivered(learned[1]) is True  # what our own sync does when a block from it connects
    with ps._lock:
        ps._peers[pinned].failures = 1000
        ps._peers[learned[0]].failures = EVICT_AFTER_FAILURES - 1  # one timeout too few
        ps._peers[learned[1]].failures = PROTECTED_EVICT_AFTER - 1  # protected: 20 failures needed
        ps._peers[learned[2]].failures = EVICT_AFTER_FAILURES
    assert offer(newcomer) is True
    urls = ps.urls()
    assert len(urls) == MAX_PEERS and newcomer in urls and learned[2] not in urls
    assert {pinned, learned[0], learned[1]} <= set(urls)
    assert offer("http://127.0.0.1:30002") is False  # nobody else may be evicted
    rows = {p["url"]: p for p in requests.get(a.url + "/peers", timeout=10).json()["peers"]}
    assert rows[pinned]["source"] == "command line" and rows[learned[1]]["delivered"] is True
    with ps._lock:
        ps._peers[learned[1]].failures = PROTECTED_EVICT_AFTER  # a protected peer that died
    assert offer("http://127.0.0.1:30003") is True
    assert learned[1] not in ps.urls() and pinned in ps.urls()  # --peers: never evicted

def test_only_our_own_sync_protects_a_peer_and_only_a_few(network):
    """The reviewer's repro: X-Peer is the client's word. A dead URL added with
    POST /peers and named on a valid relayed block must stay evictable."""
    from learningchain.node.p2p.peer_record import EVICT_AFTER_FAILURES
    from learningchain.node.p2p.peer_table import MAX_PROTECTED
    a = network("a")
    b = network("b")
    stop_sync_loop(a)
    stop_sync_loop(b)
    dead = "http://127.0.0.1:9"
    assert a.node.peers.add(dead)  # as if it had once answered its handshake
    block = mined_block(a.node)
    r = requests.post(a.url + "/blocks", json=block.to_dict(), headers={"X-Peer": dead}, timeout=10)
    assert r.json()["status"] == "connected", r.text
    peer = a.node.peers._peers[dead]
    peer.failures = EVICT_AFTER_FAILURES
    assert peer.delivered is False and peer.evictable is True
    # b syncs from a, a URL b chose: that protects a
    b.node.peers.add(a.url)
    assert b.node.peers.sync_with(a.url) == 1
    assert {p["url"]: p for p in b.node.peers.snapshot()}[a.url]["delivered"] is True
    # at most MAX_PROTECTED learned peers are protected
    ps = b.node.peers
    others = [f"http://127.0.0.1:{31000 + i}" for i in range(MAX_PROTECTED)]
    for url in others:
        ps.add(url)
    assert [ps.mark_delivered(u) for u in others] == [True] * (MAX_PROTECTED - 1) + [False]

# --- peer-table poisoning (issue 10, item 5) --------------------------------------------

def test_peers_are_hosts_bounded_per_host_and_subnet():
    from learningchain.node.p2p.peer_table import LOOPBACK_PEERS, PEERS_PER_SUBNET, PORTS_PER_HOST, PeerTable
    t = PeerTable("http://127.0.0.1:5000")
    assert t.admit("http://10.0.0.1:1/x") == "peer-url-path"
    assert t.admit("http://localhost:5000") == "self"  # loopback aliases are one host
    assert [t.admit(f"http://10.0.0.1:{p}") for p in range(1, PORTS_PER_HOST + 2)] == \
        [None] * PORTS_PER_HOST + ["peer-host-full"]
    assert t.admit("https://10.0.0.1:1") == "known"  # one entry per host:port
    assert t.admit("HTTP://10.0.0.1:1/") == "known"
    hosts = [t.admit(f"http://10.0.0.{i}:1") for i in range(2, PEERS_PER_SUBNET - PORTS_PER_HOST + 3)]
    assert hosts == [None] * (PEERS_PER_SUBNET - PORTS_PER_HOST) + ["peer-subnet-full"]
    assert t.admit("http://10.0.1.1:1") is None  # another /24
    assert t.add("http://10.0.0.99:1", pinned=True)  # --peers: never refused by the caps
    loop = [t.admit(f"http://127.0.0.1:{6000 + i}") for i in range(LOOPBACK_PEERS + 1)]
    assert loop == [None] * LOOPBACK_PEERS + ["peer-host-full"]
    assert t.refused_peers == {"peer-host-full": 2, "peer-subnet-full": 1}
    # a learned peer of a full group that keeps failing makes room, and is offered again later
    with t._lock:
        t._peers["http://127.0.0.1:6000"].failures = 3
    assert t.admit(f"http://127.0.0.1:{6000 + LOOPBACK_PEERS}") is None
    assert "http://127.0.0.1:6000" not in t.urls() and t.former_due() == []  # not yet
    with t._lock:
        t._former["http://127.0.0.1:6000"] = 0.0
    assert t.former_due() == ["http://127.0.0.1:6000"]


def test_a_new_block_from_a_backed_off_peer_ends_its_back_off(network):
    """After a partition heals each side may back off the other for up to BACKOFF_MAX;
    a new block with valid work from that peer (a real POST /blocks) ends it. A known
    block (costless to replay) does not."""
    a, b = network("a"), network("b")
    stop_sync_loop(a)
    ps = a.node.peers
    assert ps.admit(b.url) is None
    with ps._lock:
        peer = ps._peers[b.url]
    for _ in range(6):
        ps._failed(peer, "connection refused")  # as during the cut: 0.5 s doubling to 16 s
    assert not peer.available(time.monotonic())
    block = mined_block(b.node)
    headers = {"X-Peer": b.url}
    requests.post(a.url + "/blocks", json=block.to_dict(), headers=headers, timeout=10).raise_for_status()
    assert a.node.chain.tip.hash == block.hash
    assert peer.failures == 0 and peer.next_try == 0.0  # reachable again: no waiting
    for _ in range(3):
        ps._failed(peer, "connection refused")
    requests.post(a.url + "/blocks", json=block.to_dict(), headers=headers, timeout=10).raise_for_status()
    assert peer.failures == 3  # the same block again: nothing new, nothing reset

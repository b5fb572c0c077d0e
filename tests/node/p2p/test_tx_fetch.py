"""A compact block's missing txs (tx_fetch.py): fetched only from a known peer
that is not backing off, only after the header passed its checks, within the
sender's budget."""
from __future__ import annotations

import pytest
import requests

from learningchain.ledger.compact import compact_block
from tests.served import fake_peer_factory, network_factory, stop_sync_loop, wait_for
from tests.helpers import KEYS, update_tx


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)

@pytest.fixture
def fake_peer():
    yield from fake_peer_factory()


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

def test_compact_block_fetches_only_from_known_peers_after_checking_work(network, fake_peer):
    a = network("a")
    b = network("b")  # not peered with a
    stop_sync_loop(b)
    spy = fake_peer()
    tx = update_tx(a.node.chain, KEYS[1])
    with a.node.lock:
        a.node.ledger.submit_tx(tx)
    block = a.mine_one()
    compact = {"compact": compact_block(block)}

    def send(doc, peer):
        return requests.post(b.url + "/blocks", json=doc, headers={"X-Peer": peer}, timeout=10)

    # a sender that is not in b's peer table: nothing is fetched from it, a named refusal
    for sender in (spy.url, a.url):
        r = send(compact, sender)
        assert r.status_code == 400 and r.json()["reason"] == "compact-unknown-peer", r.text
    # a known peer, but a header without its proof of work: refused before any fetch
    b.node.peers.add(spy.url)
    header = block.header
    while header.check_pow():
        header = header.with_nonce(header.nonce + 1)
    r = send({"compact": {**compact["compact"], "header": header.to_dict()}}, spy.url)
    assert r.status_code == 400 and r.json()["reason"] == "block-insufficient-work"
    easy = {**compact["compact"], "header": {**block.header.to_dict(), "target": f"{1 << 255:064x}"}}
    r = send({"compact": easy}, spy.url)
    assert r.status_code == 400 and r.json()["reason"] == "block-wrong-target"
    assert not [p for p in spy.paths if p.startswith("/txs/")]
    refused = b.status()["refused"]
    assert refused["compact-unknown-peer"] == 2 and refused["block-insufficient-work"] == 1
    # a known peer that is backing off is not asked either
    b.node.peers.add(a.url)
    b.node.peers._failed(b.node.peers._peers[a.url], "test")
    assert send(compact, a.url).json()["reason"] == "compact-unknown-peer"
    with b.node.peers._lock:
        b.node.peers._peers[a.url].next_try = 0.0
    r = send(compact, a.url)  # known and available: the missing tx is fetched from it
    assert r.status_code == 202 and r.json()["status"] == "connected", r.text
    assert b.status()["tip"] == block.hash

def test_a_compact_block_is_checked_against_its_parent_before_any_fetch(network, fake_peer):
    """Issue 10 item 3: on a known parent the header must carry the target the chain
    requires there, meet it, and keep its branch within the side-branch margin; the
    ids must match the merkle root and be few enough for a block. Only then is any
    tx fetched, and then in parallel, within the sender's budget."""
    from learningchain.core import errors
    from learningchain.ledger.block import make_block, merkle_root
    from learningchain.node.p2p.tx_fetch import FETCH_BUDGET_TXS
    from tests.helpers import mine
    from learningchain.ledger.compact import max_compact_txids

    b = network("b", pow_limit=1 << 254)  # easier than the initial target: a cheaper target is allowed
    stop_sync_loop(b)
    spy = fake_peer(reply=b"{}")  # answers every GET /txs/<id> with nothing useful
    b.node.peers.add(spy.url)
    for _ in range(8):
        b.mine_one()
    tip = b.node.chain.tip
    cfg = b.node.config

    def compact_on(parent, n_ids: int, target: int, timestamp: int, height=None, mined=True):
        ids = [f"{i:064x}" for i in range(1, n_ids + 1)]
        blk = make_block(height=parent.height + 1 if height is None else height, prev_hash=parent.hash,
                         timestamp=timestamp, target=target, miner=KEYS[0].public_hex)
        root = merkle_root([bytes.fromhex(i) for i in ids]).hex()
        from dataclasses import replace
        header = replace(blk.header, merkle_root=root)
        if mined:
            header = mine(type(blk)(header, (), None, None)).header
        return {"compact": {"header": header.to_dict(), "commitment": None, "txids": ids}}

    def send(doc):
        return requests.post(b.url + "/blocks", json=doc, headers={"X-Peer": spy.url}, timeout=10)

    now = tip.header.timestamp + 1000
    cases = [  # (what, compact block, reason)
        ("an easier target than the chain requires", compact_on(tip, 400, cfg.initial_target * 2, now),
         errors.BLOCK_BAD_TARGET),
        ("a timestamp before the median", compact_on(tip, 400, cfg.initial_target, cfg.timestamp),
         errors.BLOCK_TIME_TOO_OLD),
        ("a deep fork: far less work than our tip", compact_on(b.node.chain.genesis, 400, cfg.initial_target, now),
         errors.BLOCK_SIDE_WORK_TOO_LOW),
        ("too many ids", compact_on(tip, max_compact_txids(cfg.max_block_bytes) + 1, cfg.initial_target, now),
         errors.COMPACT_TOO_MANY_TXIDS),
    ]
    for what, doc, reason in cases:
        r = send(doc)
        assert r.status_code == 400 and r.json()["reason"] == reason, (what, r.text)
    bad_root = compact_on(tip, 3, cfg.initial_target, now)
    bad_root["compact"]["txids"] = bad_root["compact"]["txids"][:2]
    assert send(bad_root).json()["reason"] == errors.BLOCK_BAD_MERKLE
    assert not [p for p in spy.paths if p.startswith("/txs/")]  # nothing fetched for any of them
    # a header with the work our chain requires: the fetch starts, and its first failure ends it
    r = send(compact_on(tip, 400, cfg.initial_target, now))
    assert r.status_code == 202 and r.json()["status"] == "missing-txs", r.text
    fetched = [p for p in spy.paths if p.startswith("/txs/")]
    assert 1 <= len(fetched) <= 4  # FETCH_PARALLEL in flight when the first failed
    # the sender's budget: more ids than it has left in the window fetch nothing
    before = len(spy.paths)
    assert b.node.peers.fetch_txs(spy.url, [f"{i:064x}" for i in range(FETCH_BUDGET_TXS)]) is None
    assert len(spy.paths) == before

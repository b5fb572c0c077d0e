"""The routes peers talk to (:mod:`learningchain.node.web.peer_routes`) over a real
Node (real ECDSA, real PoW, SQLite store) through Flask's test client: txs and
blocks in (refusals counted, early txs, replays, orphans, compact blocks), sync
pages, and the peer list."""
from __future__ import annotations

import pytest

from learningchain.ledger.block import Block
from learningchain.node.service import Node
from learningchain.node.web.api import create_app
from tests.node.web.api_client import mine_via_api, miner_client, post, started_node
from tests.helpers import KEYS, tiny_config, update_tx


@pytest.fixture
def node(tmp_path):
    yield from started_node(tmp_path)


@pytest.fixture
def client(node):
    return miner_client(node)


def test_post_valid_tx_lands_in_mempool(client, node):
    tx = update_tx(node.chain, KEYS[0])
    r = post(client, "/txs", tx.to_dict())
    assert r.status_code == 202 and r.get_json() == {"status": "accepted", "id": tx.id}
    assert post(client, "/txs", tx.to_dict()).get_json()["status"] == "known"
    assert [t["id"] for t in client.get("/mempool").get_json()["txs"]] == [tx.id]
    found = client.get(f"/txs/{tx.id}").get_json()
    assert found["status"] == "mempool" and found["tx"]["signature"] == tx.signature
    assert client.get("/status").get_json()["mempool"] == 1


def test_bad_signature_is_refused_and_counted(client, node):
    tx = update_tx(node.chain, KEYS[0])
    forged = {**tx.to_dict(), "signature": update_tx(node.chain, KEYS[1]).signature}
    r = post(client, "/txs", forged)
    assert r.status_code == 400
    assert r.get_json()["reason"] == "tx-bad-signature" and r.get_json()["error"]
    assert client.get("/status").get_json()["refused"] == {"tx-bad-signature": 1}
    assert client.get("/mempool").get_json()["count"] == 0


def test_block_with_insufficient_work_is_refused(client, node):
    template = node.ledger.template(node.pubkey, node.genesis.header.timestamp + 1000)
    nonce = next(n for n in range(1000) if not template.header.with_nonce(n).check_pow())
    bad = Block(template.header.with_nonce(nonce), template.txs, template.commitment, None)
    r = post(client, "/blocks", bad.to_dict())
    assert r.status_code == 400 and r.get_json()["reason"] == "block-insufficient-work"
    assert client.get("/status").get_json()["refused"]["block-insufficient-work"] == 1


def test_sync_blocks_returns_blocks_after_locator(client, node):
    mine_via_api(client)
    mine_via_api(client)
    r = post(client, "/sync/blocks", {"locator": [node.genesis.hash], "limit": 10}).get_json()
    assert [b["header"]["height"] for b in r["blocks"]] == [1, 2]
    assert post(client, "/sync/blocks", {"locator": ["zz"], "limit": 10}).status_code == 400


def test_sync_headers_and_blocks_by_hash(client, node):
    for _ in range(3):
        mine_via_api(client)
    r = post(client, "/sync/headers", {"locator": [node.genesis.hash], "limit": 2}).get_json()
    assert [h["height"] for h in r["headers"]] == [1, 2] and r["more"] is True and r["height"] == 3
    assert r["tip"] == node.chain.tip.hash and int(r["work"], 16) == node.chain.tip_work
    rest = post(client, "/sync/headers", {"locator": [node.chain.block_at(2).hash]}).get_json()
    assert [h["height"] for h in rest["headers"]] == [3] and rest["more"] is False
    hashes = [node.chain.block_at(h).hash for h in (3, 1)]
    got = post(client, "/sync/blocks", {"hashes": hashes + ["ab" * 32, node.chain.block_at(2).hash]}).get_json()
    assert [b["header"]["height"] for b in got["blocks"]] == [3, 1]  # in the order asked, up to an unknown one
    for bad in ({"locator": [], "limit": 2001}, {"locator": "x"}, {"locator": [], "limit": True}):
        assert post(client, "/sync/headers", bad).status_code == 400, bad
    for bad in ({"hashes": []}, {"hashes": ["zz"]}, {"hashes": ["ab" * 32] * 501}):
        assert post(client, "/sync/blocks", bad).get_json()["reason"] == "bad-locator", bad


def test_peers_accepts_http_host_urls_only(client, node):
    """A peer is a host: a URL with a path is refused by name; a host URL is
    offered (it joins only after answering /tip with our genesis: nothing
    listens on 6001, so it never does)."""
    r = post(client, "/peers", {"url": "http://127.0.0.1:6001"}).get_json()
    assert r["added"] is False and r["status"] == "pending"
    for bad in ("ftp://x", "file:///etc/passwd", "javascript:alert(1)", "127.0.0.1:5000", 5, None, "http://"):
        r = post(client, "/peers", {"url": bad})
        assert r.status_code == 400 and r.get_json()["reason"] == "bad-peer-url", bad
    for bad in ("http://127.0.0.1:6002/x", "http://127.0.0.1:6002/a/b/"):
        r = post(client, "/peers", {"url": bad})
        assert r.status_code == 400 and r.get_json()["reason"] == "peer-url-path", bad
    from tests.served import wait_for
    wait_for(lambda: node.peers.pending_handshakes() == [], 10, "the handshake to fail")
    assert client.get("/peers").get_json()["peers"] == []
    again = post(client, "/peers", {"url": "http://127.0.0.1:6001/"}).get_json()
    assert again["status"] == "peer-handshake-failed"  # not tried again for a while


def test_early_txs_are_held_only_from_known_peers_and_allowed_senders(tmp_path):
    n = Node(tmp_path / "early", tiny_config(allow_list=[k.public_hex for k in KEYS[:4]]), quiet=True, port=5998)
    try:
        client = create_app(n).test_client()
        peer = "http://127.0.0.1:6001"
        assert n.peers.add(peer)
        nxt = update_tx(n.chain, KEYS[0], round=2)  # round 1 is open
        r = post(client, "/txs", nxt.to_dict(), headers={"X-Peer": peer})
        assert r.status_code == 202 and r.get_json()["status"] == "early"
        # a client claiming to be a peer we do not know: refused like any round-2 tx
        r = post(client, "/txs", update_tx(n.chain, KEYS[1], round=2).to_dict(),
                 headers={"X-Peer": "http://127.0.0.1:6666"})
        assert r.status_code == 400 and r.get_json()["reason"] == "tx-round-not-open"
        # a known peer relaying a sender off the allow list: refused with that reason
        r = post(client, "/txs", update_tx(n.chain, KEYS[9], round=2).to_dict(), headers={"X-Peer": peer})
        assert r.status_code == 400 and r.get_json()["reason"] == "tx-unknown-sender"
        forged = {**update_tx(n.chain, KEYS[2], round=2).to_dict(), "signature": nxt.signature}
        r = post(client, "/txs", forged, headers={"X-Peer": peer})
        assert r.status_code == 400 and r.get_json()["reason"] == "tx-bad-signature"
        s = client.get("/status").get_json()
        assert s["early"] == {"held": 1, "held_total": 1}
        assert s["refused"] == {"tx-round-not-open": 1, "tx-unknown-sender": 1, "tx-bad-signature": 1}
    finally:
        n.stop()


def test_replay_of_a_confirmed_tx_is_refused_and_counted(client, node):
    tx = update_tx(node.chain, KEYS[0])
    assert post(client, "/txs", tx.to_dict()).get_json()["status"] == "accepted"
    assert post(client, "/txs", tx.to_dict()).get_json()["status"] == "known"  # mempool: idempotent
    mine_via_api(client)
    r = post(client, "/txs", tx.to_dict())
    assert r.status_code == 400 and r.get_json()["reason"] == "tx-replay" and "height 1" in r.get_json()["error"]
    assert client.get("/status").get_json()["refused"] == {"tx-replay": 1}
    assert client.get("/mempool").get_json()["count"] == 0


def test_orphans_are_counted_after_their_proof_of_work(client, node):
    from tests.helpers import rebuild
    template = node.ledger.template(node.pubkey, node.genesis.header.timestamp + 1000)
    orphan = rebuild(template, prev_hash="11" * 32)
    r = post(client, "/blocks", orphan.to_dict())
    assert r.status_code == 202 and r.get_json()["status"] == "orphan"
    header = orphan.header
    while header.check_pow():
        header = header.with_nonce(header.nonce + 1)
    r = post(client, "/blocks", Block(header, orphan.txs, orphan.commitment, None).to_dict())
    assert r.status_code == 400 and r.get_json()["reason"] == "block-insufficient-work"
    s = client.get("/status").get_json()
    assert s["orphans"] == 1 and s["refused"] == {"block-insufficient-work": 1} and s["height"] == 0


def test_orphans_and_compact_blocks_need_a_target_our_chain_could_require(tmp_path):
    """pow_limit 2^255 - 1 lets a header that names its own easy target pass at
    about every other nonce; a block we cannot connect must carry a target no
    easier than our easiest recent one times the retarget clamp (4)."""
    from learningchain.ledger.compact import compact_block, plausible_target_limit
    from tests.helpers import EASY, rebuild
    n = Node(tmp_path / "plausible", tiny_config(pow_limit=(1 << 255) - 1), quiet=True, port=5997)
    try:
        client = create_app(n).test_client()
        assert plausible_target_limit(n.chain) == 4 * EASY
        template = n.ledger.template(n.pubkey, n.genesis.header.timestamp + 1000)
        orphan = rebuild(template, prev_hash="11" * 32)
        cheap = rebuild(template, prev_hash="11" * 32, target=4 * EASY + 1)  # ~8 hashes of work
        r = post(client, "/blocks", cheap.to_dict(), headers={"X-Peer": "http://127.0.0.1:6001"})
        assert r.status_code == 400 and r.get_json()["reason"] == "block-target-too-easy", r.get_json()
        assert "arrives by sync" in r.get_json()["error"]
        r = post(client, "/blocks", {"compact": compact_block(cheap)})
        assert r.status_code == 400 and r.get_json()["reason"] == "block-target-too-easy"
        assert post(client, "/blocks", orphan.to_dict()).get_json()["status"] == "orphan"
        s = client.get("/status").get_json()
        assert s["orphans"] == 1 and s["refused"] == {"block-target-too-easy": 2} and s["peers"] == 0
        # a known parent: the bound does not apply, the exact target is checked as it connects
        easy_child = rebuild(template, target=4 * EASY + 1)
        r = post(client, "/blocks", {"compact": compact_block(easy_child)})
        assert r.status_code == 400 and r.get_json()["reason"] == "block-wrong-target", r.get_json()
    finally:
        n.stop()

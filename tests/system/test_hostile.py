"""Hostile input over HTTP against a running ``node.py run`` process on 127.0.0.1.

Each class of bad transaction, block and request is sent to a real node; each
must be refused with its named reason, counted in ``/status`` -> ``refused``, and
leave the node serving. Blocks are built and mined by a *mirror* chain in the
test process (same genesis), so forks are real: a longer fork with less work
stays a side branch, a shorter one with more work takes over and the txs of the
dropped branch return to the mempool. The last test greps every GET response
and the node's log for its private key.

The unit tests of the same rules (tests/ledger/test_tx.py, test_chain.py, test_fork_choice.py,
test_side_branches.py, tests/node/web/test_peer_routes.py) call the core directly;
these check that the running node wires them up.
"""
from __future__ import annotations

import json
import stat
import time
from dataclasses import replace

import numpy as np
import pytest
import requests

from learningchain.ledger.block import Block
from learningchain.ledger.chain import Chain
from learningchain.node.keyfile import key_path
from learningchain.cli.processes import Network, get, wait_ready
from learningchain.core.encoding import encode_array
from learningchain.ledger.genesis import make_genesis
from learningchain.ledger.tx import UpdateTx
from tests.helpers import EASY, KEYS, MINER2, next_block, rebuild, remine, tiny_config, update_tx

# Retargets every 4 blocks (so forks can differ in work per block), rounds close at
# 3 updates and never by timeout here, 8 allowed senders, small size limits.
CONFIG = tiny_config(retarget_window=4, target_block_ms=1000, initial_target=EASY >> 4, pow_limit=EASY,
                     quorum=3, round_timeout=50, max_tx_bytes=10_000, max_block_bytes=60_000,
                     allow_list=[k.public_hex for k in KEYS[:8]])
STEADY_MS = 2000  # keeps the target constant below height 16: median times near genesis lag, so each 4-block window measures 2 intervals


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile")
    genesis = out / "genesis.json"
    genesis.write_text(json.dumps(CONFIG.to_dict()))
    network = Network(out)
    try:
        yield network, genesis
    finally:
        network.stop_all()


def start_node(net, index: int):
    network, genesis = net
    node = network.start(index, genesis=genesis)
    wait_ready(network, [node])
    assert get(node.url, "/status")["genesis"] == make_genesis(CONFIG).hash
    return node


def post(node, path: str, doc) -> requests.Response:
    return requests.post(node.url + path, json=doc, timeout=10)


def refused(node, path: str, doc, reason: str) -> dict:
    r = post(node, path, doc.to_dict() if hasattr(doc, "to_dict") else doc)
    assert r.status_code == 400, (reason, r.status_code, r.text[:300])
    assert r.json()["reason"] == reason, r.json()
    return r.json()


def refused_counts(node) -> dict:
    return get(node.url, "/status")["refused"]


def resign(tx: UpdateTx, key) -> UpdateTx:
    return replace(tx, signature="").signed(key)


def with_weights(tx: UpdateTx, key, **arrays) -> UpdateTx:
    weights = {**tx.weights, **{k: encode_array(v) for k, v in arrays.items()}}
    return replace(tx, weights=weights, signature="").signed(key)


def test_every_bad_transaction_is_refused_named_and_counted(net):
    node = start_node(net, 0)
    mirror = Chain(make_genesis(CONFIG))
    good = [update_tx(mirror, k) for k in KEYS[:3]]
    assert post(node, "/txs", good[0].to_dict()).json()["status"] == "accepted"
    assert post(node, "/txs", good[0].to_dict()).json()["status"] == "known"
    other = update_tx(mirror, KEYS[4])
    shape = {n: a.shape for n, a in mirror.model()[0].items()}
    cases = [
        (replace(other, signature=good[1].signature), "tx-bad-signature"),         # someone else's signature
        (replace(other, signature=""), "tx-bad-signature"),                        # empty signature
        (resign(other, KEYS[5]), "tx-bad-signature"),                              # signed by another key
        (replace(other, signature=other.signature[:-2] + f"{int(other.signature[-2:], 16) ^ 1:02x}"),
         "tx-bad-signature"),
        ({k: v for k, v in other.to_dict().items() if k != "signature"}, "tx-malformed"),  # no signature
        (update_tx(mirror, KEYS[0], shift=0.25), "tx-duplicate-sender-round"),     # 2nd update, same round
        (update_tx(mirror, KEYS[4], round=2), "tx-round-not-open"),                # wrong round
        (update_tx(mirror, KEYS[4], base="ab" * 32), "tx-wrong-base-model"),       # wrong base model
        (with_weights(other, KEYS[4], W0=np.zeros((3, 4), np.float32)), "tx-shape-mismatch"),
        (with_weights(other, KEYS[4], W0=np.zeros(shape["W0"], np.float64)), "tx-dtype-mismatch"),
        (with_weights(other, KEYS[4], W0=np.full(shape["W0"], np.nan, np.float32)), "tx-non-finite"),
        (with_weights(other, KEYS[4], b0=np.array([np.inf, 0, 0], np.float32)), "tx-non-finite"),
        (with_weights(other, KEYS[4], W0=np.zeros((100, 100), np.float32)), "tx-too-large"),
        (update_tx(mirror, KEYS[10]), "tx-unknown-sender"),                        # not on the allow list
        ({**other.to_dict(), "num_samples": -1}, "tx-malformed"),
        ({**other.to_dict(), "sender": 5}, "tx-malformed-key"),
    ]
    expected: dict[str, int] = {}
    for doc, reason in cases:
        refused(node, "/txs", doc, reason)
        expected[reason] = expected.get(reason, 0) + 1
    for reason, n in expected.items():
        assert refused_counts(node).get(reason) == n, (reason, refused_counts(node))
    assert get(node.url, "/mempool")["count"] == 1

    # close round 1 with three updates; then a replay of one of them is refused and
    # counted (it never re-enters the mempool) and an update for the closed round is late
    assert post(node, "/txs", good[1].to_dict()).status_code == 202
    block = next_block(mirror, good, dt=STEADY_MS)
    mirror.add_block(block, block.header.timestamp)
    assert post(node, "/blocks", block.to_dict()).json()["status"] == "connected"
    status = get(node.url, "/status")
    assert status["round"] == 2 and status["mempool"] == 0
    for n in (1, 2):
        refused(node, "/txs", good[0], "tx-replay")
        assert refused_counts(node)["tx-replay"] == n
    assert get(node.url, f"/txs/{good[0].id}")["block"] == block.hash
    assert get(node.url, "/mempool")["count"] == 0
    late = update_tx(Chain(make_genesis(CONFIG)), KEYS[5])  # round 1, trained from G0
    refused(node, "/txs", late, "tx-late")
    assert get(node.url, "/status")["height"] == 1


def test_every_bad_block_is_refused_and_work_decides_forks(net):
    node = start_node(net, 1)
    mirror = Chain(make_genesis(CONFIG))

    def add(block, expect="connected"):
        r = post(node, "/blocks", block.to_dict())
        assert r.status_code == 202 and r.json()["status"] == expect, (expect, r.text[:300])
        mirror.add_block(block, block.header.timestamp)

    add(next_block(mirror, dt=STEADY_MS))
    txs = [update_tx(mirror, k) for k in KEYS[:3]]
    closing = next_block(mirror, txs, dt=STEADY_MS)  # closes round 1 (quorum 3)
    h = closing.header
    unmined = h
    while unmined.check_pow():
        unmined = unmined.with_nonce(unmined.nonce + 1)
    forged = replace(txs[0], signature=txs[1].signature)
    huge = replace(txs[0], weights={"W0": encode_array(np.zeros((150, 100), np.float32))})
    bad_commitment = {**closing.commitment, "model_digest": "00" * 32}
    cases = [
        (Block(unmined, closing.txs, closing.commitment), "block-insufficient-work"),
        (rebuild(closing, height=h.height + 1), "block-wrong-height"),
        (remine(closing, merkle_root="22" * 32), "block-bad-merkle-root"),
        (rebuild(closing, timestamp=mirror.genesis.header.timestamp), "block-time-too-old"),
        (rebuild(closing, timestamp=int(time.time() * 1000) + 600_000), "block-time-too-new"),
        (rebuild(closing, target=h.target // 2), "block-wrong-target"),
        (rebuild(closing, commitment=bad_commitment), "block-bad-commitment"),  # aggregate digest lies
        (rebuild(closing, commitment=None), "block-missing-commitment"),
        (rebuild(closing, txs=[forged, *txs[1:]]), "block-bad-tx"),
        (rebuild(closing, txs=[update_tx(mirror, KEYS[10])], commitment=None), "block-bad-tx"),
        (rebuild(closing, txs=[huge], commitment=None), "block-too-large"),
        (rebuild(closing, txs=[txs[0], txs[0]], commitment=None), "block-duplicate-tx"),
    ]
    for block, reason in cases:
        refused(node, "/blocks", block, reason)
    # an unknown parent is an orphan, not a refusal: nothing changes
    orphan = rebuild(closing, prev_hash="11" * 32)
    assert post(node, "/blocks", orphan.to_dict()).json()["status"] == "orphan"
    counts = refused_counts(node)
    for _, reason in cases:
        assert counts.get(reason, 0) >= 1, (reason, counts)
    assert counts["block-bad-tx"] == 2
    add(closing)  # the genuine block still connects after all its forgeries
    for _ in range(6):
        add(next_block(mirror, dt=STEADY_MS))
    main_tip, main_height = mirror.tip.hash, mirror.height
    main_work = int(get(node.url, "/status")["work"], 16)

    # a longer fork from height 1 with slow timestamps: the target eases, less total work
    slow = Chain(mirror.genesis)
    slow.add_block(mirror.block_at(1), 2**62)
    while slow.height < main_height + 6:
        b = next_block(slow, miner=MINER2, dt=100_000)
        slow.add_block(b, b.header.timestamp)
        assert post(node, "/blocks", b.to_dict()).json()["status"] == "side"
    assert slow.tip_work < main_work
    status = get(node.url, "/status")
    assert status["tip"] == main_tip and status["round"] == 2

    # a shorter fork from height 1 with fast timestamps: harder targets, more work, a reorg
    fast = Chain(mirror.genesis)
    fast.add_block(mirror.block_at(1), 2**62)
    results = []
    while not results or results[-1] != "reorg":
        b = next_block(fast, miner=MINER2, dt=50)
        fast.add_block(b, b.header.timestamp)
        results.append(post(node, "/blocks", b.to_dict()).json()["status"])
        assert len(results) < main_height
    assert fast.height < main_height and fast.tip_work > main_work
    status = get(node.url, "/status")
    assert status["tip"] == fast.tip.hash and status["round"] == 1
    # the dropped branch's updates are still valid in round 1: back in the mempool
    assert sorted(t["id"] for t in get(node.url, "/mempool")["txs"]) == sorted(t.id for t in txs)
    assert all(get(node.url, f"/txs/{t.id}")["status"] == "mempool" for t in txs)


def test_hostile_http_requests_are_refused_and_counted(net):
    node = start_node(net, 2)
    url = node.url
    cases = [  # (method, path, body, content type, status, reason)
        ("POST", "/txs", b"{", "application/json", 400, "bad-json"),
        ("POST", "/txs", b'{"a": NaN}', "application/json", 400, "bad-json"),
        ("POST", "/blocks", b"[" * 100 + b"]" * 100, "application/json", 400, "bad-json"),
        ("POST", "/txs", b'{"round": ' + b"9" * 5000 + b"}", "application/json", 400, "bad-json"),
        ("POST", "/txs", b"\xff\xfe", "application/json", 400, "bad-json"),
        ("POST", "/txs", b"{}", "text/plain", 415, "bad-content-type"),
        ("POST", "/blocks", b"x=1", "application/x-www-form-urlencoded", 415, "bad-content-type"),
        ("POST", "/txs", b" " * (5 << 20), "application/json", 413, "body-too-large"),
        # waitress decodes %2F before routing: these reach no route at all
        ("GET", "/txs/..%2F..%2Fetc%2Fpasswd", None, None, 404, "unknown-route"),
        ("GET", "/blocks/..%2Fchain.sqlite3", None, None, 404, "unknown-route"),
        ("GET", "/txs/..%252Fnode_key.pem", None, None, 400, "bad-id"),
        ("GET", "/blocks/....", None, None, 400, "bad-id"),
        ("GET", "/blocks/%C2%B2", None, None, 400, "bad-id"),
        ("GET", "/chain?limit=%C2%B2", None, None, 400, "bad-query"),
        ("GET", "/node_key.pem", None, None, 404, "unknown-route"),
        ("GET", "/../node_key.pem", None, None, 404, "unknown-route"),
        ("DELETE", "/status", None, None, 405, "bad-method"),
        ("PUT", "/txs", b"{}", "application/json", 405, "bad-method"),
    ]
    for url_peer in ("file:///etc/passwd", "ftp://127.0.0.1/", "gopher://127.0.0.1:70", "javascript:x",
                     "http://user:pw@127.0.0.1:1", "127.0.0.1:5000"):
        cases.append(("POST", "/peers", json.dumps({"url": url_peer}).encode(), "application/json", 400,
                      "bad-peer-url"))
    expected: dict[str, int] = {}
    for method, path, body, ctype, code, reason in cases:
        headers = {"Content-Type": ctype} if ctype else {}
        r = requests.request(method, url + path, data=body, headers=headers, timeout=10)
        assert r.status_code == code, (method, path, r.status_code, r.text[:200])
        assert r.headers["Content-Type"].startswith("application/json") and r.json()["reason"] == reason
        expected[reason] = expected.get(reason, 0) + 1
    counts = refused_counts(node)
    for reason, n in expected.items():
        assert counts.get(reason) == n, (reason, counts)
    assert get(url, "/peers")["peers"] == []
    assert get(url, "/status")["height"] == 0


def test_the_private_key_never_leaves_the_data_dir(net):
    from ecdsa import SigningKey
    network, _ = net
    node = network.nodes[0] if network.nodes else start_node(net, 0)
    path = key_path(node.data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    secret = SigningKey.from_pem(pem).to_string().hex()
    pem_body = "".join(pem.decode().strip().splitlines()[1:-1])
    needles = [secret, secret.upper(), pem_body, pem_body[:40], str(int(secret, 16))]
    status = get(node.url, "/status")
    paths = ["/status", "/chain", "/blocks/0", "/blocks/1", "/mempool", "/peers", "/model", "/rounds",
             "/rounds/1", "/", "/mining/template", "/blocks/1?x=1", "/nope", "/txs/zz"]
    seen = []
    for p in paths:
        for accept in ("application/json", "text/html"):
            seen.append(requests.get(node.url + p, headers={"Accept": accept}, timeout=10).text)
    seen.append(node.log_path.read_text(errors="replace"))
    for text in seen:
        for needle in needles:
            assert needle not in text
    assert status["pubkey"] and "127.0.0.1" in node.log_path.read_text()
    # the node listens on loopback only (default --host)
    port_hex = f"{node.port:04X}"
    listening = [line.split()[1] for line in open("/proc/net/tcp").read().splitlines()[1:]
                 if line.split()[1].endswith(":" + port_hex) and line.split()[3] == "0A"]
    assert listening == [f"0100007F:{port_hex}"], listening

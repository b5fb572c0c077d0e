"""The HTTP API over a real Node (real ECDSA, real PoW, SQLite store) through
Flask's test client: every endpoint, and every kind of bad input gets a 4xx JSON."""
from __future__ import annotations

import json

import pytest

from learningchain.node.web.api import create_app
from learningchain.ledger.block import Block
from learningchain.core.errors import ConfigError
from learningchain.node.service import Node
from miner.pow import search
from tests.helpers import KEYS, tiny_config, update_tx

HEX = "ab" * 32


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "node", tiny_config(), quiet=True, port=5999)
    yield n
    n.stop()


@pytest.fixture
def client(node):
    app = create_app(node)
    c = app.test_client()
    c.environ_base["HTTP_X_MINER_TOKEN"] = app.config["MINER_TOKEN"]  # the node's own miner
    return c


def test_mining_routes_need_the_token_the_node_wrote(node, client):
    """/mining/* answer only a holder of <data-dir>/miner.token (0600, new at each start)."""
    import stat
    path = node.data_dir / "miner.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    outsider = client.application.test_client()
    for headers in ({}, {"X-Miner-Token": "0" * 64}, {"X-Miner-Token": token[:-1]}):
        r = outsider.get("/mining/template", headers=headers)
        assert r.status_code == 403 and r.get_json()["reason"] == "mining-forbidden"
        r = post(outsider, "/mining/submit", {"template_id": "ab", "nonce": 1}, headers=headers)
        assert r.status_code == 403 and r.get_json()["reason"] == "mining-forbidden"
    assert outsider.get("/status").get_json()["refused"]["mining-forbidden"] == 6
    r = outsider.get("/mining/template", headers={"X-Miner-Token": token})
    assert r.status_code == 200 and r.get_json()["height"] == 1


def test_each_mining_client_keeps_its_own_templates(client):
    """A token holder polling hard evicts only its own templates, not another miner's."""
    first = client.get("/mining/template", headers={"X-Miner-Id": "a"}).get_json()
    for _ in range(100):
        client.get("/mining/template", headers={"X-Miner-Id": "b"})
    t = first
    nonce, _ = search(bytes.fromhex(t["prefix"]), int(t["target"], 16), 0, 1 << 32)
    r = post(client, "/mining/submit", {"template_id": t["template_id"], "nonce": nonce},
             headers={"X-Miner-Id": "a"})
    assert r.status_code == 202 and r.get_json()["status"] == "connected", r.get_json()


def post(client, path, doc, **kw):
    return client.post(path, data=json.dumps(doc), content_type="application/json", **kw)


def mine_via_api(client) -> dict:
    t = client.get("/mining/template").get_json()
    nonce, _ = search(bytes.fromhex(t["prefix"]), int(t["target"], 16), 0, 1 << 32)
    r = post(client, "/mining/submit", {"template_id": t["template_id"], "nonce": nonce})
    assert r.status_code == 202, r.get_json()
    return r.get_json()


def test_status_and_reads(client, node):
    s = client.get("/status").get_json()
    assert s["height"] == 0 and s["round"] == 1 and s["tip"] == node.genesis.hash
    assert s["genesis"] == node.genesis.hash and s["network"] == "test"
    assert s["pubkey"] == node.pubkey and s["address"] == node.address
    assert s["mining"] is False and s["refused"] == {} and s["peers"] == 0 and s["mempool"] == 0
    chain = client.get("/chain").get_json()
    assert chain["height"] == 0 and chain["blocks"][0]["hash"] == node.genesis.hash
    by_height = client.get("/blocks/0").get_json()
    assert by_height["hash"] == node.genesis.hash
    assert client.get(f"/blocks/{node.genesis.hash}").get_json()["header"]["height"] == 0
    assert client.get("/mempool").get_json() == {"count": 0, "bytes": 0, "txs": []}
    assert client.get("/peers").get_json()["peers"] == []
    model = client.get("/model").get_json()
    assert model["round"] == 0 and model["digest"] == s["model_digest"] and "W0" in model["weights"]
    rounds = client.get("/rounds").get_json()["rounds"]
    assert rounds[0]["round"] == 1 and rounds[0]["status"] == "open"
    assert client.get("/rounds/1").get_json()["status"] == "open"
    assert client.get("/rounds/7").status_code == 404
    html = client.get("/")
    assert html.status_code == 200 and b"LearningChain explorer" in html.data


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


@pytest.mark.parametrize("data", [b"{", b'{"a": NaN}', b'{"a": Infinity}', b"[" * 5000 + b"]" * 5000,
                                  b"\xff\xfe", b"[]", b"null", b'"text"'])
def test_malformed_json_is_400(client, data):
    for path in ("/txs", "/blocks", "/peers", "/mining/submit", "/sync/blocks", "/inv"):
        r = client.post(path, data=data, content_type="application/json")
        assert r.status_code == 400, (path, data[:10], r.status_code)
        assert "error" in r.get_json()


def test_wrong_content_type_is_415(client):
    r = client.post("/txs", data="{}", content_type="text/plain")
    assert r.status_code == 415 and "application/json" in r.get_json()["error"]


def test_oversized_body_is_413(client):
    r = client.post("/txs", data=b"x" * (5 << 20), content_type="application/json")
    assert r.status_code == 413 and "larger than" in r.get_json()["error"]


def test_unknown_route_and_method(client):
    r = client.get("/nope")
    assert r.status_code == 404 and "error" in r.get_json()
    r = client.delete("/status")
    assert r.status_code == 405 and "DELETE" in r.get_json()["error"]
    assert client.put("/txs", data="{}", content_type="application/json").status_code == 405


@pytest.mark.parametrize("path", ["/txs/xyz", "/txs/../etc/passwd", "/txs/..%2Fetc%2Fpasswd",
                                  "/blocks/..%2F..%2Fetc%2Fpasswd", "/blocks/" + "AB" * 32,
                                  "/txs/" + "ab" * 33, "/rounds/-1", "/rounds/x", "/chain?limit=501",
                                  "/chain?start=-4", "/blocks/zz"])
def test_bad_ids_are_400_or_404_never_500(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert "error" in r.get_json()


def test_unknown_ids_are_404(client):
    assert client.get(f"/txs/{HEX}").status_code == 404
    assert client.get(f"/blocks/{HEX}").status_code == 404
    assert client.get("/blocks/99").status_code == 404


def test_block_with_insufficient_work_is_refused(client, node):
    template = node.ledger.template(node.pubkey, node.genesis.header.timestamp + 1000)
    nonce = next(n for n in range(1000) if not template.header.with_nonce(n).check_pow())
    bad = Block(template.header.with_nonce(nonce), template.txs, template.commitment, None)
    r = post(client, "/blocks", bad.to_dict())
    assert r.status_code == 400 and r.get_json()["reason"] == "block-insufficient-work"
    assert client.get("/status").get_json()["refused"]["block-insufficient-work"] == 1


def test_template_mine_submit_extends_the_chain(client, node):
    tx = update_tx(node.chain, KEYS[0])
    assert post(client, "/txs", tx.to_dict()).status_code == 202
    t = client.get("/mining/template").get_json()
    assert set(t) == {"template_id", "height", "prev_hash", "prefix", "target"}
    assert t["height"] == 1 and t["prev_hash"] == node.genesis.hash and len(t["prefix"]) == 362
    done = mine_via_api(client)
    assert done["status"] == "connected"
    s = client.get("/status").get_json()
    assert s["height"] == 1 and s["tip"] == done["hash"] and s["mempool"] == 0
    assert client.get(f"/txs/{tx.id}").get_json()["block"] == done["hash"]
    # the old template is now stale, an unknown one is refused
    r = post(client, "/mining/submit", {"template_id": t["template_id"], "nonce": 0})
    assert r.status_code == 400 and r.get_json()["reason"] == "template-stale"
    r = post(client, "/mining/submit", {"template_id": "nope", "nonce": 0})
    assert r.status_code == 400 and r.get_json()["reason"] == "template-unknown"
    r = post(client, "/mining/submit", {"template_id": "nope", "nonce": -1})
    assert r.status_code == 400 and r.get_json()["reason"] == "bad-nonce"


def test_rounds_close_and_show_up(client, node):
    for key in KEYS[:3]:  # quorum 3 closes round 1 in the next block
        assert post(client, "/txs", update_tx(node.chain, key).to_dict()).status_code == 202
    mine_via_api(client)
    rounds = client.get("/rounds").get_json()["rounds"]
    assert rounds[0]["status"] == "closed" and rounds[0]["accepted"] + rounds[0]["rejected"] == 3
    detail = client.get("/rounds/1").get_json()
    assert detail["status"] == "closed" and len(detail["updates"]) == 3 and detail["closed_at"] == 1
    assert client.get("/status").get_json()["round"] == 2
    assert client.get("/model").get_json()["round"] == 1
    assert client.get("/blocks/1", headers={"Accept": "text/html"}).data.count(b"accepted") >= 1


def test_rounds_are_paged(client, node):
    """/rounds: the newest page by default, ?start=&limit= pages, limit bounded."""
    for _ in range(12):  # tiny_config: round_timeout 5, so empty blocks close rounds 1 and 2
        mine_via_api(client)
    doc = client.get("/rounds").get_json()
    assert doc["current"] == 3 and [r["round"] for r in doc["rounds"]] == [1, 2, 3]
    assert [r["status"] for r in doc["rounds"]] == ["closed", "closed", "open"]
    assert [r["closed_at"] for r in doc["rounds"][:2]] == [5, 10]
    page = client.get("/rounds?start=2&limit=1").get_json()
    assert page["start"] == 2 and [r["round"] for r in page["rounds"]] == [2]
    assert [r["round"] for r in client.get("/rounds?limit=2").get_json()["rounds"]] == [2, 3]
    assert client.get("/rounds?start=9").get_json()["rounds"] == []
    for bad in ("limit=0", "limit=201", "start=0", "start=x"):
        r = client.get(f"/rounds?{bad}")
        assert r.status_code == 400 and r.get_json()["reason"] == "bad-query", bad


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


GARBAGE = [{}, {"a": 1}, {"txs": "x"}, {"compact": 1}, {"compact": {"header": 1, "commitment": None, "txids": []}},
           {"header": {}, "txs": [], "commitment": None, "config": None}, {"locator": [], "limit": True},
           {"template_id": 5, "nonce": "x"}, {"url": ["x"]}, {"type": "update"}, {"txs": [1, 2]}]


def test_no_route_answers_500_to_garbage(client):
    rules = [r for r in client.application.url_map.iter_rules() if r.endpoint != "static"]
    for rule in rules:
        path = rule.rule.replace("<ref>", "x").replace("<txid>", "x").replace("<r>", "x")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method == "GET":
                for p in (path, path + "?start=x&limit=y&after=zz"):
                    assert client.get(p).status_code < 500, p
            for doc in GARBAGE:
                r = client.open(path, method="POST", data=json.dumps(doc), content_type="application/json")
                assert r.status_code < 500, (path, doc, r.get_data()[:200])
                assert "Traceback" not in r.get_data(as_text=True)


def test_data_dir_of_another_network_is_refused(tmp_path):
    Node(tmp_path / "d", tiny_config(), quiet=True).stop()
    with pytest.raises(ConfigError, match="another network"):
        Node(tmp_path / "d", tiny_config(network="other"), quiet=True)


@pytest.fixture
def served(node):
    """``node`` behind the real waitress server ``run_node`` uses, on 127.0.0.1."""
    import threading

    from learningchain.node.web.http_server import create_http_server, serve_until
    from learningchain.cli.processes import free_port
    port = free_port()
    app = create_app(node)
    server = create_http_server(app, "127.0.0.1", port, threads=2)
    stop = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, stop), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", app.config["MAX_CONTENT_LENGTH"]
    stop.set()
    thread.join(timeout=5)


def test_waitress_refuses_an_oversized_body_from_its_header_alone(served, node):
    import socket

    import requests
    url, limit = served
    port = int(url.rsplit(":", 1)[1])
    # headers announcing 1 GiB and no body at all: the answer comes without reading any
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1073741824\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    head, _, doc = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"application/json" in head, head
    assert json.loads(doc) == {"error": f"request body is larger than {limit} bytes", "reason": "body-too-large"}
    r = requests.post(url + "/txs", data=b" " * (limit + 1), headers={"Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 413 and r.json()["reason"] == "body-too-large"
    r = requests.post(url + "/blocks", data=b" " * limit, headers={"Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 400 and r.json()["reason"] == "bad-json"  # the largest body reaches the app
    assert requests.get(url + "/status", timeout=10).json()["refused"] == {"body-too-large": 2, "bad-json": 1}


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


def test_a_lone_surrogate_in_a_metric_name_is_a_400_with_its_reason(client):
    doc = update_tx(client.application.config["NODE"].chain, KEYS[0]).to_dict()
    doc["metrics"] = {"\ud800": "0.500000"}  # json.dumps writes it as the escape \ud800
    r = post(client, "/txs", doc)
    assert r.status_code == 400, r.get_data()
    assert r.get_json()["reason"] == "bad-json" and "surrogate" in r.get_json()["error"]
    doc["metrics"] = {"acc": "0.500000\n"}  # re's $ matches before a final newline; fullmatch does not
    r = post(client, "/txs", doc)
    assert r.status_code == 400 and r.get_json()["reason"] == "tx-malformed"
    assert client.get("/status").status_code == 200


def test_disk_full_refuses_blocks_with_503_and_the_node_keeps_serving(tmp_path):
    """Issue 10 item 7 through the API: a real SQLITE_FULL (max_page_count at the
    file's size) makes POST /blocks answer 503 store-write-failed, the tip stays,
    reads keep working; with space back the same block connects and a restarted
    node replays it."""
    from learningchain.ledger.chain import Chain
    from tests.helpers import next_block
    n = Node(tmp_path / "node", tiny_config(), quiet=True, port=5998)
    client = create_app(n).test_client()
    mirror = Chain(n.genesis)
    db = n.ledger.store._db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    refused = None
    for _ in range(30):  # small blocks: a few fit in the last page, then one needs a new page
        block = next_block(mirror)
        r = post(client, "/blocks", block.to_dict())
        if r.status_code != 202:
            refused = (block, r)
            break
        mirror.add_block(block, block.header.timestamp)
    assert refused is not None
    block, r = refused
    assert r.status_code == 503 and r.get_json()["reason"] == "store-write-failed", r.get_json()
    status = client.get("/status").get_json()
    assert status["height"] == mirror.height and status["tip"] == mirror.tip.hash
    assert client.get(f"/blocks/{block.hash}").status_code == 404  # never served unpersisted
    db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    r = post(client, "/blocks", block.to_dict())
    assert r.status_code == 202 and r.get_json()["status"] == "connected"
    n.stop()
    n.ledger.store.close()
    again = Node(tmp_path / "node", tiny_config(), quiet=True, port=5998)
    try:
        assert again.chain.tip.hash == block.hash
    finally:
        again.stop()


def test_connection_guard_evicts_idle_sockets_and_times_out_trickled_headers(node):
    """Over the per-IP cap the oldest idle connection goes, not the newcomer; a
    request whose header lines trickle is closed at the header deadline."""
    import socket
    import threading

    import requests

    from learningchain.node.web.http_server import create_http_server, serve_until
    from learningchain.cli.processes import free_port
    from tests.served import wait_for
    port = free_port()
    server = create_http_server(create_app(node), "127.0.0.1", port, threads=2, per_ip=4, total=6)
    server.header_seconds = 1  # the instance's deadline, short for the test
    stop = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, stop), daemon=True)
    thread.start()
    try:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
        trickle = socket.create_connection(("127.0.0.1", port), timeout=5)
        trickle.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            assert requests.get(f"http://127.0.0.1:{port}/status", timeout=5).status_code == 200
        wait_for(lambda: len(server.active_channels) <= 4, 5, "at most 4 connections from 127.0.0.1")
        assert server.evicted_connections >= 7
        assert trickle.recv(1) == b""  # closed by the node (evicted or at the header deadline)
        trickle = socket.create_connection(("127.0.0.1", port), timeout=5)
        trickle.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        trickle.settimeout(5)
        assert trickle.recv(1) == b""
        assert server.timed_out_requests >= 1
        for s in idle:
            s.close()
    finally:
        stop.set()
        thread.join(timeout=5)


def test_connections_holding_unread_replies_do_not_lock_out_newcomers():
    """A client that asks for big answers and never reads them: its connections
    stay "busy" flushing, and with the cap full of them every newcomer was refused.
    An answer unread for ``stall_seconds`` no longer counts as busy (the oldest
    such connection makes room), and one unread for ``request_seconds`` is dropped."""
    import socket
    import threading

    import requests
    from flask import Flask

    from learningchain.node.web.http_server import create_http_server, serve_until
    from learningchain.cli.processes import free_port
    from tests.served import wait_for
    app = Flask("big")
    app.config["MAX_CONTENT_LENGTH"] = 1 << 16
    app.add_url_rule("/big", "big", lambda: "x" * (8 << 20))
    app.add_url_rule("/small", "small", lambda: "ok")
    port = free_port()
    server = create_http_server(app, "127.0.0.1", port, threads=2, per_ip=3, total=6)
    server.stall_seconds, server.request_seconds = 1, 3
    stop = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, stop), daemon=True)
    thread.start()
    hogs = []
    try:
        for _ in range(3):  # fill the per-client cap with answers nobody reads
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            hogs.append(s)
        wait_for(lambda: sum(bool(c.total_outbufs_len) for c in server.active_channels.values()) == 3, 10,
                 "three answers stuck in the server's buffers")
        import time
        wait_for(lambda: all(time.time() - c.last_activity > server.stall_seconds
                             for c in server.active_channels.values()), 10, "the answers to stall")
        assert requests.get(f"http://127.0.0.1:{port}/small", timeout=5).text == "ok"  # stalled: made room
        assert server.evicted_connections >= 1 and server.refused_connections == 0
        wait_for(lambda: server.stalled_replies + server.evicted_connections >= 3, 10,
                 "the unread answers dropped")
        assert not any(c.total_outbufs_len for c in server.active_channels.values())
    finally:
        for s in hogs:
            s.close()
        stop.set()
        thread.join(timeout=5)

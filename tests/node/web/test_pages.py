"""The explorer's pages (:mod:`learningchain.node.web.pages`) over a real Node
with a few closed rounds (real ECDSA, real PoW, SQLite store): every resource
answers HTML to Chromium's Accept header, with the nav, the search form and
its ``data-page``, and the JSON of before to scripts; ids by unique prefix;
search of every kind; node names; the round page's verdicts and distances."""
from __future__ import annotations

import html
import math
import re

import numpy as np
import pytest
import requests

from learningchain.core.crypto import address
from learningchain.learning.reputation import squared_distance
from learningchain.ledger.chain import Chain
from learningchain.ledger.genesis import make_genesis
from learningchain.node.keyfile import load_or_create_key
from learningchain.node.service import Node
from learningchain.node.store import Store
from learningchain.node.web import lookup, names
from learningchain.node.web.api import create_app
from learningchain.node.web.pages import peer_graph, traffic_table
from miner.pow import search
from tests.helpers import KEYS, next_block, now, tiny_config, update_tx
from tests.served import Served

CHROMIUM = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
            "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")
NAV_LINKS = ("/", "/rounds", "/participants", "/mempool", "/peers", "/model", "/status")


def mine(node: Node):
    _tid, block = node.new_template()
    nonce, _ = search(block.header.prefix(), block.header.target, 0, 1 << 32)
    from learningchain.ledger.block import Block
    mined = Block(block.header.with_nonce(nonce), block.txs, block.commitment, block.config)
    assert node.submit_block(mined, relay=False) == "connected"
    return mined


class Net:
    """A node on a permissioned network (5 listed keys and its own, node5) with
    multi-krum f=1: round 1 rejects a far-off attacker (KEYS[4]), round 2 accepts
    five updates, round 3 is open with one tx in the mempool."""

    def __init__(self, root):
        own = load_or_create_key(root / "node").public_hex
        self.listed = [k.public_hex for k in KEYS[:5]] + [own]
        cfg = tiny_config(allow_list=self.listed, quorum=5,
                          aggregation={"rule": "multi-krum", "params": {"f": 1, "m": 0}})
        self.node = Node(root / "node", cfg, quiet=True, port=5997)
        self.client = create_app(self.node).test_client()
        n = self.node
        self.honest = [update_tx(n.chain, k, shift=0.01 * (i + 1)) for i, k in enumerate(KEYS[:4])]
        self.attacker = update_tx(n.chain, KEYS[4], shift=50.0)
        for t in self.honest + [self.attacker]:
            assert n.submit_tx(t) == "accepted"
        self.b1 = mine(n)
        self.round2 = [update_tx(n.chain, k, shift=0.01 * (i + 1)) for i, k in enumerate(KEYS[:5])]
        for t in self.round2:
            assert n.submit_tx(t) == "accepted"
        self.b2 = mine(n)
        self.b3 = mine(n)  # an empty block in round 3
        self.pending = update_tx(n.chain, KEYS[0])
        assert n.submit_tx(self.pending) == "accepted"

    def get(self, path, accept=CHROMIUM, **kw):
        return self.client.get(path, headers={"Accept": accept} if accept else {}, **kw)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = Net(tmp_path_factory.mktemp("pages"))
    yield n
    n.node.stop()


def pages_of(net: Net) -> dict[str, str]:
    """path -> the data-page it must render."""
    t = net.honest[0].id
    return {"/blocks/1": "block", f"/blocks/{net.b2.hash}": "block", f"/txs/{t}": "tx",
            f"/txs/{net.pending.id}": "tx", "/rounds": "rounds", "/rounds/1": "round", "/rounds/3": "round",
            "/participants": "participants", "/participants/node0": "participant", "/model": "model",
            "/peers": "peers", "/mempool": "mempool", "/status": "status", "/search?q=zzzz": "search",
            "/search": "search"}


def test_every_page_is_html_for_chromium_with_nav_search_and_no_external_resource(net):
    for path, page in pages_of(net).items():
        r = net.get(path)
        assert r.status_code == 200 and r.mimetype == "text/html", (path, r.status_code)
        text = r.get_data(as_text=True)
        assert f'<main data-page="{page}">' in text, path
        nav = text[text.index('<nav id="nav">'):text.index("</nav>")]
        assert all(f'href="{link}"' in nav for link in NAV_LINKS), path
        assert '<form id="search" action="/search" method="get"><input name="q"' in nav, path
        # nothing off the machine: no absolute URL in any src/href (peers' URLs are links, none here)
        assert not re.search(r'(src|href)="(https?:)?//', text), path
        assert "<script src" not in text and "@import" not in text, path


def test_json_answers_are_unchanged_for_scripts(net):
    """``Accept: application/json``, ``?format=json`` and no Accept at all get the
    JSON documents with the same fields as before (new fields only added)."""
    n = net.node
    shapes = {"/mempool": {"count", "bytes", "txs"}, "/model": {"round", "digest", "metrics", "weights"},
              "/peers": {"self", "peers", "traffic"}, "/rounds": {"current", "start", "limit", "rounds"},
              f"/txs/{net.honest[0].id}": {"tx", "status", "block", "height", "id"}}
    for path, keys in shapes.items():
        for accept, query in (("application/json", ""), (CHROMIUM, "?format=json"), (None, "")):
            r = net.get(path + query, accept=accept)
            assert r.mimetype == "application/json", (path, accept)
            assert set(r.get_json()) == keys, path
    status = net.get("/status", accept="application/json").get_json()
    assert set(status) == set(n.status()) and status["height"] == 3
    block = net.get("/blocks/1", accept="*/*").get_json()
    assert block["hash"] == net.b1.hash and block == {**net.b1.to_dict(), "hash": net.b1.hash}
    detail = net.get("/rounds/1?format=json").get_json()
    old = {"round", "status", "opened_at", "closed_at", "block", "updates", "accepted", "rejected", "rule",
           "model_digest", "metrics", "not_included", "energy"}
    assert old <= set(detail)
    assert {"id", "sender", "address", "height", "num_samples", "skip", "type", "metrics"} <= set(
        detail["updates"][0])
    # a long-poll stays JSON even for a browser
    assert net.get("/rounds/1?wait=1").mimetype == "application/json"


def test_round_page_shows_every_update_with_verdict_reason_sender_samples_distance_and_rule(net):
    n = net.node
    text = net.get("/rounds/1").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-tx="([0-9a-f]{64})">(.*?)</tr>', text, re.S))
    assert set(rows) == {t.id for t in net.honest + [net.attacker]}
    reason = n.chain.round_summary(1)["commitment"]["rejected"][net.attacker.id]
    bad = rows[net.attacker.id]
    assert '<td class="verdict verdict-rejected">rejected</td>' in bad
    assert f'<td class="reason">{html.escape(reason)}</td>' in bad and reason.startswith("multi-krum")
    assert 'href="/participants/node4"' in bad and ">node4</a>" in bad
    for t in net.honest:
        assert '<td class="verdict verdict-accepted">accepted</td>' in rows[t.id]
        assert '<td class="samples num">10</td>' in rows[t.id]
    rule = re.search(r'<td id="rule">(.*?)</td>', text).group(1)
    assert "multi-krum" in rule and "f=1" in rule and "m=0" in rule
    assert 'id="next" href="/rounds/2"' in text and 'href="/rounds/0"' not in text
    # the distance: the update's weights to G(1), the model after the closing block
    g1 = n.chain.model(net.b1.hash)[0]
    doc = net.get("/rounds/1?format=json").get_json()
    dist = {u["id"]: u["distance"] for u in doc["updates"]}
    for t in net.honest + [net.attacker]:
        want = math.sqrt(squared_distance(t.decoded_weights, g1))
        assert dist[t.id] == pytest.approx(want, rel=1e-9)
        assert f'<td class="distance num">{want:.6g}</td>' in rows[t.id]
    assert dist[net.attacker.id] > 50 * max(dist[t.id] for t in net.honest)
    assert {u["verdict"] for u in doc["updates"]} == {"accepted", "rejected"}
    assert doc["aggregation"] == {"rule": "multi-krum", "params": {"f": 1, "m": 0}}
    # the open round: verdict open, no distance
    open_rows = net.get("/rounds/3?format=json").get_json()["updates"]
    assert open_rows == []
    page3 = net.get("/rounds/3").get_data(as_text=True)
    assert "(open)" in page3 and 'id="prev" href="/rounds/2"' in page3
    # ... but its updates waiting in the mempool are listed, verdict open (in mempool)
    doc3 = net.get("/rounds/3?format=json").get_json()
    assert doc3["mempool_count"] == 1 and [u["id"] for u in doc3["mempool"]] == [net.pending.id]
    p = doc3["mempool"][0]
    assert (p["verdict"], p["reason"], p["sender"], p["num_samples"]) == ("open", "in mempool",
                                                                           net.pending.sender, 10)
    assert "Updates (1)" in page3 and "1 in this node's mempool" in page3
    row = dict(re.findall(r'<tr data-tx="([0-9a-f]{64})" class="in-mempool">(.*?)</tr>', page3, re.S))[net.pending.id]
    assert f'href="/txs/{net.pending.id}"' in row and 'href="/participants/node0"' in row
    assert '<td class="verdict verdict-open">open</td><td class="reason">in mempool</td>' in row
    assert "mempool" not in net.get("/rounds/2?format=json").get_json()  # a closed round: its blocks only


def test_block_and_tx_pages_link_every_id(net):
    text = net.get("/blocks/1").get_data(as_text=True)
    for t in net.honest + [net.attacker]:
        assert f'href="/txs/{t.id}"' in text
    assert f'href="/blocks/{net.b1.header.prev_hash}"' in text and f'id="next" href="/blocks/{net.b2.hash}"' in text
    assert 'href="/rounds/1"' in text and 'href="/participants/node0"' in text
    assert "local training metrics (self-reported)" in text
    tx = net.get(f"/txs/{net.attacker.id}").get_data(as_text=True)
    assert f'href="/blocks/{net.b1.hash}"' in tx and 'href="/rounds/1"' in tx and 'href="/participants/node4"' in tx
    assert "rejected" in tx and "local training metrics (self-reported)" in tx and f"{net.attacker.size} bytes" in tx
    pending = net.get(f"/txs/{net.pending.id}").get_data(as_text=True)
    assert "in this node's mempool" in pending
    mp = net.get("/mempool").get_data(as_text=True)
    assert f'href="/txs/{net.pending.id}"' in mp and 'href="/rounds/3"' in mp


def test_rounds_list_is_paged_with_links(net):
    text = net.get("/rounds?start=2&limit=1").get_data(as_text=True)
    assert '<tr data-round="2">' in text and '<tr data-round="1">' not in text
    assert 'id="prev" href="/rounds?start=1&amp;limit=1"' in text
    assert 'id="next" href="/rounds?start=3&amp;limit=1"' in text
    assert f'href="/blocks/{net.b2.hash}"' in text
    newest = net.get("/rounds").get_data(as_text=True)
    assert all(f'<tr data-round="{r}">' in newest for r in (1, 2, 3)) and 'id="next"' not in newest


def test_participants_names_reputation_and_energy(net):
    n = net.node
    assert names.name_of(n, KEYS[2].public_hex) == "node2"
    assert names.name_of(n, address(KEYS[2].public_hex)) == "node2"
    assert names.name_of(n, n.pubkey) == "node5 (this node)"
    stranger = KEYS[9].public_hex
    assert names.name_of(n, stranger) == address(stranger)[:12]
    assert names.pubkey_of(n, "node3") == KEYS[3].public_hex and names.pubkey_of(n, "node6") is None
    assert names.ref_of(n, KEYS[1].public_hex) == "node1" and names.ref_of(n, stranger) == address(stranger)
    doc = net.get("/participants", accept="application/json").get_json()
    assert [p["name"] for p in doc["participants"]] == [f"node{i}" for i in range(5)] + ["node5 (this node)"]
    assert doc["reputation"] is False and doc["participants"][5]["this_node"] is True
    one = net.get("/participants/node4?format=json").get_json()
    second = "accepted" if net.round2[4].id in n.chain.round_summary(2)["commitment"]["accepted"] else "rejected"
    assert [(u["round"], u["id"], u["verdict"]) for u in one["updates"]] == [
        (1, net.attacker.id, "rejected"), (2, net.round2[4].id, second)]
    assert one["pubkey"] == KEYS[4].public_hex and one["reputation"] is None
    for ref in ("node4", address(KEYS[4].public_hex), KEYS[4].public_hex):
        text = net.get(f"/participants/{ref}").get_data(as_text=True)
        assert '<table id="participant-updates">' in text and f'<tr data-tx="{net.attacker.id}">' in text
        assert 'id="reputation"' in text and 'id="energy"' in text and "no reputation" in text
    own = net.get("/participants/node5").get_data(as_text=True)
    assert "this node's own estimate" in own
    assert net.get("/participants/node9", accept="application/json").status_code == 404
    assert net.get("/participants/xyz", accept="application/json").status_code == 400


def test_ids_by_unique_prefix_in_routes_and_the_cli_path(net):
    """(The fixture's tx ids are the same every run: fixed keys, rounds, bases and
    timestamps; its block hashes are not: blocks carry the clock.)"""
    n = net.node
    t = net.honest[1]
    for k in (4, 8, 16):
        doc = net.get(f"/txs/{t.id[:k]}", accept="application/json").get_json()
        assert doc["tx"] == t.to_dict() and doc["id"] == t.id
    assert net.get(f"/txs/{net.pending.id[:10]}", accept="application/json").get_json()["status"] == "mempool"
    short = next(net.b2.hash[:k] for k in range(6, 65) if not lookup.is_height(net.b2.hash[:k]))
    assert net.get(f"/blocks/{short}", accept="application/json").get_json()["hash"] == net.b2.hash
    assert net.get(f"/blocks/{short}").mimetype == "text/html"
    # proof-of-work hashes start with zeros: 0-led digits of 4+ are a prefix, not a height
    assert lookup.is_height("2") and lookup.is_height("007") and lookup.is_height("1234")
    assert not lookup.is_height("0000") and not lookup.is_height("00000047") and not lookup.is_height("ab12")
    assert net.get("/blocks/002", accept="application/json").get_json()["hash"] == net.b2.hash
    for bad in ("abc", "ABCD", "zzzz", "a" * 65):  # too short, not lowercase hex, too long
        r = net.get(f"/txs/{bad}", accept="application/json")
        assert r.status_code == 400 and r.get_json()["reason"] == "bad-id", bad
    assert net.get("/blocks/abc", accept="application/json").status_code == 400
    unused = next(p for p in (f"{i:04x}" for i in range(0xa000, 1 << 16))  # not digits only: a height
                  if not any(x.startswith(p) for x in [*n.chain.index.tx_index, *n.chain.index.entries,
                                                       net.pending.id]))
    assert net.get(f"/txs/{unused}", accept="application/json").status_code == 404
    assert net.get(f"/blocks/{unused}", accept="application/json").status_code == 404
    # more than one tx shares a one-character prefix (a few dozen txs): ambiguous
    ids = [x.id for x in net.honest + net.round2 + [net.attacker, net.pending]]
    first = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    with pytest.raises(lookup.AmbiguousId) as exc:
        lookup.resolve_tx(n, first)
    assert sorted(exc.value.matches) == sorted(i for i in ids if i.startswith(first))
    # the index follows new blocks: a tx mined after the first lookup is found
    assert lookup.resolve_tx(n, net.pending.id[:12]) == net.pending.id


def test_an_ambiguous_block_prefix_is_409_with_its_matches(tmp_path):
    """81 empty blocks of tiny_config with fixed timestamps: heights 7 and 81 share
    the prefix 0d98 (found once; the chain is deterministic)."""
    cfg = tiny_config()
    genesis = make_genesis(cfg)
    chain = Chain(genesis)
    load_or_create_key(tmp_path / "node")  # before the store: a store without a key is refused
    with Store(tmp_path / "node") as store:
        store.put(genesis)
        for _ in range(81):
            b = next_block(chain)
            chain.add_block(b, now(b))
            store.put(b)
    hashes = [chain.index.main[7], chain.index.main[81]]
    prefix = hashes[0][:4]
    assert hashes[1].startswith(prefix)
    node = Node(tmp_path / "node", cfg, quiet=True, port=5996)
    try:
        client = create_app(node).test_client()
        r = client.get(f"/blocks/{prefix}")
        assert r.status_code == 409
        doc = r.get_json()
        assert doc["reason"] == "ambiguous-id" and sorted(doc["matches"]) == sorted(hashes) and doc["error"]
        assert client.get(f"/blocks/{hashes[1][:8]}").get_json()["hash"] == hashes[1]
        page = client.get(f"/blocks/{prefix}", headers={"Accept": CHROMIUM})
        assert page.status_code == 302 and page.headers["Location"].endswith(f"/search?q={prefix}")
        listing = client.get(f"/search?q={prefix}", headers={"Accept": CHROMIUM}).get_data(as_text=True)
        assert all(f'href="/blocks/{h}"' in listing for h in hashes)
    finally:
        node.stop()


def test_search_finds_every_kind(net):
    n = net.node

    def where(q):
        r = net.get(f"/search?q={requests.utils.quote(q)}")
        assert r.status_code == 302, (q, r.status_code)
        return r.headers["Location"]

    assert where("2") == f"/blocks/{net.b2.hash}"
    assert where(net.b2.hash) == f"/blocks/{net.b2.hash}"
    assert where(net.honest[2].id[:12]) == f"/txs/{net.honest[2].id}"
    assert where(net.pending.id) == f"/txs/{net.pending.id}"
    assert where("node3") == "/participants/node3"
    assert where(address(KEYS[1].public_hex)) == "/participants/node1"
    assert where(KEYS[1].public_hex) == "/participants/node1"
    assert where("r2") == "/rounds/2" and where("round 1") == "/rounds/1" and where("Round  3") == "/rounds/3"
    doc = net.get("/search?q=r2", accept="application/json").get_json()
    assert doc == {"query": "r2", "matches": [{"kind": "round", "id": "2", "url": "/rounds/2", "label": "round 2"}],
                   "more": []}
    none = net.get("/search?q=r99")
    assert none.status_code == 200 and 'id="no-match"' in none.get_data(as_text=True)
    short = net.get("/search?q=ab").get_data(as_text=True)
    assert "at least 4 hex" in short
    assert net.get("/search?q=zzzz", accept="application/json").get_json()["matches"] == []
    assert n.chain.height == 3


def test_model_peers_and_status_pages(net):
    n = net.node
    model = net.get("/model").get_data(as_text=True)
    assert "W0" in model and 'href="/model?format=json"' in model and n.chain.tip_state.model_digest in model
    assert '"weights"' not in model and len(model) < 20_000
    peers = net.get("/peers").get_data(as_text=True)
    assert peers.count('<g class="peer') == 1 and 'id="peer-graph"' in peers  # the node alone
    status = net.get("/status").get_data(as_text=True)
    assert 'id="traffic"' in status and 'id="timings"' in status and 'href="/rounds/3"' in status
    assert re.search(r'<th class="num">[\d.]+ (k|M)?B</th>', status)  # traffic: core.units, decimal prefixes
    assert '<th class="num">1.5 MB</th>' in str(traffic_table({"sent": 1_500_000}))  # not 1.4 (MiB)


def test_peer_graph_draws_known_links_else_a_star():
    peers = [{"url": "http://a:1", "peers": ["http://b:2", "http://me:0"]}, {"url": "http://b:2", "peers": []},
             {"url": "http://c:3"}]
    svg, note = peer_graph("http://me:0", peers)
    svg = str(svg)
    assert svg.count('<g class="peer') == 4 and svg.count("<line") == 4  # 3 spokes and a-b
    assert 'data-from="http://a:1" data-to="http://b:2"' in svg and "peer lists" in note
    star, note = peer_graph("http://me:0", [{"url": "http://a:1"}, {"url": "http://b:2"}])
    assert str(star).count("<line") == 2 and "star" in note


def test_chromium_gets_html_over_real_http(tmp_path):
    """Through waitress and a real socket: Chromium's exact Accept header gets HTML
    for every page, curl's */* gets JSON."""
    import argparse
    from learningchain.cli.inspection import NodeClient, show_block, show_tx
    s = Served(tmp_path, "n")
    try:
        txs = [update_tx(s.node.chain, k) for k in KEYS[:3]]
        for t in txs:
            assert s.node.submit_tx(t) == "accepted"
        b = s.mine_one()
        # the CLI's own path: ``node.py tx <the 16 characters a table shows>``, ``node.py block <prefix>``
        cli = NodeClient(s.url)
        try:
            doc = show_tx(cli, argparse.Namespace(txid=txs[1].id[:16], json=True))
            assert doc["id"] == txs[1].id and doc["block"] == b.hash
            short = next(b.hash[:k] for k in range(8, 65) if not lookup.is_height(b.hash[:k]))
            assert f"hash {b.hash}" in " ".join(show_block(cli, argparse.Namespace(block=short, json=False)).split())
        finally:
            cli.close()
        for path in ("/blocks/1", "/rounds", "/rounds/1", "/model", "/peers", "/mempool", "/status",
                     "/participants", "/search?q=zzzz"):
            r = requests.get(s.url + path, headers={"Accept": CHROMIUM}, timeout=10)
            assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html"), path
            j = requests.get(s.url + path, headers={"Accept": "*/*"}, timeout=10)
            assert j.headers["Content-Type"].startswith("application/json"), path
    finally:
        s.close()


def test_tx_prefix_index_catches_up_and_follows_a_reorg():
    """The sorted tx index adds only the blocks connected since its last catch-up,
    walks a reorg back to the fork, and ids that left the main chain are filtered
    by the chain's own tx index."""
    from tests.helpers import MINER2, tiny_genesis
    chain = Chain(tiny_genesis())
    side = Chain(chain.genesis)
    gone = update_tx(chain, KEYS[0])
    a1 = next_block(chain, [gone])
    chain.add_block(a1, now(a1))
    idx = lookup.TxPrefixIndex()
    idx.catch_up(chain)
    assert idx.starting(gone.id[:6], 10) == [gone.id]
    came = update_tx(side, KEYS[1])
    fork = [next_block(side, [came], MINER2, dt=500)]
    side.add_block(fork[0], now(fork[0]))
    fork.append(next_block(side, [], MINER2, dt=500))
    for b in fork:
        res = chain.add_block(b, now(b))
    assert res.status == "reorg"
    idx.catch_up(chain)
    assert idx.starting(came.id[:6], 10) == [came.id]
    live = [t for t in idx.starting(gone.id[:6], 10) if t in chain.index.tx_index]
    assert live == []


def _node_on(tmp_path, chain: Chain, config) -> Node:
    """A Node whose store holds ``chain``'s main chain (replayed at start)."""
    load_or_create_key(tmp_path / "node")  # before the store: a store without a key is refused
    with Store(tmp_path / "node") as store:
        for h in chain.index.main:
            store.put(chain.get_block(h))
    return Node(tmp_path / "node", config, quiet=True, port=5995)


def test_secure_aggregation_round_block_and_tx_pages(tmp_path):
    """A whole secure-aggregation round (4 members, real masks and shares): the
    round page lists every SA tx with its verdict and no distance (a masked input
    cannot be decoded), the block and tx pages show what each SA tx holds."""
    from tests.secagg_net import SaNet
    net = SaNet(4, phase_timeout=2)
    closing, _ = net.full_round()
    node = _node_on(tmp_path, net.chain, net.config)
    try:
        client = create_app(node).test_client()
        doc = client.get("/rounds/1?format=json").get_json()
        kinds = {u["type"]: u for u in doc["updates"]}
        assert set(kinds) == {"setup", "input", "unmask"}
        assert kinds["input"]["verdict"] == "accepted" and kinds["input"]["distance"] is None
        assert kinds["setup"]["verdict"] == "not-counted" and "setup" in kinds["setup"]["reason"]
        page = client.get("/rounds/1", headers={"Accept": CHROMIUM}).get_data(as_text=True)
        assert 'id="secure-aggregation"' in page and "4 counted" in page
        assert page.count('<td class="distance num">-</td>') == len(doc["updates"])
        block = client.get(f"/blocks/{closing.hash}", headers={"Accept": CHROMIUM}).get_data(as_text=True)
        assert 'id="secure-aggregation"' in block and "secure-aggregation phase" in block
        for kind in ("setup", "input", "unmask"):
            r = client.get(f"/txs/{kinds[kind]['id']}", headers={"Accept": CHROMIUM})
            assert r.status_code == 200 and '<table id="secure-aggregation">' in r.get_data(as_text=True), kind
        assert client.get("/status", headers={"Accept": CHROMIUM}).status_code == 200
    finally:
        node.stop()


def test_participants_show_the_chains_reputation_under_a_selection_policy(tmp_path):
    """Under a selection policy the chain keeps reputation records: the participants
    list and page show each one's score, and the energy profile genesis declares."""
    from learningchain.ledger.genesis import with_participants
    keys = KEYS[:3]
    cfg = with_participants(tiny_config(), [k.public_hex for k in keys], "random-k", 3)
    chain = Chain(make_genesis(cfg))
    b = next_block(chain, [update_tx(chain, k) for k in keys])
    chain.add_block(b, now(b))
    assert chain.tip_state.round == 2
    node = _node_on(tmp_path, chain, cfg)
    try:
        client = create_app(node).test_client()
        doc = client.get("/participants?format=json").get_json()
        assert doc["reputation"] is True
        rows = doc["participants"][:3]
        assert [p["name"] for p in rows] == ["node0", "node1", "node2"]
        assert all(p["reputation"]["rounds"] == 1 and p["energy_profile"]["train_nj"] > 0 for p in rows)
        records = chain.tip_state.records
        assert [p["reputation"]["score"] for p in rows] == [records[k.public_hex].score for k in keys]
        page = client.get("/participants/node1", headers={"Accept": CHROMIUM}).get_data(as_text=True)
        rep = re.search(r'<td id="reputation">(.*?)</td>', page, re.S).group(1)
        assert f"score <b>{records[keys[1].public_hex].score}</b>" in rep
        assert "declared profile: train_nj=" in page
    finally:
        node.stop()


def test_an_open_network_names_senders_by_address(tmp_path):
    """No genesis list: senders are shown by their address prefix, listed from the
    newest rounds, and reachable by address."""
    chain = Chain(make_genesis(tiny_config()))
    txs = [update_tx(chain, k) for k in KEYS[:3]]
    b = next_block(chain, txs)
    chain.add_block(b, now(b))
    node = _node_on(tmp_path, chain, tiny_config())
    try:
        client = create_app(node).test_client()
        doc = client.get("/participants?format=json").get_json()
        assert doc["listed"] == 0 and doc["participants"][0]["this_node"] is True
        got = {p["address"]: p["name"] for p in doc["participants"][1:]}
        assert got == {address(k.public_hex): address(k.public_hex)[:12] for k in KEYS[:3]}
        one = client.get(f"/participants/{address(KEYS[2].public_hex)}?format=json").get_json()
        assert one["pubkey"] == KEYS[2].public_hex and [u["id"] for u in one["updates"]] == [txs[2].id]
        page = client.get("/rounds/1", headers={"Accept": CHROMIUM}).get_data(as_text=True)
        a = address(KEYS[0].public_hex)
        assert f'<a href="/participants/{a}" title="{KEYS[0].public_hex}">{a[:12]}</a>' in page
    finally:
        node.stop()


def test_no_page_answers_500_to_garbage(net):
    """Every GET route as HTML with odd ids and queries: 2xx, 3xx or 4xx, never 500."""
    odd = ("x", "99999", "node99", "ABCD", "%00", "a" * 70, "..%2F..")
    rules = [r.rule for r in net.client.application.url_map.iter_rules() if "GET" in r.methods]
    for rule in rules:
        for v in odd:
            path = re.sub(r"<[^>]+>", v, rule)
            for q in ("", "?start=0&limit=x&q=" + v):
                r = net.get(path + q)
                assert r.status_code < 500, (path + q, r.status_code)
                assert "Traceback" not in r.get_data(as_text=True)


def test_peers_page_draws_the_links_peers_report(tmp_path):
    """Three real nodes: c knows a and b; a's answer to c's announce lists b, so
    the graph of c has the a-b line besides the two spokes."""
    from tests.served import wait_for
    a = Served(tmp_path, "a")
    b = Served(tmp_path, "b", peers=[a.url])
    c = Served(tmp_path, "c", peers=[a.url])
    try:
        def linked():
            doc = requests.get(c.url + "/peers", timeout=10).json()
            urls = {p["url"] for p in doc["peers"]}
            return urls == {a.url, b.url} and any(b.url in p["peers"] for p in doc["peers"] if p["url"] == a.url)
        wait_for(linked, 30, "c to know a and b, and a's peer list")
        page = requests.get(c.url + "/peers", headers={"Accept": CHROMIUM}, timeout=10).text
        assert page.count('<g class="peer') == 3 and 'data-url="%s"' % b.url in page
        assert f'data-from="{a.url}" data-to="{b.url}"' in page or f'data-from="{b.url}" data-to="{a.url}"' in page
    finally:
        for s in (c, b, a):
            s.close()


def test_search_and_participant_pages_match_only_participants_this_node_knows(net):
    """A well-formed key or address of no genesis entry, record or update is no
    participant: search says no match (not a redirect to an empty page), its page
    is 404; a 66-hex string that is no point is a bad id (400)."""
    stranger = KEYS[9].public_hex
    invalid = "aa" * 33
    for q in (stranger, address(stranger), invalid, "ab" * 20):
        r = net.get(f"/search?q={q}")
        assert r.status_code == 200 and 'id="no-match"' in r.get_data(as_text=True), q
        assert net.get(f"/search?q={q}", accept="application/json").get_json()["matches"] == [], q
    for ref in (stranger, address(stranger)):
        r = net.get(f"/participants/{ref}", accept="application/json")
        assert r.status_code == 404 and r.get_json()["error"], ref
    assert net.get(f"/participants/{invalid}", accept="application/json").status_code == 400
    assert names.pubkey_of(net.node, invalid) is None
    # known: listed (with or without updates), this node, a sender of the mempool
    assert net.get(f"/search?q={KEYS[2].public_hex}").headers["Location"] == "/participants/node2"
    assert net.get(f"/participants/{address(net.node.pubkey)}", accept="application/json").status_code == 200
    assert net.get(f"/search?q={address(net.pending.sender)}").status_code == 302


def test_round_distances_come_from_the_evaluator_and_a_cold_round_is_computed_one_at_a_time(net):
    """Requests only read ``node.round_distances`` (filled by the evaluator's
    pass, newest round first, once per closing block); a round not held is
    computed on demand, one at a time: while another runs, the answer comes at
    once without distances and with a note."""
    from learningchain.node import round_distances as rd
    from learningchain.node.web import distances
    n = net.node
    saved, n.round_distances = n.round_distances, rd.RoundDistances()
    try:
        assert distances._computing.acquire(blocking=False)  # another cold round is being computed
        try:
            doc = net.get("/rounds/2?format=json").get_json()
            page = net.get("/rounds/2").get_data(as_text=True)
        finally:
            distances._computing.release()
        assert doc["updates"] and all(u["distance"] is None for u in doc["updates"])
        assert doc["distance_note"] == distances.BUSY and html.escape(distances.BUSY) in page
        assert len(n.round_distances) == 0
        assert rd.measure_round_distances(n) == 2  # rounds 2 and 1, the closed ones
        assert rd.measure_round_distances(n) == 0  # once per closing block
        held, by_id = n.round_distances.lookup(2, net.b2.hash)
        assert held and set(by_id) == {t.id for t in net.round2}
        g2 = n.chain.model(net.b2.hash)[0]
        for t in net.round2:
            assert by_id[t.id] == pytest.approx(math.sqrt(squared_distance(t.decoded_weights, g2)), rel=1e-9)
        assert distances._computing.acquire(blocking=False)  # held: answered without computing anything
        try:
            doc = net.get("/rounds/2?format=json").get_json()
        finally:
            distances._computing.release()
        assert {u["id"]: u["distance"] for u in doc["updates"]} == by_id and doc["distance_note"] is None
        assert n.round_distances.lookup(2, "00" * 32) == (False, None)  # another closing block (a reorg)
        assert net.get("/rounds/3?format=json").get_json()["distance_note"] is None  # open: nothing to say
    finally:
        n.round_distances = saved


def _payloads(n: int) -> tuple[str, str]:
    return f"<script>alert({n})</script>", f"\"'><img src=x onerror=alert({n})>"


def test_no_page_renders_an_html_payload_unescaped(tmp_path):
    """Text that others choose: the network name (genesis: ``alert(1)``), a tx's
    metric names (the sender's: ``alert(2)``), a peer URL (any host a peer names
    passes the URL check: ``alert(3)``). Every page renders them escaped: no
    payload appears as markup anywhere, and each does reach its pages. (Rejection
    reasons are the rules' own text: no outsider writes them.)"""
    from learningchain.ledger.tx import UpdateTx
    evil_peer = "http://a\"'><img src=x onerror=alert(3)>"
    own = load_or_create_key(tmp_path / "node").public_hex
    keys = KEYS[:3]
    cfg = tiny_config(network="".join(_payloads(1)), allow_list=[k.public_hex for k in keys] + [own], quorum=3)
    node = Node(tmp_path / "node", cfg, quiet=True, port=5993, peers=[evil_peer])
    try:
        client = create_app(node).test_client()

        def evil_tx(key, shift):
            model, digest = node.chain.model()
            weights = {k: (a + np.float32(shift)).astype(np.float32) for k, a in model.items()}
            return UpdateTx.create(key, node.chain.tip_state.round, digest, weights, 10,
                                   metrics={p: 0.5 for p in _payloads(2)})
        closed = [evil_tx(k, 0.01 * (i + 1)) for i, k in enumerate(keys)]
        for t in closed:
            assert node.submit_tx(t) == "accepted"
        b1 = mine(node)
        waiting = evil_tx(keys[0], 0.02)
        assert node.submit_tx(waiting) == "accepted"
        paths = ["/", "/rounds", "/rounds/1", "/rounds/2", "/participants", "/participants/node0", "/mempool",
                 "/peers", "/model", "/status", f"/blocks/{b1.hash}", "/blocks/0", f"/txs/{waiting.id}",
                 *(f"/txs/{t.id}" for t in closed), *(f"/search?q={requests.utils.quote(p)}" for p in _payloads(2)),
                 f"/search?q={waiting.id[:6]}"]
        reached: dict[str, set] = {}
        for path in paths:
            r = client.get(path, headers={"Accept": CHROMIUM}, follow_redirects=True)
            assert r.status_code == 200 and r.mimetype == "text/html", path
            text = r.get_data(as_text=True)
            assert "<script>alert" not in text and "<img" not in text and "\"'>" not in text, path
            assert not re.search(r"onerror=alert\(\d\)>", text), path
            for n in (1, 2, 3):
                if f"alert({n})" in text:  # escaped: no markup of it is left (above)
                    reached.setdefault(path, set()).add(n)
        assert 1 in reached["/"] and 1 in reached["/status"]
        assert 2 in reached[f"/txs/{waiting.id}"] and 2 in reached[f"/blocks/{b1.hash}"]
        assert 3 in reached["/peers"]
    finally:
        node.stop()

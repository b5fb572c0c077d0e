"""Gossip and sync between real nodes: each a Node served by waitress on its own
127.0.0.1 port, talking real HTTP. Every wait polls with a deadline."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from learningchain.ledger.block import Block
from learningchain.cli.processes import free_port
from learningchain.ledger.compact import compact_block
from learningchain.node.p2p.peer_table import check_peer_url
from learningchain.node.p2p.peers import PeerSet, TIMEOUT
from miner.pow import search
from tests.served import Served, network_factory, serve_handler, stop_server, wait_for
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


def stop_sync_loop(served: "Served") -> None:
    """No periodic sync: peer states and syncs change only as the test drives them."""
    served.node.peers._stop.set()
    served.node.peers._thread.join(timeout=10)


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


class FakePeer:
    """A small HTTP server on 127.0.0.1 standing in for a peer: it records the paths
    asked of it and answers each with ``reply``. ``trickle``: seconds between
    single bytes of the body (a peer that answers slowly; ``trickle_head`` also
    trickles the status line and headers). ``length``: the Content-Length to
    declare (None: the real one; -1: none, the body ends when the peer closes)."""

    def __init__(self, reply: bytes = b"{}", trickle: float = 0.0, trickle_head: bool = False,
                 length: int | None = None):
        self.paths: list[str] = []
        self.closed = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _answer(self):
                outer.paths.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                declared = len(reply) if length is None else length
                head = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                if declared >= 0:
                    head += f"Content-Length: {declared}\r\n".encode()
                head += b"\r\n"
                try:
                    self.send(head, trickle if trickle_head else 0.0)
                    self.send(reply, trickle)
                except OSError:
                    pass  # the client gave up: what a trickling peer sees

            def send(self, data: bytes, pause: float) -> None:
                if not pause:
                    self.wfile.write(data)
                    return
                for i in range(len(data)):
                    if outer.closed.wait(pause):
                        return
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server, self.url = serve_handler(Handler)

    def close(self) -> None:
        self.closed.set()
        stop_server(self.server)


@pytest.fixture
def fake_peer():
    peers: list[FakePeer] = []

    def start(**kw) -> FakePeer:
        peers.append(FakePeer(**kw))
        return peers[-1]
    yield start
    for p in peers:
        p.close()


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


def test_a_trickling_peer_is_cut_off_at_the_deadline(network, fake_peer):
    """One byte every 0.2 s passes every per-read timeout; the whole-exchange
    deadline (1 s here) still ends it, the peer backs off, and a sync round
    over [trickler, live peer] reaches the live peer's chain."""
    a = network("a")
    blocks = [a.mine_one() for _ in range(2)]
    d = network("d")
    d.node.peers._stop.set()  # we drive d's sync by hand below
    d.node.peers._thread.join(timeout=10)
    body = b'{"height": 9, "tip": "' + b"ab" * 32 + b'", "work": "ffff"}'  # 20 s at 0.2 s a byte
    slow_body = fake_peer(reply=body, trickle=0.2)
    slow_head = fake_peer(reply=body, trickle=0.2, trickle_head=True)
    ps = PeerSet(d.node, "http://127.0.0.1:1", [slow_body.url, slow_head.url, a.url], deadline=1.0)
    try:
        for slow in (slow_body, slow_head):
            t0 = time.monotonic()
            assert ps.request(slow.url, "GET", "/tip") is None
            spent = time.monotonic() - t0
            assert spent < len(body) * 0.2 / 2  # gave up long before the reply could end
            peer = next(p for p in ps.snapshot() if p["url"] == slow.url)
            assert peer["failures"] == 1 and "within 1 s" in peer["last_error"], peer
            assert peer["backoff_seconds"] > 0
        with ps._lock:  # make both tricklers available again for the sync round
            for url in (slow_body.url, slow_head.url):
                ps._peers[url].next_try = 0.0
        ps.sync_once()  # the tricklers come first in the peer order
        assert d.node.tip_info() == (2, blocks[-1].hash)
        failures = {p["url"]: p["failures"] for p in ps.snapshot()}
        assert failures == {slow_body.url: 2, slow_head.url: 2, a.url: 0}
    finally:
        ps.stop()


def test_an_oversized_reply_is_cut_off_at_the_cap(network, fake_peer):
    a = network("a")
    big = b'{"x": "' + b"y" * 5000 + b'"}'
    declared = fake_peer(reply=b"{}", length=10_000_000)  # says 10 MB, sends 2 bytes
    undeclared = fake_peer(reply=big, length=-1)          # no Content-Length, 5 kB
    ps = PeerSet(a.node, "http://127.0.0.1:1", [declared.url, undeclared.url], max_reply=4096)
    try:
        for peer in (declared, undeclared):
            assert ps.request(peer.url, "GET", "/tip") is None
        errors = {p["url"]: p["last_error"] for p in ps.snapshot()}
        assert "10000000 bytes is over the cap of 4096" in errors[declared.url]
        assert "over the cap of 4096 bytes" in errors[undeclared.url]
        ps2 = PeerSet(a.node, "http://127.0.0.1:1", [undeclared.url], max_reply=8192)
        assert ps2.request(undeclared.url, "GET", "/tip") == (200, {"x": "y" * 5000})  # under the cap
        ps2.stop()
    finally:
        ps.stop()


def test_the_watchdog_never_shuts_down_a_socket_its_exchange_let_go():
    """The pool took the connection back (detach) before the deadline passed: the
    socket may serve another thread by now and must survive; a socket still held
    by an expired exchange is shut down."""
    from learningchain.node.p2p.httpclient import _WATCHDOG, _Exchange
    released, released_peer = socket.socketpair()
    held, held_peer = socket.socketpair()
    try:
        gone, live = _Exchange(time.monotonic() - 1), _Exchange(time.monotonic() - 1)
        assert _WATCHDOG.attach(gone, released) and _WATCHDOG.attach(live, held)
        assert _WATCHDOG.detach(gone) is False  # the pool takes it back in time
        _WATCHDOG.watch(gone)
        _WATCHDOG.watch(live)  # same deadline, watched later: expires after ``gone``
        wait_for(lambda: live.expired, seconds=5, what="the watchdog to expire both")
        assert gone.expired
        released.sendall(b"x")
        assert released_peer.recv(1) == b"x"  # untouched
        held_peer.settimeout(5)
        assert held_peer.recv(1) == b""  # shut down: the peer sees EOF
    finally:
        for s in (released, released_peer, held, held_peer):
            s.close()


def mined_block(node) -> Block:
    _tid, template = node.new_template()
    nonce, _ = search(template.header.prefix(), template.header.target, 0, 1 << 32)
    return Block(template.header.with_nonce(nonce), template.txs, template.commitment, template.config)


def test_a_full_peer_table_evicts_only_learned_peers_that_keep_failing(network):
    from learningchain.node.p2p.peer_table import EVICT_AFTER_FAILURES, MAX_PEERS, PROTECTED_EVICT_AFTER
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
    from learningchain.node.p2p.peer_table import EVICT_AFTER_FAILURES, MAX_PROTECTED
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


def test_each_kind_of_request_has_its_own_reply_cap(network, fake_peer):
    from learningchain.node.p2p.peers import SMALL_REPLY_BYTES, reply_cap
    a = network("a")
    big = b'{"blocks": [], "pad": "' + b"y" * (SMALL_REPLY_BYTES + 1000) + b'"}'
    peer = fake_peer(reply=big)
    ps = PeerSet(a.node, "http://127.0.0.1:1", [peer.url])
    try:
        assert ps.request(peer.url, "GET", "/tip") is None  # polled every 2 s: a small cap
        assert f"over the cap of {SMALL_REPLY_BYTES}" in ps.snapshot()[0]["last_error"]
        with ps._lock:
            ps._peers[peer.url].next_try = 0.0
        code, doc = ps.request(peer.url, "POST", "/sync/blocks", {"locator": [], "limit": 1})
        assert code == 200 and doc["blocks"] == []  # a sync page may be megabytes
        cfg = a.node.config
        assert reply_cap("GET", "/txs/" + "ab" * 32, cfg.max_tx_bytes, cfg.max_block_bytes) > cfg.max_tx_bytes
        assert reply_cap("GET", "/peers", cfg.max_tx_bytes, cfg.max_block_bytes) == SMALL_REPLY_BYTES
    finally:
        ps.stop()


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


def test_bad_peer_urls_on_the_command_line_are_an_error(tmp_path, capsys):
    from learningchain.cli import main as cli
    from learningchain.node.p2p.peer_table import parse_peer_list
    from tests.cli.test_cli import assert_one_line_error, node_py
    proc = node_py("run", "--data-dir", str(tmp_path / "d"), "--port", "1", "--peers",
                   "http://127.0.0.1:5001,ftp://x", timeout=60)  # a real process: one line, exit 1
    line = assert_one_line_error(proc, 1)
    assert line.startswith("node.py run: --peers: url must be http(s)://host[:port], got 'ftp://x'"), line
    for bad in ("127.0.0.1:5001", "http://127.0.0.1:99999", "http://u:p@127.0.0.1:1"):
        assert cli.main(["run", "--data-dir", str(tmp_path / "d"), "--port", "1", "--peers", bad]) == 1
        err = capsys.readouterr().err
        assert err.startswith("node.py run: --peers: ") and err.count("\n") == 1, err
    assert not (tmp_path / "d").exists()  # refused before anything was written
    assert parse_peer_list(" http://127.0.0.1:5001/ ,, https://h:1") == ["http://127.0.0.1:5001", "https://h:1"]


def test_a_compact_block_is_checked_against_its_parent_before_any_fetch(network, fake_peer):
    """Issue 10 item 3: on a known parent the header must carry the target the chain
    requires there, meet it, and keep its branch within the side-branch margin; the
    ids must match the merkle root and be few enough for a block. Only then is any
    tx fetched, and then in parallel, within the sender's budget."""
    from learningchain.core import errors
    from learningchain.ledger.block import make_block, merkle_root
    from learningchain.node.p2p.peers import FETCH_BUDGET_TXS
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


def test_a_costly_peer_backs_off_in_proportion_and_recovers():
    from learningchain.node.p2p.peer_table import BACKOFF_MAX, COST_BUDGET, PeerTable
    t = PeerTable("http://127.0.0.1:5000", ["http://10.0.0.1:1"])
    peer = t._peers["http://10.0.0.1:1"]
    for _ in range(20):  # /tip polls: small and quick
        t._count_outbound(peer, "tip poll", 0, 80, 0.01)
        t._succeeded(peer)
    assert peer.available(time.monotonic()) and peer.cost == 0  # quick and small: free
    t._count_outbound(peer, "sync", 200, 40 << 20, 1.0)  # one 40 MiB page
    t._succeeded(peer)
    assert peer.cost > COST_BUDGET and not peer.available(time.monotonic())
    assert 0 < peer.next_try - time.monotonic() <= BACKOFF_MAX
    assert t.available_urls() == []
    peer.cost_at -= 300  # ten half-lives later the cost has decayed
    peer.next_try = 0.0
    t._count_outbound(peer, "tip poll", 0, 80, 0.01)
    assert peer.cost < 1 and peer.available(time.monotonic())


def test_a_learned_peer_joins_only_after_a_handshake_with_our_genesis(network, fake_peer):
    a = network("a")
    b = network("b")
    stop_sync_loop(a)
    stranger = fake_peer(reply=b'{"height": 0, "tip": "00", "work": "1", "genesis": "' + b"ab" * 32 + b'"}')
    for url in (b.url, stranger.url):
        r = requests.post(a.url + "/peers", json={"url": url}, timeout=10).json()
        assert r["added"] is False and r["status"] == "pending"
    wait_for(lambda: a.node.peers.pending_handshakes() == [], what="both handshakes")
    assert a.node.peers.urls() == [b.url]  # another network's node is not added
    assert stranger.paths == ["/tip"]
    r = requests.post(a.url + "/peers", json={"url": stranger.url}, timeout=10).json()
    assert r["status"] == "peer-handshake-failed" and stranger.paths == ["/tip"]
    assert a.node.peers.traffic()["refused_peers"] == {"peer-handshake-failed": 1}


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

"""Miner: the nonce search, the worker pool, and the HTTP mining client against a
real (tiny) node on 127.0.0.1."""
from __future__ import annotations

import threading
import time

import pytest

from learningchain.core import crypto
from learningchain.ledger.block import PREFIX_SIZE, BlockHeader
from miner.pow import CHUNK, Miner, mine_header, search

KEY = crypto.PrivateKey.from_secret(7)
EASY = 1 << 244  # ~4,096 tries
IMPOSSIBLE = 0  # no hash is below zero


def header(height: int = 1, prev_hash: str = "11" * 32, target: int = EASY) -> BlockHeader:
    return BlockHeader(height=height, prev_hash=prev_hash, merkle_root="22" * 32,
                       commitment_hash="33" * 32, timestamp=1_700_000_000_000 + height, target=target,
                       miner=KEY.public_hex)


def poll(predicate, timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --- search -----------------------------------------------------------------------
def test_search_finds_a_nonce_that_passes_check_pow():
    h = header()
    assert len(h.prefix()) == PREFIX_SIZE
    nonce, hashes = search(h.prefix(), h.target, 0, 1 << 20)
    assert nonce is not None and hashes == nonce + 1
    assert h.with_nonce(nonce).check_pow()
    # it is the *first* solution in the range
    assert not any(h.with_nonce(n).check_pow() for n in range(nonce))


def test_search_from_an_offset_counts_hashes_from_there():
    h = header()
    first, _ = search(h.prefix(), h.target, 0, 1 << 20)
    nonce, hashes = search(h.prefix(), h.target, first + 1, 1 << 20)
    assert nonce is not None and nonce > first and hashes == nonce - first
    assert h.with_nonce(nonce).check_pow()


def test_search_returns_none_when_the_range_holds_no_solution():
    h = header()
    assert search(h.prefix(), IMPOSSIBLE, 0, 5000) == (None, 5000)
    # clipped at the end of the 64-bit nonce space
    assert search(h.prefix(), IMPOSSIBLE, (1 << 64) - 10, 100) == (None, 10)


def test_mine_header_in_process():
    mined = mine_header(header())
    assert mined is not None and mined.check_pow()
    assert mine_header(header(target=IMPOSSIBLE), should_stop=lambda: True) is None


# --- worker pool ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool():
    with Miner(workers=2) as m:
        yield m


def test_two_workers_find_valid_nonces_and_are_reused(pool):
    for height in (1, 2, 3):
        h = header(height=height, target=1 << 240)
        result = pool.mine(h.prefix(), h.target)
        assert result.nonce is not None and h.with_nonce(result.nonce).check_pow()
        assert result.hashes >= 1 and result.hashrate > 0
    procs = list(pool._procs)
    mined = mine_header(header(height=9), miner=pool)
    assert mined is not None and mined.check_pow()
    assert pool._procs == procs and all(p.is_alive() for p in procs)  # same processes, kept alive


def test_should_stop_aborts_an_impossible_search_quickly(pool):
    h = header(target=IMPOSSIBLE)
    stop = threading.Event()
    out = {}
    t = threading.Thread(target=lambda: out.update(r=pool.mine(h.prefix(), h.target, stop.is_set)))
    t.start()
    assert poll(lambda: sum(pool._progress) >= 2 * CHUNK, 10)  # both workers are hashing
    stop.set()
    stopped_at = time.monotonic()
    t.join(5)
    assert not t.is_alive()
    # generous bound for a loaded test machine; the design target is ~0.1 s (one chunk)
    assert time.monotonic() - stopped_at < 1.0
    result = out["r"]
    assert result.nonce is None and result.hashes >= 2 * CHUNK
    # the pool still works after an aborted job
    again = pool.mine(header().prefix(), EASY)
    assert again.nonce is not None


def test_single_worker_should_stop():
    m = Miner(workers=1)
    calls = []
    result = m.mine(header().prefix(), IMPOSSIBLE, lambda: calls.append(1) or len(calls) >= 3)
    assert result.nonce is None and result.hashes == 3 * CHUNK


# --- HTTP client against a tiny node ------------------------------------------------
class TinyNode:
    """The node side of the mining contract (miner/client.py docstring), with real
    BlockHeaders: a submitted nonce is accepted only if the header passes check_pow."""

    def __init__(self, target: int):
        self.target = target
        self.lock = threading.Lock()
        self.tip = "00" * 32
        self.height = 1
        self.mempool = 0
        self.templates: dict[str, BlockHeader] = {}
        self.accepted: list[BlockHeader] = []
        self.rejected: list[str] = []
        self.template_requests = 0

    def app(self):
        from flask import Flask, jsonify, request
        app = Flask("tiny-node")

        @app.get("/mining/template")
        def template():
            with self.lock:
                self.template_requests += 1
                h = header(height=self.height, prev_hash=self.tip, target=self.target)
                tid = f"t{len(self.templates)}"
                self.templates[tid] = h
                return jsonify(template_id=tid, height=h.height, prev_hash=h.prev_hash,
                               prefix=h.prefix().hex(), target=f"{h.target:064x}")

        @app.post("/mining/submit")
        def submit():
            doc = request.get_json()
            with self.lock:
                h = self.templates.get(doc.get("template_id"))
                if h is None or h.prev_hash != self.tip:
                    self.rejected.append("stale")
                    return jsonify(error="unknown or stale template"), 409
                mined = h.with_nonce(doc["nonce"])
                if not mined.check_pow():
                    self.rejected.append("pow")
                    return jsonify(error="block-insufficient-work"), 400
                self.accepted.append(mined)
                self.tip, self.height = mined.hash, self.height + 1
                return jsonify(hash=mined.hash, status="accepted"), 202

        @app.get("/status")
        def status():
            with self.lock:
                return jsonify(tip=self.tip, mempool=self.mempool, height=self.height - 1)
        return app

    def new_tip_from_elsewhere(self):
        with self.lock:
            self.tip, self.height = "ab" * 32, self.height + 1


@pytest.fixture
def node():
    from werkzeug.serving import make_server
    tiny = TinyNode(target=1 << 240)
    server = make_server("127.0.0.1", 0, tiny.app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    tiny.url = f"http://127.0.0.1:{server.server_port}"
    yield tiny
    server.shutdown()
    thread.join(5)


def run_client(client, **kw):
    t = threading.Thread(target=client.run, kwargs=kw, daemon=True)
    t.start()
    return t


def test_client_mines_blocks_the_node_verifies(node, pool):
    from miner.client import MiningClient, NodeClient
    lines = []
    client = MiningClient(NodeClient(node.url), pool, out=lines.append)
    t = run_client(client, max_blocks=2)
    t.join(15)
    assert not t.is_alive()
    assert client.blocks == 2 and len(node.accepted) == 2 and not node.rejected
    first, second = node.accepted
    assert first.check_pow() and second.check_pow() and second.prev_hash == first.hash
    assert [line.split()[:2] for line in lines if line.startswith("block")] == [["block", "1"], ["block", "2"]]
    assert first.hash[:16] in lines[0]
    assert client.hashrate > 0 and "2 block(s) found" in client.summary()


def test_client_abandons_the_search_when_the_tip_changes(node):
    from miner.client import MiningClient, NodeClient
    node.target = IMPOSSIBLE
    lines = []
    client = MiningClient(NodeClient(node.url), Miner(workers=1), out=lines.append)
    t = run_client(client)
    try:
        assert poll(lambda: node.template_requests >= 1, 5)
        node.new_tip_from_elsewhere()
        assert poll(lambda: node.template_requests >= 2, 5)
        assert any("new tip" in line for line in lines)
        # a mempool change refreshes the template too, once it is older than 1 s
        with node.lock:
            node.mempool = 3
        assert poll(lambda: node.template_requests >= 3, 5)
        assert any("mempool changed" in line for line in lines)
    finally:
        client.stop.set()
        t.join(5)
    assert not t.is_alive() and client.blocks == 0


def test_client_retries_an_unreachable_node_without_a_traceback():
    import socket
    from miner.client import MiningClient, NodeClient
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines = []
    client = MiningClient(NodeClient(f"http://127.0.0.1:{port}"), Miner(workers=1), out=lines.append)
    t = run_client(client)
    assert poll(lambda: len(lines) >= 2, 5)
    client.stop.set()
    t.join(5)
    assert not t.is_alive()
    assert all("unreachable" in line and "retrying in" in line and "\n" not in line for line in lines)
    assert "retrying in 0.5 s" in lines[0] and "retrying in 1.0 s" in lines[1]


def test_cli_rejects_a_bad_url_with_exit_2(capsys):
    from miner.client import main
    assert main(["--node", "127.0.0.1:5000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--node must be an http(s) URL such as http://127.0.0.1:5000" in err


def test_cli_process_mines_and_exits_cleanly_on_ctrl_c(node):
    import os
    import signal
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "miner", "--node", node.url, "--workers", "2"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert poll(lambda: len(node.accepted) >= 1, 10)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Traceback" not in out
    assert all(h.check_pow() for h in node.accepted)
    last = out.strip().splitlines()[-1]
    assert last.startswith("miner stopped:") and "block(s) found" in last and "H/s" in last

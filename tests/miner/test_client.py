"""The HTTP mining client (miner/client.py) against a real (tiny) node on
127.0.0.1, with the worker pool of miner/pow.py."""
from __future__ import annotations

import threading

import pytest

from learningchain.ledger.block import BlockHeader
from miner.pow import Miner
from tests.miner.test_pow import IMPOSSIBLE, header, poll


@pytest.fixture(scope="module")
def pool():
    with Miner(workers=2) as m:
        yield m


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


def test_client_long_polls_a_real_node_and_drops_a_stale_template_at_once(tmp_path):
    """Against a real node the miner's watch thread long-polls /mining/wait: an
    update reaching the node while the template carries none makes the node
    answer at once, and the search stops ("new template"), not at the next
    /status poll (issue 13)."""
    from miner.client import MiningClient, NodeClient
    from tests.helpers import KEYS, update_tx
    from tests.served import network_factory
    hard = 1 << 200  # no block is found during the test: only staleness ends a search
    factory = network_factory(tmp_path)
    start = next(factory)
    try:
        a = start("a", initial_target=hard, pow_limit=hard)
        lines = []
        client = MiningClient(NodeClient(a.url, token_file=str(a.node.data_dir / "miner.token")),
                              Miner(workers=1, in_process=False), out=lines.append)
        t = run_client(client)
        try:
            assert poll(lambda: client.templates >= 1 and a.node.mining_waits >= 1, 30)  # searching, long-polling
            a.node.submit_tx(update_tx(a.node.chain, KEYS[0]))
            assert poll(lambda: any("new template" in line for line in lines), 30), lines
            assert poll(lambda: client.templates >= 2, 30)  # a fresh template, with the update
            assert a.node.refused.get("unknown-route", 0) == 0  # the node answered /mining/wait
        finally:
            client.stop.set()
            t.join(10)
            client.miner.close()
        assert not t.is_alive() and client.blocks == 0
    finally:
        next(factory, None)

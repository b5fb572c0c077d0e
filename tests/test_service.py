"""The Node's own threads: it trains, mines, closes rounds and evaluates them;
it restarts from its store; run_node serves HTTP and stops cleanly on SIGTERM."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import requests

from learningchain.explorer import round_detail
from learningchain.service import Node
from tests.helpers import tiny_config
from tests.test_peers import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
HARDER = 1 << 241  # ~32k hashes a block: a few blocks a second in one Python worker


def config():
    return tiny_config(quorum=1, round_timeout=50, initial_target=HARDER, pow_limit=HARDER,
                       aggregation={"rule": "fedavg", "params": {"cap_factor": "2"}})


def write_partition(directory: Path) -> Path:
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3, size=(3, 4))
    for name, n in (("node0.npz", 90), ("test.npz", 60)):
        y = rng.integers(0, 3, size=n)
        X = (centers[y] + rng.normal(size=(n, 4))).astype(np.float32)
        np.savez(directory / name, X=X, y=y)
    return directory / "node0.npz"


def test_node_trains_mines_closes_rounds_and_evaluates(tmp_path):
    data = write_partition(tmp_path)
    node = Node(tmp_path / "n", config(), dataset_path=data, mine=True, quiet=True)
    node.start()
    try:
        wait_for(lambda: node.chain.tip_state.round >= 3 and {1, 2} <= set(node.metrics), seconds=30,
                 what="two rounds to close and be evaluated")
        r1 = round_detail(node, 1)
        assert r1["status"] == "closed" and r1["accepted"] and r1["updates"][0]["address"] == node.address
        assert r1["metrics"]["accuracy"] > 0.5  # learnable blobs: G(1) beats chance (1/3)
        assert node.status()["metrics"] and node.status()["mining"] is True
    finally:
        node.stop()
    again = Node(tmp_path / "n", config(), quiet=True)  # replays the store, same key
    try:
        assert again.chain.height == node.chain.height and again.address == node.address
    finally:
        again.stop()


def test_run_node_serves_and_stops_on_sigterm(tmp_path):
    port = free_port()
    (tmp_path / "genesis.json").write_text(json.dumps(config().to_dict()))
    code = ("import json, sys; from learningchain.genesis import NetworkConfig; "
            "from learningchain.service import run_node; "
            f"run_node({str(tmp_path / 'd')!r}, NetworkConfig.from_dict(json.load(open({str(tmp_path / 'genesis.json')!r}))), "
            f"port={port}, mine=True)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def height():
            try:
                return requests.get(f"http://127.0.0.1:{port}/status", timeout=1).json()["height"]
            except requests.RequestException:
                return 0
        wait_for(lambda: height() >= 2, seconds=30, what="the served node to mine two blocks")
        r = requests.post(f"http://127.0.0.1:{port}/txs", data="{", headers={"Content-Type": "application/json"},
                          timeout=2)
        assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "block 1 " in out and "stopped" in out and "Traceback" not in out
    assert "BEGIN" not in out and "PRIVATE" not in out  # keys never logged

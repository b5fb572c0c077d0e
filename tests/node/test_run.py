"""run_node (learningchain.node.run): a node process serves HTTP and stops cleanly on SIGTERM."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.node.p2p.test_peers import free_port, wait_for
from tests.node.test_service import config

ROOT = Path(__file__).resolve().parents[2]


def node_process(tmp_path, port: int, extra: str = "") -> subprocess.Popen:
    """``run_node`` of a mining node in a process of its own (``extra``: more keyword arguments)."""
    (tmp_path / "genesis.json").write_text(json.dumps(config().to_dict()))
    code = ("import json, sys; from learningchain.ledger.genesis import NetworkConfig; "
            "from learningchain.node.run import run_node; "
            f"run_node({str(tmp_path / 'd')!r}, NetworkConfig.from_dict(json.load(open({str(tmp_path / 'genesis.json')!r}))), "
            f"port={port}, mine=True{extra})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def reap(proc: subprocess.Popen) -> None:
    """Kill a node process a failed test left running."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_run_node_serves_and_stops_on_sigterm(tmp_path):
    port = free_port()
    proc = node_process(tmp_path, port)
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
        reap(proc)
    assert proc.returncode == 0, out
    assert "block 1 " in out and "stopped" in out and "Traceback" not in out
    assert "BEGIN" not in out and "PRIVATE" not in out  # keys never logged


def test_run_node_until_round_exits_by_itself_once_that_round_is_closed(tmp_path):
    """Issue 14 (networks never stop): with until_round the node exits 0 when the
    round closes (quorum 1 here, the node's own miner closes rounds at its timeout)."""
    proc = node_process(tmp_path, free_port(), ", until_round=2")
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        reap(proc)
    assert proc.returncode == 0, out
    assert "round 2 closed (--until-round): stopping" in out and "stopped" in out and "Traceback" not in out


def test_a_port_in_use_is_one_line_naming_it(tmp_path):
    """Issue 14 (rough errors): `Address already in use` did not say which address."""
    import socket
    import pytest
    from learningchain.core.errors import ConfigError, LearningChainError
    from learningchain.node.run import run_node
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LearningChainError) as refused:
            run_node(tmp_path / "d", config(), port=port)
    assert f"cannot listen on 127.0.0.1:{port}: it is in use" in str(refused.value)
    assert not isinstance(refused.value, ConfigError)  # a runtime failure: exit status 1, not 2


def test_run_node_rest_after_round_stops_learning_and_mining_and_keeps_serving(tmp_path):
    """Issue 14 (networks never stop; `demo --keep` ran to round 409): with
    rest_after_round the node stops mining once the round is closed and keeps
    answering its API. Absence of blocks can only be shown over a window: the
    tip must not move (but for a block found as it rested) for 5 target block
    intervals after the node rests."""
    import time
    port = free_port()
    proc = node_process(tmp_path, port, ", rest_after_round=2")
    url = f"http://127.0.0.1:{port}"
    try:
        def status():
            try:
                return requests.get(url + "/status", timeout=1).json()
            except requests.RequestException:
                return None
        doc = wait_for(lambda: (s := status()) and s["resting"] and s, seconds=120, what="the node to rest")
        assert doc["mining"] is False and doc["round"] >= 3
        height = doc["height"]
        window = 5 * config().target_block_ms / 1000
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:  # one block found as the node rested may still connect
            assert status()["height"] <= height + 1, "the resting node went on mining"
        assert requests.get(url + "/rounds/2", timeout=2).json()["status"] == "closed"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        reap(proc)
    assert proc.returncode == 0, out
    assert "round 2 closed (--rest-after-round): learning and mining stop" in out and "Traceback" not in out

"""End to end: real ``node.py run`` processes talking HTTP on 127.0.0.1.

One network per module (3 learning nodes, node 0 mining; softmax on digits at an
easy target), then: agreement after 3 rounds, improvement over G0, a late
node catching up, and a node killed with SIGKILL restarting, catching up and
passing ``node.py verify``. Every wait polls with a deadline; every process
is stopped in the fixture's ``finally``.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from learningchain.learning import data
from learningchain.cli.processes import Network, get, wait_for, wait_ready
from learningchain.ledger.genesis import default_config
from learningchain.learning.models import build_model

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
DEADLINE = 40.0


def tip(node) -> str | None:
    return (get(node.url, "/status") or {}).get("tip")


def round_digest(node, r: int) -> str | None:
    doc = get(node.url, f"/rounds/{r}") or {}
    return doc.get("model_digest") if doc.get("status") == "closed" else None


def same_tip(nodes) -> str | None:
    tips = [tip(n) for n in nodes]
    return tips[0] if None not in tips and len(set(tips)) == 1 else None


def same_digest(nodes, r: int) -> str | None:
    ds = [round_digest(n, r) for n in nodes]
    return ds[0] if None not in ds and len(set(ds)) == 1 else None


def node_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "node.py"), *args], capture_output=True,
                          text=True, timeout=60, cwd=str(ROOT))


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    parts = data.write_partitions(out / "parts", "digits", 3, "iid")
    config = default_config(3, dataset="digits", kind="softmax", round_timeout=8,
                            target_block_ms=200)
    genesis = out / "genesis.json"
    import json
    genesis.write_text(json.dumps(config.to_dict()))
    net = Network(out)
    try:
        hub = net.start(0, dataset=parts / "node0.npz", genesis=genesis, mine=True)
        wait_ready(net, [hub])
        others = [net.start(i, peers=[hub.url], dataset=parts / f"node{i}.npz", genesis=genesis)
                  for i in (1, 2)]
        wait_ready(net, others)
        yield net, parts, genesis, config
    finally:
        net.stop_all()


def test_three_nodes_agree_on_round_3_model_and_tip(network):
    net, *_ = network
    nodes = net.nodes[:3]
    wait_for(lambda: round_digest(nodes[0], ROUNDS), DEADLINE, f"round {ROUNDS} to close", net)
    digest = wait_for(lambda: same_digest(nodes, ROUNDS), DEADLINE, "equal round-3 digests", net)
    assert len(digest) == 64
    wait_for(lambda: same_tip(nodes), DEADLINE, "equal tips", net, interval=0.05)
    accepted = (get(nodes[0].url, f"/rounds/{ROUNDS}") or {}).get("accepted", [])
    assert len(accepted) >= 1


def test_the_model_improves_over_g0(network):
    net, parts, _, config = network
    X, y = data.load_partition(parts / "test.npz")
    model = build_model(config.model_spec)
    g0 = model.evaluate(model.initial_weights(), X, y)["accuracy"]
    doc = wait_for(lambda: (get(net.nodes[0].url, f"/rounds/{ROUNDS}") or {}).get("metrics"),
                   DEADLINE, "round-3 metrics", net)
    assert doc["accuracy"] > g0 + 0.3, (g0, doc)
    assert doc["accuracy"] > 0.8


def test_every_inspection_command_against_a_running_node(network, capsys):
    """The 8 ``node.py`` inspection commands, table and ``--json``, through the
    real CLI entry point against node 0 of the running network."""
    import json

    from learningchain.cli.main import main
    net, *_ = network
    hub = net.nodes[0]
    wait_for(lambda: round_digest(hub, 1), DEADLINE, "round 1 to close", net)
    round1 = get(hub.url, "/rounds/1")
    txid = round1["updates"][0]["id"]
    block1 = get(hub.url, "/blocks/1")
    checks = {  # command -> (what the table must show, what the JSON must hold)
        "status": ([f"node {hub.url}", "height", "model digest", "traffic: ", "message type"], lambda d: d["pubkey"] == hub.pubkey),
        "chain": (["showing", "round closed", block1["hash"][:16]], lambda d: d["blocks"][0]["height"] >= 0),
        "block": (["hash", block1["hash"], "prev_hash"], lambda d: d["hash"] == block1["hash"]),
        "tx": ([txid, "status", "metrics (self-reported)"], lambda d: d["status"] == "chain" or d["block"]),
        "mempool": (["transaction(s) waiting", "id  "], lambda d: isinstance(d["txs"], list)),
        "peers": (["peer(s)", "last seen", "s ago", "received", " kB"],
                  lambda d: all(isinstance(p["last_seen_s_ago"], float) for p in d["peers"])),
        "model": (["digest", "arrays", "W0(64x10)"], lambda d: len(d["digest"]) == 64 and d["weights"]),
        "round": (["round", "updates", "accepted", "rejected", "model digest"], lambda d: d["rounds"][0]["round"] == 1),
    }
    extra = {"block": ["1"], "tx": [txid], "chain": ["--start", "0", "--limit", "3"]}
    for command, (shown, holds) in checks.items():
        argv = [command, "--node", hub.url, *extra.get(command, [])]
        assert main(argv) == 0, command
        out = capsys.readouterr().out
        for text in shown:
            assert text in out, (command, text, out)
        assert main(argv + ["--json"]) == 0, command
        assert holds(json.loads(capsys.readouterr().out)), command
    assert main(["round", "1", "--node", hub.url]) == 0
    out = capsys.readouterr().out
    assert f"{len(round1['updates'])} update(s)" in out and "accepted" in out
    assert main(["block", "nope", "--node", hub.url]) == 1  # an error answer: one line, status 1
    err = capsys.readouterr().err
    assert err.startswith("node.py block: ") and len(err.strip().splitlines()) == 1


def test_a_late_node_catches_up(network):
    net, _, genesis, _ = network
    hub = net.nodes[0]
    late = net.start(3, peers=[hub.url], genesis=genesis)  # no data: validates and relays only
    wait_ready(net, [late])
    wait_for(lambda: round_digest(late, ROUNDS) == round_digest(hub, ROUNDS), DEADLINE,
             "the late node's round-3 model", net)
    wait_for(lambda: same_tip([hub, late]), DEADLINE, "the late node's tip", net, interval=0.05)
    # on the late node's own chain (the hub's may have moved on by a reorg since: seen as 4 >= 5)
    closed = (get(late.url, f"/rounds/{ROUNDS}") or {}).get("closed_at")
    assert closed is not None and (get(late.url, "/status") or {}).get("height", 0) >= closed


def test_a_killed_node_restarts_catches_up_and_verifies(network):
    net, *_ = network
    hub, victim = net.nodes[0], net.nodes[1]
    height_before = (get(victim.url, "/status") or {})["height"]
    net.kill(victim)  # SIGKILL: no shutdown code runs
    assert node_py("verify", "--data-dir", str(victim.data_dir)).returncode == 0
    # the rest of the network moves on while it is down
    wait_for(lambda: (get(hub.url, "/status") or {}).get("height", 0) >= height_before + 3,
             DEADLINE, "the hub to mine on", net)
    net.launch(victim)
    wait_ready(net, [victim])
    wait_for(lambda: same_tip([hub, victim]), DEADLINE, "the restarted node's tip", net, interval=0.05)
    r = (get(hub.url, "/status") or {})["round"] - 1
    assert r >= ROUNDS
    wait_for(lambda: same_digest([hub, victim], r), DEADLINE, f"equal round-{r} digests", net)
    net.stop(victim, sig=signal.SIGHUP)  # its terminal closed: a clean stop, like SIGTERM
    assert "signal 1: shutting down" in victim.log_path.read_text()
    proc = node_py("verify", "--data-dir", str(victim.data_dir))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK")
    assert "Traceback" not in (victim.log_path.read_text())

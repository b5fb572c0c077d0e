"""Faults with real processes on 127.0.0.1: nodes killed with SIGKILL at random
moments (the miner mid-search, a learner mid-round) restart, pass ``node.py
verify``, converge to the network's tip and model and lose no update; a node down
for several rounds catches up while the others close rounds by timeout with
fewer updates; a network split in two mining halves converges to the most-work
chain after healing with ``POST /peers``; a peer that accepts connections and
never answers costs timeouts, not liveness. Longer variants (20 kills, timing
figures) are in bench/faults.py."""
from __future__ import annotations

import random
import time

import requests

from learningchain.node.p2p.peers import TIMEOUT
from tests.helpers import KEYS, update_tx
from tests.netutil import (SilentPeer, converged, fault_network, get, lost_txs, main_chain_txs,
                           round_commitments, status, verify, wait_for, wait_ready)
from tests.served import Served

DEADLINE = 45.0


def test_killed_nodes_restart_verify_converge_and_lose_nothing(tmp_path):
    net, parts, genesis, config = fault_network(tmp_path, 3)
    rng = random.Random(7)
    try:
        a = net.start(0, dataset=parts / "node0.npz", genesis=genesis, mine=True)
        wait_ready(net, [a])
        b, c = (net.start(i, peers=[a.url], dataset=parts / f"node{i}.npz", genesis=genesis) for i in (1, 2))
        wait_ready(net, [b, c])
        wait_for(lambda: status(a).get("round", 0) >= 3, DEADLINE, "round 3 on the miner", net)
        for victim, down_rounds in ((a, 0), (c, 2)):  # the miner mid-search, then a learner
            time.sleep(rng.uniform(0.0, 0.5))  # a random moment, not a synchronisation
            before = main_chain_txs(victim.url)
            net.kill(victim)
            proc = verify(victim.data_dir)
            assert proc.returncode == 0 and proc.stdout.startswith("OK"), proc.stdout + proc.stderr
            if down_rounds:
                # the round open at the kill may already hold the victim's update: count from the next
                r0 = status(a)["round"] + 1
                wait_for(lambda: status(a).get("round", 0) >= r0 + down_rounds, DEADLINE,
                         "rounds to close without the dead node", net)
                # quorum is every node: with one down, rounds close by timeout with fewer updates
                closed = round_commitments(a.url, range(r0, r0 + down_rounds))
                assert closed and all(n < config.quorum for n in closed.values()), closed
            net.launch(victim)
            wait_ready(net, [victim])
            wait_for(lambda: converged([a, b, c]), DEADLINE, "tips and models to converge", net, interval=0.05)
            assert lost_txs(before, victim) == [] and lost_txs(before, a) == []
        assert status(a)["round"] > 3
        for node in (a, b, c):
            assert "Traceback" not in node.log_path.read_text()
    finally:
        net.stop_all()


def test_split_network_heals_to_the_most_work_chain(tmp_path):
    net, parts, genesis, config = fault_network(tmp_path, 4)
    try:
        a = net.start(0, dataset=parts / "node0.npz", genesis=genesis, mine=True)
        c = net.start(2, dataset=parts / "node2.npz", genesis=genesis, mine=True)
        wait_ready(net, [a, c])
        b = net.start(1, peers=[a.url], dataset=parts / "node1.npz", genesis=genesis)
        d = net.start(3, peers=[c.url], dataset=parts / "node3.npz", genesis=genesis)
        wait_ready(net, [b, d])
        for group in ((a, b), (c, d)):  # each half mines and closes rounds (by timeout: 2 of 4 updates)
            wait_for(lambda: status(group[0]).get("round", 0) >= 3 and converged(group), DEADLINE,
                     "each half to close rounds", net, interval=0.05)
        assert status(a)["tip"] != status(c)["tip"]
        assert len(get(a.url, "/peers")["peers"]) == 1 and len(get(c.url, "/peers")["peers"]) == 1
        before = {n.name: (status(n), main_chain_txs(n.url)) for n in (a, c)}
        closed = round_commitments(a.url, (1, 2))
        assert closed and all(n < config.quorum for n in closed.values()), closed
        t0 = time.monotonic()
        assert requests.post(a.url + "/peers", json={"url": c.url}, timeout=5).json()["status"] == "pending"
        tip = wait_for(lambda: converged([a, b, c, d]), DEADLINE, "the halves to converge", net, interval=0.05)
        heal_s = time.monotonic() - t0
        final = status(a)
        assert tip and heal_s < DEADLINE
        on_main = [n for n, (s, _) in before.items()
                   if (get(a.url, f"/blocks/{s['height']}") or {}).get("hash") == s["tip"]]
        assert len(on_main) == 1  # exactly one half's chain survives; the other was reorged away
        assert int(final["work"], 16) >= max(int(s["work"], 16) for s, _ in before.values())
        for node in (a, b, c, d):  # still-valid updates of the dropped half are not lost
            for _, txs in before.values():
                assert lost_txs(txs, node) == []
        assert {p["url"] for p in get(b.url, "/peers")["peers"]} >= {a.url}
    finally:
        net.stop_all()


def test_a_silent_peer_costs_timeouts_not_liveness(tmp_path):
    silent = SilentPeer()
    nodes = []
    try:
        a = Served(tmp_path, "a", peers=[silent.url])
        nodes.append(a)
        b = Served(tmp_path, "b", peers=[a.url])
        nodes.append(b)
        wait_for(lambda: len(a.node.peers) == 2, DEADLINE, "a to learn b")
        wait_for(lambda: silent.accepted >= 1, DEADLINE, "a to try the silent peer")
        slowest = 0.0
        for _ in range(20):  # /status never waits on a request to the silent peer: each of those
            t0 = time.monotonic()  # hangs for the whole read timeout (3 s), which would show here
            assert requests.get(a.url + "/status", timeout=5).status_code == 200
            slowest = max(slowest, time.monotonic() - t0)
        assert slowest < TIMEOUT[1] / 2, slowest
        tx = update_tx(a.node.chain, KEYS[0])
        a.node.submit_tx(tx)  # gossip to b works although the silent peer never answers
        wait_for(lambda: b.status()["mempool"] == 1, DEADLINE, "the tx on b")
        block = a.mine_one()
        wait_for(lambda: b.status()["tip"] == block.hash, DEADLINE, "the block on b")
        wait_for(lambda: any(p["url"] == silent.url and p["failures"] >= 1 for p in a.node.peers.snapshot()),
                 DEADLINE, "the silent peer to be marked failed")
        # a compact block naming the silent peer as its source (a sibling of the block, with
        # the work the chain requires and 30 ids under its merkle root): its header is checked
        # first; then one fetch times out, not one per tx (none if the peer is backing off)
        from dataclasses import replace

        from learningchain.ledger.block import Block, merkle_root
        from tests.helpers import mine
        ids = [f"{i:064x}" for i in range(30)]
        sibling = replace(block.header, merkle_root=merkle_root([bytes.fromhex(i) for i in ids]).hex(), nonce=0)
        sibling = mine(Block(sibling)).header
        compact = {"header": sibling.to_dict(), "commitment": None, "txids": ids}
        t0 = time.monotonic()
        r = requests.post(b.url + "/blocks", json={"compact": compact}, headers={"X-Peer": silent.url},
                          timeout=TIMEOUT[0] + TIMEOUT[1] + 10)
        assert (r.status_code, r.json().get("status") or r.json().get("reason")) in (
            (202, "missing-txs"), (400, "compact-unknown-peer")), r.text
        assert time.monotonic() - t0 < 2 * (TIMEOUT[0] + TIMEOUT[1])  # one timeout; one per tx: 30
        assert b.status()["height"] == 1
    finally:
        for s in nodes:
            s.close()
        silent.close()


def test_a_restarted_node_finds_the_peers_it_had_learned_when_its_bootstrap_is_gone(tmp_path):
    """Issue 10 item 14: learned peers lived in memory only, so a node whose
    ``--peers`` are gone and whom nobody knows stayed isolated for good. A stopping
    node saves its table in ``peers.json``; at start the saved peers are offered
    again (each joins after its handshake)."""
    import json

    from learningchain.node.p2p.peer_file import FILE_NAME, save_peers
    net, parts, genesis, config = fault_network(tmp_path, 4)
    try:
        hub = net.start(0, dataset=parts / "node0.npz", genesis=genesis)
        wait_ready(net, [hub])
        miner, b = (net.start(i, peers=[hub.url], dataset=parts / f"node{i}.npz", genesis=genesis, mine=i == 1)
                    for i in (1, 2))
        wait_ready(net, [miner, b])
        wait_for(lambda: miner.url in {p["url"] for p in (get(b.url, "/peers") or {}).get("peers", [])},
                 DEADLINE, "b to learn the miner from the hub", net)
        net.stop(b)
        saved = json.loads((b.data_dir / FILE_NAME).read_text())["peers"]
        assert miner.url in saved and hub.url in saved
        # a node nobody knows, no --peers, only the list its last run saved
        fresh = tmp_path / "nodes" / "node3"
        fresh.mkdir(parents=True, exist_ok=True)  # its key is made (allow-listed) by fault_network
        save_peers(fresh, [miner.url, f"http://127.0.0.1:{hub.port + 7}"])  # one of them is gone
        d = net.start(3, dataset=parts / "node3.npz", genesis=genesis, data_dir=fresh)
        wait_ready(net, [d])
        height = status(miner).get("height", 0)
        wait_for(lambda: status(d).get("height", 0) > height, DEADLINE, "d to sync from its saved peer", net)
        wait_for(lambda: converged([miner, d]), DEADLINE, "d and the miner to agree", net)
    finally:
        net.stop_all()

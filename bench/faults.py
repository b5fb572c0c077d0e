"""Hostile inputs and faults against real node processes on 127.0.0.1: the long
variants of tests/system/test_hostile.py, tests/system/test_fuzz.py and tests/system/test_faults.py.

1. Inputs: random mutations of a valid signed tx and a valid mined block, garbage
   HTTP requests and bad peer URLs, sent to a ``node.py run`` process. Counted:
   tried, refused (4xx), accepted although invalid (a 202 for anything but the
   genuine document), crashes (5xx, a dropped connection or a dead process).
2. Kills: a 3-node network (one miner) where a random node, the miner included,
   is SIGKILLed at a random moment ``--kills`` times; after each, ``node.py verify``
   on its store, restart, time to converge (same tip and model on every node),
   and updates lost (on a main chain before, still valid, now nowhere).
3. Partition: 4 nodes in two mining halves, healed with POST /peers; time until
   all four share tip and model.

Prints figures; asserts nothing.  ``.venv/bin/python bench/faults.py [--kills 20]``
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learningchain.ledger.chain import Chain  # noqa: E402
from learningchain.cli.processes import Network, wait_for, wait_ready  # noqa: E402
from learningchain.ledger.genesis import make_genesis  # noqa: E402
from tests.helpers import EASY, KEYS, next_block, tiny_config, update_tx  # noqa: E402
from tests.netutil import (converged, fault_network, lost_txs, main_chain_txs, round_commitments,  # noqa: E402
                           status, verify)

TARGET = EASY >> 12  # a mutated header meets it with probability 2^-16
CONFIG = tiny_config(initial_target=TARGET, pow_limit=TARGET, allow_list=[k.public_hex for k in KEYS[:8]])
JUNK = [None, True, -1, 0, 2**64, 1.5, "", "00" * 32, "zz", [], {}, [1, 2], {"a": 1}, "ff" * 33]


def mutate(doc, rng: random.Random):
    doc = copy.deepcopy(doc)
    paths, stack = [], [((), doc)]
    while stack:
        path, node = stack.pop()
        paths.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack += [(path + (k,), v) for k, v in items]
    path = rng.choice(paths[1:])
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    old = parent[path[-1]]
    action = rng.random()
    if action < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action < 0.25 and isinstance(parent, dict):
        parent["x" + str(rng.randrange(9))] = rng.choice(JUNK)
    elif isinstance(old, str) and old and action < 0.7:  # flip one character
        i = rng.randrange(len(old))
        parent[path[-1]] = old[:i] + rng.choice("0123456789abcdef+/=A") + old[i + 1:]
    elif isinstance(old, int) and not isinstance(old, bool) and action < 0.8:
        parent[path[-1]] = old + rng.choice([-1, 1, 2**32])
    else:
        parent[path[-1]] = rng.choice(JUNK)
    return doc


class Tally:
    def __init__(self):
        self.rows: dict[str, list[int]] = {}

    def add(self, cls: str, refused: bool, accepted_invalid: bool, crash: bool) -> None:
        row = self.rows.setdefault(cls, [0, 0, 0, 0])
        row[0] += 1
        row[1] += refused
        row[2] += accepted_invalid
        row[3] += crash


def send(url: str, method: str, path: str, body: bytes | None, ctype: str | None):
    try:
        r = requests.request(method, url + path, data=body, timeout=15,
                             headers={"Content-Type": ctype} if ctype else {})
        return r.status_code, (r.json() if r.headers.get("Content-Type", "").startswith("application/json")
                               else None)
    except (requests.RequestException, ValueError):
        return None, None


def inputs(out: Path, n: int, tally: Tally) -> None:
    out.mkdir(parents=True, exist_ok=True)
    genesis = out / "genesis.json"
    genesis.write_text(json.dumps(CONFIG.to_dict()))
    net = Network(out)
    rng = random.Random(1)
    try:
        node = net.start(0, genesis=genesis)
        wait_ready(net, [node])
        mirror = Chain(make_genesis(CONFIG))
        tx = update_tx(mirror, KEYS[0])
        block = next_block(mirror, [update_tx(mirror, KEYS[1])])
        for _ in range(n):  # transactions
            doc = mutate(tx.to_dict(), rng)
            code, reply = send(node.url, "POST", "/txs", json.dumps(doc).encode(), "application/json")
            ok = code == 202
            tally.add("tx (mutated)", code is not None and 400 <= code < 500,
                      ok and reply.get("id") != tx.id, code is None or code >= 500)
        for _ in range(n):  # blocks
            doc = mutate(block.to_dict(), rng)
            code, reply = send(node.url, "POST", "/blocks", json.dumps(doc).encode(), "application/json")
            bad = (code == 202 and reply.get("status") in ("connected", "reorg", "side")
                   and reply.get("hash") != block.hash)
            tally.add("block (mutated)", code is not None and (400 <= code < 500 or (code == 202 and reply.get(
                "status") in ("orphan", "missing-txs", "known"))), bad, code is None or code >= 500)
        bodies = [b"{", b'{"a": NaN}', b"[" * 50 + b"]" * 50, b"\xff\xfe", b"9" * 5000, b'{"x": 1e400}',
                  b"", b"null", b"[]", b" " * (5 << 20)]
        paths = ["/txs", "/blocks", "/peers", "/mining/submit", "/sync/blocks", "/inv", "/txs/..%2F..%2Fx",
                 "/blocks/%C2%B2", "/rounds/-1", "/chain?limit=x", "/nope", "/blocks/" + "AB" * 32]
        for i in range(n):  # HTTP garbage
            method = rng.choice(["GET", "POST", "PUT", "DELETE"])
            ctype = rng.choice(["application/json", "text/plain", None])
            body = rng.choice(bodies) if method != "GET" else None
            code, _ = send(node.url, method, rng.choice(paths), body, ctype)
            tally.add("HTTP garbage", code is not None and 400 <= code < 500, code is not None and code < 300
                      and method != "GET", code is None or code >= 500)
        for i in range(n // 4):  # peer URLs
            bad = rng.choice(["file:///etc/passwd", "ftp://127.0.0.1/", "javascript:x", "gopher://h:70",
                              "http://u:p@127.0.0.1:1", "127.0.0.1:5000", "http://", "http://h:99999",
                              "http://h/?q=1", "x" * 300])
            bad += "" if bad == "http://" or rng.random() < 0.5 else str(i)  # "http://7" is a valid URL
            code, _ = send(node.url, "POST", "/peers", json.dumps({"url": bad}).encode(), "application/json")
            tally.add("peer URL (not http)", code == 400, code == 200, code is None or code >= 500)
        s = status(node)
        alive = net.nodes[0].popen.poll() is None and bool(s)
        tally.add("node alive after inputs", alive, False, not alive)
        print(f"inputs: node refused {sum(s.get('refused', {}).values())} requests by reason "
              f"({len(s.get('refused', {}))} reasons), height {s.get('height')}, mempool {s.get('mempool')}")
    finally:
        net.stop_all()


def kills(out: Path, n_kills: int) -> dict:
    net, parts, genesis, config = fault_network(out, 3)
    rng = random.Random(2)
    res = {"kills": 0, "verified": 0, "survived": 0, "lost": 0, "converge": [], "timeout_rounds": 0}
    try:
        a = net.start(0, dataset=parts / "node0.npz", genesis=genesis, mine=True)
        wait_ready(net, [a])
        rest = [net.start(i, peers=[a.url], dataset=parts / f"node{i}.npz", genesis=genesis) for i in (1, 2)]
        wait_ready(net, rest)
        nodes = [a, *rest]
        wait_for(lambda: status(a).get("round", 0) >= 2, 60, "round 2", net)
        for k in range(n_kills):
            victim = rng.choice(nodes)
            time.sleep(rng.uniform(0.0, 1.5))  # a random moment of mining / training / aggregation
            before = main_chain_txs(victim.url)
            net.kill(victim)
            res["kills"] += 1
            if verify(victim.data_dir).returncode == 0:
                res["verified"] += 1
            if victim is not a and rng.random() < 0.3:  # sometimes stay down for a couple of rounds
                r0 = status(a).get("round", 0)
                wait_for(lambda: status(a).get("round", 0) >= r0 + 2, 60, "rounds without it", net)
                res["timeout_rounds"] += sum(1 for u in round_commitments(a.url, range(r0, r0 + 2)).values()
                                             if u < config.quorum)
            net.launch(victim)
            t0 = time.monotonic()
            wait_ready(net, [victim], timeout=60)
            wait_for(lambda: converged(nodes), 60, "convergence", net, interval=0.05)
            res["converge"].append(time.monotonic() - t0)
            res["lost"] += len(lost_txs(before, victim))
            res["survived"] += 1
        res["final_round"] = status(a).get("round")
        res["tracebacks"] = sum("Traceback" in n.log_path.read_text(errors="replace") for n in nodes)
    finally:
        net.stop_all()
    return res


def partition(out: Path) -> dict:
    net, parts, genesis, _ = fault_network(out, 4)
    try:
        a = net.start(0, dataset=parts / "node0.npz", genesis=genesis, mine=True)
        c = net.start(2, dataset=parts / "node2.npz", genesis=genesis, mine=True)
        wait_ready(net, [a, c])
        b = net.start(1, peers=[a.url], dataset=parts / "node1.npz", genesis=genesis)
        d = net.start(3, peers=[c.url], dataset=parts / "node3.npz", genesis=genesis)
        wait_ready(net, [b, d])
        for g in ((a, b), (c, d)):
            wait_for(lambda: status(g[0]).get("round", 0) >= 4, 60, "each half to mine", net)
        before = {n.name: (status(n), main_chain_txs(n.url)) for n in (a, c)}
        t0 = time.monotonic()
        requests.post(a.url + "/peers", json={"url": c.url}, timeout=5)
        wait_for(lambda: converged([a, b, c, d]), 60, "heal", net, interval=0.05)
        heal = time.monotonic() - t0
        lost = sum(len(lost_txs(txs, n)) for n in (a, b, c, d) for _, txs in before.values())
        heights = {k: s["height"] for k, (s, _) in before.items()}
        return {"heal_s": heal, "lost": lost, "heights": heights, "final": status(a).get("height")}
    finally:
        net.stop_all()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--inputs", type=int, default=300, help="mutated txs, blocks and HTTP requests each")
    args = p.parse_args()
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        inputs(Path(tmp) / "inputs", args.inputs, tally)
        t_inputs = time.monotonic() - t0
        k = kills(Path(tmp) / "kills", args.kills)
        part = partition(Path(tmp) / "split")
    print(f"\n{'input class':<26} {'tried':>6} {'refused':>8} {'accepted-invalid':>17} {'crashes':>8}")
    for cls, (tried, ref, bad, crash) in tally.rows.items():
        print(f"{cls:<26} {tried:>6} {ref:>8} {bad:>17} {crash:>8}")
    print(f"({t_inputs:.1f} s; 'refused' = 4xx, or for blocks also orphan/known/missing-txs; "
          f"mutations that leave a document valid count as neither)")
    conv = k["converge"]
    print(f"\n{'fault':<44} {'figure':>20}")
    rows = [("SIGKILLs at random moments (3 nodes)", f"{k['kills']}"),
            ("stores passing node.py verify after kill", f"{k['verified']}/{k['kills']}"),
            ("restarts survived (rejoined and converged)", f"{k['survived']}/{k['kills']}"),
            ("convergence after restart, median / max", f"{statistics.median(conv):.1f} / {max(conv):.1f} s"
             if conv else "-"),
            ("updates lost across kills", f"{k['lost']}"),
            ("rounds closed by timeout while a node was down", f"{k['timeout_rounds']}"),
            ("round reached by the network", f"{k.get('final_round')}"),
            ("node logs with a Traceback", f"{k.get('tracebacks')}"),
            ("split: heights of the halves at heal", f"{part['heights']}"),
            ("split: convergence after heal (POST /peers)", f"{part['heal_s']:.1f} s"),
            ("split: still-valid updates lost", f"{part['lost']}")]
    for name, fig in rows:
        print(f"{name:<44} {fig:>20}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

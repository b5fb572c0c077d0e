"""Sync and compact-block attacks (issue 10 items 2, 3 and 10's side branches).

* ``partition-heal``: two mining halves of one network apart until each holds
  more than 100 blocks past the fork, then joined with ``POST /peers``: the
  lighter half must reorg onto the heavier chain (headers-first sync), at a
  depth the old page-by-page block sync never followed.
* ``compact-flood``: an outsider that got itself into a node's peer table sends
  compact blocks with bad or cheap headers on a known parent, each naming 400
  tx ids it would serve: the node must fetch nothing, keep its memory and keep
  closing rounds.
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from learningchain import data
from learningchain.block import BlockHeader, merkle_root
from learningchain.demo import Network, get, wait_ready
from learningchain.genesis import default_config
from tests.adversary import Outcome, agree, honest_network, rounds_close, rss_mb, scenario
from tests.netutil import converged, status

HEAL_DEPTH = 100      # blocks past the fork on each side before the halves meet
HEAL_DEADLINE = 60.0  # seconds for the halves to agree once joined


def _reorgs(log: Path) -> list[int]:
    """Blocks disconnected by each reorg a node logged."""
    return [int(m) for m in re.findall(r"reorg: (\d+) block\(s\) out", log.read_text(errors="replace"))]


@scenario("partition-heal")
def partition_heal(out: Path) -> Outcome:
    parts = data.write_partitions(out / "parts", "digits", 3, "iid")
    config = default_config(3, dataset="digits", kind="softmax", round_timeout=6, target_block_ms=100)
    genesis = out / "genesis.json"
    genesis.write_text(json.dumps(config.to_dict()))
    net = Network(out)
    try:
        # half A: a miner and a learner; half C: a miner. Nobody knows the other half.
        a = net.start(0, dataset=parts / "node0.npz", genesis=genesis, mine=True)
        c = net.start(2, dataset=parts / "node2.npz", genesis=genesis, mine=True)
        wait_ready(net, [a, c])
        b = net.start(1, peers=[a.url], dataset=parts / "node1.npz", genesis=genesis)
        wait_ready(net, [b])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            net.check_alive()
            if min(status(n).get("height", 0) for n in (a, c)) > HEAL_DEPTH and converged([a, b]):
                break
            time.sleep(0.2)
        before = {n.name: status(n) for n in (a, c)}
        apart = [s.get("height", 0) for s in before.values()]
        lighter, heavier = sorted((a, c), key=lambda n: int(before[n.name]["work"], 16))
        t0 = time.monotonic()
        requests.post(a.url + "/peers", json={"url": c.url}, timeout=5)
        healed = None
        while time.monotonic() < t0 + HEAL_DEADLINE and not healed:
            net.check_alive()
            healed = converged([a, b, c])
            time.sleep(0.1)
        heal_s = time.monotonic() - t0
        old_tip_kept = {n.name: (get(heavier.url, f"/blocks/{before[n.name]['height']}") or {}).get("hash")
                        == before[n.name]["tip"] for n in (a, c)}
        deepest = max(_reorgs(lighter.log_path) or [0])
        closing = bool(healed) and rounds_close([a, b, c], more=2, timeout=40)
        one = agree([a, b, c], timeout=30)
        ok = (bool(healed) and min(apart) > HEAL_DEPTH and old_tip_kept[heavier.name]
              and not old_tip_kept[lighter.name] and deepest > HEAL_DEPTH)
        return Outcome("partition-heal",
                       f"two mining halves apart until heights {apart[0]} and {apart[1]} (fork at genesis), "
                       f"then joined with POST /peers",
                       f"{'healed' if healed else 'did NOT heal'} in {heal_s:.1f} s: the lighter half "
                       f"({lighter.name}) reorged {deepest} blocks onto the heavier chain",
                       rounds_kept_closing=closing, one_chain_one_model=one, ok=ok,
                       details={"heights_apart": apart, "heal_seconds": round(heal_s, 1), "reorg_depth": deepest,
                                "old_tip_kept": old_tip_kept})
    finally:
        net.stop_all()

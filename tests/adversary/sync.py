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
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import requests

from learningchain.learning import data
from learningchain.ledger.block import BlockHeader, merkle_root
from learningchain.cli.processes import Network, get, wait_ready
from learningchain.ledger.genesis import default_config
from tests.adversary import Outcome, agree, honest_network, rounds_close, rss_mb, scenario
from tests.netutil import one_chain, status
from tests.served import serve_handler, stop_server

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
            if min(status(n).get("height", 0) for n in (a, c)) > HEAL_DEPTH and one_chain([a, b]):
                break
            time.sleep(0.2)
        before = {n.name: status(n) for n in (a, c)}
        apart = [s.get("height", 0) for s in before.values()]
        t0 = time.monotonic()
        requests.post(a.url + "/peers", json={"url": c.url}, timeout=5)
        healed = None
        while time.monotonic() < t0 + HEAL_DEADLINE and not healed:
            net.check_alive()
            healed = one_chain([a, b, c], max(apart))  # past both halves' heights, on one chain
            time.sleep(0.1)
        heal_s = time.monotonic() - t0
        # which half was lighter is read off the healed chain, not off the snapshot:
        # both halves keep mining until they meet, so close heights can swap order
        old_tip_kept = {n.name: (get(a.url, f"/blocks/{before[n.name]['height']}") or {}).get("hash")
                        == before[n.name]["tip"] for n in (a, c)}
        lighter, heavier = (c, a) if old_tip_kept[a.name] else (a, c)
        deepest = max(_reorgs(lighter.log_path) or [0])
        closing = bool(healed) and rounds_close([a, b, c], more=2, timeout=40)
        one = agree([a, b, c])
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


# --- compact-flood ---------------------------------------------------------------

FLOOD_IDS = 400
FLOOD_COPIES = 10  # each kind of bad compact block, sent this many times


class CountingPeer:
    """The attacker's own server on 127.0.0.1: answers every request with ``{}`` (404
    for ``GET /txs/<id>``) and counts what the attacked node asks of it."""

    def __init__(self):
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _answer(self):
                outer.paths.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code = 404 if self.path.startswith("/txs/") else 200
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server, self.url = serve_handler(Handler)

    def tx_fetches(self) -> int:
        return sum(p.startswith("/txs/") for p in self.paths)

    def close(self) -> None:
        stop_server(self.server)


def _flood_header(parent: dict, ids: list[str], target: int, mined: bool, miner: str) -> dict:
    """A header on ``parent`` (a header document) committing to ``ids``, mined to
    ``target`` or (``mined`` False) with a nonce that misses it."""
    from learningchain.ledger.block import commitment_hash_of
    from miner.pow import search
    header = BlockHeader(height=parent["height"] + 1, prev_hash=BlockHeader.parse(parent).hash,
                         merkle_root=merkle_root([bytes.fromhex(i) for i in ids]).hex(),
                         commitment_hash=commitment_hash_of(None, None),
                         timestamp=max(int(time.time() * 1000), parent["timestamp"] + 1), target=target, miner=miner)
    nonce = 0
    while True:
        found, _ = search(header.prefix(), target, nonce, 1 << 22)
        if found is not None:
            break
        nonce += 1 << 22
    header = header.with_nonce(found)
    if not mined:
        while header.check_pow():
            header = header.with_nonce(header.nonce + 1)
    return header.to_dict()


@scenario("compact-flood")
def compact_flood(out: Path) -> Outcome:
    from concurrent.futures import ThreadPoolExecutor

    from learningchain.core.crypto import PrivateKey
    h = honest_network(out, 3)
    attacker = CountingPeer()
    try:
        victim = h.nodes[1]
        deadline = time.monotonic() + 60  # deep enough that a fork at genesis is far below the tip
        while (status(victim).get("height") or 0) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        requests.post(victim.url + "/peers", json={"url": attacker.url}, timeout=5)  # now in its peer table
        rss0 = rss_mb(victim.popen.pid)
        key = PrivateKey.from_secret(4242)
        ids = [f"{i:064x}" for i in range(1, FLOOD_IDS + 1)]
        tip = get(victim.url, "/tip")
        parent = get(victim.url, f"/blocks/{tip['tip']}")["header"]
        genesis = get(victim.url, "/blocks/0")["header"]
        need = int(parent["target"], 16)  # the target a child of the tip carries (mid-window)
        kinds = {  # what the attacker sends: none of these is worth a fetch
            "easiest target (pow_limit) on the tip": _flood_header(parent, ids, h.config.pow_limit, True,
                                                                   key.public_hex),
            "the required target, not met": _flood_header(parent, ids, need, False, key.public_hex),
            "a real header on genesis (deep fork)": _flood_header(genesis, ids, h.config.initial_target, True,
                                                                  key.public_hex),
        }
        reasons: dict[str, set] = {k: set() for k in kinds}

        def send(kind: str) -> None:
            doc = {"compact": {"header": kinds[kind], "commitment": None, "txids": ids}}
            try:
                r = requests.post(victim.url + "/blocks", json=doc, headers={"X-Peer": attacker.url}, timeout=30)
                reasons[kind].add(r.json().get("reason") or r.json().get("status"))
            except (requests.RequestException, ValueError) as exc:
                reasons[kind].add(type(exc).__name__)
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, [k for k in kinds for _ in range(FLOOD_COPIES)]))
        flood_s = time.monotonic() - t0
        rss1 = rss_mb(victim.popen.pid)
        fetched = attacker.tx_fetches()
        closing = rounds_close(h.nodes)
        one = agree(h.nodes)
        grew = rss1 - rss0
        refused = all(r and all(x and x.startswith("block-") for x in r) for r in reasons.values())
        ok = fetched == 0 and grew < 50 and refused
        return Outcome("compact-flood",
                       f"{len(kinds) * FLOOD_COPIES} compact blocks ({', '.join(kinds)}) each naming "
                       f"{FLOOD_IDS} tx ids served by the attacker, 8 at a time",
                       f"{fetched} tx fetches from the attacker, refused as "
                       f"{sorted(set().union(*reasons.values()))} in {flood_s:.1f} s; "
                       f"RSS {rss0:.0f} -> {rss1:.0f} MB",
                       rounds_kept_closing=closing, one_chain_one_model=one, ok=ok,
                       details={"fetches": fetched, "rss_mb": [round(rss0), round(rss1)],
                                "reasons": {k: sorted(v) for k, v in reasons.items()}})
    finally:
        attacker.close()
        h.net.stop_all()


# --- deep-fork ----------------------------------------------------------------------

@scenario("deep-fork")
def deep_fork(out: Path) -> Outcome:
    """Issue 10 item 10 (side branches): valid blocks forking from deep history,
    posted unrequested, must not be stored."""
    from learningchain.ledger.block import Block, commitment_hash_of
    from learningchain.core.crypto import PrivateKey
    from miner.pow import search
    h = honest_network(out, 3)
    try:
        victim = h.nodes[1]
        deadline = time.monotonic() + 60
        while (status(victim).get("height") or 0) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        key = PrivateKey.from_secret(4343)
        reasons = []
        for height in (0, 1, 2):  # children of genesis and of two early blocks: full work each
            parent = get(victim.url, f"/blocks/{height}")["header"]
            header = BlockHeader(height=height + 1, prev_hash=BlockHeader.parse(parent).hash,
                                 merkle_root=merkle_root([]).hex(), commitment_hash=commitment_hash_of(None, None),
                                 timestamp=parent["timestamp"] + 1, target=int(parent["target"], 16),
                                 miner=key.public_hex)
            nonce, _ = search(header.prefix(), header.target, 0, 1 << 40)
            block = Block(header.with_nonce(nonce))
            r = requests.post(victim.url + "/blocks", json=block.to_dict(), timeout=10)
            reasons.append(r.json().get("reason") or r.json().get("status"))
        s = status(victim)
        stored = s.get("side_blocks", 0)
        closing = rounds_close(h.nodes)
        one = agree(h.nodes)
        ok = stored == 0 and all(r == "block-side-work-too-low" for r in reasons)
        return Outcome("deep-fork", "3 valid blocks (the work their parents require) forking from heights 0-2 "
                                    f"of a chain at height {s.get('height')}, posted unrequested",
                       f"answered {sorted(set(reasons))}; {stored} side blocks stored",
                       rounds_kept_closing=closing, one_chain_one_model=one, ok=ok,
                       details={"reasons": reasons, "side_blocks": stored})
    finally:
        h.net.stop_all()

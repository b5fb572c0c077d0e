"""Attacks on the consensus rules themselves: documents every rule accepts but
some decoder cannot read back (nesting-bomb), and timestamps that bend the
retarget (time-warp). Issue 10 items 1 and 10."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from learningchain.core import crypto, errors
from learningchain.node import keyfile
from learningchain.ledger.block import Block
from learningchain.ledger.chain import Chain
from learningchain.core.encoding import decode_weights
from learningchain.ledger.header_rules import next_target
from learningchain.ledger.tx import UpdateTx
from tests.adversary import Outcome, agree, get, honest_network, poll, rounds_close, scenario
from tests.helpers import mine, rebuild
from tests.netutil import status, verify

ATTACKER = crypto.PrivateKey.from_secret(0xBAD)
#: metric names full of what a careless JSON pre-scan miscounts: brackets,
#: braces, quotes and backslashes inside strings (each at most 32 code points).
BOMB_NAMES = (["[" * 28, "[" * 32, "{" * 32, '"[' * 16, "\\[" * 16, '\\"{' * 10, "]" * 32, "[{" * 16, '"' * 32,
               "}" * 32, '{"' * 16, "\\" * 32, "[" * 31 + "\\", '["{' * 10, "\n[" * 16, "{[" * 16])




def _bomb_tx(node, key: crypto.PrivateKey, names: list[str]) -> UpdateTx:
    """A valid update for the open round (G(r-1) unchanged, honest-looking) whose
    metric names are ``names``."""
    model = get(node.url, "/model")
    weights = decode_weights(model["weights"])
    return UpdateTx.create(key, model["round"] + 1, model["digest"],
                           {k: v.astype(np.float32) for k, v in weights.items()}, 10,
                           {name: 0.5 for name in names})


def _submit_bomb(h, names: list[str], seconds: float = 90.0) -> str | None:
    """Send one bomb tx, from a fresh key or (on a permissioned network) a
    learner's own key; return its id once mined into the main chain. A tx that
    a round closed without (late under load: the learners' quorum came first)
    is sent again, for the round then open, until ``seconds`` run out."""
    keys = [ATTACKER] + [keyfile.load_or_create_key(n.data_dir) for n in reversed(h.nodes)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r0 = status(h.nodes[0]).get("round")
        for key in keys:
            tx = _bomb_tx(h.nodes[0], key, names)
            if requests.post(h.nodes[0].url + "/txs", json=tx.to_dict(), timeout=10).status_code == 202:
                break
        else:  # every key has an update in this round already: wait for the next one
            poll(lambda: status(h.nodes[0]).get("round") != r0, 20)
            continue
        # confirmed, or its round closed without it (then it is never mined: send anew)
        state = poll(lambda: "confirmed" if (get(h.nodes[0].url, f"/txs/{tx.id}") or {}).get("status")
                     == "confirmed" else ("late" if (status(h.nodes[0]).get("round") or 0) > tx.round
                                          else None), 30)
        if state == "confirmed":
            return tx.id
    return None


@scenario("nesting-bomb")
def nesting_bomb(out: Path) -> Outcome:
    """Txs whose metric names are full of '[', '{' and '"' are valid; once mined,
    every node must still replay its store, restart, and a fresh node must sync.
    On the code before the fix (measured): the first tx was mined, the
    restarted node never came up, the fresh node never synced, and node.py
    verify said BROKEN ("nested deeper than 32 levels") on 3 of 4 stores."""
    h = honest_network(out, 3)
    try:
        # the tx (one name of 28 '['), then one with 16 names of every kind, in 2 rounds
        mined = [_submit_bomb(h, ["[" * 28]), _submit_bomb(h, BOMB_NAMES)]
        victim = h.nodes[1]
        h.net.stop(victim)
        h.net.launch(victim)
        restarted = poll(lambda: status(victim).get("height") is not None, 30) is not None
        joined_at = status(h.nodes[0]).get("height") or 1  # the chain, bombs included, when it joins
        fresh = h.net.start(len(h.nodes), peers=[h.nodes[0].url], dataset=h.parts / "node0.npz",
                            genesis=h.genesis)
        nodes = h.nodes + [fresh]
        # a fixed target: the network keeps mining, and under load a fresh node can
        # stay a block or two behind a moving tip for a while (agree() checks the rest)
        synced = poll(lambda: (status(fresh).get("height") or 0) >= joined_at, 40)
        kept = rounds_close(h.nodes)
        one = agree(nodes)
        h.net.stop_all()  # the stores are checked at rest, without the network's CPU load
        with ThreadPoolExecutor(2) as pool:  # node.py verify of every store, side by side
            checks = dict(zip((n.name for n in nodes), pool.map(lambda n: verify(n.data_dir), nodes)))
        verified = {name: p.returncode == 0 for name, p in checks.items()}
        ok = all(mined) and restarted and bool(synced) and all(verified.values())
        return Outcome("nesting-bomb",
                       f"a tx with a metric named 28 '[', then one with {len(BOMB_NAMES)} names of brackets, "
                       f"quotes and backslashes ({sum(map(len, BOMB_NAMES))} chars)",
                       f"mined {sum(map(bool, mined))}/2; restarted node up: {restarted}; fresh node synced: "
                       f"{bool(synced)}; verify OK on {sum(verified.values())}/{len(verified)} stores",
                       rounds_kept_closing=kept, one_chain_one_model=one, ok=ok,
                       details={"verify": {k: (p.stdout + p.stderr)[-300:] for k, p in checks.items()}})
    finally:
        h.net.stop_all()


def _mirror(node) -> Chain:
    """A Chain in this process holding the node's main chain (validated here)."""
    chain = Chain(Block.parse({k: v for k, v in get(node.url, "/blocks/0").items() if k != "hash"}))
    _catch_up(chain, node)
    return chain


def _catch_up(chain: Chain, node) -> None:
    tip = status(node).get("height") or 0
    for height in range(chain.height + 1, tip + 1):
        doc = get(node.url, f"/blocks/{height}")
        if not doc:
            return
        block = Block.parse({k: v for k, v in doc.items() if k != "hash"})
        if block.header.prev_hash != chain.tip.hash:
            return  # the node reorganised meanwhile: stop here, retry later
        chain.add_block(block, int(time.time() * 1000) + 10_000)


def _post_block(node, block: Block) -> tuple[int, dict]:
    r = requests.post(node.url + "/blocks", json=block.to_dict(), timeout=30)
    return r.status_code, r.json()


@scenario("time-warp")
def time_warp(out: Path) -> Outcome:
    """A block stamped at the edge of the clock allowance at the end of a
    retarget window, then a block claiming the easier target the old rule
    granted (4x): the node must accept the first (it is valid), require for
    the next exactly the clamped rule (not easier), and the network keep one
    chain. On the code before the fix (measured): the block at now+60 s was
    accepted, the next target required was 4.00x easier, and the 4x-easier
    block was accepted."""
    h = honest_network(out, 3)
    try:
        node = h.nodes[0]
        config = h.config
        window = config.retarget_window
        mirror = _mirror(node)
        genesis = mirror.block_at(0)
        miner = ATTACKER.public_hex

        def at_window_end() -> bool:
            _catch_up(mirror, node)
            return mirror.height >= 2 * window - 2 and mirror.height % window == window - 2
        lost_race = errors.BLOCK_SIDE_WORK_TOO_LOW
        code = easy_code = fair_code = 0
        reply, easy_reply, fair_reply = {}, {}, {}
        required, parent_target = 0, 1
        attempts = 4
        for attempt in range(attempts):  # the honest chain may run 6 blocks ahead while we mine (a
            # loaded machine): a block of ours is then refused side-work-too-low, which the node checks
            # before the target; the whole attack is then tried again at the next window end
            if not poll(at_window_end, 90, 0.02):
                return Outcome("time-warp", "never reached a window end", "-", False, False, ok=False)
            stamp = int(time.time() * 1000) + config.max_future_ms
            warped = mine(mirror.build_block(miner, [], stamp))
            code, reply = _post_block(node, warped)
            if reply.get("reason") == lost_race:
                continue
            mirror.add_block(warped, stamp)
            required = next_target(mirror.tip_entry, config)
            parent_target = warped.header.target
            after = mirror.build_block(miner, [], int(time.time() * 1000))
            easy = rebuild(after, target=min(4 * parent_target, config.pow_limit))  # what the old rule gave
            easy_code, easy_reply = _post_block(node, easy)
            fair_code, fair_reply = _post_block(node, mine(after))
            if lost_race not in (easy_reply.get("reason"), fair_reply.get("reason")):
                break
            if attempt < attempts - 1:  # our branch fell behind: start again from the node's main chain
                mirror = Chain(genesis)
                _catch_up(mirror, node)
        warped_ok = code == 202 and reply.get("status") in ("connected", "side", "reorg")
        easy_refused = easy_code == 400 and easy_reply.get("reason") == errors.BLOCK_BAD_TARGET
        fair_ok = fair_code == 202 and fair_reply.get("status") in ("connected", "side", "reorg")
        ratio = required / parent_target
        kept = rounds_close(h.nodes)
        one = agree(h.nodes)
        ok = warped_ok and easy_refused and fair_ok and ratio <= 2
        return Outcome("time-warp",
                       f"block at now+{config.max_future_ms} ms ending a window, then a block with the "
                       f"4x easier target the old rule granted",
                       f"warped block {reply.get('status') or reply.get('reason')}; 4x-easier block "
                       f"{easy_reply.get('reason') or easy_reply.get('status')}; required target x{ratio:.2f} "
                       f"(clamp 2), that block {fair_reply.get('status') or fair_reply.get('reason')}",
                       rounds_kept_closing=kept, one_chain_one_model=one, ok=ok,
                       details={"ratio": ratio, "max_future_ms": config.max_future_ms})
    finally:
        h.net.stop_all()

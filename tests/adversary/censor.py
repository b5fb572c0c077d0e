"""A single miner censoring one participant (issue: "A single miner can also
censor any participant: there is no inclusion rule ... make censorship
visible"). Nothing in the protocol forces a miner to include a valid update,
so the network cannot refuse the censor's blocks; what it must do is make the
censorship visible: every node that held the victim's update for a block or
more before the round closed without it lists it under ``not_included``
(``/rounds/<r>``, and its sender in ``/status``)."""
from __future__ import annotations

import time
from pathlib import Path

import requests

from learningchain.core import crypto
from learningchain.ledger.block import Block
from learningchain.ledger.chain import Chain
from learningchain.ledger.genesis import default_config, make_genesis
from learningchain.ledger.tx import UpdateTx
from tests.adversary import Outcome, agree, get, honest_network, poll, scenario
from tests.helpers import mine
from tests.netutil import status

CENSOR = crypto.PrivateKey.from_secret(0xCE5502)
ROUNDS = 2
VICTIM = 2




def _mempool(node) -> list[dict]:
    return (get(node.url, "/mempool") or {}).get("txs", [])


def _round_txs(h, r: int):
    """Once node 0 holds a round-``r`` update from every learner and every node
    holds the victim's: {sender: tx id} on node 0; else None."""
    on0 = {t["sender"]: t["id"] for t in _mempool(h.nodes[0]) if t["round"] == r}
    if set(on0) != {n.pubkey for n in h.nodes}:
        return None
    victim = h.nodes[VICTIM].pubkey
    if not all(any(t["round"] == r and t["sender"] == victim for t in _mempool(n)) for n in h.nodes):
        return None
    return on0


def _publish(h, block: Block) -> list[str]:
    """POST ``block`` to every node and wait until each has it as its tip's height."""
    replies = []
    for n in h.nodes:
        r = requests.post(n.url + "/blocks", json=block.to_dict(), timeout=30)
        replies.append(r.json().get("status") or r.json().get("reason"))
    poll(lambda: all((status(n).get("height") or 0) >= block.height for n in h.nodes), 20, 0.05)
    return replies


@scenario("miner-censorship")
def miner_censorship(out: Path) -> Outcome:
    """Three learners, nobody mining; the attacker is the only miner. For two
    rounds it waits until every node holds the victim's update, then mines the
    round to its timeout with every other update and never the victim's. The
    rounds close (the censor closes them), but every node must report the
    victim's tx under ``not_included`` for that round."""
    config = default_config(3, dataset="digits", kind="softmax", round_timeout=4, target_block_ms=50)
    h = honest_network(out, 3, miners=0, config=config)
    try:
        victim = h.nodes[VICTIM].pubkey
        mirror = Chain(make_genesis(h.config))
        genesis_hash = (get(h.nodes[0].url, "/blocks/0") or {}).get("hash")
        if genesis_hash != mirror.tip.hash:
            return Outcome("miner-censorship", "mirror genesis differs from the nodes'", "-", False, False,
                           ok=False, details={"node": genesis_hash, "mirror": mirror.tip.hash})
        censored: dict[int, str] = {}      # round -> the victim's tx id we left out
        included: dict[int, int] = {}      # round -> others' updates we included
        statuses: list[str] = []
        blocks = 0
        for _ in range(ROUNDS):
            r = mirror.tip_state.round
            held = poll(lambda: _round_txs(h, r), 60, 0.2)
            if not held:
                return Outcome("miner-censorship", f"round {r}: the learners' updates never all arrived", "-",
                               False, False, ok=False, details={"censored": censored})
            censored[r] = held[victim]
            txs = [UpdateTx.parse(get(h.nodes[0].url, f"/txs/{tid}")["tx"])
                   for sender, tid in sorted(held.items()) if sender != victim]
            included[r] = len(txs)
            while mirror.tip_state.round == r:  # the others' updates first, then empty blocks to the timeout
                now = int(time.time() * 1000)
                block = mine(mirror.build_block(CENSOR.public_hex, txs, now))
                mirror.add_block(block, now + 10_000)
                statuses += _publish(h, block)
                blocks += 1
                txs = []
        # what the real nodes say about each censored round
        closed, accepted_victim, accepted_others, listed, status_listed = {}, {}, {}, {}, {}
        for r, tid in censored.items():
            details = [get(n.url, f"/rounds/{r}") or {} for n in h.nodes]
            closed[r] = all(d.get("status") == "closed" for d in details)
            accepted_victim[r] = any(tid in d.get("accepted", []) for d in details)
            accepted_others[r] = len(details[0].get("accepted", []))
            listed[r] = sum(any(e.get("id") == tid and e.get("sender") == victim
                                for e in d.get("not_included", [])) for d in details)
            status_listed[r] = sum(victim in ((status(n).get("not_included") or {}).get("rounds") or {})
                                   .get(str(r), []) for n in h.nodes)
        kept = all(closed.values())
        one = agree(h.nodes)
        n = len(h.nodes)
        victim_sees = all(any(e.get("id") == tid for e in
                              (get(h.nodes[VICTIM].url, f"/rounds/{r}") or {}).get("not_included", []))
                          for r, tid in censored.items())
        blocks_taken = all(s in ("connected", "known") for s in statuses)
        ok = (blocks_taken and victim_sees and not any(accepted_victim.values())
              and all(c == n for c in listed.values()) and all(c == n for c in status_listed.values()))
        return Outcome("miner-censorship",
                       f"sole miner mined {blocks} blocks over {len(censored)} rounds (timeout "
                       f"{h.config.round_timeout} blocks), including {sum(included.values())} other updates "
                       f"and censoring {len(censored)} updates of node {VICTIM}",
                       f"rounds closed: {sum(closed.values())}/{len(closed)} (accepting "
                       f"{sum(accepted_others.values())} other updates); victim accepted in "
                       f"{sum(accepted_victim.values())}; censored tx in /rounds not_included on "
                       + ", ".join(f"r{r} {c}/{n}" for r, c in listed.items())
                       + " nodes; sender in /status not_included on "
                       + ", ".join(f"r{r} {c}/{n}" for r, c in status_listed.items()) + " nodes",
                       rounds_kept_closing=kept, one_chain_one_model=one, ok=ok,
                       details={"censored": censored, "included": included, "block_statuses": statuses,
                                "listed": listed, "status_listed": status_listed})
    finally:
        h.net.stop_all()

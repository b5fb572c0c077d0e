"""What the API and the explorer show of secure aggregation (docs/api.md):
a round's phase, the heights its phases opened at, its setups, inputs and
unmasks, and once closed the sets of its commitment; and one SA tx as what it
is (a masked input is never decoded to weights: only its length and a digest
of its bytes are shown besides the tx itself)."""
from __future__ import annotations

import hashlib
from typing import Any

from learningchain.ledger.secagg_round import view_of
from learningchain.ledger.secagg_tx import INPUT, SETUP, UNMASK
from learningchain.ledger.txs import is_secagg

KIND_NAMES = {SETUP: "setup", INPUT: "input", UNMASK: "unmask"}


def tx_kind(tx: Any) -> str:
    """"setup", "input", "unmask", "skip" or "update"."""
    if tx is None:
        return "?"
    if is_secagg(tx):
        return KIND_NAMES[tx.kind]
    return "skip" if tx.is_skip else "update"


def tx_summary(tx: Any) -> dict | None:
    """``/txs/<id>`` -> ``secure_aggregation`` of an SA tx; None for a plain one."""
    if not is_secagg(tx):
        return None
    doc: dict = {"kind": tx.kind, "phase": tx.phase}
    if tx.kind == SETUP:
        doc.update(shares=len(tx.sealed), threshold=len(tx.self_commitments))
    elif tx.kind == INPUT:
        raw = tx.input_array.astype("<u4").tobytes()
        doc.update(masked=True, coordinates=int(tx.input_array.size), num_samples=tx.num_samples,
                   input_digest=hashlib.sha256(raw).hexdigest(), complaints=[c[0] for c in tx.complaints],
                   note="a masked input in Z_(2^32): not decodable to weights without the round's masks")
    else:
        doc.update(self_shares=sum(s is not None for s in tx.self_shares),
                   mask_shares=sum(s is not None for s in tx.mask_shares),
                   seeds=sum(s is not None for s in tx.seeds))
    return doc


def round_sa(chain: Any, config: Any, summary: dict) -> dict:
    """``/rounds/<r>`` -> ``secure_aggregation`` (lock held): phase (or "closed"),
    the heights each phase opened at, counts of each tx type, and the
    commitment's counted / dropped / disqualified / failed once closed."""
    r, opened = summary["round"], summary["opened_at"]
    last = summary["closed_at"] if summary["closed_at"] is not None else chain.height
    phases, prev = {"setup": opened}, "setup"
    for h in range(opened + 1, last + 1):
        state = chain.index.at(h).state
        if state.round != r:
            break
        if state.phase != prev:
            phases[state.phase], prev = h, state.phase
    counts = {"setups": 0, "inputs": 0, "unmasks": 0}
    kinds = {SETUP: "setups", INPUT: "inputs", UNMASK: "unmasks"}
    for u in summary["updates"]:
        tx = chain.find_tx(u["id"])
        if tx is not None and is_secagg(tx[0]):
            counts[kinds[tx[0].kind]] += 1
    c = summary.get("commitment") or {}
    doc = {"phase": "closed" if c else prev, "phase_heights": phases, **counts}
    if c:
        sa = c.get("secure_aggregation") or {}
        doc.update(counted=sa.get("counted", []), dropped=sa.get("dropped", []),
                   disqualified=sa.get("disqualified", []), sum_digest=sa.get("sum_digest"),
                   failed=c.get("failed"))
    else:
        view = view_of(chain.tip_state, config)
        doc["threshold"] = config.secure_aggregation.threshold
        doc["roster"] = len(view.roster)
    return doc


def status_sa(chain: Any, config: Any) -> dict | None:
    """``/status`` -> ``secure_aggregation`` (lock held): the open round's phase and
    counts, and the last closed round's counted / dropped / disqualified."""
    p = config.secure_aggregation
    if p is None:
        return None
    state = chain.tip_state
    view = view_of(state, config)
    doc = {"threshold": p.threshold, "phase_timeout": p.phase_timeout, "round": state.round,
           "phase": state.phase, "phase_start": state.phase_start, "roster": len(view.roster),
           "setups": len(view.setups), "inputs": len(view.inputs), "unmasks": len(view.unmasks)}
    closes = chain.round_closes(max(1, state.round - 1))
    if closes:
        r, _height, block_hash = closes[-1]
        c = chain.entry(block_hash).block.commitment or {}
        sa = c.get("secure_aggregation") or {}
        doc["last_closed"] = {"round": r, "counted": len(sa.get("counted", [])),
                              "dropped": len(sa.get("dropped", [])),
                              "disqualified": len(sa.get("disqualified", [])), "failed": c.get("failed")}
    return doc

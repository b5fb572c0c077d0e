"""The exact-sum path of a secure-aggregation simulation: the same participants,
training, L2 clipping, quantisation and Skellam noise shares as
:mod:`learningchain.sim.sa_round`, summed in integers modulo 2^32 exactly as the
unmasked secure-aggregation sum is (the masks cancel: the SA tests prove the
unmasked sum equals this sum), and the model updated by the ledger's own
:func:`learningchain.ledger.secagg_close.new_model`. No setup, masks, shares or
blocks: what it skips is the cryptography, whose cost is O(n^2 t) point
multiplications per round per validator and makes a 100-node SA run take
minutes per round. Every member's input is counted (no dropouts).

For benchmarks only (bench/dp_distributed.py): a run with the real SA rounds
gives the same model bit for bit (tests/test_ddp.py checks it at 10 nodes).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from learningchain.core.encoding import weights_digest
from learningchain.learning import secagg
from learningchain.ledger.secagg_close import new_model
from learningchain.node.secagg_client import flatten
from learningchain.sim.config import SimConfig
from learningchain.sim.errors import SimulationError


def run_exact(cfg: SimConfig, progress: Callable[[dict], None] | None = None) -> dict:
    """``cfg.rounds`` rounds of the exact-sum path; a small results document
    (per-round metrics, final metrics, model digest, privacy reports)."""
    from learningchain.sim.simulator import Simulation
    if not cfg.secure_aggregation or cfg.attack and cfg.byzantine:
        raise SimulationError("the exact-sum path runs a secure-aggregation config without attackers")
    start = time.perf_counter()
    sim = Simulation(cfg)
    params = sim.network.secure_aggregation
    state = sim.ledgers[0].chain.tip_state
    model, r0 = state.model, state.round
    rounds = []
    for r in range(r0, r0 + cfg.rounds):
        base = flatten(model)
        total = np.zeros(base.size, dtype=np.uint32)
        for p in sim.participants:
            flat = flatten(p.train(r, model)) - base
            share = sim.clients[p.key.public_hex].dp
            noise = None
            if share is not None:
                flat, noise = share.prepare(flat, r)
            total += secagg.quantize(flat, params.clip_value, params.scale, noise)
            if p.accountant is not None:
                p.accountant.step()
        model = new_model(model, total, len(sim.participants), params.scale)
        entry = {"round": r, "metrics": sim.evaluate(model)}
        spent = [p.privacy_spent() for p in sim.participants if p.accountant is not None]
        if spent:
            entry.update(epsilon=max(e for e, _ in spent), delta=cfg.dp_delta, dp_mode=cfg.dp_mode)
        rounds.append(entry)
        if progress:
            progress(entry)
    return {"path": "exact-sum (no SA cryptography)", "rounds": rounds, "final": rounds[-1]["metrics"],
            "model_digest": weights_digest(model), "elapsed_s": round(time.perf_counter() - start, 3),
            "privacy": {sim.names[p.key.public_hex]: p.accountant.report()
                        for p in sim.participants if p.accountant is not None}}

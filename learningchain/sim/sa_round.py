"""One simulated round under secure aggregation (docs/protocol.md section 14):
setup, input and unmask as real signed txs gossiped to every full node's
ledger, each phase closed by real mined blocks, exactly as a live network
plays it with :class:`~learningchain.node.secagg_client.SecAggClient`.

Each participant's client holds its per-round secrets. Those secrets are drawn
from a seeded generator (``derive_seed(seed, "secagg", i)``) so a run is
reproducible: an experiment's privacy is that of the protocol, not of its
randomness, exactly as the simulator's ``dp_noise: seeded``. A live node draws
them from ``secrets``.

Dropouts for experiments: ``sa_drop_after_setup`` members (a seeded choice per
round) never send an input, ``sa_drop_after_input`` others never unmask. An
attacker's delta is attacked before quantisation by the honest client's code,
so the clipping range bounds it like everyone's; a real attacker can skip the
clamp and send any value mod 2^32 (docs/learning.md, "Secure aggregation").
"""
from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any

import numpy as np

from learningchain.core.encoding import canonical_json, encode_weights
from learningchain.learning import attacks, ddp, energy, privacy
from learningchain.ledger.block import Block
from learningchain.ledger.secagg_round import roster as sa_roster
from learningchain.ledger.secagg_tx import INPUT, SA_TYPES, SETUP, UNMASK
from learningchain.node.participant import derive_seed
from learningchain.node.secagg_client import SecAggClient, dp_plan, flatten
from learningchain.sim.errors import SimulationError

Simulation = Any  # learningchain.sim.simulator.Simulation (which imports this module)


def sim_dp_plan(sim: "Simulation") -> ddp.Plan | None:
    """Distributed DP: the calibrated Skellam share rate of this network (t members'
    noise gives the target epsilon over the planned rounds), refused if the sum
    could wrap; None in any other mode."""
    plan = dp_plan(sim.cfg.role(), sim.network, sim.ledgers[0].chain.tip_state.model)
    if plan is None:
        return None
    for p in sim.participants:  # the accountant reports the plan's z (>= the Gaussian calibration's)
        p.accountant.noise_multiplier = plan.noise_multiplier()
    return plan


def noise_share(sim: "Simulation", plan: ddp.Plan | None, i: int) -> ddp.NoiseShare | None:
    """Participant ``i``'s noise: seeded per (seed, i) with ``dp_noise: seeded``
    (reproducible, NOT private), OS entropy with ``dp_noise: os``."""
    if plan is None:
        return None
    return ddp.NoiseShare(plan, derive_seed(sim.cfg.seed, "skellam", i) if sim.cfg.dp_noise == "seeded" else None)


def make_clients(sim: "Simulation") -> dict[str, SecAggClient]:
    """One client per participant, its secrets from a seeded generator (see above)."""
    out = {}
    sim.dp_plan = plan = sim_dp_plan(sim)
    for i, p in enumerate(sim.participants):
        rng = random.Random(derive_seed(sim.cfg.seed, "secagg", i))
        out[p.key.public_hex] = SecAggClient(p.key, sim.network, rng.randrange, dp=noise_share(sim, plan, i))
    return out


def drops(seed: int, round: int, keys: list[str], after_setup: int, after_input: int) -> tuple[set, set]:
    """The members that vanish after setup and (others) after input in ``round``."""
    rng = random.Random(derive_seed(seed, "sa-drop", round))
    gone_setup = set(rng.sample(sorted(keys), after_setup))
    rest = sorted(k for k in keys if k not in gone_setup)
    return gone_setup, set(rng.sample(rest, after_input))


def attacked_delta(sim: "Simulation", p: Any, round: int, base, weights, benign, n_total: int,
                   n_byzantine: int) -> np.ndarray:
    """w − G(r−1) in float64 (flat, arrays in sorted name order), the attack applied
    to w first (label-flip already poisoned the training data). Node-level DP
    (``dp_mode node``) noises the update before the attack, as on a live node;
    sample mode's DP-SGD already ran in training."""
    if p.role.mode == "node":
        noise = np.random.default_rng(derive_seed(sim.cfg.seed, p.key.address, round, "noise")) \
            if p.reproducible_noise else privacy.os_rng()
        weights = privacy.privatize(weights, base, p.role.dp_clip, p.sigma, noise)
    if p.role.attack and p.role.attack != "label-flip":
        rng = np.random.default_rng(derive_seed(sim.cfg.seed, p.key.address, round, "noise"))
        weights = attacks.poison_update(p.role.attack, weights, base, rng, benign=benign,
                                        n_total=n_total, n_byzantine=n_byzantine)
    return flatten(weights) - flatten(base)


def run_sa_round(sim: "Simulation") -> dict:
    """Play the open round; its entry of results.json (the plain keys, plus
    ``secure_aggregation``: phase blocks, counted/dropped/disqualified, and the
    bytes each member put on chain by tx type)."""
    from learningchain.sim.results import round_entry
    cfg, chain = sim.cfg, sim.ledgers[0].chain
    params = sim.network.secure_aggregation
    timing: dict[str, float] = defaultdict(float)
    state = chain.tip_state
    r, base, digest = state.round, state.model, state.model_digest
    by_key = {p.key.public_hex: p for p in sim.participants}
    keys = list(sa_roster(state, sim.network))
    gone_setup, gone_input = drops(cfg.seed, r, keys, cfg.sa_drop_after_setup, cfg.sa_drop_after_input)
    sim.activity = act = {name: energy.Activity() for name in sim.energy_profiles}
    sent: dict[str, dict[str, int]] = {k: {kind: 0 for kind in SA_TYPES} for k in keys}
    refused: dict[str, str] = {}
    phase_blocks: dict[str, int] = {}
    input_ids: dict[str, str] = {}

    def send(txs) -> None:
        t0 = time.perf_counter()
        for tx in txs:
            sent[tx.sender][tx.kind] += tx.size
            act[sim.names[tx.sender]].add(sent=tx.size * len(sim.ledgers))
            for j in range(len(sim.ledgers)):
                act[f"full{j}"].add(received=tx.size)
            code = sim.gossip_tx(tx)
            if code:
                refused[tx.id] = code
        timing["submit"] += time.perf_counter() - t0

    def mine_phase(phase: str) -> Block | None:
        """Mine until ``phase`` closes; the block if it ended the round."""
        for _ in range(params.phase_timeout + 2):
            block = sim.mine_one(timing)
            if block.commitment is not None and block.commitment["round"] == r:
                phase_blocks[phase] = block.height
                return block
            if chain.tip_state.phase != phase:
                phase_blocks[phase] = block.height
                return None
        raise SimulationError(f"round {r}: the {phase} phase did not close within {params.phase_timeout + 2} blocks")

    t0 = time.perf_counter()
    setups = [sim.clients[k].setup(r, keys, digest, sim.now_ms) for k in keys]
    timing["sa_client"] += time.perf_counter() - t0
    send(setups)
    closing = mine_phase("setup")
    sim.sa_deltas = {}
    if closing is None:
        senders = [k for k in keys if k not in gone_setup]
        t0 = time.perf_counter()
        trained = {k: by_key[k].train(r, base) for k in senders}
        timing["train"] = time.perf_counter() - t0
        benign = [w for k, w in trained.items() if not by_key[k].attacking]
        n_byz = sum(by_key[k].attacking for k in senders)
        t0 = time.perf_counter()
        ins = []
        for k in senders:
            p = by_key[k]
            act[sim.names[k]].add(sample_epochs=len(p.X) * sim.spec.epochs)
            delta = attacked_delta(sim, p, r, base, trained[k], benign, len(senders), n_byz)
            sim.sa_deltas[k] = delta
            tx = sim.clients[k].input(delta, chain.tip_state, p.published_samples, sim.now_ms)
            if tx is not None:
                ins.append(tx)
                input_ids[k] = tx.id
                if p.accountant is not None:  # distributed DP: one more noised input released
                    p.accountant.step()
        timing["sa_client"] += time.perf_counter() - t0
        send(ins)
        closing = mine_phase("input")
    if closing is None:
        t0 = time.perf_counter()
        outs = [tx for k in keys if k not in gone_setup and k not in gone_input
                and (tx := sim.clients[k].unmask(chain.tip_state, sim.now_ms)) is not None]
        timing["sa_client"] += time.perf_counter() - t0
        send(outs)
        closing = mine_phase("unmask")
    if closing is None:
        raise SimulationError(f"round {r}: the unmask phase closed without a round commitment")
    model_bytes = len(canonical_json(encode_weights(base)))
    for k in keys:
        act[sim.names[k]].add(received=model_bytes)
    t4 = time.perf_counter()
    metrics = sim.evaluate(chain.tip_state.model)
    timing["evaluate"] = time.perf_counter() - t4
    commitment = dict(closing.commitment)
    for txid, code in refused.items():
        commitment["rejected"] = {**commitment["rejected"], txid: f"refused at submit: {code}"}
    attacker_ids = [input_ids[k] for k in input_ids if k in sim.attacker_keys]
    total = sum(sum(v.values()) for v in sent.values())
    spent = [p.privacy_spent() for p in sim.participants if p.accountant is not None]
    eps = max(e for e, _ in spent) if spent else None
    entry = round_entry(r, closing.height, metrics, commitment, attacker_ids, timing, nbytes=total,
                        epsilon=eps, delta=cfg.dp_delta if eps is not None else None)
    if eps is not None:
        entry["dp_mode"] = sim.participants[0].role.mode
    entry["blocks"] = sim.blocks_mined
    sa = commitment["secure_aggregation"]
    entry["secure_aggregation"] = {
        "phase_blocks": phase_blocks, "failed": commitment.get("failed"),
        "setups": len(sa["setups"]), "counted": len(sa["counted"]), "dropped": len(sa["dropped"]),
        "disqualified": len(sa["disqualified"]),
        "dropped_after_setup": sorted(sim.names[k] for k in gone_setup),
        "dropped_after_input": sorted(sim.names[k] for k in gone_input),
        "bytes_per_participant": {kind: _mean([v[kind] for v in sent.values() if v[kind]]) for kind in SA_TYPES},
        "bytes_per_member": total / len(keys), "sum_digest": sa["sum_digest"]}
    sim.activity = None
    entry.update(selected=len(keys), attackers_selected=sum(by_key[k].attacking for k in keys), skipped=0,
                 bytes_per_update=_mean([sum(v.values()) for v in sent.values() if v[SETUP] and v[INPUT]
                                         and v[UNMASK]]),
                 energy=energy.round_energy(sim.energy_profiles, act))
    return entry


def _mean(values: list) -> float:
    return float(sum(values)) / len(values) if values else 0.0

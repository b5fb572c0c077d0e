"""docs/protocol.md is complete: an independent verifier written from it alone
(tests/independent_verifier.py: no learningchain imports, OpenSSL for ECDSA)
accepts the chains our nodes produce and refuses tampered ones."""
import copy
import json

import pytest

from learningchain.simulator import Simulation, SimConfig
from tests.independent_verifier import Invalid, verify_chain, weights_digest, g0


def run(**overrides):
    cfg = SimConfig(**{"nodes": 4, "rounds": 3, "model": "mlp", "difficulty": 64,
                       "model_params": {"hidden": [8], "epochs": 1}, **overrides})
    sim = Simulation(cfg)
    sim.run(with_baselines=False)
    chain = sim.ledgers[0].chain
    blocks = [json.loads(b.serialize()) for b in chain.main_chain(0, chain.height + 1)]
    return sim, chain, blocks


@pytest.fixture(scope="module")
def fedavg_chain():
    return run()


def test_verifier_accepts_our_chain_and_agrees_on_the_model(fedavg_chain):
    sim, chain, blocks = fedavg_chain
    report = verify_chain(blocks, now_ms=sim.now_ms)
    assert report["tip"] == chain.tip.hash and report["height"] == chain.height
    assert report["rounds_closed"] == 3
    assert report["model_digest"] == chain.tip_state.model_digest


def test_g0_from_the_document_matches_the_code(fedavg_chain):
    sim, chain, blocks = fedavg_chain
    genesis_state = chain.state_of(chain.block_at(0).hash)
    assert weights_digest(g0(blocks[0]["config"]["model"])) == genesis_state.model_digest


def test_verifier_follows_timeouts_and_retargets():
    """Empty blocks past the round timeout close rounds without updates, and
    more than one retarget window passes: the document covers both."""
    from collections import defaultdict
    sim, chain, _ = run(rounds=1)
    timing = defaultdict(float)
    for _ in range(45):
        sim.mine_one(timing)
    chain = sim.ledgers[0].chain
    blocks = [json.loads(b.serialize()) for b in chain.main_chain(0, chain.height + 1)]
    assert {b["header"]["target"] for b in blocks[40:]} != {blocks[1]["header"]["target"]}
    report = verify_chain(blocks, now_ms=sim.now_ms)
    assert report["tip"] == chain.tip.hash and report["rounds_closed"] > 5


def test_verifier_refuses_a_forged_aggregate(fedavg_chain):
    sim, chain, blocks = fedavg_chain
    closing = next(i for i, b in enumerate(blocks) if b["commitment"])
    forged = copy.deepcopy(blocks)
    forged[closing]["commitment"]["model_digest"] = "00" * 32
    with pytest.raises(Invalid):
        verify_chain(forged, now_ms=sim.now_ms)


def test_verifier_refuses_a_tampered_signature(fedavg_chain):
    sim, chain, blocks = fedavg_chain
    with_tx = next(i for i, b in enumerate(blocks) if b["txs"])
    forged = copy.deepcopy(blocks)
    tx = forged[with_tx]["txs"][0]
    tx["num_samples"] += 1  # changes the id: the merkle root breaks first
    with pytest.raises(Invalid):
        verify_chain(forged, now_ms=sim.now_ms)


def test_verifier_follows_a_robust_rule_chain():
    sim, chain, blocks = run(nodes=5, aggregator="krum", byzantine=1, attack="sign-flip")
    report = verify_chain(blocks, now_ms=sim.now_ms)
    assert report["model_digest"] == chain.tip_state.model_digest

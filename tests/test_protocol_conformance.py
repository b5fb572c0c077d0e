"""docs/protocol.md is complete: an independent verifier written from it alone
(tests/independent_verifier.py: no learningchain imports, OpenSSL for ECDSA)
accepts the chains our nodes produce and refuses tampered ones."""
import copy
from pathlib import Path
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


@pytest.mark.parametrize("rule,params", [("median", {}), ("multi-krum", {"f": 1, "m": 3})])
def test_verifier_recomputes_median_and_multi_krum_commitments(rule, params):
    """Section 7.1 from the document alone: accepted, rejected with the exact
    reason strings and the model digest, for every closing block."""
    sim, chain, blocks = run(nodes=5, aggregator=rule, aggregator_params=params, byzantine=1,
                             attack="sign-flip")
    report = verify_chain(blocks, now_ms=sim.now_ms)
    assert report["model_digest"] == chain.tip_state.model_digest and report["rounds_closed"] == 3
    closing = [b["commitment"] for b in blocks if b["commitment"] and b["commitment"]["updates"]]
    if rule == "multi-krum":  # the reasons really were compared
        assert any("score rank" in r for c in closing for r in c["rejected"].values())
        forged = copy.deepcopy(blocks)
        c = next(b["commitment"] for b in forged if b["commitment"] and b["commitment"]["rejected"])
        some = next(iter(c["rejected"]))
        c["rejected"][some] = c["rejected"][some].replace("rank", "Rank")
        # (the commitment hash breaks first; the verifier refuses either way)
        with pytest.raises(Invalid):
            verify_chain(forged, now_ms=sim.now_ms)


def test_verifier_recomputes_a_krum_round_that_cannot_run():
    """Too few updates for Krum at a timeout: G(r-1) kept, every update rejected
    with the exact error text of section 7.1."""
    from tests.independent_verifier import robust
    sim, chain, blocks = run(nodes=5, aggregator="krum", byzantine=1, attack="sign-flip")
    closing = next(b for b in blocks if b["commitment"] and b["commitment"]["updates"])
    from learningchain.rounds import close_round
    from learningchain.genesis import NetworkConfig
    from learningchain.tx import UpdateTx
    config = NetworkConfig.from_genesis(chain.block_at(0))
    state = chain.state_of(chain.block_at(0).hash)
    txs = tuple(UpdateTx.parse(t) for t in closing["txs"][:2])
    ours = close_round(state, config, txs, closing["header"]["miner"]).commitment
    updates = [{"id": t.id, "weights": dict(t.decoded_weights)} for t in txs]
    model, accepted, rejected = robust("krum", config.params, updates)
    assert model is None and accepted == ours["accepted"] == [] and rejected == ours["rejected"]
    assert set(rejected.values()) == {"krum with f=1 needs at least 5 updates, got 2 (Krum requires n > 2f + 2)"}


# --- the worked examples of docs/protocol.md section 10 are what the code computes ---------

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()


def test_worked_genesis_example_is_pinned():
    from learningchain.encoding import canonical_json
    from learningchain.genesis import default_config, make_genesis
    config = default_config(4)
    g = make_genesis(config)
    assert canonical_json(config.to_dict()).decode() in DOC
    for value in (g.header.commitment_hash, g.hash, g.header.serialize()[108:116].hex(),
                  "9ace6bab5e0b7ed434cb161124c9f30a217472105798cbf5121bf66ddd25d728"):
        assert value in DOC
    assert g.hash == "9ace6bab5e0b7ed434cb161124c9f30a217472105798cbf5121bf66ddd25d728"
    lines = DOC.split("Genesis header (189 bytes):")[1].split("```")[1].strip().splitlines()
    hex_fields = "".join(line.split()[0] for line in lines)  # each line: field hex, then a label
    assert hex_fields == g.header.serialize().hex()
    assert weights_digest(g0(config.to_dict()["model"])) in DOC


def test_worked_transaction_and_merkle_examples_are_pinned():
    import numpy as np
    from learningchain import crypto
    from learningchain.block import merkle_root
    from learningchain.encoding import canonical_json
    from learningchain.tx import UpdateTx
    key = crypto.PrivateKey.from_secret(1)  # secret exponent 2
    assert key._sk.privkey.secret_multiplier == 2 and key.public_hex in DOC
    tx = UpdateTx.create(key, 1, "658a3fb298d34f82e1b53221216bf1e3f61063456cea2102afe9168432a691bb",
                         {"W0": np.array([[0.5], [-1.25]], np.float32), "b0": np.array([0.125], np.float32)},
                         40, {"accuracy": 0.953125}, 1700000001000)
    assert canonical_json(tx.body()).decode() in DOC
    assert f"`id` = `{tx.id}`" in DOC and tx.signature in DOC and f"size is {tx.size} bytes" in DOC
    root = merkle_root([bytes([i]) * 32 for i in (1, 2, 3)]).hex()
    assert f"root  = SHA256(01 || n01 || leaf2)   = {root}" in DOC


# --- tx check order (section 3): a tx with two faults names the first ----------------------

def _tx_with(**changes):
    from dataclasses import replace
    import numpy as np
    from tests.helpers import KEYS
    from learningchain.tx import UpdateTx
    tx = UpdateTx.create(KEYS[0], 1, "00" * 32, {"W0": np.zeros((4, 3), np.float32),
                                                 "b0": np.zeros(3, np.float32)}, 10)
    return replace(tx, **changes)


def _code(tx, max_bytes=100_000):
    from learningchain.errors import ValidationError
    with pytest.raises(ValidationError) as exc:
        tx.check({"W0": ("<f4", (4, 3)), "b0": ("<f4", (3,))}, max_bytes)
    return exc.value.code


def test_tx_checks_run_in_the_documented_order():
    from learningchain.encoding import encode_array
    import numpy as np
    off_curve = "02" + (5).to_bytes(32, "big").hex()
    ok = _tx_with()
    good_w0, good_b0 = ok.weights["W0"], ok.weights["b0"]
    f8_w0 = encode_array(np.zeros((4, 3), np.float64))                 # right shape, wrong dtype
    short_b0 = encode_array(np.zeros(2, np.float32))                   # wrong shape, right dtype
    # malformed key beats too large (the key check used to run last, with the signature)
    assert _code(_tx_with(sender=off_curve), max_bytes=10) == "tx-malformed-key"
    # too large beats a bad sample count; a bad sample count beats a shape mismatch
    assert _code(_tx_with(num_samples=0), max_bytes=10) == "tx-too-large"
    assert _code(_tx_with(num_samples=0, weights={"W0": good_w0, "b0": short_b0})) == "tx-bad-sample-count"
    # every shape before any dtype, although W0 (wrong dtype) sorts before b0 (wrong shape)
    assert _code(_tx_with(weights={"W0": f8_w0, "b0": short_b0})) == "tx-shape-mismatch"
    assert _code(_tx_with(weights={"W0": f8_w0, "b0": good_b0})) == "tx-dtype-mismatch"
    # a non-finite value beats a bad signature
    nan_b0 = encode_array(np.array([0, np.nan, 0], np.float32))
    assert _code(_tx_with(weights={"W0": good_w0, "b0": nan_b0})) == "tx-non-finite"


def test_tx_read_checks_malformed_before_the_key():
    from learningchain.errors import ValidationError
    from learningchain.tx import UpdateTx
    doc = _tx_with().to_dict()
    doc.update(sender=5, metrics={"x": 0.5})     # two faults: key type and a float metric
    with pytest.raises(ValidationError) as exc:
        UpdateTx.parse(doc)
    assert exc.value.code == "tx-malformed"
    doc["metrics"] = {}
    with pytest.raises(ValidationError) as exc:
        UpdateTx.parse(doc)
    assert exc.value.code == "tx-malformed-key"

"""docs/protocol.md is complete: an independent verifier written from it alone
(tests/independent_verifier.py: no learningchain imports, OpenSSL for ECDSA)
accepts the chains our nodes produce and refuses tampered ones."""
import copy
import hashlib
from pathlib import Path
import json

import pytest

from learningchain.sim.simulator import Simulation, SimConfig
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
    from learningchain.ledger.rounds import close_round
    from learningchain.ledger.genesis import NetworkConfig
    from learningchain.ledger.tx import UpdateTx
    config = NetworkConfig.from_genesis(chain.block_at(0))
    state = chain.state_of(chain.block_at(0).hash)
    txs = tuple(UpdateTx.parse(t) for t in closing["txs"][:2])
    ours = close_round(state, config, txs, closing["header"]["miner"]).commitment
    updates = [{"id": t.id, "weights": dict(t.decoded_weights)} for t in txs]
    model, accepted, rejected = robust("krum", config.params, updates)
    assert model is None and accepted == ours["accepted"] == [] and rejected == ours["rejected"]
    assert set(rejected.values()) == {"krum with f=1 needs at least 5 updates, got 2 (Krum requires n > 2f + 2)"}


# --- the worked examples of docs/protocol.md section 10 are what the code computes ---------

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def test_worked_genesis_example_is_pinned():
    from learningchain.core.encoding import canonical_json
    from learningchain.ledger.genesis import default_config, make_genesis
    config = default_config(4)
    g = make_genesis(config)
    assert canonical_json(config.to_dict()).decode() in DOC
    for value in (g.header.commitment_hash, g.hash, g.header.serialize()[108:116].hex(),
                  "a773c1afb54d7e24f40dbbfb910161963431d6b2d20741ddbcc74d8c9de17f13"):
        assert value in DOC
    assert g.hash == "a773c1afb54d7e24f40dbbfb910161963431d6b2d20741ddbcc74d8c9de17f13"
    lines = DOC.split("Genesis header (189 bytes):")[1].split("```")[1].strip().splitlines()
    hex_fields = "".join(line.split()[0] for line in lines)  # each line: field hex, then a label
    assert hex_fields == g.header.serialize().hex()
    assert weights_digest(g0(config.to_dict()["model"])) in DOC


def test_worked_transaction_and_merkle_examples_are_pinned():
    import numpy as np
    from learningchain.core import crypto
    from learningchain.ledger.block import merkle_root
    from learningchain.core.encoding import canonical_json
    from learningchain.ledger.tx import UpdateTx
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
    from learningchain.ledger.tx import UpdateTx
    tx = UpdateTx.create(KEYS[0], 1, "00" * 32, {"W0": np.zeros((4, 3), np.float32),
                                                 "b0": np.zeros(3, np.float32)}, 10)
    return replace(tx, **changes)


def _code(tx, max_bytes=100_000):
    from learningchain.core.errors import ValidationError
    with pytest.raises(ValidationError) as exc:
        tx.check({"W0": ("<f4", (4, 3)), "b0": ("<f4", (3,))}, max_bytes)
    return exc.value.code


def test_tx_checks_run_in_the_documented_order():
    from learningchain.core.encoding import encode_array
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
    from learningchain.core.errors import ValidationError
    from learningchain.ledger.tx import UpdateTx
    doc = _tx_with().to_dict()
    doc.update(sender=5, metrics={"x": 0.5})     # two faults: key type and a float metric
    with pytest.raises(ValidationError) as exc:
        UpdateTx.parse(doc)
    assert exc.value.code == "tx-malformed"
    doc["metrics"] = {}
    with pytest.raises(ValidationError) as exc:
        UpdateTx.parse(doc)
    assert exc.value.code == "tx-malformed-key"


# --- every rule of section 7.1, recomputed by the verifier from the document alone ------------

@pytest.mark.parametrize("rule,nodes", [("trimmed-mean", 5), ("bulyan", 7), ("l-nearest", 5)])
def test_verifier_recomputes_the_other_rules_on_a_chain(rule, nodes):
    """Trimmed mean, Bulyan and l-nearest (reference: the closing block's miner)
    commitments, recomputed in full by the verifier, on a chain with a sign-flip
    attacker."""
    sim, chain, blocks = run(nodes=nodes, aggregator=rule, byzantine=1, attack="sign-flip")
    report = verify_chain(blocks, now_ms=sim.now_ms)
    assert report["model_digest"] == chain.tip_state.model_digest and report["rounds_closed"] == 3
    rejected = [r for b in blocks if b["commitment"] for r in b["commitment"]["rejected"].values()]
    if rule != "trimmed-mean":  # ranking rules: the reasons really were compared
        assert rejected and all(("theta=" if rule == "bulyan" else "distance rank") in r for r in rejected)


def _code_and_verifier(rule, params, rows, senders=None):
    """Aggregate ``rows`` (float32 vectors) with the code and with the verifier."""
    import numpy as np
    from learningchain.learning.aggregation import AggregationError, Update, aggregate
    from learningchain.core.encoding import weights_digest as code_digest
    from tests.independent_verifier import robust
    senders = senders or [f"s{i}" for i in range(len(rows))]
    ids = [hashlib.sha256(bytes([i])).hexdigest() for i in range(len(rows))]  # id order != row order
    ups = [Update(i, s, {"b": np.asarray(r[:2], np.float32), "w": np.asarray(r[2:], np.float32)}, 1)
           for i, s, r in zip(ids, senders, rows)]
    try:
        res = aggregate(rule, ups, params)
        ours = (code_digest(res.weights), sorted(res.accepted), dict(res.rejected))
    except AggregationError as exc:
        ours = (None, [], {i: str(exc) for i in ids})
    model, accepted, rejected = robust(rule, params, [{"id": u.id, "sender": u.sender, "weights": dict(u.weights)}
                                                      for u in ups])
    return ours, (None if model is None else weights_digest(model), accepted, rejected)


def _hard_rows(rng, n, d=12):
    """Near-ties and exact ties: two exact duplicates (ties by id), a pair one
    ulp apart, signed zeros, and one outlier."""
    import numpy as np
    base = rng.standard_normal(d).astype(np.float32)
    rows = [base + rng.standard_normal(d).astype(np.float32) * np.float32(0.01) for _ in range(n)]
    rows[1] = rows[0].copy()
    if n >= 5:
        rows[3] = np.nextafter(rows[2], np.float32(np.inf))
    for r in rows:
        r[:3] = np.float32(0.0) if rng.random() < 0.5 else np.float32(-0.0)
    rows[-1] = -rows[-1] * np.float32(50)
    return rows


CASES = [("median", {}), ("trimmed-mean", {"beta": "0.2"}), ("trimmed-mean", {"beta": "0"}),
         ("krum", {"f": 1}), ("multi-krum", {"f": 1, "m": 0}), ("multi-krum", {"f": 2, "m": 3}),
         ("bulyan", {"f": 1}), ("bulyan", {"f": 0}), ("l-nearest", {"l": 3})]


@pytest.mark.parametrize("rule,params", CASES)
@pytest.mark.parametrize("n", [7, 8])
def test_code_and_document_agree_on_near_ties_and_signed_zeros(rule, params, n):
    """The code's fast ranking (Gram product, exact rescoring of near-ties) gives
    the order by exact (score, id) the document defines, to the bit."""
    import numpy as np
    rows = _hard_rows(np.random.default_rng(n), n)
    ours, theirs = _code_and_verifier(rule, params, rows)
    assert ours == theirs


@pytest.mark.parametrize("rule,params,n", [("trimmed-mean", {"beta": "0.1"}, 5),
                                           ("trimmed-mean", {"beta": "0.3"}, 3),
                                           ("krum", {"f": 2}, 6), ("multi-krum", {"f": 1, "m": 5}, 5),
                                           ("multi-krum", {"f": 1, "m": 9}, 4),
                                           ("bulyan", {"f": 1}, 6), ("l-nearest", {"l": 4}, 3)])
def test_code_and_document_agree_when_the_rule_cannot_run(rule, params, n):
    import numpy as np
    rows = _hard_rows(np.random.default_rng(0), n)
    ours, theirs = _code_and_verifier(rule, params, rows)
    assert ours == theirs and ours[0] is None and len(set(ours[2].values())) == 1


def test_verifier_recomputes_a_trimmed_mean_round_that_cannot_run():
    """A trimmed-mean round closed (as by timeout) with 2 updates while beta
    needs 4: G(r-1) kept, every update rejected with section 7.1's text."""
    from tests.independent_verifier import robust
    from learningchain.ledger.rounds import close_round
    from learningchain.ledger.genesis import NetworkConfig
    from learningchain.ledger.tx import UpdateTx
    sim, chain, blocks = run(nodes=4, rounds=1, aggregator="trimmed-mean")
    closing = next(b for b in blocks if b["commitment"] and b["commitment"]["updates"])
    config = NetworkConfig.from_genesis(chain.block_at(0))
    assert config.params == {"beta": "0.25"}  # sized to the quorum of 4
    state = chain.state_of(chain.block_at(0).hash)
    txs = tuple(UpdateTx.parse(t) for t in closing["txs"][:2])
    ours = close_round(state, config, txs, closing["header"]["miner"]).commitment
    model, accepted, rejected = robust("trimmed-mean", config.params,
                                       [{"id": t.id, "weights": dict(t.decoded_weights)} for t in txs])
    assert model is None and ours["accepted"] == accepted == [] and ours["rejected"] == rejected
    assert ours["model_digest"] == state.model_digest
    assert set(rejected.values()) == {"trimmed-mean with beta=0.25 needs at least 4 updates to trim one "
                                      "per side, got 2 (floor(beta * n) = 0)"}


# --- section 7.1's reason templates are the strings the code writes ---------------------------

def _reason_templates() -> dict[str, str]:
    """First column -> the first backticked span of the last column, for every
    row of the two reason tables of section 7.1."""
    import re
    part = DOC.split("**Reason strings**")[1].split("**Ties and what can split validators.**")[0]
    out = {}
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        spans = re.findall(r"`([^`]*)`", cells[-1]) if line.startswith("|") and len(cells) >= 2 else []
        if spans and not set(cells[0]) <= set("-"):
            out[cells[0]] = spans[0]
    return out


def _fill(template: str, values: dict) -> str:
    import re
    return re.sub(r"\{([^}]*)\}", lambda mo: str(values[mo.group(1)]), template)


def _code_reasons(rule, params, n):
    import numpy as np
    from learningchain.learning.aggregation import AggregationError, Update, aggregate
    rng = np.random.default_rng(n)
    ups = [Update(f"{i:064x}", f"s{i}", {"w": rng.standard_normal(4).astype(np.float32)}, 1)
           for i in range(n)]
    try:
        return aggregate(rule, ups, params).rejected
    except AggregationError as exc:
        return {"all": str(exc)}


@pytest.mark.parametrize("row,rule,params,n,values", [
    ("`krum`, `multi-krum`", "krum", {"f": 1}, 6, {"rule": "krum", "n": 6, "m": 1}),
    ("`krum`, `multi-krum`", "multi-krum", {"f": 1, "m": 0}, 6, {"rule": "multi-krum", "n": 6, "m": 5}),
    ("`bulyan`", "bulyan", {"f": 1}, 8, {"θ": 6, "f": 1}),
    ("`l-nearest`", "l-nearest", {"l": 2}, 4, {"l": 2, "REF": "the coordinate-wise median"}),
])
def test_doc_reason_templates_match_the_code(row, rule, params, n, values):
    """Every rejected update's reason is the document's template filled in
    ({p} = its rank; ranks p > m, or > l, are the rejected ones)."""
    template = _reason_templates()[row]
    got = _code_reasons(rule, params, n)
    accepted = values.get("m", values.get("l", n - 2 * params.get("f", 0)))
    assert len(got) == n - accepted
    allowed = {_fill(template, {**values, "p": p}) for p in range(accepted + 1, n + 1)}
    assert set(got.values()) <= allowed
    # ranking rules give each rejected update its own rank; Bulyan one shared text
    assert len(set(got.values())) == (1 if rule == "bulyan" else len(got))


@pytest.mark.parametrize("row,rule,params,n,values", [
    ("`krum`/`multi-krum` and `n < 2f + 3`", "krum", {"f": 2}, 6,
     {"rule": "krum", "f": 2, "2f+3": 7, "n": 6}),
    # n < 2f + 3 and m > n - f both hold: the first row of the table wins
    ("`krum`/`multi-krum` and `n < 2f + 3`", "multi-krum", {"f": 1, "m": 9}, 4,
     {"rule": "multi-krum", "f": 1, "2f+3": 5, "n": 4}),
    ("`multi-krum` and `m > n − f`", "multi-krum", {"f": 1, "m": 5}, 5, {"f": 1, "m": 5, "n−f": 4}),
    ("`bulyan` and `n < 4f + 3`", "bulyan", {"f": 1}, 6, {"f": 1, "4f+3": 7, "n": 6}),
    ("`l-nearest` and `n < l`", "l-nearest", {"l": 4}, 3, {"l": 4, "n": 3}),
    ("`trimmed-mean`, `beta > 0` and `floor(beta · n) = 0`", "trimmed-mean", {"beta": "0.1"}, 5,
     {"B": "0.1", "N": 10, "n": 5}),
    ("`trimmed-mean`, `beta > 0` and `floor(beta · n) = 0`", "trimmed-mean", {"beta": "0.3"}, 3,
     {"B": "0.3", "N": 4, "n": 3}),  # 0.3 * 3 = 0.8999999999999999 in float64
    ("`trimmed-mean`, `beta > 0` and `floor(beta · n) = 0`", "trimmed-mean", {"beta": "0.0625"}, 15,
     {"B": "0.0625", "N": 16, "n": 15}),
])
def test_doc_cannot_run_templates_match_the_code(row, rule, params, n, values):
    assert _code_reasons(rule, params, n) == {"all": _fill(_reason_templates()[row], values)}


def test_doc_no_updates_template_matches_the_code():
    from learningchain.learning.aggregation import AggregationError, aggregate
    template = _reason_templates()["no updates (none, or only skips): `rejected` is then `{}`"]
    for rule in ("krum", "trimmed-mean"):
        with pytest.raises(AggregationError) as exc:
            aggregate(rule, [], {})
        assert str(exc.value) == _fill(template, {"rule": rule})


def test_verifier_checks_stamps_skips_and_the_claim_cap():
    """Section 6 (stamp_bits, max_samples) and section 7 (skips alone never
    close; `updates` excludes skips), on a chain built by the code."""
    from learningchain.ledger.chain import Chain
    from learningchain.ledger.stamp import stamp
    from learningchain.ledger.tx import UpdateTx
    from tests.helpers import KEYS, next_block, now, tiny_genesis, update_tx
    chain = Chain(tiny_genesis(stamp_bits=6, max_samples=20, allow_list=[k.public_hex for k in KEYS[:6]]))
    digest = chain.model()[1]
    skips = [stamp(UpdateTx.create_skip(k, 1, digest, 5), k, 6) for k in KEYS[:3]]
    b1 = next_block(chain, skips)  # quorum 3 of skips only: stays open
    chain.add_block(b1, now(b1))
    ups = [stamp(update_tx(chain, k, num_samples=n), k, 6) for k, n in ((KEYS[3], 10), (KEYS[4], 10**6))]
    b2 = next_block(chain, ups)
    chain.add_block(b2, now(b2))
    assert b1.commitment is None and b2.commitment["skipped"] == sorted(t.id for t in skips)
    blocks = [json.loads(b.serialize()) for b in chain.main_chain(0, chain.height + 1)]
    report = verify_chain(blocks, now_ms=now(b2))
    # (the digest differs unless the claim of 10^6 is read as 20: median cap alone keeps 10^6)
    assert report["rounds_closed"] == 1 and report["model_digest"] == chain.tip_state.model_digest


def test_verifier_follows_the_open_network_skip_rule():
    """Section 7: in an open network skips never count toward the quorum."""
    from learningchain.ledger.chain import Chain
    from learningchain.ledger.tx import UpdateTx
    from tests.helpers import KEYS, next_block, now, tiny_genesis, update_tx
    chain = Chain(tiny_genesis())
    digest = chain.model()[1]
    b1 = next_block(chain, [UpdateTx.create_skip(k, 1, digest, 5) for k in KEYS[3:9]] + [update_tx(chain, KEYS[0])])
    chain.add_block(b1, now(b1))
    b2 = next_block(chain, [update_tx(chain, k) for k in KEYS[1:3]])
    chain.add_block(b2, now(b2))
    assert b1.commitment is None and b2.commitment is not None
    blocks = [json.loads(b.serialize()) for b in chain.main_chain(0, chain.height + 1)]
    assert verify_chain(blocks, now_ms=now(b2))["rounds_closed"] == 1


# --- section 14, secure aggregation: the independent verifier on SA chains ------------------
# Chains from tests/secagg_net.py (N honest SecAggClients on a real chain); every forged block
# is refused by the verifier with the reason code of section 14, and by the code alike.

def _sa_blocks(net):
    return [json.loads(b.serialize()) for b in net.chain.main_chain(0, net.chain.height + 1)]


def _sa_verify(net, extra=None):
    from tests.independent_verifier import verify_chain as vc
    blocks = _sa_blocks(net) + ([json.loads(extra.serialize())] if extra is not None else [])
    return vc(blocks, now_ms=blocks[-1]["header"]["timestamp"])


def _sa_accepts(net, rounds):
    report = _sa_verify(net)
    assert report["tip"] == net.chain.tip.hash and report["rounds_closed"] == rounds
    assert report["model_digest"] == net.chain.tip_state.model_digest
    return report


def _sa_refuses(net, block, code, chain_code=None):
    """Both the independent verifier and the chain refuse ``block`` (on the tip) with ``code``."""
    from tests.independent_verifier import SaInvalid
    from tests.helpers import refused
    with pytest.raises(SaInvalid) as exc:
        _sa_verify(net, block)
    assert exc.value.code == code, exc.value
    err = refused(net.chain, block, chain_code or "block-bad-tx")
    if chain_code is None:
        assert f": {code}:" in err.detail, err.detail


def _resign(net, tx, **changes):
    from learningchain.ledger.secagg_tx import SecAggTx
    key = next(k for k in net.keys if k.public_hex == tx.sender)
    return SecAggTx.create(key, tx.kind, tx.round, tx.base, {**tx.fields, **changes}, tx.timestamp)


def _bad_dealer_setups(net, dealer=2, victim_pos=4):
    """The setups of every member, the dealer's ciphertext at ``victim_pos`` garbled."""
    setups = net.setups()
    shares = list(setups[dealer].fields["shares"])
    shares[victim_pos] = "A" * 107 + "="
    return [_resign(net, setups[dealer], shares=shares)] + setups[:dealer] + setups[dealer + 1:]


def _to_input(net):
    net.block(net.setups())
    while net.state.phase == "setup":
        net.block()


def _to_unmask(net, setups=None):
    net.block(setups if setups is not None else net.setups())
    while net.state.phase == "setup":
        net.block()
    net.block(net.inputs())
    while net.state.phase == "input":
        net.block()


@pytest.mark.parametrize("scenario", ["all", "dropped-after-setup", "dropped-after-input", "mixed"])
def test_verifier_accepts_secure_aggregation_rounds(scenario):
    from tests.secagg_net import SaNet
    net = SaNet(10)
    drops = {"all": ((), ()), "dropped-after-setup": ((1, 4, 8), ()), "dropped-after-input": ((), (0, 5, 9)),
             "mixed": ((3,), (6, 7))}[scenario]
    closing, _ = net.full_round(*drops)
    net.full_round()  # a second round on the new model, everyone in
    sa = closing.commitment["secure_aggregation"]
    assert len(sa["dropped"]) == len(drops[0]) and len(sa["counted"]) == 10 - len(drops[0])
    _sa_accepts(net, 2)


def test_verifier_accepts_an_mlp_secure_aggregation_round():
    from learningchain.learning.models import ModelSpec
    from tests.secagg_net import SaNet
    net = SaNet(6, spec=ModelSpec("mlp", "classification", 6, 3, (5,), 0, 1, 8, 0.1))
    net.full_round(drop_after_setup=(2,))
    _sa_accepts(net, 1)


def test_verifier_accepts_a_round_with_a_disqualified_dealer():
    from tests.secagg_net import SaNet
    net = SaNet(10)
    net.block(_bad_dealer_setups(net))
    net.block(net.inputs())
    closing = net.block(net.unmasks())
    assert len(closing.commitment["secure_aggregation"]["disqualified"]) == 1
    _sa_accepts(net, 1)


@pytest.mark.parametrize("where", ["setup", "input", "unmask"])
def test_verifier_accepts_failed_rounds(where):
    """Fewer setups than t at the setup timeout; four dealers disqualified (6 left < t=7)
    at the input close; too few unmasks at the unmask timeout."""
    from tests.secagg_net import SaNet
    net = SaNet(10)
    if where == "input":
        setups = net.setups()
        for d in (2, 3, 4, 5):  # each garbles its ciphertext for member 0 (position 0 without the dealer)
            shares = list(setups[d].fields["shares"])
            shares[0] = "A" * 107 + "="
            setups[d] = _resign(net, setups[d], shares=shares)
        net.block(setups)
        closing = net.block(net.inputs())
        c = closing.commitment
        assert c["failed"] == "6 setups not disqualified, fewer than the threshold t=7"
        assert len(c["secure_aggregation"]["disqualified"]) == 4 and set(c["rejected"].values()) == {c["failed"]}
    elif where == "setup":
        net.block(net.setups(range(5)))
        while net.state.round == 1:
            net.block()
    else:
        _to_unmask(net)
        net.block(net.unmasks(range(3)))
        while net.state.round == 1:
            net.block()
    assert net.chain.tip.commitment.get("failed") is not None
    net.full_round()
    _sa_accepts(net, 2)


@pytest.mark.parametrize("policy", ["random-k", "top-k", "energy-aware"])
def test_verifier_accepts_rounds_under_a_selection_policy(policy):
    """14.6's records replace section 11's; a candidate not selected is outside R_r:
    sa-not-in-roster (not section 11's tx-sender-not-selected), for the verifier and the code."""
    from tests.secagg_net import SaNet
    net = SaNet(10, threshold=6, quorum=8, policy=policy, k=8)
    outsider = next(k for k in net.config.candidates if k not in net.state.selected)
    stray = net.clients[outsider].setup(1, net.members(), net.state.model_digest)
    assert _first_code(net, [stray]) == ("sa-not-in-roster", "sa-not-in-roster")
    closing, _ = net.full_round(drop_after_setup=(1,))
    assert len(closing.commitment["selected_next"]) == 8
    net.full_round()
    net.block(net.setups(range(5)))  # a third round fails at the setup timeout: 5 setups < t=6
    while net.state.round == 3:
        net.block()
    assert net.chain.tip.commitment["failed"] and len(net.chain.tip.commitment["selected_next"]) == 8
    _sa_accepts(net, 3)


def test_verifier_refuses_an_unmask_with_a_wrong_share():
    from learningchain.core import ec
    from tests.helpers import next_block, rebuild
    from tests.secagg_net import SaNet
    net = SaNet(10)
    _to_unmask(net)
    un = net.unmasks()
    bad = _resign(net, un[3], self_shares=[un[3].fields["self_shares"][0][:-1] + "0"
                                           if un[3].fields["self_shares"][0][-1] != "0" else
                                           un[3].fields["self_shares"][0][:-1] + "1"]
                  + list(un[3].fields["self_shares"][1:]))
    assert ec  # the share stays a scalar: only Feldman refuses it
    _sa_refuses(net, rebuild(next_block(net.chain, un), txs=un[:3] + [bad] + un[4:]), "sa-bad-share")


def test_verifier_refuses_a_wrong_seed():
    from learningchain.core import ec
    from tests.helpers import next_block, rebuild
    from tests.secagg_net import SaNet
    net = SaNet(10)
    net.block(_bad_dealer_setups(net))
    net.block(net.inputs())
    un = net.unmasks()
    seeds = list(un[0].fields["seeds"])
    seeds[0] = {**seeds[0], "point": ec.point_hex(ec.base_mul(7))}
    _sa_refuses(net, rebuild(next_block(net.chain, un), txs=[_resign(net, un[0], seeds=seeds)] + un[1:]),
                "sa-bad-seed")


def test_verifier_refuses_a_false_complaint():
    from learningchain.core import ec
    from tests.helpers import next_block, rebuild
    from tests.secagg_net import SaNet
    net = SaNet(10)
    _to_input(net)
    ins = net.inputs()
    tx = ins[0]
    me = next(k for k in net.keys if k.public_hex == tx.sender)
    target = net.members()[1]
    enc = next(t for t in net.state.pending if t.sender == target).enc_key
    K, proof = ec.dleq_prove(me.secret_scalar(), enc)
    false = _resign(net, tx, complaints=[{"against": target, "point": ec.point_hex(K), "proof": proof}])
    _sa_refuses(net, rebuild(next_block(net.chain, ins), txs=[false] + ins[1:]), "sa-false-complaint")


@pytest.mark.parametrize("field", ["sum_digest", "model_digest"])
def test_verifier_refuses_a_wrong_digest_in_the_commitment(field):
    from tests.helpers import next_block, rebuild
    from tests.secagg_net import SaNet
    net = SaNet(10)
    _to_unmask(net)
    good = next_block(net.chain, net.unmasks())
    c = copy.deepcopy(good.commitment)
    if field == "sum_digest":
        c["secure_aggregation"]["sum_digest"] = "00" * 32
    else:
        c["model_digest"] = "00" * 32
    _sa_refuses(net, rebuild(good, commitment=c), "block-bad-commitment", "block-bad-commitment")


def test_verifier_refuses_a_commitment_on_a_phase_closing_block():
    from tests.helpers import next_block, rebuild
    from tests.secagg_net import SaNet
    net = SaNet(10)
    good = next_block(net.chain, net.setups())
    _sa_refuses(net, rebuild(good, commitment={"round": 1}), "block-unexpected-commitment",
                "block-unexpected-commitment")


def test_verifier_refuses_an_input_in_the_setup_phase():
    import numpy as np
    from learningchain.ledger.secagg_tx import INPUT, SecAggTx
    from tests.helpers import next_block, rebuild
    from tests.secagg_net import SaNet
    net = SaNet(10)
    tx = SecAggTx.create(net.keys[0], INPUT, 1, net.state.model_digest,
                         {"input": SecAggTx.encode_input(np.zeros(15, np.uint32)), "num_samples": 1,
                          "complaints": [], "setups": "00" * 32})
    _sa_refuses(net, rebuild(next_block(net.chain), txs=[tx]), "sa-phase-not-open")


@pytest.mark.parametrize("change,message", [
    ({"aggregation": {"rule": "median", "params": {}}}, "robust rule median"),
    ({"quorum": 3}, "quorum below"),
    ({"privacy": {"secure_aggregation": {"threshold": 2, "clip": "0.5", "scale": 1024, "phase_timeout": 3}}},
     "threshold out of"),
    ({"privacy": {"secure_aggregation": {"threshold": 7, "clip": "5e-1", "scale": 1024, "phase_timeout": 3}}},
     "malformed"),
    ({"privacy": {"secure_aggregation": {"threshold": 7, "clip": "0.5", "scale": 2**28, "phase_timeout": 3}}},
     "2^30"),
])
def test_verifier_refuses_a_genesis_section_14_1_refuses(change, message):
    """A genesis the code would never write (ConfigError), forged with a matching commitment hash."""
    from tests.independent_verifier import Invalid as Inv, canon, sha
    from tests.secagg_net import SaNet
    g = _sa_blocks(SaNet(10))[0]
    g["config"].update(copy.deepcopy(change))
    g["header"]["commitment_hash"] = sha(canon({"commitment": None, "config": g["config"]})).hex()
    with pytest.raises(Inv, match=message.replace("^", r"\^")):
        verify_chain([g], now_ms=g["header"]["timestamp"])


# --- section 14.3/14.4's check order: the verifier and the code name the same first failure --

def _phase_net(phase):
    """N=10 with member 9 never set up; in ``phase`` "input" or "unmask" member 8 sends no input."""
    from tests.secagg_net import SaNet
    net = SaNet(10)
    if phase == "setup":
        return net
    # in "unmask", member 2 dealt member 4 a bad share: 4's complaint disqualifies it
    net.block(_bad_dealer_setups(net)[:9] if phase == "unmask" else net.setups(range(9)))
    while net.state.phase == "setup":
        net.block()
    if phase == "unmask":
        net.block(net.inputs(range(8)))
        while net.state.phase == "input":
            net.block()
    assert net.state.phase == phase
    return net


def _first_code(net, txs):
    """(verifier code, code's code) for a block on the tip carrying ``txs``."""
    import re as _re
    from learningchain.core.errors import ValidationError
    from tests.helpers import next_block, now, rebuild
    from tests.independent_verifier import SaInvalid
    block = rebuild(next_block(net.chain), txs=txs)
    try:
        _sa_verify(net, block)
        ours = None
    except SaInvalid as e:
        ours = e.code
    try:
        net.chain.add_block(block, now(block))
        theirs = None
    except ValidationError as e:
        m = _re.search(r"\): ([a-z0-9-]+):", e.detail or "")
        theirs = m.group(1) if e.code == "block-bad-tx" and m else e.code
    return ours, theirs


def _cases(net, phase):
    """name -> (txs of the block, the code section 14 names)."""
    from dataclasses import replace
    import numpy as np
    from learningchain.core import ec
    from learningchain.ledger.secagg_tx import INPUT, UNMASK, SecAggTx
    from tests.helpers import update_tx
    keys = {k.public_hex: k for k in net.keys}
    members = net.members()
    s, digest = net.state, net.state.model_digest

    def make(who, kind, fields, round_=None, base=None):
        return SecAggTx.create(keys[members[who]], kind, round_ or s.round, base or digest, fields)

    from learningchain.ledger.secagg_round import ids_digest, roster_digest, view_of
    view = view_of(s, net.config)
    zero_input = {"input": SecAggTx.encode_input(np.zeros(15, np.uint32)), "num_samples": 1, "complaints": [],
                  "setups": view.setups_digest}
    cases = {"plain update": ([update_tx(net.chain, net.keys[0])], "sa-plain-tx"),
             "late round": ([make(0, INPUT, zero_input, round_=s.round + 1)], "tx-round-not-open"),
             "wrong base": ([make(0, INPUT, zero_input, base="11" * 32)], "tx-wrong-base-model")}
    if phase == "setup":
        good = net.setups([0])[0]
        f = good.fields
        other = net.setups([1])[0]
        cases.update({
            "input in setup": ([make(0, INPUT, zero_input)], "sa-phase-not-open"),
            "short shares": ([_resign(net, good, shares=f["shares"][:-1])], "sa-malformed"),
            "short shares, bad signature": ([replace(_resign(net, good, shares=f["shares"][:-1]),
                                                     signature=other.signature)], "tx-bad-signature"),
            "short self": ([_resign(net, good, commitments={"self": f["commitments"]["self"][:-1],
                                                            "mask": f["commitments"]["mask"]})], "sa-malformed"),
            "mask[0] != mask_key": ([_resign(net, good, mask_key=other.fields["mask_key"])], "sa-malformed"),
            "79-byte share": ([_resign(net, good, shares=["A" * 104 + "=="] + f["shares"][1:])], "sa-malformed"),
            "enc_key off curve": ([_resign(net, good, enc_key="02" + "00" * 31 + "05")], "sa-bad-point"),
            "bad point and short shares": ([_resign(net, good, enc_key="02" + "00" * 31 + "05",
                                                    shares=f["shares"][:-1])], "sa-bad-point"),
            "duplicate setup": ([good, net.setups([0])[0]], "tx-duplicate-sender-round"),
            # attack A: another member's mask_key (and D_0) without its secret m
            "copied mask_key": ([_resign(net, good, mask_key=other.fields["mask_key"],
                                         commitments={"self": f["commitments"]["self"],
                                                      "mask": [other.fields["mask_key"]]
                                                      + f["commitments"]["mask"][1:]})], "sa-bad-proof"),
            # attack B: enc_key = E_x + k·G, whose secret the sender does not know
            "offset enc_key": ([_resign(net, good, enc_key=ec.point_hex(ec.add(other.enc_key, ec.base_mul(5))))],
                               "sa-bad-proof"),
            "another's proofs": ([_resign(net, good, proofs=other.fields["proofs"])], "sa-bad-proof"),
            "bad proof, bad signature": ([replace(_resign(net, good, proofs=other.fields["proofs"]),
                                                  signature=other.signature)], "sa-bad-proof"),
            "copied mask_key, short shares": ([_resign(net, good, mask_key=other.fields["mask_key"],
                                                       commitments={"self": f["commitments"]["self"],
                                                                    "mask": [other.fields["mask_key"]]
                                                                    + f["commitments"]["mask"][1:]},
                                                       shares=f["shares"][:-1])], "sa-bad-proof"),
            "another roster": ([_resign(net, good, roster=roster_digest(members[:9]))], "sa-wrong-context"),
            "another roster, bad point": ([_resign(net, good, roster=roster_digest(members[:9]),
                                                   enc_key="02" + "00" * 31 + "05")], "sa-wrong-context"),
        })
    elif phase == "input":
        good = net.inputs([0])[0]
        f = good.fields
        target, me = members[1], keys[members[0]]
        enc = next(t for t in s.pending if t.sender == target).enc_key
        K, proof = ec.dleq_prove(me.secret_scalar(), enc)
        K2, proof2 = ec.dleq_prove(me.secret_scalar(),
                                   next(t for t in s.pending if t.sender == members[2]).enc_key)
        false1 = {"against": target, "point": ec.point_hex(K), "proof": proof}
        false2 = {"against": members[2], "point": ec.point_hex(K2), "proof": proof2}
        cases.update({
            "setup in input": ([net.setups([0])[0]], "sa-phase-closed"),
            "input without setup": ([make(9, INPUT, zero_input)], "sa-no-setup"),
            "zero samples": ([_resign(net, good, num_samples=0)], "tx-bad-sample-count"),
            "short input": ([_resign(net, good, input=SecAggTx.encode_input(np.zeros(14, np.uint32)))],
                            "tx-shape-mismatch"),
            "i4 input": ([_resign(net, good, input={**f["input"], "dtype": "<i4"})], "tx-dtype-mismatch"),
            "unsorted complaints": ([_resign(net, good, complaints=sorted([false1, false2],
                                                                        key=lambda c: c["against"])[::-1])],
                                    "sa-malformed"),
            "complaint against self": ([_resign(net, good, complaints=[{**false1, "against": members[0]}])],
                                       "sa-malformed"),
            "complaint without setup": ([_resign(net, good, complaints=[{**false1, "against": members[9]}])],
                                        "sa-no-setup"),
            "complaint, bad proof": ([_resign(net, good, complaints=[{**false1, "proof": proof2}])], "sa-bad-proof"),
            "false complaint": ([_resign(net, good, complaints=[false1])], "sa-false-complaint"),
            "two inputs": ([good, net.inputs([0])[0]], "tx-duplicate-sender-round"),
            # masked for another setup set (a reorg): here Sset with member 9's setup too
            "stale input": ([_resign(net, good, setups=ids_digest([*(t.id for t in view.setups.values()),
                                                                   "ab" * 32]))], "sa-wrong-context"),
            "stale input, short": ([_resign(net, good, setups="00" * 32,
                                            input=SecAggTx.encode_input(np.zeros(14, np.uint32)))],
                                   "sa-wrong-context"),
            "input without setup, stale": ([make(9, INPUT, {**zero_input, "setups": "00" * 32})], "sa-no-setup"),
        })
    else:
        un = net.unmasks([0, 1, 8])
        good, dropped = un[0], un[2]
        f = good.fields
        cases.update({
            "input in unmask": ([make(8, INPUT, zero_input)], "sa-phase-closed"),
            "unmask without setup": ([make(9, UNMASK, {"self_shares": f["self_shares"],
                                                       "mask_shares": f["mask_shares"], "seeds": [],
                                                       "inputs": f["inputs"]})],
                                     "sa-no-setup"),
            "unmask for another input set": ([_resign(net, good, inputs=ids_digest([t.id for t in
                                                                                    view.inputs.values()][:-1]))],
                                             "sa-wrong-context"),
            "another input set, wrong lengths": ([_resign(net, good, inputs="00" * 32, mask_shares=[])],
                                                 "sa-wrong-context"),
            "share >= n": ([_resign(net, good, self_shares=["ff" * 32] + f["self_shares"][1:])], "sa-bad-point"),
            "wrong lengths": ([_resign(net, good, mask_shares=[])], "sa-malformed"),
            "seed from a dropped member": ([_resign(net, dropped, seeds=f["seeds"])], "sa-malformed"),
            "wrong seed": ([_resign(net, good, seeds=[{**f["seeds"][0], "point": ec.point_hex(ec.base_mul(7))}])],
                           "sa-bad-seed"),
            "wrong mask share": ([_resign(net, good, mask_shares=[ec.scalar_hex(int(f["mask_shares"][0], 16) ^ 1)])],
                                 "sa-bad-share"),
            "dropped member's unmask": ([dropped], None),
        })
    return cases


@pytest.mark.parametrize("phase", ["setup", "input", "unmask"])
def test_verifier_and_code_name_the_same_first_failure(phase):
    net = _phase_net(phase)
    wrong = {}
    for name, (txs, code) in _cases(net, phase).items():
        ours, theirs = _first_code(net, txs)
        if code is None:  # a valid block: both accept it (it goes on the chain; keep it last)
            assert ours is None and theirs is None, (name, ours, theirs)
            continue
        if (ours, theirs) != (code, code):
            wrong[name] = {"section 14": code, "verifier": ours, "code": theirs}
    assert not wrong, wrong


def test_verifier_and_code_read_sa_txs_alike():
    """14.3's read stage: the verifier's reading and the code's parse_tx give the same code
    (num_samples is a JSON integer in [0, 2^53), as in section 3: the text used to say "an integer")."""
    from learningchain.core.errors import ValidationError
    from learningchain.ledger.txs import parse_tx
    from tests.independent_verifier import SaInvalid, sa_read
    from tests.secagg_net import SaNet
    net = SaNet(5)
    setup = net.setups([0])[0].to_dict()
    net.block(net.setups())
    inp = net.inputs([0])[0].to_dict()
    proof = {"c": "a", "z": "b"}
    cases = [dict(inp, num_samples=2**53), dict(inp, num_samples=-1), dict(inp, num_samples=True),
             dict(inp, num_samples=1.0), dict(inp, version=True), dict(inp, round=2**53),
             dict(inp, complaints=[{"against": "x", "point": "y", "proof": proof, "e": 1}]),
             dict(inp, complaints=[{"against": "x", "point": "y", "proof": {**proof, "e": "1"}}]),
             dict(inp, complaints=[{"against": "x", "point": "y", "proof": {"c": 1, "z": "b"}}]),
             dict(inp, complaints=[{"against": "\ud800", "point": "y", "proof": proof}]),
             dict(inp, input=[1]), dict(inp, sender=5), dict(inp, signature=5), dict(inp, metrics={}),
             dict(inp, base=inp["base"].upper()), dict(setup, commitments=dict(setup["commitments"], x=[])),
             dict(setup, shares=[1]), dict(setup, mask_key=1), dict(setup, proofs={"mask": proof}),
             dict(setup, proofs={"mask": proof, "enc": {"c": 1, "z": "b"}}), dict(setup, roster="AB" * 32),
             dict(setup, roster=None), dict(inp, setups="ab" * 31), {k: v for k, v in inp.items() if k != "setups"},
             dict(setup, roster="ab" * 32), inp, setup]

    def ours(d):
        try:
            sa_read(d)
        except SaInvalid as e:
            return e.code

    def theirs(d):
        try:
            parse_tx(d)
        except ValidationError as e:
            return e.code

    got = [(ours(d), theirs(d)) for d in cases]
    assert all(a == b for a, b in got), got
    assert got[0] == ("tx-malformed", "tx-malformed") and got[-1] == (None, None)


def test_verifier_and_code_check_an_sa_tx_size_before_its_points():
    """14.3: tx-too-large comes before sa-bad-point and the contextual sa-malformed of the shares."""
    from tests.secagg_net import SaNet
    net = SaNet(10, max_tx_bytes=2000)  # a setup at N=10, t=7 is about 2.5 kB
    good = net.setups([0])[0]
    for tx in (good, _resign(net, good, enc_key="02" + "00" * 31 + "05"),
               _resign(net, good, shares=good.fields["shares"][:-1])):
        assert _first_code(net, [tx]) == ("tx-too-large", "tx-too-large")

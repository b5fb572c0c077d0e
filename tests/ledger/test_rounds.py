"""Round rules: closing at quorum or timeout, the commitment every validator
recomputes, contextual tx refusals, and bit-identical models across nodes."""
import numpy as np
import pytest

from learningchain.core import errors
from learningchain.learning.aggregation import Update, aggregate
from learningchain.ledger.chain import Chain
from learningchain.core.encoding import weights_digest
from learningchain.core.errors import ConfigError, ValidationError
from learningchain.ledger.tx import UpdateTx
from tests.helpers import KEYS, MINER, extend, next_block, now, rebuild, tiny_genesis, update_tx


def add(chain, block):
    return chain.add_block(block, now(block))


def bad_tx_code(chain, tx):
    with pytest.raises(ValidationError) as exc:
        add(chain, rebuild(next_block(chain), txs=[tx]))
    assert exc.value.code == errors.BLOCK_BAD_TX
    return exc.value.detail


def test_round_closes_at_quorum_with_the_right_commitment():
    chain = Chain(tiny_genesis())
    g0, d0 = chain.model()
    txs = [update_tx(chain, k, num_samples=10 * (i + 1)) for i, k in enumerate(KEYS[:3])]
    add(chain, next_block(chain, txs[:2]))
    assert chain.tip_state.round == 1 and len(chain.tip_state.pending) == 2
    closing = next_block(chain, txs[2:])
    assert closing.commitment is not None
    add(chain, closing)
    expected = aggregate("fedavg", [Update(t.id, t.sender, t.decoded_weights, t.num_samples) for t in txs],
                         {"cap_factor": "2"})
    c = closing.commitment
    assert c["round"] == 1 and c["rule"] == "fedavg" and c["params"] == {"cap_factor": "2"}
    assert c["updates"] == sorted(t.id for t in txs) and c["accepted"] == list(expected.accepted)
    assert c["model_digest"] == weights_digest(expected.weights) != d0
    state = chain.tip_state
    assert (state.round, state.round_start, state.pending) == (2, 2, ())
    assert state.model_digest == c["model_digest"]
    summary = chain.round_summary(1)
    assert summary["status"] == "closed" and summary["closed_at"] == 2
    assert [u["height"] for u in summary["updates"]] == [1, 1, 2]
    assert chain.round_summary(2)["status"] == "open" and chain.round_summary(3) is None


def test_wrong_or_missing_commitment_refused():
    chain = Chain(tiny_genesis())
    txs = [update_tx(chain, k) for k in KEYS[:3]]
    good = next_block(chain, txs)
    with pytest.raises(ValidationError) as exc:
        add(chain, rebuild(good, commitment={**good.commitment, "model_digest": "ab" * 32}))
    assert exc.value.code == errors.BLOCK_BAD_COMMITMENT and "model_digest" in exc.value.detail
    with pytest.raises(ValidationError) as exc:
        add(chain, rebuild(good, commitment=None))
    assert exc.value.code == errors.BLOCK_MISSING_COMMITMENT
    assert add(chain, good).status == "connected"


def test_round_closes_by_timeout_with_fewer_updates():
    chain = Chain(tiny_genesis(round_timeout=3))
    tx = update_tx(chain, KEYS[0])
    add(chain, next_block(chain, [tx]))
    extend(chain, 1)
    closing = next_block(chain)
    assert closing.height == 3 and closing.commitment["updates"] == [tx.id]
    add(chain, closing)
    assert chain.tip_state.round == 2 and chain.tip_state.model_digest == closing.commitment["model_digest"]


def test_timeout_without_updates_keeps_the_model():
    chain = Chain(tiny_genesis(round_timeout=2))
    _, d0 = chain.model()
    blocks = extend(chain, 2)
    c = blocks[1].commitment
    assert c["updates"] == [] and c["accepted"] == [] and c["model_digest"] == d0
    assert chain.tip_state.round == 2 and chain.model()[1] == d0


@pytest.mark.parametrize("aggregation, quorum, reason", [
    ({"rule": "krum", "params": {"f": 1}}, 5, "krum"),
    # beta=0.25 trims one per side from 4 updates; 2 leave nothing to trim
    ({"rule": "trimmed-mean", "params": {"beta": "0.25"}}, 4,
     "trimmed-mean with beta=0.25 needs at least 4 updates"),
])
def test_a_rule_that_cannot_run_rejects_every_update_and_carries_the_model_over(aggregation, quorum, reason):
    """A round that times out with too few updates for its rule: the rule refuses,
    every update is rejected with the reason, G(r) = G(r-1), and the chain goes on."""
    chain = Chain(tiny_genesis(aggregation=aggregation, quorum=quorum, round_timeout=2))
    _, d0 = chain.model()
    txs = [update_tx(chain, k) for k in KEYS[:2]]
    add(chain, next_block(chain, txs))
    closing = next_block(chain)
    c = closing.commitment
    assert c["accepted"] == [] and set(c["rejected"]) == {t.id for t in txs}
    assert all(reason in r for r in c["rejected"].values())
    assert c["model_digest"] == d0
    add(chain, closing)
    assert chain.tip_state.round == 2 and chain.model()[1] == d0


def _l_nearest_round(miner):
    """One l-nearest (l=2) round of four updates shifted by 0, 0.1, 0.2 and 1.0,
    closed by a block that ``miner`` mines."""
    chain = Chain(tiny_genesis(aggregation={"rule": "l-nearest", "params": {"l": 2}}, quorum=4))
    txs = [update_tx(chain, k, shift=s) for k, s in zip(KEYS[:4], (0.0, 0.1, 0.2, 1.0))]
    closing = next_block(chain, txs, miner=miner)
    add(chain, closing)  # every validator recomputes the commitment with the header's miner
    by_key = {t.sender: t.id for t in txs}
    return chain, closing.commitment, by_key, txs


def test_l_nearest_reference_is_the_median_even_when_the_miner_sent_an_update():
    """The closing miner (an unsigned header field) no longer picks the reference:
    its own 1.0 update is just one of four, and the median (0.15) decides."""
    chain, c, by_key, txs = _l_nearest_round(KEYS[3])  # the miner also sent the 1.0 update
    assert c["accepted"] == sorted([by_key[KEYS[1].public_hex], by_key[KEYS[2].public_hex]])
    assert all("the coordinate-wise median" in r for r in c["rejected"].values())
    expected = aggregate("l-nearest", [Update(t.id, t.sender, t.decoded_weights, t.num_samples) for t in txs],
                         {"l": 2})
    assert c["model_digest"] == weights_digest(expected.weights) == chain.tip_state.model_digest


def test_l_nearest_reference_is_the_median_when_the_miner_sent_nothing():
    chain, c, by_key, _ = _l_nearest_round(MINER)  # median shift 0.15: nearest are 0.1 and 0.2
    assert c["accepted"] == sorted([by_key[KEYS[1].public_hex], by_key[KEYS[2].public_hex]])
    assert all("the coordinate-wise median" in r for r in c["rejected"].values())


def test_contextual_tx_refusals():
    chain = Chain(tiny_genesis(allow_list=[k.public_hex for k in KEYS[:4]]))
    assert errors.TX_ROUND_NOT_OPEN in bad_tx_code(chain, update_tx(chain, KEYS[0], round=2))
    assert errors.TX_WRONG_BASE in bad_tx_code(chain, update_tx(chain, KEYS[0], base="cd" * 32))
    assert errors.TX_UNKNOWN_SENDER in bad_tx_code(chain, update_tx(chain, KEYS[5]))
    twice = [update_tx(chain, KEYS[0]), update_tx(chain, KEYS[0], num_samples=3)]
    with pytest.raises(ValidationError) as exc:
        add(chain, rebuild(next_block(chain), txs=twice))
    assert errors.TX_DUPLICATE_SENDER in exc.value.detail
    first = update_tx(chain, KEYS[1])
    add(chain, next_block(chain, [first]))
    assert errors.TX_DUPLICATE_SENDER in bad_tx_code(chain, update_tx(chain, KEYS[1], num_samples=7))
    late = update_tx(chain, KEYS[2], num_samples=99)
    add(chain, next_block(chain, [update_tx(chain, k) for k in KEYS[2:4]]))  # closes round 1
    assert chain.tip_state.round == 2
    assert errors.TX_LATE in bad_tx_code(chain, late)
    with pytest.raises(ValidationError) as exc:
        chain.validate_tx(late)
    assert exc.value.code == errors.TX_LATE


def test_shape_and_size_checked_in_blocks():
    from learningchain.ledger.genesis import min_update_bytes
    from tests.helpers import tiny_config
    least = min_update_bytes(tiny_config().expected_shapes())
    chain = Chain(tiny_genesis(max_tx_bytes=least))  # the smallest limit genesis accepts
    model, digest = chain.model()
    metrics = {f"metric-{i:02d}-" + "x" * 22: 0.5 for i in range(16)}  # 16 names of 32 code points
    tx = UpdateTx.create(KEYS[0], 1, digest, model, 10, metrics)
    assert tx.size > least and errors.TX_TOO_LARGE in bad_tx_code(chain, tx)
    with pytest.raises(ConfigError, match=f"at least {least}"):
        tiny_genesis(max_tx_bytes=least - 1)


def test_two_chains_reach_bit_identical_models():
    g = tiny_genesis(aggregation={"rule": "trimmed-mean", "params": {"beta": "0.2"}}, quorum=5)
    a, b = Chain(g), Chain(g)
    blocks = []
    for r in range(3):
        rng = np.random.default_rng(r)
        txs = []
        for k in KEYS[:5]:
            model, digest = a.model()
            w = {n: (v + rng.normal(0, 0.1, v.shape)).astype(np.float32) for n, v in model.items()}
            txs.append(UpdateTx.create(k, a.tip_state.round, digest, w, int(rng.integers(1, 50))))
        blk = next_block(a, txs)
        add(a, blk)
        blocks.append(blk)
    for blk in reversed(blocks[1:]):  # b sees later blocks first: orphans, refused as such
        with pytest.raises(ValidationError) as exc:
            b.add_block(blk, now(blk))
        assert exc.value.code == errors.BLOCK_BAD_PREV
    for blk in blocks:
        add(b, blk)
    wa, da = a.model()
    wb, db = b.model()
    assert da == db and a.tip_state.round == 4
    assert all(wa[n].tobytes() == wb[n].tobytes() and wa[n].dtype == np.float32 for n in wa)


# --- open networks: the stamp and the claim cap (issue 10 item 6, protocol.md section 6) ---

def test_unstamped_tx_is_refused_before_its_signature_and_a_stamped_one_passes():
    from dataclasses import replace as dc_replace

    from learningchain.ledger.stamp import stamp, stamp_ok
    chain = Chain(tiny_genesis(stamp_bits=10))
    plain = update_tx(chain, KEYS[0])
    while stamp_ok(plain.id_bytes, 10):  # (one in 1024 meets it by chance)
        plain = update_tx(chain, KEYS[0], timestamp=plain.timestamp + 1)
    forged = dc_replace(plain, signature="30" + "00" * 40)  # would be tx-bad-signature
    assert errors.TX_INSUFFICIENT_STAMP in bad_tx_code(chain, forged)  # in a block
    with pytest.raises(ValidationError) as exc:  # and at submit
        chain.validate_tx(forged)
    assert exc.value.code == errors.TX_INSUFFICIENT_STAMP
    stamped = stamp(plain, KEYS[0], 10)
    assert stamped.id_bytes[0] == 0 and stamped.id_bytes[1] >> 6 == 0 and stamped.timestamp > plain.timestamp
    chain.validate_tx(stamped)
    blk = next_block(chain, [stamped, stamp(update_tx(chain, KEYS[1]), KEYS[1], 10)])
    add(chain, blk)
    assert len(chain.tip_state.pending) == 2


def test_max_samples_caps_what_a_claim_buys_in_fedavg():
    """Three honest updates at shift 0 with 10 samples, one at shift 1 claiming 10^6:
    with the median cap alone it weighs 2x a median claim; max_samples 10 makes it 1x."""
    def g1(**cfg):
        chain = Chain(tiny_genesis(quorum=4, **cfg))
        txs = [update_tx(chain, k, shift=0.0) for k in KEYS[:3]]
        txs.append(update_tx(chain, KEYS[3], shift=1.0, num_samples=10**6))
        add(chain, next_block(chain, txs))
        g0 = Chain(tiny_genesis()).model()[0]
        return float(np.mean(next(iter(chain.model()[0].values())) - next(iter(g0.values()))))
    assert g1() == pytest.approx(2 / 5, abs=1e-6)
    assert g1(max_samples=10) == pytest.approx(1 / 4, abs=1e-6)


def test_a_strangers_tx_is_refused_before_its_key_is_decoded_or_cached(monkeypatch):
    """Issue 10 item 6: 4,096 fresh keys cost 9.7 s of verification and 366 MB of
    key cache on an open network. On a permissioned one the allow-list check comes
    first: no key decoding, no cache slot, no signature check."""
    from learningchain.core import crypto
    from learningchain.core.crypto import PrivateKey
    chain = Chain(tiny_genesis(allow_list=[k.public_hex for k in KEYS[:4]]))
    strangers = [update_tx(chain, PrivateKey.generate()) for _ in range(20)]
    crypto._parse_point.cache_clear()
    crypto._verifying_key.cache_clear()
    monkeypatch.setattr(UpdateTx, "verify_signature", lambda self: pytest.fail("signature checked"))
    for tx in strangers:
        with pytest.raises(ValidationError) as exc:
            chain.validate_tx(tx)
        assert exc.value.code == errors.TX_UNKNOWN_SENDER
    assert crypto._parse_point.cache_info().currsize == 0 == crypto._verifying_key.cache_info().currsize

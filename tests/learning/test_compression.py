"""Compressed updates (q8, topk) and skip txs: round trip, deterministic decoding,
size, signature coverage, and blocks that validate on a second chain."""
from collections import OrderedDict

import numpy as np
import pytest

from learningchain.learning import compression
from learningchain.core import errors
from learningchain.ledger.chain import Chain
from learningchain.core.encoding import parse_json
from learningchain.core.errors import ValidationError
from learningchain.learning.models import ModelSpec, build_model
from learningchain.ledger.tx import UpdateTx
from learningchain.ledger.rounds import close_round
from tests.helpers import KEYS, MINER, next_block, now, rebuild, tiny_genesis, update_tx

MLP = ModelSpec("mlp", "classification", 64, 10, (32,), 0, 1, 16, 0.1)


def trained_pair(seed=0):
    base = build_model(MLP).initial_weights()
    rng = np.random.default_rng(seed)
    w = OrderedDict((k, (v + rng.normal(0, 0.05, v.shape)).astype(np.float32)) for k, v in base.items())
    return base, w


def test_q8_round_trip_within_quantisation_error_and_size():
    base, w = trained_pair()
    enc, _ = compression.compress(w, base, "q8", np.random.default_rng(1))
    out = compression.decode("q8", enc, base)
    for k in w:
        step = float(np.ptp(w[k] - base[k])) / 255
        assert np.abs(out[k] - w[k]).max() <= step * 1.01 + 1e-6
    raw = sum(a.nbytes for a in w.values())
    assert compression.payload_bytes(enc) <= 0.3 * raw
    again = compression.decode("q8", parse_json(__import__("json").dumps(enc)), base)
    assert all(np.array_equal(out[k], again[k]) for k in out)  # deterministic decoding


def test_topk_keeps_the_largest_and_feeds_back_the_rest():
    base, w = trained_pair()
    enc, mem = compression.compress(w, base, "topk", np.random.default_rng(0), fraction=0.1)
    out = compression.decode("topk", enc, base)
    for k in w:
        delta = w[k] - base[k]
        sent = out[k] - base[k]
        assert np.count_nonzero(sent) <= int(np.ceil(0.1 * delta.size))
        assert np.allclose(sent + mem[k], delta, atol=1e-6)
    enc2, _ = compression.compress(w, base, "topk", np.random.default_rng(0), 0.1, memory=mem)
    assert enc2 != enc


def test_tampered_encoding_breaks_the_signature_and_bad_encodings_refused():
    base, w = trained_pair()
    enc, _ = compression.compress(w, base, "q8", np.random.default_rng(1))
    tx = UpdateTx.create_compressed(KEYS[0], 1, "00" * 32, enc, "q8", 10)
    expected = build_model(MLP).expected_shapes()
    tx.check(expected, 1 << 20)
    doc = tx.to_dict()
    doc["compression"] = "topk"
    with pytest.raises(ValidationError):
        UpdateTx.parse(doc).check(expected, 1 << 20)
    doc = tx.to_dict()
    doc["weights"]["b0"]["lo"] = compression.encode_array(np.array([1.5], np.float32))
    forged = UpdateTx.parse(doc)
    with pytest.raises(ValidationError) as exc:
        forged.check(expected, 1 << 20)
    assert exc.value.code == errors.TX_BAD_SIGNATURE
    doc = tx.to_dict()
    doc["weights"]["b0"]["q"] = compression.encode_array(np.zeros(3, np.uint8))
    with pytest.raises(ValidationError) as exc:
        UpdateTx.parse(doc).check(expected, 1 << 20)
    assert exc.value.code == errors.TX_SHAPE_MISMATCH


LISTED = [k.public_hex for k in KEYS[:6]]  # permissioned: skips count toward the quorum (protocol.md §7)


def test_block_with_compressed_updates_and_a_skip_validates_on_a_second_chain():
    a, b = Chain(tiny_genesis(allow_list=LISTED)), Chain(tiny_genesis(allow_list=LISTED))
    model, digest = a.model()
    rng = np.random.default_rng(3)
    txs = []
    for i, scheme in enumerate(("q8", "topk")):
        w = OrderedDict((k, (v + rng.normal(0, 0.1, v.shape)).astype(np.float32)) for k, v in model.items())
        enc, _ = compression.compress(w, model, scheme, rng, 0.5)
        txs.append(UpdateTx.create_compressed(KEYS[i], 1, digest, enc, scheme, 10))
    txs.append(UpdateTx.create_skip(KEYS[2], 1, digest, 10))
    blk = next_block(a, txs)
    a.add_block(blk, now(blk))
    assert blk.commitment["skipped"] == [txs[2].id] and len(blk.commitment["updates"]) == 2
    wire = type(blk).parse(parse_json(blk.serialize()))
    assert b.add_block(wire, now(wire)).status == "connected"
    assert a.tip_state.model_digest == b.tip_state.model_digest != digest


def test_skip_tx_is_signed_and_skips_alone_do_not_close_a_round():
    chain = Chain(tiny_genesis())
    _, digest = chain.model()
    skips = [UpdateTx.create_skip(k, 1, digest, 5) for k in KEYS[:3]]
    doc = skips[0].to_dict()
    assert "weights" not in doc and doc["type"] == "skip"
    assert UpdateTx.parse(doc) == skips[0]
    doc["num_samples"] = 6
    with pytest.raises(ValidationError) as exc:
        chain.validate_tx(UpdateTx.parse(doc))
    assert exc.value.code == errors.TX_BAD_SIGNATURE
    blk = next_block(chain, skips)
    chain.add_block(blk, now(blk))  # three skips of quorum 3, but no update: the round stays open
    assert blk.commitment is None and chain.tip_state.round == 1 and len(chain.tip_state.pending) == 3
    forged = rebuild(blk, commitment=close_round(Chain(tiny_genesis()).tip_state, chain.config, skips,
                                                 MINER).commitment)
    with pytest.raises(ValidationError) as exc:  # a block closing it anyway is refused
        Chain(tiny_genesis()).add_block(forged, now(forged))
    assert exc.value.code == errors.BLOCK_UNEXPECTED_COMMITMENT


def test_skips_count_toward_the_quorum_once_the_round_has_an_update_in_a_permissioned_network():
    chain = Chain(tiny_genesis(allow_list=LISTED))
    _, digest = chain.model()
    txs = [UpdateTx.create_skip(k, 1, digest, 5) for k in KEYS[:2]] + [update_tx(chain, KEYS[2])]
    blk = next_block(chain, txs)
    chain.add_block(blk, now(blk))  # quorum 3 = two skips + one update: closes
    assert blk.commitment["round"] == 1 and len(blk.commitment["updates"]) == 1
    assert blk.commitment["skipped"] == sorted(t.id for t in txs[:2])


def test_in_an_open_network_skips_never_count_toward_the_quorum():
    """A skip is the cheapest tx to stamp: in an open network a crowd of them beside
    one honest update would close the round before the other honest updates."""
    chain = Chain(tiny_genesis())  # allow_list null
    _, digest = chain.model()
    skips = [UpdateTx.create_skip(k, 1, digest, 5) for k in KEYS[3:9]]
    blk = next_block(chain, skips + [update_tx(chain, KEYS[0])])
    chain.add_block(blk, now(blk))  # 6 skips + 1 update, quorum 3: still open
    assert blk.commitment is None and chain.tip_state.round == 1
    blk = next_block(chain, [update_tx(chain, k) for k in KEYS[1:3]])
    chain.add_block(blk, now(blk))  # the third update closes it
    assert len(blk.commitment["updates"]) == 3 and len(blk.commitment["skipped"]) == 6

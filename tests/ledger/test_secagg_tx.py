"""Secure-aggregation txs (docs/protocol.md section 14.3): the wire form, the
one parser (txs.parse_tx), and the context-free checks in their order."""
import numpy as np
import pytest

from learningchain.core import ec, errors
from learningchain.core.encoding import canonical_json, parse_json
from learningchain.core.errors import ValidationError
from learningchain.ledger.block import Block
from learningchain.ledger.secagg_tx import INPUT, SecAggTx
from learningchain.ledger.tx import UpdateTx
from learningchain.ledger.txs import parse_tx
from tests.helpers import next_block
from tests.secagg_net import SaNet

T, D = 7, 15


@pytest.fixture(scope="module")
def net():
    n = SaNet(10)
    return n


@pytest.fixture(scope="module")
def setup(net):
    return net.setups([0])[0]


def resign(net, tx, **changes):
    key = next(k for k in net.keys if k.public_hex == tx.sender)
    return SecAggTx.create(key, tx.kind, tx.round, tx.base, {**tx.fields, **changes}, tx.timestamp)


def check_code(tx, max_bytes=60_000):
    with pytest.raises(ValidationError) as exc:
        tx.check(T, D, max_bytes)
    return exc.value.code


def parse_code(doc):
    with pytest.raises(ValidationError) as exc:
        parse_tx(doc)
    return exc.value.code


def test_a_setup_round_trips_through_the_wire_and_offers_the_tx_interface(setup):
    again = parse_tx(parse_json(setup.serialize()))
    assert isinstance(again, SecAggTx) and again.id == setup.id and again.serialize() == setup.serialize()
    assert (again.is_skip, again.metrics, again.compression, again.num_samples) == (False, {}, None, 0)
    assert again.size == len(setup.serialize()) and again.kind == "sa-setup" and again.phase == "setup"
    again.check(T, D, 60_000)
    body = setup.body()
    assert set(body) == {"type", "version", "sender", "round", "base", "timestamp", "mask_key", "enc_key", "proofs", "roster",
                         "commitments", "shares"}
    assert len(setup.fields["shares"]) == 9 and all(len(s) == 108 for s in setup.fields["shares"])


def test_parse_tx_dispatches_and_keeps_updates_as_they_were(net):
    from tests.helpers import KEYS
    model, digest = net.chain.model()
    up = UpdateTx.create(KEYS[0], 1, digest, model, 5)
    assert type(parse_tx(parse_json(up.serialize()))) is UpdateTx
    assert parse_code({"type": "nonsense", "version": 1}) == errors.TX_MALFORMED


def test_shape_faults_are_tx_malformed(setup):
    doc = setup.to_dict()
    assert parse_code({**doc, "extra": 1}) == errors.TX_MALFORMED
    assert parse_code({k: v for k, v in doc.items() if k != "enc_key"}) == errors.TX_MALFORMED
    assert parse_code({**doc, "commitments": {"self": []}}) == errors.TX_MALFORMED
    assert parse_code({**doc, "shares": [1]}) == errors.TX_MALFORMED
    assert parse_code({**doc, "metrics": {}}) == errors.TX_MALFORMED  # SA txs carry no metrics
    assert parse_code({**doc, "round": -1}) == errors.TX_MALFORMED
    assert parse_code({**doc, "sender": 5}) == errors.TX_MALFORMED_KEY
    assert parse_code({**doc, "signature": 5}) == errors.TX_BAD_SIGNATURE


def test_points_lengths_and_ciphertexts(net, setup):
    assert check_code(resign(net, setup, enc_key="02" + "ff" * 32)) == errors.SA_BAD_POINT
    assert check_code(resign(net, setup, mask_key=setup.fields["mask_key"].upper())) == errors.SA_BAD_POINT
    c = setup.fields["commitments"]
    assert check_code(resign(net, setup, commitments={"self": c["self"][:-1], "mask": c["mask"]})) \
        == errors.SA_MALFORMED
    other = ec.point_hex(ec.base_mul(12345))
    assert check_code(resign(net, setup, commitments={"self": c["self"], "mask": [other] + c["mask"][1:]})) \
        == errors.SA_MALFORMED  # D_0 != mask_key
    shares = list(setup.fields["shares"])
    shares[0] = shares[0][:-4]
    assert check_code(resign(net, setup, shares=shares)) == errors.SA_MALFORMED
    assert check_code(setup, max_bytes=100) == errors.TX_TOO_LARGE
    forged = SecAggTx(setup.kind, setup.sender, setup.round, setup.base, setup.fields, setup.timestamp,
                      resign(net, setup, shares=setup.fields["shares"][::-1]).signature)
    assert check_code(forged) == errors.TX_BAD_SIGNATURE


def test_input_and_unmask_context_free_checks(net):
    key = net.keys[0]
    good = {"input": SecAggTx.encode_input(np.arange(D, dtype=np.uint32)), "num_samples": 3, "complaints": []}
    tx = SecAggTx.create(key, INPUT, 1, "00" * 32, good)
    tx.check(T, D, 60_000)
    assert tx.num_samples == 3 and np.array_equal(tx.input_array, np.arange(D))
    assert check_code(SecAggTx.create(key, INPUT, 1, "00" * 32, {**good, "num_samples": 0})) \
        == errors.TX_BAD_SAMPLES
    short = {**good, "input": SecAggTx.encode_input(np.zeros(D - 1, np.uint32))}
    assert check_code(SecAggTx.create(key, INPUT, 1, "00" * 32, short)) == errors.TX_SHAPE_MISMATCH
    floats = {**good, "input": {**SecAggTx.encode_input(np.zeros(D, np.uint32)), "dtype": "<f4"}}
    assert check_code(SecAggTx.create(key, INPUT, 1, "00" * 32, floats)) == errors.TX_DTYPE_MISMATCH
    p = ec.point_hex(ec.base_mul(3))
    proof = {"c": "01" * 32, "z": "01" * 32}
    a, b = sorted([ec.point_hex(ec.base_mul(5)), ec.point_hex(ec.base_mul(6))])
    unsorted = [{"against": b, "point": p, "proof": proof}, {"against": a, "point": p, "proof": proof}]
    assert check_code(SecAggTx.create(key, INPUT, 1, "00" * 32, {**good, "complaints": unsorted})) \
        == errors.SA_MALFORMED
    bad_point = [{"against": a, "point": "02" + "00" * 32, "proof": proof}]
    assert check_code(SecAggTx.create(key, INPUT, 1, "00" * 32, {**good, "complaints": bad_point})) \
        == errors.SA_BAD_POINT
    un = SecAggTx.create(key, "sa-unmask", 1, "00" * 32,
                         {"self_shares": ["ff" * 32], "mask_shares": [None], "seeds": [None]})
    assert check_code(un) == errors.SA_BAD_POINT  # a scalar above the group order


def test_blocks_carry_sa_txs_through_block_parse(net):
    setups = net.setups()
    b = next_block(net.chain, setups)
    again = Block.parse(parse_json(canonical_json(b.to_dict())))
    assert again.hash == b.hash and [t.id for t in again.txs] == [t.id for t in setups]
    assert all(isinstance(t, SecAggTx) for t in again.txs)
    assert again.computed_merkle_root() == b.header.merkle_root

"""Blocks: header layout, proof of work, merkle root, tamper detection."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from learningchain.core import crypto, errors
from learningchain.ledger.block import (HEADER_SIZE, PREFIX_SIZE, Block, make_block, merkle_root,
                                 work_of)
from learningchain.core.encoding import sha256
from learningchain.core.errors import ValidationError
from learningchain.ledger.tx import UpdateTx

KEY = crypto.PrivateKey.from_secret(11)
EASY = 1 << 244  # ~4,096 tries to mine; a tampered header passes by luck 1 in 4,096


def mine(block: Block) -> Block:
    nonce = 0
    while not block.header.with_nonce(nonce).check_pow():
        nonce += 1
    return Block(block.header.with_nonce(nonce), block.txs, block.commitment, block.config)


def sample_block(n_txs=3) -> Block:
    txs = tuple(UpdateTx.create(crypto.PrivateKey.from_secret(100 + i), 1, "00" * 32,
                                {"W0": np.full((2, 2), i, np.float32)}, 5, timestamp=i) for i in range(n_txs))
    return mine(make_block(1, "11" * 32, 1_700_000_000_000, EASY, KEY.public_hex, txs,
                           commitment={"round": 1}))


BLOCK = sample_block()


def test_header_layout_puts_nonce_last():
    h = BLOCK.header
    raw = h.serialize()
    assert len(raw) == HEADER_SIZE and raw[:PREFIX_SIZE] == h.prefix()
    assert int.from_bytes(raw[PREFIX_SIZE:], "big") == h.nonce
    assert h.hash_bytes == sha256(raw)


def test_round_trip_and_structure():
    back = Block.parse(BLOCK.to_dict())
    assert back.hash == BLOCK.hash and back.serialize() == BLOCK.serialize()
    back.check_structure()


@pytest.mark.parametrize("n_txs", [0, 1, 3])
def test_size_is_the_length_of_the_canonical_form(n_txs):
    """Block.size is counted from its parts (header, commitment, each tx's size)
    without encoding the block: it must equal len(serialize()), also for a
    genesis with a config, a skip tx and a parsed block."""
    block = sample_block(n_txs)
    skip = UpdateTx.create_skip(crypto.PrivateKey.from_secret(99), 1, "00" * 32, 5, {"loss": 0.25})
    with_skip = make_block(1, "11" * 32, 1, EASY, KEY.public_hex, block.txs + (skip,),
                           commitment={"round": 1, "note": "é\u2028\"\\"}, config={"a": [1, {"b": None}]})
    for b in (block, with_skip, Block.parse(with_skip.to_dict())):
        assert b.size == len(b.serialize())


def test_work_is_inverse_of_target():
    assert work_of((1 << 256) - 1) == 1
    assert work_of(EASY) > work_of(EASY * 2)


def test_merkle_root_distinguishes_lists():
    a, b, c = (sha256(bytes([i])) for i in range(3))
    roots = {merkle_root(x) for x in ([], [a], [a, b], [b, a], [a, b, c], [a, b, c, c])}
    assert len(roots) == 6
    assert merkle_root([]) == bytes(32)


def test_structure_failures_are_named():
    h = BLOCK.header
    unmined = Block(h.with_nonce(h.nonce), BLOCK.txs, BLOCK.commitment)
    from dataclasses import replace
    hard = Block(replace(h, target=1), BLOCK.txs, BLOCK.commitment)
    for block, code in [
        (hard, errors.BLOCK_BAD_POW),
        (mine(Block(h, BLOCK.txs[:2], BLOCK.commitment)), errors.BLOCK_BAD_MERKLE),
        (mine(Block(h, BLOCK.txs, {"round": 2})), errors.BLOCK_BAD_COMMITMENT_HASH),
    ]:
        with pytest.raises(ValidationError) as info:
            block.check_structure()
        assert info.value.code == code
    unmined.check_structure()


HEADER_FIELDS = ["height", "prev_hash", "merkle_root", "commitment_hash", "timestamp", "target",
                 "miner", "nonce"]


@given(st.sampled_from(HEADER_FIELDS), st.integers(1, 2**20))
@settings(max_examples=120, derandomize=True)
def test_changing_any_header_field_breaks_the_block(field, delta):
    """Any changed header field changes the hash, so the block fails its proof of
    work (a lucky pass is 1 in 4,096; examples are derandomized, so this test is
    deterministic), and fields the body commits to fail their own check too."""
    doc = BLOCK.to_dict()
    head = doc["header"]
    if isinstance(head[field], int):
        head[field] = head[field] + delta
    elif field == "miner":
        head[field] = crypto.PrivateKey.from_secret(delta + (delta == 10)).public_hex  # 10 -> KEY
    else:
        head[field] = format((int(head[field], 16) + delta) % (1 << 256), "064x")
    try:
        tampered = Block.parse(doc)
    except ValidationError:
        return
    assert tampered.hash != BLOCK.hash
    with pytest.raises(ValidationError):
        tampered.check_structure()


@given(st.integers(0, len(BLOCK.txs) - 1))
def test_changing_a_transaction_breaks_the_merkle_root(i):
    doc = BLOCK.to_dict()
    doc["txs"][i]["num_samples"] += 1
    with pytest.raises(ValidationError) as info:
        Block.parse(doc).check_structure()
    assert info.value.code == errors.BLOCK_BAD_MERKLE


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("txs"),
    lambda d: d["header"].update(version=2),
    lambda d: d["header"].update(version=True),  # bool is an int in Python
    lambda d: d["header"].update(version=1.0),   # 1.0 == 1 in Python
    lambda d: d["header"].update(height=1.0),
    lambda d: d["header"].update(height=-1),
    lambda d: d["header"].update(miner="04" + "00" * 32),
    lambda d: d["header"].update(target="zz"),
    lambda d: d.update(commitment=[1]),
    lambda d: d.update(txs=[{"bad": 1}]),
])
def test_malformed_blocks_are_refused(mutate):
    doc = BLOCK.to_dict()
    mutate(doc)
    with pytest.raises(ValidationError):
        Block.parse(doc)


def _off_curve_key() -> str:
    """A 02-prefixed 66-hex string whose x has no point on secp256k1."""
    for x in range(1, 100):
        candidate = "02" + x.to_bytes(32, "big").hex()
        try:
            crypto.check_public_key(candidate)
        except crypto.InvalidKey:
            return candidate
    raise AssertionError("no off-curve x below 100")


@pytest.mark.parametrize("miner", [
    _off_curve_key(),                          # right length and prefix, not a point
    KEY.public_hex.upper().replace("0X", ""),  # one spelling per key: lowercase only
    "04" + "00" * 32,                          # not compressed
    KEY.public_hex[:-2],                       # short
    17,                                        # not a string
])
def test_header_miner_must_be_a_curve_point(miner):
    doc = BLOCK.to_dict()
    doc["header"]["miner"] = miner
    with pytest.raises(ValidationError) as info:
        Block.parse(doc)
    assert info.value.code == errors.BLOCK_BAD_MINER_KEY
    assert "miner" in info.value.detail

"""Genesis: configuration round trip, determinism, refusal of bad configs."""
import pytest

from learningchain import crypto
from learningchain.block import ZERO_HASH
from learningchain.encoding import canonical_json
from learningchain.errors import ConfigError
from learningchain.genesis import (GENESIS_MINER, NetworkConfig, default_config, make_genesis,
                                   target_for_hashes)
from tests.helpers import EASY, tiny_config


def test_round_trip_is_exact_and_canonical():
    cfg = default_config(4)
    doc = cfg.to_dict()
    canonical_json(doc)  # no floats anywhere
    back = NetworkConfig.from_dict(doc)
    assert back == cfg and back.to_dict() == doc
    assert make_genesis(back).hash == make_genesis(cfg).hash


def test_genesis_is_deterministic_and_shaped():
    cfg = tiny_config()
    g1, g2 = make_genesis(cfg), make_genesis(NetworkConfig.from_dict(cfg.to_dict()))
    assert g1.hash == g2.hash and g1.serialize() == g2.serialize()
    h = g1.header
    assert (h.height, h.prev_hash, h.nonce, h.target) == (0, ZERO_HASH, 0, EASY)
    assert h.miner == GENESIS_MINER == crypto.PrivateKey.from_secret(0).public_hex
    assert g1.txs == () and g1.commitment is None and g1.config == cfg.to_dict()
    assert make_genesis(tiny_config(network="other")).hash != g1.hash


def test_default_config_difficulty_and_quorum():
    cfg = default_config(5, target_block_ms=500, hashrate=2_000_000)
    assert cfg.quorum == 5 and cfg.rule == "fedavg"
    assert cfg.initial_target == target_for_hashes(1_000_000)
    assert cfg.initial_target <= cfg.pow_limit
    assert cfg.expected_shapes()["W0"] == ("<f4", (64, 32))


@pytest.mark.parametrize("change, words", [
    ({"quorum": 0}, "quorum"),
    ({"round_timeout": -1}, "round_timeout"),
    ({"initial_target": 1 << 256}, "initial_target"),
    ({"initial_target": EASY * 2}, "pow_limit"),
    ({"aggregation": {"rule": "nope", "params": {}}}, "unknown aggregation rule"),
    ({"aggregation": {"rule": "krum", "params": {"f": 1}}}, "quorum 3 is below the 5"),
    ({"aggregation": {"rule": "trimmed-mean", "params": {"beta": 0.1}}}, "never floats"),
    ({"aggregation": {"rule": "fedavg"}}, "aggregation must be"),
    ({"model": {"kind": "mlp", "task": "classification"}}, "missing field"),
    ({"allow_list": ["02" + "00" * 32]}, "allow_list"),
    ({"allow_list": [crypto.PrivateKey.from_secret(5).public_hex] * 2}, "twice"),
    ({"network": ""}, "network"),
])
def test_bad_configs_are_refused_with_a_reason(change, words):
    with pytest.raises(ConfigError, match=words):
        tiny_config(**change)


def test_from_dict_refuses_unknown_missing_and_bad_hex():
    doc = tiny_config().to_dict()
    with pytest.raises(ConfigError, match="unknown field"):
        NetworkConfig.from_dict({**doc, "extra": 1})
    with pytest.raises(ConfigError, match="missing field"):
        NetworkConfig.from_dict({k: v for k, v in doc.items() if k != "quorum"})
    with pytest.raises(ConfigError, match="64 lowercase hex"):
        NetworkConfig.from_dict({**doc, "pow_limit": "FF" * 32})
    with pytest.raises(ConfigError, match="must be an object"):
        NetworkConfig.from_dict([1])
    defaults = {k: v for k, v in doc.items() if k not in ("max_future_ms", "allow_list")}
    assert NetworkConfig.from_dict(defaults).max_future_ms == 60_000


def test_allow_list_round_trips():
    keys = [crypto.PrivateKey.from_secret(i).public_hex for i in (3, 4)]
    cfg = tiny_config(allow_list=keys)
    assert NetworkConfig.from_dict(cfg.to_dict()).allow_list == tuple(keys)

"""Genesis: configuration round trip, determinism, refusal of bad configs."""
import pytest

from learningchain.core import crypto
from learningchain.ledger.block import ZERO_HASH
from learningchain.core.encoding import canonical_json
from learningchain.core.errors import ConfigError
from learningchain.ledger.genesis import (GENESIS_MINER, NetworkConfig, default_config, make_genesis,
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
    # issue 10: values a rule would divide by zero with
    ({"aggregation": {"rule": "trimmed-mean", "params": {"beta": "0.5"}}}, r"beta must be in \[0, 0.5\)"),
    ({"aggregation": {"rule": "fedavg", "params": {"cap_factor": "0"}}}, "cap_factor must be >= 1"),
    ({"aggregation": {"rule": "l-nearest", "params": {"l": 0}}}, "l must be >= 1"),
    ({"stamp_bits": 33}, "stamp_bits must be at most 32"),
    ({"stamp_bits": True}, "stamp_bits"),
    ({"max_samples": 0}, "max_samples"),
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
    assert NetworkConfig.from_dict(defaults).max_future_ms == 4 * doc["target_block_ms"]  # derived: 4 block intervals


def test_stamp_and_claim_cap_round_trip_and_absent_ones_keep_the_hash():
    from learningchain.ledger.genesis import make_genesis
    cfg = tiny_config(stamp_bits=12, max_samples=500)
    again = NetworkConfig.from_dict(cfg.to_dict())
    assert (again.stamp_bits, again.max_samples) == (12, 500)
    assert "stamp_bits" not in tiny_config().to_dict() and "max_samples" not in tiny_config().to_dict()
    assert make_genesis(tiny_config()).hash != make_genesis(cfg).hash


def test_allow_list_round_trips():
    keys = [crypto.PrivateKey.from_secret(i).public_hex for i in (3, 4)]
    cfg = tiny_config(allow_list=keys)
    assert NetworkConfig.from_dict(cfg.to_dict()).allow_list == tuple(keys)


# --- bring your own data: genesis --data FILE ------------------------------------

def _genesis_from(tmp_path, *extra: str):
    from learningchain.cli import main as cli
    out = tmp_path / "genesis.json"
    code = cli.main(["genesis", "--nodes", "2", "--out", str(out), "--force", "--open", *extra])
    return code, (cli.load_genesis_file(out) if code == 0 else None)


def test_genesis_from_image_arrays_trains_and_evaluates(tmp_path, capsys):
    """X.npy of 8x8 'images' with a sibling y.npy: genesis reads 64 features and
    3 classes, and the model it describes trains on the file as loaded."""
    import numpy as np

    from learningchain.learning.data import load_partition
    from learningchain.learning.models import build_model
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    X = rng.normal(size=(90, 8, 8)).astype(np.float32)
    X[np.arange(90), y, :] += 3.0  # class c lights up image row c: learnable
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    code, config = _genesis_from(tmp_path, "--data", str(tmp_path / "X.npy"), "--model", "softmax")
    assert code == 0, capsys.readouterr().err
    spec = config.model_spec
    assert (spec.kind, spec.task, spec.n_features, spec.n_outputs) == ("softmax", "classification", 64, 3)
    model = build_model(spec)
    Xl, yl = load_partition(tmp_path / "X.npy")
    w = model.train(model.initial_weights(), Xl, yl, seed=0)
    assert model.evaluate(w, Xl, yl)["accuracy"] > 0.9
    assert "3 classes" in capsys.readouterr().out


def test_genesis_from_npz_infers_regression_and_task_can_be_forced(tmp_path, capsys):
    import numpy as np

    from learningchain.learning.models import build_model
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5))
    np.savez(tmp_path / "reg.npz", X=X, y=X @ np.arange(5.0) + 0.5)
    code, config = _genesis_from(tmp_path, "--data", str(tmp_path / "reg.npz"), "--model", "linear")
    assert code == 0
    assert (config.model_spec.task, config.model_spec.n_features) == ("regression", 5)
    model = build_model(config.model_spec)
    w = model.train(model.initial_weights(), X, X @ np.arange(5.0) + 0.5, seed=0)
    assert set(model.evaluate(w, X, X @ np.arange(5.0))) == {"rmse", "mae", "r2"}
    # integer counts look like classes; --task regression says otherwise
    np.savez(tmp_path / "counts.npz", X=X, y=rng.integers(0, 7, 40))
    code, config = _genesis_from(tmp_path, "--data", str(tmp_path / "counts.npz"))
    assert code == 0 and config.model_spec.task == "classification" and config.model_spec.n_outputs == 7
    code, config = _genesis_from(tmp_path, "--data", str(tmp_path / "counts.npz"), "--task", "regression")
    assert code == 0 and config.model_spec.task == "regression" and config.model_spec.kind == "mlp"


@pytest.mark.parametrize("extra,match", [
    (("--model", "softmax"), "cannot do 'regression'"),
    (("--task", "classification"), "integer labels 0..C-1"),
    (("--dataset", "digits"), "either --dataset"),
])
def test_genesis_from_data_refusals_are_one_line(tmp_path, capsys, extra, match):
    import numpy as np
    np.savez(tmp_path / "reg.npz", X=np.zeros((6, 2)), y=np.linspace(-1.5, 2.5, 6))
    code, _ = _genesis_from(tmp_path, "--data", str(tmp_path / "reg.npz"), *extra)
    err = capsys.readouterr().err
    assert code == 2 and match in err and err.count("\n") == 1


def test_trimmed_mean_genesis_needs_a_quorum_it_can_trim():
    with pytest.raises(ConfigError, match="quorum 4 is below the 10 updates rule 'trimmed-mean'"):
        tiny_config(aggregation={"rule": "trimmed-mean", "params": {"beta": "0.1"}}, quorum=4)
    cfg = default_config(4, rule="trimmed-mean")  # defaults sized to the quorum
    assert cfg.params == {"beta": "0.25"}
    assert default_config(10, rule="trimmed-mean").params == {"beta": "0.1"}


def test_clock_allowance_is_bounded_by_the_block_interval():
    """Issue 10 item 10: a 60 s allowance against a 10 s retarget window let one
    block's timestamp ease the next target 4x. At most 4 block intervals now,
    and that is the default."""
    from tests.helpers import tiny_config
    assert tiny_config(target_block_ms=500, max_future_ms=2000).max_future_ms == 2000
    with pytest.raises(ConfigError, match=r"max_future_ms 60000 exceeds 4 block intervals .* at most 2000"):
        tiny_config(target_block_ms=500, max_future_ms=60_000)
    assert tiny_config(target_block_ms=500, max_future_ms=None).max_future_ms == 2000


def test_a_model_whose_updates_cannot_fit_max_tx_bytes_is_refused():
    from learningchain.ledger.genesis import default_config, min_update_bytes
    from dataclasses import replace
    config = default_config(4)
    need = min_update_bytes(config.expected_shapes())
    assert 13_000 < need < 14_000  # digits MLP 64-32-10: 2,410 float32 in base64, plus the tx fields
    with pytest.raises(ConfigError, match=f"below the {need} bytes a plain update of this model needs"):
        replace(config, max_tx_bytes=need - 1)
    assert replace(config, max_tx_bytes=need).max_tx_bytes == need


# --- secure aggregation (docs/protocol.md section 14.1) ------------------------------------
SA_KEYS = [crypto.PrivateKey.from_secret(900 + i).public_hex for i in range(10)]


def sa(threshold=7, clip="0.5", scale=1 << 20, phase_timeout=3):
    return {"secure_aggregation": {"threshold": threshold, "clip": clip, "scale": scale,
                                   "phase_timeout": phase_timeout}}


def sa_config(privacy=None, **overrides):
    base = dict(allow_list=tuple(SA_KEYS), quorum=10, privacy=sa() if privacy is None else privacy)
    return tiny_config(**{**base, **overrides})


def test_secure_aggregation_round_trips_and_absent_keeps_every_hash():
    cfg = sa_config()
    assert cfg.secure_aggregation.threshold == 7 and cfg.secure_aggregation.clip_value == 0.5
    back = NetworkConfig.from_dict(cfg.to_dict())
    assert back == cfg and make_genesis(back).hash == make_genesis(cfg).hash
    plain = tiny_config(allow_list=tuple(SA_KEYS), quorum=10)
    assert "privacy" not in plain.to_dict() and plain.secure_aggregation is None
    assert make_genesis(cfg.with_secure_aggregation(None)).hash == make_genesis(plain).hash
    assert make_genesis(cfg).hash != make_genesis(plain).hash


@pytest.mark.parametrize("change, words", [
    (dict(allow_list=None), "needs a known roster: write genesis with --allow-list or --participants"),
    (dict(aggregation={"rule": "krum", "params": {"f": 1}}),
     "robust rule krum cannot run under secure aggregation: it must see each update"),
    (dict(privacy=sa(threshold=5)), r"threshold 5 must be in \[floor\(N/2\)\+1, N\] = \[6, 10\]"),
    (dict(privacy=sa(threshold=11)), "threshold 11 must be in"),
    (dict(privacy=sa(clip="0")), "clip must be a positive decimal string"),
    (dict(privacy=sa(clip=0.5)), "clip must be a positive decimal string"),
    (dict(privacy=sa(scale=0)), "scale must be an integer"),
    (dict(privacy=sa(scale=1 << 28)), r"N \* ceil\(clip \* scale\) = 1342177280 exceeds 2\^30"),
    (dict(privacy=sa(phase_timeout=0)), "phase_timeout must be an integer"),
    (dict(privacy={"secure_aggregation": {**sa()["secure_aggregation"], "noise": 1}}), "unknown key"),
    (dict(privacy={"secure_aggregation": {"threshold": 7}}), "missing key"),
    (dict(privacy={"other": {}}), "privacy must be"),
    (dict(quorum=6), "quorum 6 is below the secure_aggregation threshold t=7"),
])
def test_secure_aggregation_refusals(change, words):
    with pytest.raises(ConfigError, match=words):
        sa_config(**change)


def test_secure_aggregation_refuses_a_selection_that_may_pick_fewer_than_t():
    from learningchain.ledger.genesis import with_participants
    base = tiny_config(quorum=10)
    with pytest.raises(ConfigError, match="may select 5 sender.s., fewer than the secure_aggregation threshold"):
        with_participants(base, SA_KEYS, "random-k", 5).with_secure_aggregation(sa_config().secure_aggregation)
    ok = with_participants(base, SA_KEYS, "random-k", 8).with_secure_aggregation(
        sa_config(privacy=sa(threshold=6), quorum=8).secure_aggregation)
    assert ok.secure_aggregation.threshold == 6


def test_cli_writes_a_secure_aggregation_genesis_with_its_defaults(tmp_path, capsys):
    from learningchain.cli.main import main
    out = tmp_path / "g.json"
    assert main(["genesis", "--nodes", "10", "--allow-list", ",".join(SA_KEYS), "--out", str(out),
                 "--secure-aggregation", "--round-timeout", "9"]) == 0
    cfg = NetworkConfig.from_dict(__import__("json").loads(out.read_text()))
    p = cfg.secure_aggregation
    assert (p.threshold, p.clip, p.phase_timeout) == (7, "0.5", 9)
    assert 10 * 0.5 * p.scale <= 1 << 28 < 10 * 0.5 * p.scale * 2
    assert main(["genesis", "--nodes", "3", "--open", "--out", str(tmp_path / "h.json"),
                 "--secure-aggregation"]) == 2
    assert "needs a known roster" in capsys.readouterr().err

"""Distributed DP under secure aggregation (learning/ddp.py, --dp-mode distributed):
Skellam noise statistics, the calibration against the target epsilon (Gaussian
and exact Skellam RDP), the unmasked sum being exactly the sum of the members'
noisy quantised deltas, no wraparound, the one-line refusal without secure
aggregation, the mode in /status, and a seeded 10-node run."""
from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest

from learningchain.cli import main as cli
from learningchain.core.crypto import PrivateKey
from learningchain.core.encoding import weights_digest
from learningchain.core.errors import ConfigError
from learningchain.learning import ddp, privacy, secagg
from learningchain.learning.models import default_spec
from learningchain.ledger.secagg_close import new_model
from learningchain.node import status
from learningchain.node.participant import Participant, Role
from learningchain.node.secagg_client import flatten
from learningchain.sim.config import SimConfig
from learningchain.sim.ddp_exact import run_exact
from learningchain.sim.simulator import Simulation
from tests.cli.test_main import assert_one_line_error, node_py


def _cfg(**kw) -> SimConfig:
    base = dict(nodes=10, rounds=3, dataset="digits", model="softmax", secure_aggregation=True,
                sa_scale=1 << 20, dp_mode="distributed", dp_epsilon=8.0, dp_clip=0.2)
    return SimConfig(**{**base, **kw})


def test_skellam_noise_has_mean_zero_and_variance_two_mu():
    rng = np.random.default_rng(1)
    for mu in (0.5, 30.0, 1e9):
        x = ddp.skellam(rng, mu, 400_000)
        assert x.dtype == np.int64
        sd = np.sqrt(2 * mu)
        assert abs(x.mean()) < 5 * sd / np.sqrt(x.size)
        assert x.var() == pytest.approx(2 * mu, rel=0.02)
    share = ddp.NoiseShare(ddp.calibrate(8.0, 1e-5, 5, 0.2, 1 << 20, 650, 7), seed=3)
    assert np.array_equal(share.prepare(np.ones(650), 2)[1], share.prepare(np.ones(650), 2)[1])  # seeded: reproducible
    live = ddp.NoiseShare(share.plan)  # no seed: OS entropy, never twice the same
    assert not np.array_equal(live.prepare(np.ones(650), 2)[1], live.prepare(np.ones(650), 2)[1])


@pytest.mark.parametrize("eps,rounds,scale", [(2.0, 20, 1 << 20), (8.0, 20, 1 << 20), (4.0, 10, 1 << 25),
                                              (8.0, 5, 4)])
def test_calibrated_mu_spends_at_most_the_target(eps, rounds, scale):
    plan = ddp.calibrate(eps, 1e-5, rounds, 0.2, scale, 650, 7, 0.5)
    spent = plan.epsilon_after(rounds, range_clip=0.5)
    assert spent["gaussian"] <= eps + 1e-9 and spent["skellam"] <= eps + 1e-9
    assert spent["skellam"] > 0.95 * eps  # not wastefully over-noised
    acc = privacy.Accountant("distributed", plan.noise_multiplier(), 1e-5)
    assert acc.step(rounds) == pytest.approx(spent["gaussian"])
    # the sum's variance over the sensitivity is the calibrated z: 2 t mu = (z Delta_2)^2
    assert plan.noise_multiplier() >= privacy.calibrate(eps, 1e-5, rounds) * (1 - 1e-12)
    # fewer honest shares than t: more epsilon
    assert plan.epsilon_after(rounds, honest=3)["gaussian"] > eps


def test_unmasked_sum_is_the_sum_of_the_noisy_quantised_deltas():
    sim = Simulation(_cfg(rounds=1))
    state = sim.ledgers[0].chain.tip_state
    r, base = state.round, state.model
    entry = sim.run_round()
    params = sim.network.secure_aggregation
    assert len(sim.sa_deltas) == 10 and entry["secure_aggregation"]["counted"] == 10
    total = np.zeros(flatten(base).size, dtype=np.uint32)
    for k, delta in sim.sa_deltas.items():
        clipped, noise = sim.clients[k].dp.prepare(delta, r)
        assert np.linalg.norm(clipped) <= 0.2 + 1e-12 and np.any(noise != 0)
        total += secagg.quantize(clipped, params.clip_value, params.scale, noise)
    assert hashlib.sha256(total.astype("<u4").tobytes()).hexdigest() == entry["secure_aggregation"]["sum_digest"]
    assert weights_digest(new_model(base, total, 10, params.scale)) == sim.ledgers[0].chain.tip_state.model_digest
    assert entry["dp_mode"] == "distributed" and 0 < entry["epsilon"] < 8


def test_no_wraparound_and_a_config_that_could_wrap_is_refused():
    plan = ddp.calibrate(8.0, 1e-5, 20, 0.2, 1 << 20, 650, 67, 0.5)
    bound = ddp.check_no_wrap(plan, 100, 0.5)
    assert bound < 2 ** 31
    # the worst inputs plus real noise of 100 shares decode exactly (signed 32-bit)
    rng = np.random.default_rng(0)
    q = np.full(650, int(np.ceil(0.5 * plan.scale)), dtype=np.int64)
    noise = sum(ddp.skellam(rng, plan.mu, 650) for _ in range(100))
    exact = 100 * q + noise
    total = secagg.add_mod([((q + ddp.skellam(rng, 0, 650)) & 0xFFFFFFFF).astype(np.uint32)] * 100 +
                           [(noise & 0xFFFFFFFF).astype(np.uint32)], 650)
    assert np.array_equal(secagg.decode_average(total, 1, 1), exact.astype(np.float64))
    tight = ddp.calibrate(0.5, 1e-5, 30, 3.0, 1 << 25, 650, 7, 0.5)
    with pytest.raises(ConfigError, match="wrap") as exc:
        ddp.check_no_wrap(tight, 10, 0.5)
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="wrap"):
        Simulation(_cfg(dp_epsilon=0.5, rounds=30, dp_clip=3.0, sa_scale=None))


def test_distributed_without_secure_aggregation_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["simulate", "--nodes", "4", "--rounds", "1", "--dp-mode", "distributed", "--dp-epsilon", "8",
                     "--dp-clip", "0.2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "distributed needs secure_aggregation" in err[0]
    proc = node_py("run", "--data-dir", str(tmp_path / "d"), "--port", "5997", "--dp-mode", "distributed",
                   "--dp-epsilon", "8", "--dp-clip", "0.2")
    assert "--dp-mode distributed needs secure aggregation" in assert_one_line_error(proc, 2)
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--dp-mode", "distributed", "--dp-epsilon", "8",
                     "--dp-clip", "0.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dp-mode distributed needs secure aggregation" in err[0]
    assert not (tmp_path / "demo").exists()
    with pytest.raises(ConfigError, match="needs --dp-epsilon"):
        Role(dp_mode="distributed", dp_sigma=1.0, dp_clip=0.2)
    with pytest.raises(ConfigError, match="clip"):
        Role(dp_mode="distributed", dp_epsilon=8.0, dp_rounds=5)


def test_status_carries_the_distributed_mode():
    spec = default_spec("digits", "softmax")
    rng = np.random.default_rng(0)
    p = Participant(PrivateKey.from_secret(7), spec, rng.normal(size=(8, spec.n_features)), np.arange(8) % 10,
                    Role(dp_mode="distributed", dp_epsilon=4.0, dp_clip=0.2, dp_rounds=10))
    doc = status.privacy_report(SimpleNamespace(participant=p))
    assert doc["mode"] == "distributed" and doc["delta"] == 1e-5 and doc["target_epsilon"] == 4.0
    assert "add/remove-one" in doc["relation"] and doc["epsilon"] == 0.0
    with pytest.raises(ConfigError, match="never to a plain update"):
        p.make_update(1, {}, "00" * 32, 0)


def test_ten_node_run_is_deterministic_and_learns():
    cfg = _cfg(rounds=4)
    a = Simulation(cfg).run(with_baselines=False)
    b = Simulation(cfg).run(with_baselines=False)
    assert a["config"]["model_digest"] == b["config"]["model_digest"]
    assert a["final"]["accuracy"] == b["final"]["accuracy"] >= 0.4
    assert run_exact(cfg)["model_digest"] == a["config"]["model_digest"]  # the exact-sum path, bit for bit
    rep = next(iter(a["privacy"].values()))
    assert rep["mode"] == "distributed" and rep["rounds"] == 4 and rep["epsilon"] <= 8.0 + 1e-9
    assert [e["dp_mode"] for e in a["rounds"]] == ["distributed"] * 4

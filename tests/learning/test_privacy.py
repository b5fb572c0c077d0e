"""Clipping + Gaussian noise, the Rényi-DP accountant (sensitivity 2C), secret
noise on the live path, no local metrics in a DP tx, the privacy a node reports
in /status and its log (also after a restart, which never releases a round twice),
and the CLI refusing --dp-clip without --dp-sigma and non-finite values."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

from learningchain.cli import main as cli
from learningchain.node.web.api import create_app
from learningchain.core.crypto import PrivateKey
from learningchain.learning.data import load_partition
from learningchain.core.encoding import weights_digest
from learningchain.core.errors import ConfigError
from learningchain.learning.models import build_model, default_spec
from learningchain.node.threads import participate_once
from learningchain.node.participant import Participant, Role, derive_seed
from learningchain.learning.privacy import (best_order, epsilon, library_epsilon, node_accountant,
                                            noise_multiplier, privatize, rdp_gaussian, release_epsilon)
from learningchain.node.releases import RELEASES_FILE
from learningchain.node.service import Node
from learningchain.sim.simulator import SimConfig, Simulation
from tests.helpers import KEYS, next_block, tiny_config
from tests.cli.test_main import assert_one_line_error, node_py
from tests.served import wait_for
from tests.node.test_service import write_partition


def W(a, b):
    return OrderedDict(W0=np.asarray(a, np.float32), b0=np.asarray(b, np.float32))


def test_privatize_clips_to_global_norm_without_noise():
    base = W([[0.0, 0.0]], [0.0])
    out = privatize(W([[3.0, 0.0]], [4.0]), base, clip=1.0, sigma=0.0,
                    rng=np.random.default_rng(0))
    np.testing.assert_allclose(out["W0"], [[0.6, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(out["b0"], [0.8], rtol=1e-6)
    small = privatize(W([[0.3, 0.0]], [0.4]), base, clip=1.0, sigma=0.0,
                      rng=np.random.default_rng(0))
    np.testing.assert_allclose(small["W0"], [[0.3, 0.0]], rtol=1e-6)  # inside the ball: unchanged
    assert out["W0"].dtype == np.float32


def test_privatize_noise_scale_and_determinism():
    d = 20000
    base = OrderedDict(w=np.ones(d, np.float32))
    w = OrderedDict(w=np.ones(d, np.float32))  # zero delta: output - base is pure noise
    a = privatize(w, base, clip=2.0, sigma=0.5, rng=np.random.default_rng(1))
    b = privatize(w, base, clip=2.0, sigma=0.5, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a["w"], b["w"])
    assert abs(float(np.std(a["w"] - 1.0)) - 1.0) < 0.03   # sigma * clip = 1


def test_privatize_refuses_bad_params():
    w = W([[0.0]], [0.0])
    with pytest.raises(ConfigError):
        privatize(w, w, clip=0.0, sigma=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError):
        privatize(w, w, clip=1.0, sigma=-1.0, rng=np.random.default_rng(0))


def test_epsilon_matches_closed_form_optimum():
    sigma, T, delta = 1.1, 20, 1e-5
    c, L = T / (2 * sigma ** 2), math.log(1 / delta)
    expected = c + 2 * math.sqrt(c * L)
    assert epsilon(sigma, T, delta) == pytest.approx(expected, rel=1e-12)
    # the closed form is the minimum of the RDP conversion over orders
    grid = np.linspace(1.001, 200, 200000)
    numeric = float(np.min(rdp_gaussian(sigma, grid, T) + L / (grid - 1)))
    assert epsilon(sigma, T, delta) == pytest.approx(numeric, rel=1e-6)
    a = best_order(sigma, T, delta)
    assert rdp_gaussian(sigma, a, T) + L / (a - 1) == pytest.approx(expected, rel=1e-12)


def test_improved_conversion_is_tighter_but_positive():
    for sigma in (0.8, 1.0, 2.0, 5.0):
        classic = epsilon(sigma, 10, 1e-5)
        improved = epsilon(sigma, 10, 1e-5, conversion="improved")
        assert 0 < improved < classic


def test_epsilon_monotone():
    eps_t = [epsilon(1.0, t, 1e-5) for t in range(0, 30)]
    assert eps_t[0] == 0.0 and all(a < b for a, b in zip(eps_t, eps_t[1:]))
    eps_s = [epsilon(s, 10, 1e-5) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(eps_s, eps_s[1:]))
    eps_d = [epsilon(1.0, 10, d) for d in (1e-3, 1e-5, 1e-7)]
    assert all(a < b for a, b in zip(eps_d, eps_d[1:]))
    assert epsilon(0.0, 3, 1e-5) == math.inf


def closed_form_release(sigma: float, T: int, delta: float) -> float:
    """Mironov 2017: T Gaussian releases, noise std sigma*C, sensitivity 2C, so noise
    multiplier z = sigma/2 and c = T / (2 z^2) = 2T / sigma^2; eps = c + 2 sqrt(c log(1/delta))."""
    c = 2 * T / sigma ** 2
    return c + 2 * math.sqrt(c * math.log(1 / delta))


def test_two_clipped_updates_differ_by_up_to_2c():
    """Why the sensitivity is 2C: opposite updates clip to opposite points of the ball."""
    base = W([[0.0, 0.0]], [0.0])
    kw = dict(clip=1.5, sigma=0.0, rng=np.random.default_rng(0))
    a, b = privatize(W([[9.0, 0.0]], [0.0]), base, **kw), privatize(W([[-9.0, 0.0]], [0.0]), base, **kw)
    dist = math.sqrt(sum(float(np.sum((a[k].astype(np.float64) - b[k]) ** 2)) for k in a))
    assert dist == pytest.approx(2 * 1.5, rel=1e-6)
    assert noise_multiplier(3.0) == 1.5


@pytest.mark.parametrize("sigma,T,delta", [(0.5, 1, 1e-5), (1.0, 10, 1e-5), (3.0, 10, 1e-6), (10.0, 100, 1e-3)])
def test_release_epsilon_is_the_closed_form_with_sensitivity_2c(sigma, T, delta):
    assert release_epsilon(sigma, T, delta) == pytest.approx(closed_form_release(sigma, T, delta), rel=1e-12)
    # a release at sigma costs what a unit-sensitivity Gaussian at sigma/2 costs, more than at sigma
    assert release_epsilon(sigma, T, delta) == pytest.approx(epsilon(sigma / 2, T, delta), rel=1e-12)
    assert release_epsilon(sigma, T, delta) > epsilon(sigma, T, delta)


def test_accountant_tracks_rounds():
    acc = node_accountant(sigma=1.0, delta=1e-5)
    assert acc.epsilon() == 0.0
    acc.step()
    acc.step(2)
    assert acc.rounds == 3 and len(acc.history) == 3
    assert acc.epsilon() == pytest.approx(library_epsilon("node", 0.5, 3, 1e-5), rel=1e-12)
    assert acc.epsilon() <= closed_form_release(1.0, 3, 1e-5)
    assert sum(acc.per_round) == pytest.approx(acc.epsilon())
    assert all(x > 0 for x in acc.per_round)
    with pytest.raises(ConfigError):
        node_accountant(sigma=1.0, delta=2.0)


# --- the participant: secret noise, no local metrics ------------------------------------

SPEC = default_spec("digits", "softmax")
RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 64)).astype(np.float32)
Y = RNG.integers(0, 10, size=40)
G0 = build_model(SPEC).initial_weights()
TRAINED = OrderedDict((k, v + RNG.normal(scale=0.1, size=v.shape).astype(np.float32)) for k, v in G0.items())
DP = Role(dp_sigma=0.5, dp_clip=1.0)


def dp_update(reproducible: bool, role: Role = DP):
    p = Participant(PrivateKey.from_secret(9), SPEC, X, Y, role, seed=0, reproducible_noise=reproducible)
    return p, p.make_update(3, G0, weights_digest(G0), 1234, trained=TRAINED)


def regenerated(p: Participant) -> "OrderedDict[str, np.ndarray]":
    """What an observer computes from public facts (seed 0, address, round) if the
    noise were derived from them."""
    rng = np.random.default_rng(derive_seed(0, p.key.address, 3, "noise"))
    return privatize(TRAINED, G0, DP.dp_clip, DP.dp_sigma, rng)


def test_live_noise_is_fresh_and_cannot_be_regenerated():
    (p1, a), (_, b) = dp_update(False), dp_update(False)
    for k in G0:  # same key, seed, round and weights: different noise
        assert not np.array_equal(a.decoded_weights[k], b.decoded_weights[k])
    guess = regenerated(p1)
    assert any(not np.allclose(guess[k], a.decoded_weights[k]) for k in G0)
    noise = np.concatenate([(a.decoded_weights[k] - privatize(TRAINED, G0, 1.0, 0.0, RNG)[k]).ravel()
                            for k in G0])
    # sigma * C, still the promised scale: the sample std of n normals has standard error
    # sigma / sqrt(2n) (0.014 for these 650 entries); 6 of them, as fresh noise differs every run
    # (a fixed 0.05 failed once on CI at 0.0568)
    assert abs(float(np.std(noise)) - 0.5) < 6 * 0.5 / np.sqrt(2 * noise.size)


def test_simulator_noise_is_reproducible_and_not_private():
    (p1, a), (_, b) = dp_update(True), dp_update(True)
    assert a.id == b.id  # reproducible experiment...
    guess = regenerated(p1)
    for k in G0:  # ...and exactly why it is not private: anyone regenerates it
        np.testing.assert_array_equal(guess[k], a.decoded_weights[k])
    sim = Simulation(SimConfig(nodes=2, rounds=1, model="softmax", dp_sigma=1.0, dp_clip=1.0))
    assert all(p.reproducible_noise for p in sim.participants)
    sim = Simulation(SimConfig(nodes=2, rounds=1, model="softmax", dp_sigma=1.0, dp_clip=1.0, dp_noise="os"))
    assert not any(p.reproducible_noise for p in sim.participants)


def test_dp_tx_carries_no_local_metrics():
    _, tx = dp_update(False)
    assert tx.metrics == {}
    skip = dp_update(False, Role(dp_sigma=0.5, dp_clip=1.0, skip_threshold=1e9))[1]
    assert skip.is_skip and skip.metrics == {}
    plain = Participant(PrivateKey.from_secret(9), SPEC, X, Y).make_update(3, G0, weights_digest(G0), 1234,
                                                                          trained=TRAINED)
    assert set(plain.decoded_metrics()) == {"accuracy", "precision", "recall", "f1"}


def test_simulated_rounds_report_epsilon_and_delta():
    sim = Simulation(SimConfig(nodes=2, rounds=2, model="softmax", dp_sigma=2.0, dp_clip=1.0, dp_delta=1e-6))
    res = sim.run(with_baselines=False)
    assert res["config"]["dp_delta"] == 1e-6 and res["config"]["dp_noise"] == "seeded"
    for r, entry in enumerate(res["rounds"], 1):
        assert entry["delta"] == 1e-6
        assert entry["epsilon"] == pytest.approx(library_epsilon("node", 1.0, r, 1e-6), rel=1e-12)
        assert entry["epsilon"] <= closed_form_release(2.0, r, 1e-6) and entry["dp_mode"] == "node"
    assert res["privacy"]["node0"]["mode"] == "node" and res["privacy"]["node0"]["delta"] == 1e-6


# --- the live node: /status and the log ----------------------------------------------------

def test_status_reports_privacy_spent_and_the_log_says_it(tmp_path, capsys):
    data = write_partition(tmp_path)
    node = Node(tmp_path / "n", tiny_config(), dataset_path=data, dp_sigma=2.0, dp_clip=0.5, port=5998)
    plain = Node(tmp_path / "p", tiny_config(), dataset_path=data, quiet=True, port=5997)
    try:
        status = create_app(node).test_client().get("/status").get_json()
        priv = status["privacy"]
        assert {k: priv[k] for k in ("sigma", "clip", "delta", "rounds", "epsilon", "mode")} == \
            {"sigma": 2.0, "clip": 0.5, "delta": 1e-5, "rounds": 0, "epsilon": 0.0, "mode": "node"}
        assert priv["noise_multiplier"] == 1.0 and "replace-one" in priv["relation"]
        participate_once(node)  # trains, privatises, signs and submits round 1
        status = create_app(node).test_client().get("/status").get_json()
        eps = library_epsilon("node", 1.0, 1, 1e-5)
        assert status["privacy"]["rounds"] == 1 and status["privacy"]["epsilon"] == pytest.approx(eps)
        assert f"privacy after round 1: epsilon {eps:.4f}, delta 1e-05" in capsys.readouterr().out
        assert create_app(plain).test_client().get("/status").get_json()["privacy"] is None
    finally:
        node.stop()
        plain.stop()


def own_in_mempool(node: Node) -> list:
    with node.lock:
        return [t for t in node.ledger.mempool if t.sender == node.pubkey]


def test_restart_keeps_the_privacy_spent_and_never_releases_a_round_twice(tmp_path):
    """A restarted node counts the updates it released before (journal + chain),
    and for a round whose update is out but not yet mined it sends the SAME tx
    again: a second noisy copy of the same clipped delta would halve the noise
    variance by averaging (training is deterministic from public facts)."""
    data, cfg = write_partition(tmp_path), tiny_config(quorum=2, round_timeout=50)
    eps1 = library_epsilon("node", 1.0, 1, 1e-5)
    first = Node(tmp_path / "n", cfg, dataset_path=data, dp_sigma=2.0, dp_clip=0.5, quiet=True)
    first.start()
    try:
        sent = wait_for(lambda: own_in_mempool(first), seconds=30, what="the round-1 update")[0]
    finally:
        first.stop()
    assert first.privacy_report()["rounds"] == 1
    again = Node(tmp_path / "n", cfg, dataset_path=data, dp_sigma=2.0, dp_clip=0.5, quiet=True)
    assert again.privacy_report()["rounds"] == 1  # before any thread runs: /status is right at once
    assert again.privacy_report()["epsilon"] == pytest.approx(eps1)
    again.start()
    try:
        resent = wait_for(lambda: own_in_mempool(again), seconds=30, what="the round-1 update resent")
        assert [t.id for t in resent] == [sent.id]  # byte for byte the same release
        assert "train_count" not in again.timings() and again.privacy_report()["rounds"] == 1
    finally:
        again.stop()
    assert len((tmp_path / "n" / RELEASES_FILE).read_text().splitlines()) == 1

    # mined: the chain alone proves the release (a data dir from before the journal) ...
    third = Node(tmp_path / "n", cfg, dataset_path=data, dp_sigma=2.0, dp_clip=0.5, quiet=True)
    try:
        other = Participant(KEYS[0], cfg.model_spec, *load_partition(data))
        state = third.chain.tip_state
        txs = [sent, other.make_update(1, state.model, state.model_digest, 1)]
        assert third.submit_block(next_block(third.chain, txs), relay=False) == "connected"
    finally:
        third.stop()
    (tmp_path / "n" / RELEASES_FILE).unlink()
    fourth = Node(tmp_path / "n", cfg, dataset_path=data, dp_sigma=2.0, dp_clip=0.5, quiet=True)
    try:
        assert fourth.chain.tip_state.round == 2 and fourth.privacy_report()["rounds"] == 1
        participate_once(fourth)  # ... and round 2 is a new release, journalled and counted
        assert fourth.privacy_report()["rounds"] == 2
        assert [t.round for t in own_in_mempool(fourth)] == [2]
    finally:
        fourth.stop()
    fifth = Node(tmp_path / "n", cfg, dataset_path=data, dp_sigma=2.0, dp_clip=0.5, quiet=True)
    try:  # journal (round 2) and chain (round 1) together, nothing counted twice
        assert fifth.privacy_report()["rounds"] == 2
    finally:
        fifth.stop()


# --- the CLI ---------------------------------------------------------------------------------

def test_run_refuses_clip_without_sigma(tmp_path):
    proc = node_py("run", "--data-dir", str(tmp_path / "d"), "--port", "5996", "--dp-clip", "1")
    assert "--dp-clip needs --dp-sigma" in assert_one_line_error(proc, 2)
    assert not (tmp_path / "d").exists()  # refused before anything was written


def test_simulate_refuses_clip_without_sigma(tmp_path, capsys):
    assert cli.main(["simulate", "--nodes", "2", "--rounds", "1", "--dp-clip", "1",
                     "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dp-clip needs --dp-sigma" in err[0]
    assert not (tmp_path / "o").exists()


# --- non-finite settings: refused everywhere, never a silent "DP off" ------------------------

@pytest.mark.parametrize("kwargs", [dict(dp_sigma=math.nan, dp_clip=1.0), dict(dp_sigma=math.inf, dp_clip=1.0),
                                    dict(dp_sigma=1.0, dp_clip=math.nan), dict(dp_sigma=1.0, dp_clip=math.inf),
                                    dict(dp_sigma=1.0, dp_clip=1.0, dp_delta=math.nan),
                                    dict(dp_sigma="1", dp_clip=1.0)])
def test_role_and_simulation_refuse_non_finite_dp(kwargs):
    with pytest.raises(ConfigError, match="finite number"):
        Role(**kwargs)
    with pytest.raises(ConfigError, match="finite number"):  # the simulator asks Role: one rule
        SimConfig(nodes=2, rounds=1, **kwargs)


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_run_refuses_non_finite_dp_flags_before_writing(tmp_path, capsys, value):
    for flags in (["--dp-sigma", value, "--dp-clip", "1"], ["--dp-sigma", "1", "--dp-clip", value]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["run", "--data-dir", str(tmp_path / "d"), "--port", "5996", *flags])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "must be a finite number >= 0" in err[0] and value in err[0]
    assert not (tmp_path / "d").exists()


def test_run_refuses_sigma_without_clip_in_process(tmp_path, capsys):
    assert cli.main(["run", "--data-dir", str(tmp_path / "d"), "--port", "5996", "--dp-sigma", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a clip norm" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "d").exists()


def test_dp_node_publishes_a_size_bucket_and_status_hides_its_training_work(tmp_path):
    """Issue 10 item 9: the exact num_samples and /status sample-epochs named a DP
    node's data-set size (90 here) in every tx; now the tx says 64 (the largest
    power of two <= 90) and /status, /rounds/<r> energy leave training out."""
    from learningchain.learning.privacy import published_samples
    assert [published_samples(n) for n in (1, 2, 3, 90, 128, 129)] == [1, 2, 2, 64, 128, 128]
    data = write_partition(tmp_path)
    node = Node(tmp_path / "n", tiny_config(), dataset_path=data, dp_sigma=2.0, dp_clip=0.5, quiet=True, port=5995)
    plain = Node(tmp_path / "p", tiny_config(), dataset_path=data, quiet=True, port=5994)
    try:
        for n in (node, plain):
            participate_once(n)
        (dp_tx,), (plain_tx,) = own_in_mempool(node), own_in_mempool(plain)
        assert plain_tx.num_samples == 90 and dp_tx.num_samples == 64
        client = create_app(node).test_client()
        energy = client.get("/status").get_json()["energy"]
        assert "sample_epochs" not in energy and "train_j" not in energy and energy["training_hidden"]
        assert "train_s" not in client.get("/status").get_json()["timings"]
        assert "sample_epochs" not in (client.get("/rounds/1").get_json()["energy"] or {})
        assert create_app(plain).test_client().get("/status").get_json()["energy"]["sample_epochs"] > 0
    finally:
        node.stop()
        plain.stop()


# --- the library accountant (dp-accounting) and calibration -----------------------------------

import dp_accounting  # noqa: E402
from dp_accounting.rdp import RdpAccountant  # noqa: E402

from learningchain.learning.privacy import RDP_ORDERS, Accountant, calibrate, node_sigma_for  # noqa: E402


@pytest.mark.parametrize("eps,steps,q", [(8.0, 120, 0.25), (1.0, 120, 0.25), (4.0, 300, 0.1), (8.0, 30, 1.0)])
def test_calibration_spends_at_most_the_target_and_close_to_it(eps, steps, q):
    z = calibrate(eps, 1e-5, steps, q)
    mode = "node" if q == 1.0 else "sample"
    spent = Accountant(mode, z, 1e-5, steps_per_release=1 if q == 1.0 else steps, sample_rate=q)
    spent.step(steps if q == 1.0 else 1)
    assert spent.epsilon() <= eps and spent.epsilon() > 0.99 * eps
    looser = Accountant(mode, z * 0.97, 1e-5, steps_per_release=1 if q == 1.0 else steps, sample_rate=q)
    looser.step(steps if q == 1.0 else 1)
    assert looser.epsilon() > eps  # z is (about) the smallest that fits


def test_accountant_matches_dp_accounting_directly():
    acc = Accountant("sample", 1.3, 1e-5, steps_per_release=4, sample_rate=0.25)
    acc.step(5)
    direct = RdpAccountant(list(RDP_ORDERS))
    direct.compose(dp_accounting.PoissonSampledDpEvent(0.25, dp_accounting.GaussianDpEvent(1.3)), 20)
    assert acc.epsilon() == pytest.approx(direct.get_epsilon(1e-5), rel=1e-12)
    node = node_accountant(sigma=3.0)
    node.step(7)
    direct = RdpAccountant(list(RDP_ORDERS))
    direct.compose(dp_accounting.GaussianDpEvent(1.5), 7)
    assert node.epsilon() == pytest.approx(direct.get_epsilon(1e-5), rel=1e-12)
    assert node.report()["mode"] == "node" and acc.report()["steps"] == 20


@pytest.mark.parametrize("sigma,T,delta", [(0.5, 1, 1e-5), (1.0, 10, 1e-5), (3.0, 10, 1e-6), (10.0, 100, 1e-3)])
def test_node_mode_library_epsilon_agrees_with_the_old_closed_form(sigma, T, delta):
    new = library_epsilon("node", noise_multiplier(sigma), T, delta)
    old = release_epsilon(sigma, T, delta)
    assert new <= old * (1 + 1e-9)  # the closed form is an RDP bound at one real order: never tighter
    assert new >= 0.7 * old  # ... and only as loose as the conversion: the same order of magnitude


def test_node_sigma_is_calibrated_from_epsilon():
    sigma = node_sigma_for(8.0, 1e-5, 30)
    acc = node_accountant(sigma)
    acc.step(30)
    assert 7.9 < acc.epsilon() <= 8.0


def test_role_calibrates_and_refuses_bad_dp_settings():
    role = Role(dp_mode="sample", dp_epsilon=8.0, dp_rounds=30)
    acc = role.make_accountant()
    assert acc.mode == "sample" and acc.steps_per_release == 4 and acc.sample_rate == 0.25 and role.clip == 1.0
    acc.step(30)
    assert 7.9 < acc.epsilon() <= 8.0
    node = Role(dp_epsilon=8.0, dp_clip=1.0, dp_rounds=10)
    assert node.mode == "node" and node.make_accountant().noise_multiplier > 0
    for kwargs, msg in [(dict(dp_mode="sample"), "needs --dp-epsilon"),
                        (dict(dp_mode="sample", dp_epsilon=8.0), "dp_rounds"),
                        (dict(dp_mode="bogus", dp_epsilon=1.0, dp_rounds=1), "unknown dp mode"),
                        (dict(dp_sigma=1.0, dp_epsilon=1.0, dp_clip=1.0, dp_rounds=1), "not both"),
                        (dict(dp_epsilon=8.0, dp_rounds=3), "clip norm"),
                        (dict(dp_sigma=1.0, dp_clip=1.0, dp_sample_rate=0.5), "sample only"),
                        (dict(dp_mode="sample", dp_epsilon=8.0, dp_rounds=3, dp_sample_rate=1.5), "sample rate")]:
        with pytest.raises(ConfigError, match=msg):
            Role(**kwargs)


def test_sample_mode_participant_trains_with_dp_sgd_and_accounts_every_step():
    role = Role(dp_mode="sample", dp_epsilon=4.0, dp_rounds=3)
    p = Participant(PrivateKey.from_secret(9), SPEC, X, Y, role, seed=0, reproducible_noise=True)
    tx = p.make_update(1, G0, weights_digest(G0), 1234)
    assert tx.metrics == {} and tx.num_samples == 32 and p.accountant.rounds == 1
    again = Participant(PrivateKey.from_secret(9), SPEC, X, Y, role, seed=0, reproducible_noise=True)
    assert again.make_update(1, G0, weights_digest(G0), 1234).id == tx.id  # seeded: reproducible
    live = Participant(PrivateKey.from_secret(9), SPEC, X, Y, role, seed=0)
    assert live.make_update(1, G0, weights_digest(G0), 1234).id != tx.id  # live: OS entropy
    p.accountant.step(2)
    assert p.budget_spent() and p.accountant.epsilon() <= 4.0


def test_sample_mode_simulation_is_deterministic_and_reports_mode_epsilon_delta(tmp_path):
    from learningchain.sim.results import read_results, write_results
    cfg = SimConfig(nodes=2, rounds=2, model="softmax", dp_mode="sample", dp_epsilon=2.0, dp_delta=1e-6)
    a, b = Simulation(cfg).run(with_baselines=False), Simulation(cfg).run(with_baselines=False)
    assert a["config"]["model_digest"] == b["config"]["model_digest"]
    assert a["rounds"][-1]["epsilon"] == pytest.approx(2.0, rel=0.01) and a["rounds"][-1]["epsilon"] <= 2.0
    assert a["rounds"][-1]["dp_mode"] == "sample" and a["rounds"][-1]["delta"] == 1e-6
    rep = a["privacy"]["node1"]
    assert rep["mode"] == "sample" and rep["target_epsilon"] == 2.0 and "add/remove-one" in rep["relation"]
    a["baselines"] = {"centralized": None, "local_only": None}
    back = read_results(write_results(tmp_path, a))
    assert back["privacy"]["node0"]["epsilon"] == rep["epsilon"]


def test_sim_config_names_the_bad_dp_key():
    with pytest.raises(ConfigError, match="dp_mode"):
        SimConfig.from_dict({"dp_mode": "bogus", "dp_epsilon": 1.0})
    with pytest.raises(ConfigError, match="dp_sample_rate"):
        SimConfig.from_dict({"dp_mode": "sample", "dp_epsilon": 1.0, "dp_sample_rate": 2.0})


def test_live_node_stops_releasing_when_its_planned_rounds_are_spent(tmp_path, capsys):
    data = write_partition(tmp_path)
    node = Node(tmp_path / "n", tiny_config(), dataset_path=data, dp_mode="sample", dp_epsilon=2.0,
                dp_rounds=1, port=5991)
    try:
        node.participant.accountant.step()  # as if round 1's release had been restored from the journal
        participate_once(node)
        assert own_in_mempool(node) == [] and node.privacy_report()["rounds"] == 1
        assert "not training, the privacy budget is spent" in capsys.readouterr().out
        assert node.privacy_report()["planned_rounds"] == 1 and node.privacy_report()["epsilon"] <= 2.0
    finally:
        node.stop()

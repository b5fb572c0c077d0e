"""Clipping + Gaussian noise, and the Rényi-DP accountant."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

from learningchain.errors import ConfigError
from learningchain.privacy import (PrivacyAccountant, best_order, epsilon, privatize,
                                   rdp_gaussian)


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


def test_accountant_tracks_rounds():
    acc = PrivacyAccountant(sigma=1.0, delta=1e-5)
    assert acc.epsilon() == 0.0
    acc.step()
    acc.step(2)
    assert acc.rounds == 3 and len(acc.history) == 3
    assert acc.epsilon() == pytest.approx(epsilon(1.0, 3, 1e-5))
    assert sum(acc.per_round) == pytest.approx(acc.epsilon())
    assert all(x > 0 for x in acc.per_round)
    with pytest.raises(ConfigError):
        PrivacyAccountant(sigma=1.0, delta=2.0)

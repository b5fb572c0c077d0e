"""Sample-level DP-SGD (learning/models/dpsgd.py): per-example gradients in
closed form equal the batch backprop of each single example, clipping bounds
each example's contribution, the noise has the promised scale, the Poisson
sample the promised rate, and a seeded run is reproducible."""
from __future__ import annotations

import numpy as np
import pytest

from learningchain.learning.models import ModelSpec, build_model, default_spec, dpsgd, network

SPECS = [default_spec("digits", "softmax"), default_spec("digits", "mlp"),
         ModelSpec("linear", "regression", 64, 1, (), 0, 1, 16, 0.01),
         ModelSpec("mlp", "regression", 64, 1, (8, 5), 3, 1, 16, 0.01)]
RNG = np.random.default_rng(0)
X = RNG.normal(size=(7, 64))


def labels(spec):
    return RNG.integers(0, spec.n_outputs, 7) if spec.task == "classification" else RNG.normal(size=7)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.task}-{len(s.hidden)}")
def test_per_example_grads_equal_single_example_backprop(spec):
    model = build_model(spec)
    w = model.initial_weights()
    if spec.kind != "mlp":  # zero weights give trivial gradients: move off zero
        w = {k: v + RNG.normal(scale=0.1, size=v.shape).astype(np.float32) for k, v in w.items()}
    y = labels(spec)
    grads = model.per_example_grads(w, X, y)
    names = [f"{t}{i}" for i in range(len(spec.layer_sizes) - 1) for t in ("W", "b")]
    for k in range(len(X)):  # the existing batch backprop, one example, lr 1: before - after = gradient
        params = model._params(w)
        before = [p.copy() for p in params]
        network.sgd_epochs(params, X[k:k + 1], model._target(y[k:k + 1]), model.classification, 1, 1, 1.0,
                           0.0, np.random.default_rng(0))
        for name, b, a in zip(names, before, params):
            np.testing.assert_allclose(grads[name][k], b - a, atol=1e-10, rtol=1e-8)
    batch = model._params(w)  # and their mean is the batch gradient
    before = [p.copy() for p in batch]
    network.sgd_epochs(batch, X, model._target(y), model.classification, 1, len(X), 1.0, 0.0,
                       np.random.default_rng(0))
    for name, b, a in zip(names, before, batch):
        np.testing.assert_allclose(grads[name].mean(axis=0), b - a, atol=1e-10)


def test_clipping_bounds_each_example():
    g = [RNG.normal(scale=5, size=(9, 4, 3)), RNG.normal(scale=5, size=(9, 3))]
    g[0][0] *= 1e-3  # one small example stays as it is
    g[1][0] *= 1e-3
    clipped, norms = dpsgd.clip_per_example(g, 1.5)
    after = np.sqrt(sum(np.sum(c.reshape(9, -1) ** 2, axis=1) for c in clipped))
    assert np.all(after <= 1.5 + 1e-12) and np.allclose(after[norms > 1.5], 1.5)
    np.testing.assert_allclose(clipped[0][0], g[0][0])


def test_noise_scale_on_the_sum():
    params = [np.zeros((64, 10)), np.zeros(10)]
    out = dpsgd.noisy_mean_grad(params, X[:0], np.zeros((0, 10)), True, clip=2.0, z=1.5, expected_batch=4.0,
                                rng=np.random.default_rng(1))
    noise = np.concatenate([o.ravel() for o in out])  # no example: the noise alone, / expected batch
    assert abs(float(np.std(noise)) - 2.0 * 1.5 / 4.0) < 0.05


def test_poisson_sampling_rate_and_steps():
    rng = np.random.default_rng(2)
    draws = [int(np.sum(rng.random(1000) < 0.25)) for _ in range(200)]
    assert abs(np.mean(draws) / 1000 - 0.25) < 0.005
    assert dpsgd.steps_per_round(1, 0.25) == 4 and dpsgd.steps_per_round(2, 0.3) == 7
    # dp_sgd draws its batches the same way: count them through the model's data
    seen = []
    orig = dpsgd.noisy_mean_grad

    def spy(params, Xb, *a, **k):
        seen.append(len(Xb))
        return orig(params, Xb, *a, **k)
    dpsgd.noisy_mean_grad = spy
    try:
        spec = default_spec("digits", "softmax")
        Xl = RNG.normal(size=(400, 64))
        build_model(spec).train_dp(build_model(spec).initial_weights(), Xl, RNG.integers(0, 10, 400), steps=50,
                                   sample_rate=0.1, clip=1.0, noise_multiplier=1.0, lr=0.1,
                                   rng=np.random.default_rng(3))
    finally:
        dpsgd.noisy_mean_grad = orig
    assert len(seen) == 50 and abs(np.mean(seen) / 400 - 0.1) < 0.02 and len(set(seen)) > 1


def test_dp_sgd_is_deterministic_under_a_seed():
    spec = default_spec("digits", "mlp")
    m = build_model(spec)
    Xl, yl = RNG.normal(size=(100, 64)), RNG.integers(0, 10, 100)
    kw = dict(steps=5, sample_rate=0.3, clip=1.0, noise_multiplier=1.2, lr=0.5)
    a = m.train_dp(m.initial_weights(), Xl, yl, rng=np.random.default_rng(7), **kw)
    b = m.train_dp(m.initial_weights(), Xl, yl, rng=np.random.default_rng(7), **kw)
    c = m.train_dp(m.initial_weights(), Xl, yl, rng=np.random.default_rng(8), **kw)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not all(np.array_equal(a[k], c[k]) for k in a)

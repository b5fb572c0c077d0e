"""Sample-level DP-SGD for the NumPy models (Abadi et al., "Deep Learning with
Differential Privacy", CCS 2016), the local training of ``dp_mode = "sample"``.

Each step draws a Poisson sample of the node's data (every example in
independently with probability q), computes every example's gradient in
closed form (:func:`per_example_grads`), clips each to L2 norm C over all the
arrays of the model together, adds ``N(0, (z C)^2)`` to the sum of the clipped
gradients and divides by the *expected* batch size ``q n`` (not the drawn one,
which would depend on the data). The L2 penalty is added after the noise: it
depends on the weights only, not on any example.

Per-example gradients, vectorised (no loop over examples): with ``delta`` the
backpropagated error of a dense layer (one row per example) and ``a`` its
input, example k's gradient of W is the outer product ``a_k delta_k^T``
(``einsum("ni,nj->nij")``) and of b is ``delta_k``; the per-example loss is
not divided by the batch size (the batch mean of these is the gradient of
:func:`learningchain.learning.models.network.sgd_epochs`).

``rng`` draws both the sample and the noise: both must be secret for the
guarantee (a live node passes :func:`learningchain.learning.privacy.os_rng`).
"""
from __future__ import annotations

import math

import numpy as np

from learningchain.core.errors import ConfigError
from learningchain.learning.models.network import forward


def per_example_grads(params: list[np.ndarray], X: np.ndarray, target: np.ndarray,
                      classification: bool) -> list[np.ndarray]:
    """For each parameter array, the stack (n, *shape) of the per-example
    gradients of the data loss (no L2 penalty)."""
    n_layers = len(params) // 2
    out, acts = forward(params, X, classification)
    delta = out - target  # d(loss_k)/d(output pre-activation), one row per example
    grads: list[np.ndarray] = [None] * len(params)  # type: ignore[list-item]
    for i in range(n_layers - 1, -1, -1):
        grads[2 * i] = np.einsum("ni,nj->nij", acts[i], delta)
        grads[2 * i + 1] = delta
        if i > 0:
            delta = (delta @ params[2 * i].T) * (acts[i] > 0)
    return grads


def clip_per_example(grads: list[np.ndarray], clip: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Each example's gradient scaled to global L2 norm <= clip; returns the
    clipped stacks and the norms before clipping."""
    n = grads[0].shape[0]
    sq = np.zeros(n)
    for g in grads:
        sq += np.sum(g.reshape(n, -1) ** 2, axis=1)
    norms = np.sqrt(sq)
    factor = np.minimum(1.0, clip / np.maximum(norms, 1e-300))
    return [g * factor.reshape((n,) + (1,) * (g.ndim - 1)) for g in grads], norms


def noisy_mean_grad(params: list[np.ndarray], X: np.ndarray, target: np.ndarray, classification: bool,
                    clip: float, z: float, expected_batch: float, rng: np.random.Generator) -> list[np.ndarray]:
    """``(sum of clipped per-example gradients + N(0, (z clip)^2)) / expected_batch``."""
    if len(X):
        clipped, _ = clip_per_example(per_example_grads(params, X, target, classification), clip)
        sums = [g.sum(axis=0) for g in clipped]
    else:
        sums = [np.zeros_like(p) for p in params]
    return [(s + rng.normal(0.0, z * clip, size=s.shape)) / expected_batch for s in sums]


def steps_per_round(epochs: int, q: float) -> int:
    """Local steps per round: E epochs' worth of Poisson samples, ``ceil(E / q)``."""
    return int(math.ceil(epochs / q - 1e-9))


def dp_sgd(params: list[np.ndarray], X: np.ndarray, target: np.ndarray, classification: bool,
           steps: int, q: float, clip: float, z: float, lr: float, l2: float,
           rng: np.random.Generator) -> list[np.ndarray]:
    """``steps`` DP-SGD steps in place on ``params`` (float64); returns them."""
    if not 0 < q <= 1:
        raise ConfigError(f"dp sample rate must lie in (0, 1], got {q}")
    if not (clip > 0 and math.isfinite(clip)) or not (z >= 0 and math.isfinite(z)):
        raise ConfigError(f"DP-SGD needs a clip norm > 0 and a noise multiplier >= 0, got {clip}, {z}")
    n = X.shape[0]
    expected = q * n
    for _ in range(steps):
        idx = np.flatnonzero(rng.random(n) < q)
        grads = noisy_mean_grad(params, X[idx], target[idx], classification, clip, z, expected, rng)
        for i in range(len(params)):
            g = grads[i]
            if l2 and i % 2 == 0:
                g = g + l2 * params[i]
            params[i] -= lr * g
    return params


class Recipe:
    """The participant's local DP-SGD hyper-parameters when it does not set them
    (``Role``): tuned on digits by bench/dp.py (docs/learning.md). They replace the
    genesis spec's epochs/batch_size/lr for a node in sample mode: DP-SGD needs
    large Poisson batches and few steps, which is what the participant chooses
    to send; consensus checks the update, not how it was trained."""
    clip = 1.0          # per-example L2 clip norm C
    sample_rate = 0.25  # Poisson sampling rate q
    epochs = 1          # local epochs per round: ceil(E / q) steps
    lr = {"softmax": 1.0, "mlp": 1.0, "linear": 0.05}   # by model kind (linear: untuned)

"""A small dense network in NumPy: forward pass, hand-written backprop and
mini-batch SGD from *given* weights.

Why not scikit-learn's MLPClassifier/MLPRegressor? They can continue from
hand-set ``coefs_`` only after a throw-away ``partial_fit`` call, each
``partial_fit`` runs exactly one epoch with input validation and bookkeeping
around it, and the optimizer state has to be reset between rounds to stay
reproducible (FACTS.md). A plain NumPy loop over 64-32-10 is a few
milliseconds per local training, has no hidden state, and is the same code
for the three model kinds: "linear" is a network without hidden layers and an
identity output (squared loss), "softmax" one without hidden layers and a
softmax output (cross-entropy), "mlp" adds ReLU hidden layers.

Loss: the per-sample *mean* of the data loss plus ``(l2 / 2) * sum ||W_i||^2``
(biases not penalised). Because the loss is a mean, the sample-weighted
average of the nodes' objectives equals the centralized objective with the
same ``l2``; the "1/N share" correction of FACTS.md applies to sum-form
losses (sklearn's ``C``) and is built in here.

Computation runs in float64 for accuracy; weights enter and leave as float32.
"""
from __future__ import annotations

import hashlib
import math

from collections import OrderedDict
from typing import Sequence

import numpy as np

Weights = "OrderedDict[str, np.ndarray]"


def layer_count(weights) -> int:
    return sum(1 for name in weights if name.startswith("W"))


def forward(params: list[np.ndarray], X: np.ndarray, classification: bool
            ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Output (probabilities or predictions) and the activations of each layer."""
    acts = [X]
    h = X
    n_layers = len(params) // 2
    for i in range(n_layers):
        z = h @ params[2 * i] + params[2 * i + 1]
        if i < n_layers - 1:
            h = np.maximum(z, 0.0)
        elif classification:
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            h = e / e.sum(axis=1, keepdims=True)
        else:
            h = z
        acts.append(h)
    return h, acts


def sgd_epochs(params: list[np.ndarray], X: np.ndarray, target: np.ndarray,
               classification: bool, epochs: int, batch_size: int, lr: float, l2: float,
               rng: np.random.Generator) -> list[np.ndarray]:
    """``epochs`` passes of mini-batch SGD (reshuffled each epoch by ``rng``).
    ``target`` is one-hot (classification) or a column (regression). Updates
    ``params`` (float64 arrays) in place and returns them."""
    n = X.shape[0]
    n_layers = len(params) // 2
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb, tb = X[idx], target[idx]
            out, acts = forward(params, xb, classification)
            # d(mean loss)/d(output pre-activation): softmax+CE and identity+half-MSE
            # share the form (output - target) / batch.
            delta = (out - tb) / len(idx)
            for i in range(n_layers - 1, -1, -1):
                W = params[2 * i]
                gW = acts[i].T @ delta
                gb = delta.sum(axis=0)
                if i > 0:
                    delta = (delta @ W.T) * (acts[i] > 0)
                if l2:
                    gW = gW + l2 * W
                W -= lr * gW
                params[2 * i + 1] -= lr * gb
    return params


def protocol_uniform(seed: int, name: str, count: int) -> np.ndarray:
    """``count`` uniform floats in [0, 1) from SHA-256 in counter mode, so that a
    verifier in any language derives the same G0 (numpy's generators are not
    specified byte for byte). Value k: the first 8 bytes of
    ``SHA256(b"learningchain-g0" || seed u64 BE || name UTF-8 || 0x00 || k u64 BE)``
    read big-endian, shifted right by 11, times 2^-53 (docs/protocol.md, G0)."""
    prefix = hashlib.sha256(b"learningchain-g0" + seed.to_bytes(8, "big") + name.encode() + b"\x00")
    out = np.empty(count, dtype=np.float64)
    for k in range(count):
        h = prefix.copy()
        h.update(k.to_bytes(8, "big"))
        out[k] = (int.from_bytes(h.digest()[:8], "big") >> 11) * 2.0 ** -53
    return out


def init_params(sizes: Sequence[int], seed: int, zero: bool) -> Weights:
    """Glorot-uniform weights (as scikit-learn's MLP), zero biases; all zeros
    when ``zero`` (the convex linear/softmax models). ``W_i = (2u - 1) * bound``
    with u from :func:`protocol_uniform` and ``bound = sqrt(6 / (fan_in + fan_out))``,
    computed in float64 and rounded once to float32."""
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if zero:
            W = np.zeros((fan_in, fan_out))
        else:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            u = protocol_uniform(seed, f"W{i}", fan_in * fan_out).reshape(fan_in, fan_out)
            W = (2.0 * u - 1.0) * bound
        out[f"W{i}"] = W.astype(np.float32)
        out[f"b{i}"] = np.zeros(fan_out, dtype=np.float32)
    return out

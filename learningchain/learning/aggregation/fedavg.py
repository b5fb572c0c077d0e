"""Federated Averaging (McMahan et al., "Communication-Efficient Learning of
Deep Networks from Decentralized Data", AISTATS 2017, Algorithm 1).

The global model is the sample-weighted mean ``sum_k n_k w_k / sum_k n_k``.

Assumption: every participant is honest. One malicious update moves the mean
arbitrarily far. Worse, ``n_k`` is *self-reported* in the transaction, so a
participant could claim a billion samples and dominate the average. We
therefore cap each reported count at ``cap_factor`` (default 2) times the
median reported count before weighting. Honest participants with ordinary
data sizes are unaffected; an inflated claim gains at most ``cap_factor``
times the typical weight. Every update is accepted.
"""
from __future__ import annotations

import numpy as np

from learningchain.learning.aggregation.common import RuleOutput, ordered_sum


def capped_counts(num_samples: np.ndarray, cap_factor: float) -> np.ndarray:
    """Reported counts (float64) capped at ``cap_factor * median``."""
    counts = np.asarray(num_samples, dtype=np.float64)
    cap = cap_factor * float(np.median(counts))
    return np.minimum(counts, cap)


def fedavg(X: np.ndarray, num_samples: np.ndarray, cap_factor: float) -> RuleOutput:
    counts = capped_counts(num_samples, cap_factor)
    total = float(counts.sum()) if counts.sum() > 0 else 0.0
    if total <= 0.0:  # every count zero: fall back to the plain mean
        coef = np.full(X.shape[0], 1.0 / X.shape[0])
    else:
        coef = counts / total
    return RuleOutput(ordered_sum(X, coef), list(range(X.shape[0])), {})

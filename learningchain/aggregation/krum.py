"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine
Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017).

Score of update i: the sum of squared L2 distances to its ``n - f - 2``
nearest other updates. Krum returns the update with the lowest score;
Multi-Krum averages the ``m`` lowest-scoring updates (plain mean: sample
counts are ignored).

Assumption: at most f of the n updates are Byzantine and ``n > 2f + 2``
(i.e. ``n >= 2f + 3``), the condition of the paper's Proposition 1.
Multi-Krum additionally needs ``m <= n - f``; ``m = 0`` means ``m = n - f``.
Ties in the score are broken by update id (rows are sorted by id).
"""
from __future__ import annotations

import numpy as np

from learningchain.aggregation.common import (RuleOutput, ordered_mean, pairwise_sq_dists,
                                              stable_argsort)
from learningchain.aggregation.params import AggregationError


def krum_scores(d2: np.ndarray, f: int) -> np.ndarray:
    """Krum score of each row of the squared-distance matrix ``d2``."""
    n = d2.shape[0]
    k = max(n - f - 2, 0)
    # Drop self-distance: sort each row, skip the leading 0 (the diagonal).
    off = np.sort(d2 + np.diag(np.full(n, np.inf)), axis=1)[:, :k]
    return off.sum(axis=1)


def _check(name: str, n: int, f: int) -> None:
    if n < 2 * f + 3:
        raise AggregationError(f"{name} with f={f} needs at least {2 * f + 3} updates, "
                               f"got {n} (Krum requires n > 2f + 2)")


def multi_krum(X: np.ndarray, f: int, m: int, name: str = "multi-krum") -> RuleOutput:
    n = X.shape[0]
    _check(name, n, f)
    m = n - f if m == 0 else m
    if m > n - f:
        raise AggregationError(f"{name} with f={f}, m={m} needs m <= n - f = {n - f}")
    scores = krum_scores(pairwise_sq_dists(X), f)
    order = stable_argsort(scores)
    chosen = sorted(int(i) for i in order[:m])
    # Reasons are committed on chain, so they carry ranks, never floats whose last
    # digits could differ between machines.
    rejected = {int(i): f"{name}: score rank {rank + 1} of {n}, not among the m={m} lowest"
                for rank, i in enumerate(order) if rank >= m}
    return RuleOutput(ordered_mean(X[chosen]), chosen, rejected)


def krum(X: np.ndarray, f: int) -> RuleOutput:
    return multi_krum(X, f, 1, name="krum")

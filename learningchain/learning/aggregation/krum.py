"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine
Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017).

Score of update i: the sum of squared L2 distances to its ``n - f - 2``
nearest other updates. Krum returns the update with the lowest score;
Multi-Krum averages the ``m`` lowest-scoring updates (plain mean: sample
counts are ignored).

Assumption: at most f of the n updates are Byzantine and ``n > 2f + 2``
(i.e. ``n >= 2f + 3``), the condition of the paper's Proposition 1.
Multi-Krum additionally needs ``m <= n - f``; ``m = 0`` means ``m = n - f``.
Ties in the score are broken by update id (rows are sorted by id). The
ranking is machine independent (:func:`krum_order`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from learningchain.learning.aggregation.common import (UNIT_ROUNDOFF, Distances, RuleOutput,
                                              deterministic_order, ordered_mean, sum_smallest)
from learningchain.learning.aggregation.params import AggregationError


def krum_order(dist: Distances, rows: Sequence[int], k: int) -> np.ndarray:
    """Positions in ``rows`` sorted by Krum score (sum of squared distances to
    the ``k`` nearest other rows of ``rows``), ties by position (= id order).

    Scores come from the Gram distances, each within :func:`score_error_bounds`
    of the exact score, and only rows whose intervals overlap are rescored
    exactly (:func:`~learningchain.learning.aggregation.common.deterministic_order`): the
    order is machine independent."""
    rows = np.asarray(rows, dtype=np.int64)
    n = rows.shape[0]
    if k <= 0 or n <= 1:
        return np.arange(n)  # every score is 0 (or a single row): id order
    k = min(k, n - 1)  # never count the row itself (its diagonal is +inf)
    sub = dist.approx[np.ix_(rows, rows)] + np.diag(np.full(n, np.inf))
    approx = np.sort(sub, axis=1)[:, :k].sum(axis=1)
    err = score_error_bounds(sub, dist.err[np.ix_(rows, rows)], k) + 2.0 * (k + 2) * UNIT_ROUNDOFF * approx

    def exact(positions: np.ndarray) -> np.ndarray:
        out = np.empty(len(positions))
        for t, pos in enumerate(positions):
            row = dist.exact_row(int(rows[pos]))[rows]
            row[pos] = np.inf  # not its own neighbour
            out[t] = sum_smallest(row, k)
        return out
    return deterministic_order(approx, err, exact)


def score_error_bounds(approx: np.ndarray, err: np.ndarray, k: int) -> np.ndarray:
    """For each row of ``approx`` (squared distances, +inf on the diagonal), a
    bound on |sum of its k smallest approx - sum of its k smallest exact| when
    every exact entry lies within ``err`` of its approx entry.

    Why it is sound: the sum of the k smallest is a minimum over k-subsets, so
    the two sums differ by at most the error summed over the approx minimiser or
    over the exact one. Either set lies among the *candidate* columns, those
    whose lowest possible value ``approx - err`` does not exceed the k-th
    smallest highest possible value ``approx + err`` (any other column is
    larger than k entries whatever the exact values, so it is never among the
    k nearest). The bound is the sum of the k largest errors among candidates.
    Only candidates count: a far outlier (a row scaled by 1e6) has a huge error
    bound but is nobody's neighbour, and must not widen every other row's
    interval (it did when the bound took the row's largest error over all
    columns: all but one row were rescored exactly). The comparison is widened
    by 16 unit roundoffs so the rounding of ``approx +- err`` cannot drop a
    candidate, and an undefined comparison (NaN from an overflow) keeps one."""
    upper = np.partition(approx + err, k - 1, axis=1)[:, k - 1]
    candidate = ~(approx - err > upper[:, None] * (1.0 + 16 * UNIT_ROUNDOFF))  # NaN: a candidate
    cand_err = np.where(candidate, err, 0.0)
    return np.sort(cand_err, axis=1)[:, -k:].sum(axis=1)


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
    order = krum_order(Distances(X), range(n), max(n - f - 2, 0))
    chosen = sorted(int(i) for i in order[:m])
    # Reasons are committed on chain, so they carry ranks, never floats whose last
    # digits could differ between machines.
    rejected = {int(i): f"{name}: score rank {rank + 1} of {n}, not among the m={m} lowest"
                for rank, i in enumerate(order) if rank >= m}
    return RuleOutput(ordered_mean(X[chosen]), chosen, rejected)


def krum(X: np.ndarray, f: int) -> RuleOutput:
    return multi_krum(X, f, 1, name="krum")

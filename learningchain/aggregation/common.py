"""Shared array helpers of the aggregation rules: fixed-order sums and
vectorised pairwise distances.

Determinism: every rule works on an ``(n, d)`` float64 matrix whose rows are
already sorted by update id. Sums are taken row by row in that order
(``acc += row``), which is an elementwise IEEE operation with one fixed
evaluation order, so the result does not depend on how NumPy would block or
vectorise a reduction. Results are cast to float32 only at the very end.
"""
from __future__ import annotations

import numpy as np


def ordered_sum(rows: np.ndarray, coef: np.ndarray | None = None) -> np.ndarray:
    """Sum of ``coef[i] * rows[i]`` over i in row order (float64)."""
    acc = np.zeros(rows.shape[1:], dtype=np.float64)
    for i in range(rows.shape[0]):
        acc += rows[i] if coef is None else coef[i] * rows[i]
    return acc


def ordered_mean(rows: np.ndarray) -> np.ndarray:
    return ordered_sum(rows) / rows.shape[0]


def pairwise_sq_dists(X: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between all rows via one Gram matrix product:
    ``|xi - xj|^2 = |xi|^2 + |xj|^2 - 2 xi.xj``. Rows are centred first (distances
    are translation invariant) to limit cancellation; the result is symmetrised,
    its diagonal zeroed and negatives from rounding clipped to 0. Distances only
    rank updates; ties are broken by the (sorted) row index, i.e. by id."""
    Xc = X - X.mean(axis=0, keepdims=True)
    sq = np.einsum("ij,ij->i", Xc, Xc)
    gram = Xc @ Xc.T
    d = sq[:, None] + sq[None, :] - 2.0 * gram
    d = np.maximum((d + d.T) / 2.0, 0.0)
    np.fill_diagonal(d, 0.0)
    return d


def sq_dists_to(X: np.ndarray, ref: np.ndarray) -> np.ndarray:
    diff = X - ref[None, :]
    return np.einsum("ij,ij->i", diff, diff)


def stable_argsort(values: np.ndarray) -> np.ndarray:
    """Ascending order, ties kept in index (= id) order."""
    return np.argsort(values, kind="stable")


class RuleOutput:
    """What a rule returns: the aggregate (float64 vector), the indices of the
    accepted rows, and a reason for each rejected row index."""

    __slots__ = ("vector", "accepted", "rejected")

    def __init__(self, vector: np.ndarray, accepted: list[int], rejected: dict[int, str]):
        self.vector = vector
        self.accepted = accepted
        self.rejected = rejected

"""Shared array helpers of the aggregation rules: fixed-order sums and
vectorised pairwise distances.

Determinism: every rule works on an ``(n, d)`` float64 matrix whose rows are
already sorted by update id. Sums are taken row by row in that order
(``acc += row``), which is an elementwise IEEE operation with one fixed
evaluation order, so the result does not depend on how NumPy would block or
vectorise a reduction. Results are cast to float32 only at the very end.

Rankings (Krum, Multi-Krum, Bulyan, l-nearest) come from sums of squares whose
fast form (a BLAS product, an einsum) may round differently on another CPU or
BLAS build. They rank by approximate value plus a rigorous error bound and
recompute exactly (:func:`fixed_order_sum`, ``math.fsum``) only the scores whose intervals overlap
(:func:`deterministic_order`), so every machine commits the same ranking.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np


def ordered_sum(rows: np.ndarray, coef: np.ndarray | None = None) -> np.ndarray:
    """Sum of ``coef[i] * rows[i]`` over i in row order (float64)."""
    acc = np.zeros(rows.shape[1:], dtype=np.float64)
    for i in range(rows.shape[0]):
        acc += rows[i] if coef is None else coef[i] * rows[i]
    return acc


def ordered_mean(rows: np.ndarray) -> np.ndarray:
    return ordered_sum(rows) / rows.shape[0]


#: unit roundoff of float64 (IEEE 754 binary64, round to nearest).
UNIT_ROUNDOFF = 2.0 ** -53


def _gram(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances ``|xi|^2 + |xj|^2 - 2 xi.xj`` from one Gram product, and
    the rows' norms, on rows centred first (distances are translation invariant)
    to limit cancellation. The centre is the coordinate-wise median, not the
    mean: one update scaled by 1e6 would drag the mean, hence every centred norm
    and every error bound, by 1e6 / n; the median stays with the honest rows.
    Any centre gives a valid bound (:class:`Distances`); this one keeps it tight."""
    Xc = X - np.median(X, axis=0, keepdims=True)
    sq = np.einsum("ij,ij->i", Xc, Xc)
    gram = Xc @ Xc.T
    d = sq[:, None] + sq[None, :] - 2.0 * gram
    d = np.maximum((d + d.T) / 2.0, 0.0)
    np.fill_diagonal(d, 0.0)
    return d, np.sqrt(sq)


class Distances:
    """Pairwise squared distances of the rows of ``X``: fast and approximate from
    one Gram product (:attr:`approx`), with a rigorous per-entry error bound
    (:attr:`err`), and exact on demand (:meth:`exact_row`).

    *Exact* means machine independent: :func:`fixed_order_sum` of
    ``(xi - xj) ** 2``, elementwise IEEE operations that round once each in an
    order fixed here, never by a BLAS or a SIMD reduction. The bound covers any summation order of
    the dot products (Higham, *Accuracy and Stability of Numerical Algorithms*,
    2nd ed., eq. 3.5: ``|fl(x.y) - x.y| <= gamma_d |x|.|y|``), the rounding of
    the centring and of the final additions, with a factor 2 of headroom:
    ``|approx_ij - exact_ij| <= 2 (d + 16) u (|xci| + |xcj|)^2``."""

    def __init__(self, X: np.ndarray):
        self.X = X
        self.approx, norms = _gram(X)
        d = X.shape[1]
        self.err = 2.0 * (d + 16) * UNIT_ROUNDOFF * (norms[:, None] + norms[None, :]) ** 2
        self._exact: dict[int, np.ndarray] = {}

    def exact_row(self, i: int) -> np.ndarray:
        """Exact squared distances from row ``i`` to every row (cached)."""
        row = self._exact.get(i)
        if row is None:
            diff = self.X - self.X[i]
            row = fixed_order_sum(diff * diff)
            row[i] = 0.0
            self._exact[i] = row
        return row

    @property
    def exact_rows_computed(self) -> int:
        return len(self._exact)


def deterministic_order(approx: np.ndarray, err: np.ndarray,
                        exact: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Indices sorted by (exact score, index), computing few exact scores.

    ``approx[i]`` is within ``err[i]`` of the exact score. Rows whose interval
    ``[approx - err, approx + err]`` overlaps no other row's keep their
    approximate score: the order between them and any other row is already the
    exact order. Rows in overlapping groups get ``exact(indices)``. The result
    is the same on every machine whatever the last bits of ``approx``, and
    costs one exact computation per near-tie only."""
    n = approx.shape[0]
    lo, hi = approx - err, approx + err
    flagged = np.zeros(n, dtype=bool)
    group: list[int] = []
    reach = -np.inf
    for i in np.argsort(lo, kind="stable"):
        if lo[i] > reach:  # starts a new group of overlapping intervals
            if len(group) > 1:
                flagged[group] = True
            group = []
        group.append(int(i))
        reach = max(reach, hi[i])
    if len(group) > 1:
        flagged[group] = True
    key = approx.astype(np.float64, copy=True)
    idx = np.flatnonzero(flagged)
    if idx.size:
        key[idx] = exact(idx)
    return np.lexsort((np.arange(n), key))


def sum_smallest(values: np.ndarray, k: int) -> float:
    """Exact (correctly rounded) sum of the ``k`` smallest ``values``."""
    return math.fsum(np.sort(values)[:k]) if k > 0 else 0.0


def sq_dists_to(X: np.ndarray, ref: np.ndarray) -> np.ndarray:
    diff = X - ref[None, :]
    return np.einsum("ij,ij->i", diff, diff)


def sq_dists_to_exact(X: np.ndarray, ref: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Machine-independent squared distances of ``X[rows]`` to ``ref``."""
    diff = X[rows] - ref[None, :]
    return fixed_order_sum(diff * diff)


def fixed_order_sum(M: np.ndarray) -> np.ndarray:
    """Row sums of ``M`` in one fixed pairwise order: pad the columns with zeros
    to a power of two, then add the left half to the right half until one
    column remains. Every step is an elementwise IEEE 754 addition (one
    rounding per element, whatever the SIMD width), so the result is the same
    bits on every machine, and the error is that of pairwise summation
    (about log2(d) roundings, Higham 2002, section 4.2)."""
    n, d = M.shape
    width = 1 << max(0, (d - 1).bit_length())
    acc = np.zeros((n, width), dtype=np.float64)
    acc[:, :d] = M
    while width > 1:
        width //= 2
        acc = acc[:, :width] + acc[:, width:2 * width]
    return acc[:, 0].copy()


class RuleOutput:
    """What a rule returns: the aggregate (float64 vector), the indices of the
    accepted rows, and a reason for each rejected row index."""

    __slots__ = ("vector", "accepted", "rejected")

    def __init__(self, vector: np.ndarray, accepted: list[int], rejected: dict[int, str]):
        self.vector = vector
        self.accepted = accepted
        self.rejected = rejected

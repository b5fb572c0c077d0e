"""Bulyan (El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of
Distributed Learning in Byzantium", ICML 2018, Algorithm 1).

1. Selection: apply Krum recursively ``theta = n - 2f`` times; each time the
   update Krum picks from the remaining set moves to the selection set S.
   (On the remaining set of size n' the score uses ``max(n' - f - 2, 1)``
   neighbours.)
2. Aggregation: for every coordinate, take the ``beta = theta - 2f`` values of
   S closest to the coordinate-wise median of S and average them.

Assumption: at most f Byzantine updates and ``n >= 4f + 3``. Sample counts are
ignored. Accepted updates are the selection set S.
"""
from __future__ import annotations

import numpy as np

from learningchain.learning.aggregation.common import Distances, RuleOutput, ordered_mean
from learningchain.learning.aggregation.krum import krum_order
from learningchain.learning.aggregation.params import AggregationError


def bulyan(X: np.ndarray, f: int) -> RuleOutput:
    n = X.shape[0]
    if n < 4 * f + 3:
        raise AggregationError(f"bulyan with f={f} needs at least {4 * f + 3} updates, "
                               f"got {n} (Bulyan requires n >= 4f + 3)")
    theta = n - 2 * f
    beta = theta - 2 * f
    dist = Distances(X)  # one Gram product; exact rescoring of near-ties only
    remaining = list(range(n))
    selected: list[int] = []
    for _ in range(theta):
        k = max(len(remaining) - f - 2, 1)
        pick = remaining[int(krum_order(dist, remaining, k)[0])]  # ties: smallest id
        selected.append(pick)
        remaining.remove(pick)
    S = X[sorted(selected)]
    med = np.median(S, axis=0)
    # Per coordinate, the beta values nearest the median (stable: ties by id).
    order = np.argsort(np.abs(S - med[None, :]), axis=0, kind="stable")[:beta]
    closest = np.take_along_axis(S, order, axis=0)
    # Sort the chosen values per coordinate so the sum order is value order,
    # independent of which rows supplied them.
    vector = ordered_mean(np.sort(closest, axis=0))
    rejected = {i: f"bulyan: not among the theta={theta} updates selected by recursive krum "
                   f"(f={f})" for i in remaining}
    return RuleOutput(vector, sorted(selected), rejected)

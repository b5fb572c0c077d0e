"""l-nearest aggregation, after LearningChain (X. Chen, J. Ji, C. Luo, W. Liao,
P. Li, "When Machine Learning Meets Blockchain: A Decentralized,
Privacy-preserving and Secure Design", IEEE BigData 2018).

The paper's full text was not at hand, so this is OUR definition, in its
spirit: average (plain mean) the ``l`` updates nearest in L2 to a reference,
the coordinate-wise median of all the round's updates.

The reference used to be the update of the closing block's miner when it had
one. ``header.miner`` is not signed and a miner chooses it freely, so a miner
could name its own Sybil's key as reference and, with ``l - 1`` colluding
updates beside it, set G(r) (issue 10, item 11). The median is a function of
the round's updates alone, which no single party controls: moving it takes a
majority of the updates.

Assumption: honest updates are a majority and at least ``l`` of them cluster
around their median; ``n >= l``. Sample counts are ignored. Accepted: the
``l`` nearest.
"""
from __future__ import annotations

import numpy as np

from learningchain.learning.aggregation.common import (UNIT_ROUNDOFF, RuleOutput, deterministic_order,
                                              ordered_mean, sq_dists_to, sq_dists_to_exact)
from learningchain.learning.aggregation.params import AggregationError


def l_nearest(X: np.ndarray, l: int) -> RuleOutput:
    n = X.shape[0]
    if n < l:
        raise AggregationError(f"l-nearest with l={l} needs at least {l} updates, got {n}")
    ref, ref_name = np.median(X, axis=0), "the coordinate-wise median"
    # The einsum's summation order may differ between CPUs: rank by the fast sums
    # within their rounding bound, rescoring near-ties exactly (common.py).
    approx = sq_dists_to(X, ref)
    err = 2.0 * (X.shape[1] + 4) * UNIT_ROUNDOFF * approx
    order = deterministic_order(approx, err, lambda rows: sq_dists_to_exact(X, ref, rows))
    chosen = sorted(int(i) for i in order[:l])
    # Ranks, not float distances: reasons are committed on chain (see krum.py).
    rejected = {int(i): f"l-nearest: distance rank {rank + 1} to {ref_name}, not among the "
                        f"l={l} nearest" for rank, i in enumerate(order) if rank >= l}
    return RuleOutput(ordered_mean(X[chosen]), chosen, rejected)

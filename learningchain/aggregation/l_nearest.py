"""l-nearest aggregation, after LearningChain (X. Chen, J. Ji, C. Luo, W. Liao,
P. Li, "When Machine Learning Meets Blockchain: A Decentralized,
Privacy-preserving and Secure Design", IEEE BigData 2018).

The paper's full text was not at hand, so this is OUR definition, in its
spirit: average (plain mean) the ``l`` updates nearest in L2 to a reference.
The reference is the update sent by ``reference_sender`` (the miner of the
block that closes the round) when that sender has an update in the set,
otherwise the coordinate-wise median of all updates. The reference update,
being at distance 0, is always among the nearest.

Assumption: the reference is honest (or, with the median reference, honest
updates are a majority) and at least ``l`` honest updates cluster around it;
``n >= l``. Sample counts are ignored. Accepted: the ``l`` nearest.
"""
from __future__ import annotations

import numpy as np

from learningchain.aggregation.common import (UNIT_ROUNDOFF, RuleOutput, deterministic_order,
                                              ordered_mean, sq_dists_to, sq_dists_to_exact)
from learningchain.aggregation.params import AggregationError


def l_nearest(X: np.ndarray, l: int, reference_row: int | None) -> RuleOutput:
    n = X.shape[0]
    if n < l:
        raise AggregationError(f"l-nearest with l={l} needs at least {l} updates, got {n}")
    if reference_row is not None:
        ref, ref_name = X[reference_row], "the reference sender's update"
    else:
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

"""Coordinate-wise trimmed mean (Yin et al., ICML 2018, Definition 2).

For each coordinate, sort the n values, drop the ``k = floor(beta * n)``
smallest and the ``k`` largest, and average the remaining ``n - 2k``.

Assumption: at most ``k`` updates are Byzantine (beta must exceed the
Byzantine fraction). Sample counts are ignored. Acceptance: as with the
median there is no per-update decision (an update may be trimmed in one
coordinate and kept in another), so every update is reported as accepted.

Refusal: with ``beta > 0`` and so few updates that ``k = 0`` the rule would be
a plain mean, silently giving up the robustness beta asked for; it raises
:class:`AggregationError` instead (so a round closed by timeout with too few
updates carries the model over, as for Krum and Bulyan; rounds.close_round).
``beta = 0`` asks for the plain mean and gets it.
"""
from __future__ import annotations

import numpy as np

from learningchain.learning.aggregation.common import RuleOutput, ordered_mean
from learningchain.learning.aggregation.params import AggregationError, min_updates, trim_count


def trimmed_mean(X: np.ndarray, beta: float) -> RuleOutput:
    n = X.shape[0]
    k = trim_count(n, beta)
    if beta > 0 and k == 0:
        raise AggregationError(f"trimmed-mean with beta={beta:g} needs at least "
                               f"{min_updates('trimmed-mean', {'beta': beta})} updates to trim one "
                               f"per side, got {n} (floor(beta * n) = 0)")
    kept = np.sort(X, axis=0)[k:n - k]
    return RuleOutput(ordered_mean(kept), list(range(n)), {})

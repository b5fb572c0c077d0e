"""Coordinate-wise trimmed mean (Yin et al., ICML 2018, Definition 2).

For each coordinate, sort the n values, drop the ``k = floor(beta * n)``
smallest and the ``k`` largest, and average the remaining ``n - 2k``.

Assumption: at most ``k`` updates are Byzantine (beta must exceed the
Byzantine fraction). Sample counts are ignored. Acceptance: as with the
median there is no per-update decision (an update may be trimmed in one
coordinate and kept in another), so every update is reported as accepted.
"""
from __future__ import annotations

import math

import numpy as np

from learningchain.aggregation.common import RuleOutput, ordered_mean


def trim_count(n: int, beta: float) -> int:
    return int(math.floor(beta * n))


def trimmed_mean(X: np.ndarray, beta: float) -> RuleOutput:
    n = X.shape[0]
    k = trim_count(n, beta)
    kept = np.sort(X, axis=0)[k:n - k]
    return RuleOutput(ordered_mean(kept), list(range(n)), {})

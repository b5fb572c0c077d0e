"""Coordinate-wise median (Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust
Distributed Learning: Towards Optimal Statistical Rates", ICML 2018).

Each coordinate of the global model is the median of that coordinate over all
updates (the mean of the two middle values for even n, as ``np.median``).

Assumption: fewer than half of the updates are Byzantine in every coordinate;
the rule then stays within the range of honest values. Sample counts are
ignored. Acceptance: the rule makes no per-update decision (each update may
supply the median of some coordinates), so every update is reported as
accepted.
"""
from __future__ import annotations

import numpy as np

from learningchain.learning.aggregation.common import RuleOutput


def median(X: np.ndarray) -> RuleOutput:
    # np.median sorts per coordinate: exact and independent of the row order.
    return RuleOutput(np.median(X, axis=0), list(range(X.shape[0])), {})

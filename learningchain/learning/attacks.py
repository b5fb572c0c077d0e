"""Byzantine behaviours a node can be told to play (for experiments).

Names: "sign-flip", "scale", "gaussian", "alie" (update attacks, applied to the
trained weights before they are sent) and "label-flip" (a data attack,
applied to the local labels before training). With ``w`` the honest trained
weights and ``base`` the global model they started from:

* sign-flip:  ``base - k (w - base)`` (default k = 4): the step reversed and
  amplified (as in Damaskinos et al., "AggregaThor", 2019);
* scale:      ``base + k (w - base)`` (default k = 10): a boosted step
  (Bagdasaryan et al., "How To Backdoor Federated Learning", 2020);
* gaussian:   ``base + N(0, k^2)`` per coordinate (default k = 1): an
  arbitrary, uninformative update (Blanchard et al. 2017);
* alie:       "A Little Is Enough" (Baruah/Baruch, Baruch, Goldberg, NeurIPS
  2019): ``mu - z_max * sd`` coordinate-wise, where mu and sd are the mean and
  standard deviation of the benign updates and, for n nodes of which f are
  Byzantine, ``s = floor(n / 2 + 1) - f`` and ``z_max = Phi^-1((n - s) / n)``
  (Phi the standard normal CDF). Without ``n_total``/``n_byzantine``,
  ``z_max = 1``. When ``benign`` updates are not available the attacker
  estimates ``mu`` by its own weights ``w`` and ``sd`` by ``|w - base|``, the
  size of its own step (a crude, documented proxy);
* label-flip: ``y -> n_classes - 1 - y`` on the local data (Biggio et al.
  2012; Fang et al. 2020); :func:`poison_update` leaves the weights as trained.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from statistics import NormalDist
from typing import Mapping, Sequence

import numpy as np

from learningchain.core.errors import ConfigError

ATTACKS = ("sign-flip", "scale", "gaussian", "alie", "label-flip")
UPDATE_ATTACKS = ("sign-flip", "scale", "gaussian", "alie")
DEFAULT_SCALE = {"sign-flip": 4.0, "scale": 10.0, "gaussian": 1.0}


def poison_labels(y: np.ndarray, n_classes: int, rng: np.random.Generator | None = None
                  ) -> np.ndarray:
    """Label flip ``y -> n_classes - 1 - y`` (deterministic; ``rng`` unused,
    kept so every attack has the same calling convention)."""
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ConfigError(f"label-flip needs a classification task (n_classes >= 2), "
                          f"got {n_classes!r}")
    y = np.asarray(y)
    return (n_classes - 1 - y).astype(y.dtype)


def alie_z(n_total: int, n_byzantine: int) -> float:
    """``z_max`` of Baruch et al. 2019: ``Phi^-1((n - s) / n)``, ``s = floor(n/2 + 1) - f``."""
    if n_total < 1 or not 0 <= n_byzantine <= n_total:
        raise ConfigError(f"alie needs 0 <= n_byzantine <= n_total, got {n_byzantine} of {n_total}")
    s = math.floor(n_total / 2 + 1) - n_byzantine
    p = (n_total - s) / n_total
    p = min(max(p, 1e-6), 1 - 1e-6)
    return NormalDist().inv_cdf(p)


def poison_update(name: str, honest_weights: Mapping[str, np.ndarray],
                  base: Mapping[str, np.ndarray], rng: np.random.Generator, *,
                  benign: Sequence[Mapping[str, np.ndarray]] | None = None,
                  n_total: int | None = None, n_byzantine: int | None = None,
                  scale: float | None = None) -> "OrderedDict[str, np.ndarray]":
    """The malicious weights (float32, names sorted) replacing ``honest_weights``."""
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    k = DEFAULT_SCALE.get(name, 1.0) if scale is None else float(scale)
    z = None
    if name == "alie":
        z = alie_z(n_total, n_byzantine) if n_total and n_byzantine is not None else 1.0
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for n in sorted(honest_weights):
        w = np.asarray(honest_weights[n], np.float64)
        b = np.asarray(base[n], np.float64)
        if name == "sign-flip":
            new = b - k * (w - b)
        elif name == "scale":
            new = b + k * (w - b)
        elif name == "gaussian":
            new = b + rng.normal(0.0, k, size=w.shape)
        elif name == "alie":
            if benign:
                stack = np.stack([np.asarray(u[n], np.float64) for u in benign])
                mu, sd = stack.mean(axis=0), stack.std(axis=0)
            else:
                mu, sd = w, np.abs(w - b)
            new = mu - z * sd
        else:  # label-flip poisons the data, not the update
            new = w
        out[n] = new.astype(np.float32)
    return out

"""Differential privacy for model updates: clipping + Gaussian noise, and a
Rényi-DP accountant.

Mechanism (:func:`privatize`), in the style of DP-FedAvg (McMahan et al.,
"Learning Differentially Private Recurrent Language Models", ICLR 2018):
the node's update ``delta = weights - base`` is clipped to global L2 norm
``C = clip`` and Gaussian noise ``N(0, (sigma * C)^2)`` is added to every
coordinate, before the update is signed and published.

Neighbouring relation (what is protected): two local data sets of one node
are neighbours when one *replaces* the other, wholly or in part (replace-one
at the level of the node's whole local data set). Since the clipped update
may lie anywhere in the L2 ball of radius C, two neighbouring releases can
differ by up to ``2C``: the L2 sensitivity is ``2C`` (:data:`SENSITIVITY_IN_C`).
The same bound holds for a single replaced record, because there is no
per-example clipping. Noise of std ``sigma * C`` on sensitivity ``2C`` is a
Gaussian mechanism with noise multiplier ``sigma / 2`` (std over
sensitivity, :func:`noise_multiplier`); the accountant uses that.
The sensitivity ``C`` of DP-FedAvg (McMahan et al. 2018) belongs to the
add/remove-one-user relation on the *sum* of clipped updates noised once by
a trusted server; here each node publishes its own noisy update on the
chain, so each release must stand alone. No subsampling amplification is
claimed: every selected node publishes in every round.

Accountant (:func:`epsilon`), Rényi DP (Mironov, "Rényi Differential
Privacy", CSF 2017), for a Gaussian mechanism with noise multiplier ``z``
(= noise std / L2 sensitivity):

* it is ``(a, a / (2 z^2))``-RDP for every order ``a > 1`` (Prop. 7);
* RDP composes additively: T rounds give ``T a / (2 z^2)`` (Prop. 1);
* conversion to ``(eps, delta)``-DP (Prop. 3):
  ``eps = min_a  T a / (2 z^2) + log(1/delta) / (a - 1)``.
  With ``c = T / (2 z^2)`` and ``L = log(1/delta)`` the minimum over real
  ``a > 1`` is at ``a* = 1 + sqrt(L / c)`` and equals ``c + 2 sqrt(c L)``
  (closed form, used by default). For our releases ``z = sigma / 2``, so
  ``c = 2 T / sigma^2``;
* optionally the tighter conversion of Balle, Barthe, Gaboardi, Hsu, Sato
  ("Hypothesis Testing Interpretations and Rényi DP", AISTATS 2020, Thm. 21):
  ``eps = rdp(a) + log((a - 1) / a) - (log delta + log a) / (a - 1)``,
  minimised numerically over ``a`` (``conversion="improved"``).

The noise must be secret: anyone who can regenerate it subtracts it and
recovers the clipped update. A live node therefore draws it from OS entropy
(:func:`os_rng`); only the simulator may seed it, for reproducible
experiments that are *not* private.
"""
from __future__ import annotations

import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy.optimize import minimize_scalar

from learningchain.core.errors import ConfigError

#: L2 sensitivity of one release in units of the clip norm C (replace-one, see above).
SENSITIVITY_IN_C = 2.0


def noise_multiplier(sigma: float) -> float:
    """The Gaussian mechanism's noise multiplier (noise std / L2 sensitivity)
    of a release with noise std ``sigma * C`` and sensitivity ``2C``: ``sigma / 2``."""
    return sigma / SENSITIVITY_IN_C


def os_rng() -> np.random.Generator:
    """A generator seeded with 128 bits from the OS (``secrets``): noise nobody
    can regenerate, which is what makes the release private."""
    return np.random.default_rng(secrets.randbits(128))


def privatize(weights: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray], clip: float,
              sigma: float, rng: np.random.Generator) -> "OrderedDict[str, np.ndarray]":
    """``base + clip_to_norm(weights - base, clip) + N(0, (sigma clip)^2)`` as float32.

    The norm is the global L2 norm over all arrays (names in sorted order);
    noise is drawn per array in sorted name order so a seeded ``rng`` gives the
    same result every time. A private release needs an ``rng`` nobody else can
    reproduce (:func:`os_rng`); a seeded one is for reproducible experiments only."""
    if not (clip > 0 and math.isfinite(clip)):
        raise ConfigError(f"dp clip must be a positive number, got {clip}")
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ConfigError(f"dp sigma must be a number >= 0, got {sigma}")
    if set(weights) != set(base):
        raise ConfigError("weights and base must have the same array names")
    names = sorted(weights)
    deltas = {n: np.asarray(weights[n], np.float64) - np.asarray(base[n], np.float64)
              for n in names}
    norm = math.sqrt(sum(float(np.sum(d * d)) for d in deltas.values()))
    factor = min(1.0, clip / norm) if norm > 0 else 1.0
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for n in names:
        noise = rng.normal(0.0, sigma * clip, size=deltas[n].shape) if sigma > 0 else 0.0
        out[n] = (np.asarray(base[n], np.float64) + factor * deltas[n] + noise).astype(np.float32)
    return out


def _check(sigma: float, rounds: int, delta: float) -> None:
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ConfigError(f"sigma must be a number >= 0, got {sigma}")
    if not isinstance(rounds, int) or rounds < 0:
        raise ConfigError(f"rounds must be an integer >= 0, got {rounds!r}")
    if not 0 < delta < 1:
        raise ConfigError(f"delta must lie in (0, 1), got {delta}")


def rdp_gaussian(sigma: float, order: float, rounds: int = 1) -> float:
    """Rényi DP of order ``order`` of ``rounds`` Gaussian mechanisms."""
    return rounds * order / (2.0 * sigma * sigma)


def best_order(sigma: float, rounds: int, delta: float) -> float:
    """The RDP order minimising the classic conversion: ``1 + sqrt(L / c)``."""
    _check(sigma, rounds, delta)
    c = rounds / (2.0 * sigma * sigma)
    return 1.0 + math.sqrt(math.log(1.0 / delta) / c)


def epsilon(sigma: float, rounds: int, delta: float, conversion: str = "classic") -> float:
    """``eps`` such that ``rounds`` Gaussian mechanisms with noise multiplier
    ``sigma`` (noise std / L2 sensitivity) are ``(eps, delta)``-DP. 0 for 0
    rounds, ``inf`` for ``sigma == 0``. For the updates of :func:`privatize`
    pass :func:`noise_multiplier` of their sigma, or use :func:`release_epsilon`."""
    _check(sigma, rounds, delta)
    if rounds == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    c = rounds / (2.0 * sigma * sigma)
    L = math.log(1.0 / delta)
    if conversion == "classic":
        return c + 2.0 * math.sqrt(c * L)
    if conversion != "improved":
        raise ConfigError(f"conversion must be 'classic' or 'improved', got {conversion!r}")

    def eps_at(a: float) -> float:
        return c * a + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)

    a0 = best_order(sigma, rounds, delta)
    res = minimize_scalar(eps_at, bounds=(1.0 + 1e-9, max(4.0 * a0, 1e3)), method="bounded",
                          options={"xatol": 1e-10})
    return float(min(res.fun, c + 2.0 * math.sqrt(c * L)))


def release_epsilon(sigma: float, rounds: int, delta: float, conversion: str = "classic") -> float:
    """``eps`` of ``rounds`` updates privatised with noise std ``sigma * C``
    (sensitivity ``2C``, so noise multiplier ``sigma / 2``)."""
    _check(sigma, rounds, delta)
    return epsilon(noise_multiplier(sigma), rounds, delta, conversion)


@dataclass
class PrivacyAccountant:
    """Tracks the cumulative ``(eps, delta)`` of one node's released updates;
    ``sigma`` is the noise std in units of the clip norm C, as in :func:`privatize`."""

    sigma: float
    delta: float = 1e-5
    conversion: str = "classic"
    rounds: int = 0
    history: list[float] = field(default_factory=list)   # eps after each round

    def __post_init__(self) -> None:
        _check(self.sigma, self.rounds, self.delta)

    def step(self, rounds: int = 1) -> float:
        """Record ``rounds`` more releases; returns the new cumulative eps."""
        for _ in range(rounds):
            self.rounds += 1
            self.history.append(release_epsilon(self.sigma, self.rounds, self.delta, self.conversion))
        return self.epsilon()

    def epsilon(self) -> float:
        """Cumulative eps after the rounds recorded so far."""
        return release_epsilon(self.sigma, self.rounds, self.delta, self.conversion)

    @property
    def per_round(self) -> list[float]:
        """The eps spent by each round (differences of the cumulative history)."""
        prev = [0.0] + self.history[:-1]
        return [b - a for a, b in zip(prev, self.history)]


def published_samples(n: int) -> int:
    """The ``num_samples`` a DP node publishes for ``n`` local samples: the largest
    power of two <= n. The accountant covers the update, not the count beside it,
    and the exact count would name the data-set size in every tx (issue 10, item
    9); the bucket reveals only floor(log2 n), i.e. n within a factor of two, and
    never claims more weight than the node has (docs/learning.md)."""
    if n < 1:
        raise ValueError("a participant has at least one sample")
    return 1 << (int(n).bit_length() - 1)

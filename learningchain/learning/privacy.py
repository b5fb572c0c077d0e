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

Since issue 12 (part B) the accountant of record is a maintained library,
Google's ``dp-accounting`` (:class:`Accountant`, :func:`calibrate`), for both
modes a participant may run (``Role.dp_mode``):

* ``"node"``: the mechanism above (the whole update clipped to C, noise
  ``sigma * C``, sensitivity 2C, replace-one of the node's data set), accounted
  as ``GaussianDpEvent(sigma / 2)`` self-composed over the rounds released.
  The closed form above stays (:func:`release_epsilon`) as a check: it is an
  upper bound of the library's RDP value (the library tries the same orders
  and more, and the tighter conversion).
* ``"sample"``: DP-SGD in local training (:mod:`learningchain.learning.models.dpsgd`):
  per-example clipping to C, noise ``N(0, (z C)^2)`` on each step's sum of
  clipped gradients, Poisson subsampling with rate q. Record-level,
  add/remove-one of one example: ``PoissonSampledDpEvent(q, GaussianDpEvent(z))``
  self-composed over every local step of every round released.

* ``"distributed"``: integer Skellam noise shares under secure aggregation
  (:mod:`learningchain.learning.ddp`); the revealed sum is accounted as
  ``GaussianDpEvent(z)`` per input sent, z the sum's noise std (t members'
  shares) over its sensitivity, add/remove-one participant's whole update.

The noise must be secret: anyone who can regenerate it subtracts it and
recovers the clipped update. A live node therefore draws it from OS entropy
(:func:`os_rng`); only the simulator may seed it, for reproducible
experiments that are *not* private.
"""
from __future__ import annotations

import functools
import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping

import dp_accounting
import numpy as np
from dp_accounting.rdp import RdpAccountant
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


# --- the accountant of record: dp-accounting (issue 12, part B) ---------------------------------

MODES = ("node", "sample", "distributed")
#: RDP orders tried by the library accountant: integers only (the library's
#: fractional orders below 2 fail to converge for Poisson-subsampled Gaussians
#: and only log warnings), dense where the optimum lies for eps in 1..10.
RDP_ORDERS = tuple(range(2, 65)) + (80, 96, 128, 192, 256, 384, 512, 1024)


def dp_event(mode: str, noise_multiplier: float, releases: int, steps_per_release: int = 1,
             sample_rate: float = 1.0) -> "dp_accounting.DpEvent":
    """The dp-accounting event of ``releases`` released updates.

    ``node``: ``GaussianDpEvent(z)`` per release, ``z`` the noise std over the
    sensitivity 2C (:func:`noise_multiplier` of sigma). ``sample``:
    ``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` for each of the
    ``steps_per_release`` local DP-SGD steps of each release."""
    if mode not in MODES:
        raise ConfigError(f"dp mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode in ("node", "distributed"):
        return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(noise_multiplier), releases)
    step = dp_accounting.PoissonSampledDpEvent(sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier))
    return dp_accounting.SelfComposedDpEvent(step, releases * steps_per_release)


def _fresh() -> RdpAccountant:
    return RdpAccountant(RDP_ORDERS)  # add/remove-one; node mode's 2C sensitivity is in z


@functools.lru_cache(maxsize=4096)
def library_epsilon(mode: str, noise_multiplier: float, releases: int, delta: float,
                    steps_per_release: int = 1, sample_rate: float = 1.0) -> float:
    """``eps`` of ``releases`` updates by dp-accounting's RDP accountant (cached)."""
    if releases == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    acc = _fresh()
    acc.compose(dp_event(mode, noise_multiplier, releases, steps_per_release, sample_rate))
    return float(acc.get_epsilon(delta))


@functools.lru_cache(maxsize=256)
def calibrate(target_eps: float, delta: float, steps: int, q: float = 1.0) -> float:
    """The smallest noise multiplier z (noise std / L2 sensitivity) whose
    ``steps`` compositions of a Gaussian mechanism, Poisson-subsampled with rate
    ``q`` (``q = 1``: not subsampled), spend at most ``target_eps`` at ``delta``
    (``dp_accounting.calibrate_dp_mechanism``: bisection over z)."""
    if not (target_eps > 0 and math.isfinite(target_eps)):
        raise ConfigError(f"dp epsilon must be a finite number > 0, got {target_eps}")
    if not 0 < delta < 1:
        raise ConfigError(f"dp delta must lie in (0, 1), got {delta}")
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"dp steps must be a positive integer, got {steps!r}")
    if not 0 < q <= 1:
        raise ConfigError(f"dp sample rate must lie in (0, 1], got {q}")

    def event(z: float):
        if q == 1:
            return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), steps)
        return dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)

    z = dp_accounting.calibrate_dp_mechanism(_fresh, event, float(target_eps), float(delta),
                                             dp_accounting.LowerEndpointAndGuess(1e-2, 1.0), tol=1e-4)
    return float(z)


@dataclass
class Accountant:
    """The cumulative ``(eps, delta)`` of one node's released updates, by
    dp-accounting. ``noise_multiplier`` is z (noise std over L2 sensitivity:
    ``sigma / 2`` in node mode); in sample mode each release is
    ``steps_per_release`` Poisson-sampled steps at rate ``sample_rate``.
    ``target_epsilon`` (if the noise was calibrated) is reported beside it."""

    mode: str
    noise_multiplier: float
    delta: float = 1e-5
    steps_per_release: int = 1
    sample_rate: float = 1.0
    target_epsilon: float | None = None
    rounds: int = 0
    history: list[float] = field(default_factory=list)   # eps after each release

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"dp mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        _check(self.noise_multiplier, self.rounds, self.delta)
        if not 0 < self.sample_rate <= 1 or self.steps_per_release < 1:
            raise ConfigError("dp sample rate must lie in (0, 1] and steps per release be >= 1")

    def epsilon_after(self, releases: int) -> float:
        return library_epsilon(self.mode, float(self.noise_multiplier), int(releases), float(self.delta),
                               int(self.steps_per_release), float(self.sample_rate))

    def step(self, rounds: int = 1) -> float:
        """Record ``rounds`` more releases; returns the new cumulative eps."""
        for _ in range(rounds):
            self.rounds += 1
            self.history.append(self.epsilon_after(self.rounds))
        return self.epsilon()

    def epsilon(self) -> float:
        return self.epsilon_after(self.rounds)

    @property
    def per_round(self) -> list[float]:
        prev = [0.0] + self.history[:-1]
        return [b - a for a, b in zip(prev, self.history)]

    def report(self) -> dict:
        """What /status, results.json and the explorer show."""
        doc = {"mode": self.mode, "epsilon": self.epsilon(), "delta": self.delta, "rounds": self.rounds,
               "noise_multiplier": self.noise_multiplier, "target_epsilon": self.target_epsilon}
        if self.mode == "sample":
            doc.update(sample_rate=self.sample_rate, steps=self.rounds * self.steps_per_release,
                       steps_per_round=self.steps_per_release,
                       relation="record-level, add/remove-one example")
        elif self.mode == "distributed":
            doc["relation"] = ("node-level, add/remove-one participant's whole update, noise shares in the "
                               "securely aggregated sum (threshold t members assumed honest)")
        else:
            doc["relation"] = "node-level, replace-one (the node's whole data set)"
        return doc


def node_accountant(sigma: float, delta: float = 1e-5, target_epsilon: float | None = None) -> Accountant:
    """Node mode: noise std ``sigma * C`` on sensitivity 2C, i.e. ``z = sigma / 2``."""
    return Accountant("node", noise_multiplier(sigma), delta, target_epsilon=target_epsilon)


def node_sigma_for(target_eps: float, delta: float, rounds: int) -> float:
    """Node mode: the sigma (noise std in units of C) that spends ``target_eps``
    over ``rounds`` releases: twice the calibrated z (sensitivity 2C)."""
    return SENSITIVITY_IN_C * calibrate(target_eps, delta, rounds, 1.0)


def published_samples(n: int) -> int:
    """The ``num_samples`` a DP node publishes for ``n`` local samples: the largest
    power of two <= n. The accountant covers the update, not the count beside it,
    and the exact count would name the data-set size in every tx (issue 10, item
    9); the bucket reveals only floor(log2 n), i.e. n within a factor of two, and
    never claims more weight than the node has (docs/learning.md)."""
    if n < 1:
        raise ValueError("a participant has at least one sample")
    return 1 << (int(n).bit_length() - 1)

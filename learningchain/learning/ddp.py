"""Distributed differential privacy under secure aggregation (``--dp-mode distributed``,
issue 12 part B): every participant adds its share of integer Skellam noise to
its quantised input *before masking*, so only the revealed sum carries the
full noise (Agarwal, Kairouz, Liu, "The Skellam Mechanism for Differentially
Private Federated Learning", NeurIPS 2021; Kairouz, Liu, Steinke, "The
Distributed Discrete Gaussian Mechanism for Federated Learning with Secure
Aggregation", ICML 2021).

Mechanism (one participant, one round; :meth:`NoiseShare.prepare`):

1. the delta ``w - G(r-1)`` (flat, float64) is clipped to L2 norm ``C``;
2. secure aggregation's quantiser (:func:`learningchain.learning.secagg.quantize`)
   clamps every coordinate to the genesis range and rounds ``x * scale`` to the
   nearest integer, half to even: **deterministic rounding**. Clamping is a
   projection and never grows the norm, so the integer vector ``q`` has
   ``||q||_2 <= C * scale + sqrt(d) / 2`` (the rounding error is at most 1/2 per
   coordinate): that bound is the sensitivity ``Delta_2`` (:func:`sensitivity`);
3. integer noise ``Poisson(mu) - Poisson(mu)`` (Skellam, mean 0, variance
   ``2 mu``) is added to every coordinate, drawn from OS entropy on a live node
   and from a seed only in the simulator (reproducible, *not* private).

Neighbouring relation (node level): **add/remove one participant's whole
update**: one member's data set is present or absent, and a member without data
sends a zero delta (it still runs the protocol and adds its noise share). The
revealed sum then moves by one ``q``: L2 sensitivity ``Delta_2``.

Accounting: the noise in the sum of ``h`` noised inputs is ``Skellam(h mu)``,
variance ``2 h mu``. Calibration is conservative in ``h``: it assumes only the
threshold ``t`` (the fewest members whose inputs a round can count) add honest
noise, whatever the real count. The accountant of record treats the sum as a
Gaussian mechanism with noise multiplier ``z = sqrt(2 t mu) / Delta_2``
(``GaussianDpEvent(z)`` in dp-accounting, composed over the rounds the member
sends an input; no subsampling: every roster member takes part). That is an
approximation of the Skellam sum; :func:`skellam_epsilon` computes the exact
Skellam RDP bound of Agarwal et al. (Theorem 3.5 of the NeurIPS paper,
``eps(a) <= a D2^2 / (4 M) + min(((2a - 1) D2^2 + 6 D1) / (16 M^2), 3 D1 / (4 M))``,
evaluated with ``2a`` in place of ``2a - 1`` (larger, so still a bound)
for ``Skellam(M)`` per coordinate, ``D1`` the L1 sensitivity) and
:func:`calibrate` raises ``mu`` until that bound too stays within the target.
At secure aggregation's scales (``Delta_2`` ~ 10^6..10^7) the two agree to
better than 10^-6 relative.

Wraparound: the sum is read as signed 32-bit. Genesis bounds the inputs,
``N * ceil(clip * scale) <= 2^30``; :func:`check_no_wrap` adds a Chernoff bound
on the Skellam noise of all ``N`` shares and refuses a configuration whose sum
could leave ``(-2^31, 2^31)`` with probability above ``2^-40`` over the whole run.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np
from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

from learningchain.core.errors import ConfigError
from learningchain.learning import privacy

WRAP_FAILURE = 2.0 ** -40   # allowed probability that some coordinate's sum wraps, over the whole run
SIGNED_LIMIT = 1 << 31


def sensitivity(clip: float, scale: int, d: int) -> float:
    """``Delta_2`` of one member's quantised input in integer units:
    ``C * scale + sqrt(d) / 2`` (deterministic rounding, see the module doc)."""
    return clip * scale + math.sqrt(d) / 2.0


def l1_sensitivity(clip: float, scale: int, d: int, range_clip: float) -> float:
    """``Delta_1``: at most ``sqrt(d) Delta_2``, and at most ``d`` times the largest coordinate."""
    return min(math.sqrt(d) * sensitivity(clip, scale, d), d * (min(clip, range_clip) * scale + 0.5))


def skellam_rdp(order: float, total_mu: float, d2: float, d1: float) -> float:
    """Agarwal et al. (2021), Thm 3.5: RDP of order ``order`` of adding ``Skellam(total_mu)``
    (Poisson(M) - Poisson(M), variance 2M) per coordinate, sensitivities ``d2``, ``d1``."""
    m = total_mu
    # the paper's middle term has (2a - 1) D2^2; 2a D2^2 (as some public implementations write it) bounds it
    return order * d2 * d2 / (4 * m) + min((2 * order * d2 * d2 + 6 * d1) / (16 * m * m), 3 * d1 / (4 * m))


def skellam_epsilon(total_mu: float, d2: float, d1: float, rounds: int, delta: float) -> float:
    """``eps`` of ``rounds`` Skellam releases by the exact RDP bound, converted
    with dp-accounting's ``compute_epsilon`` over the accountant's orders."""
    if rounds == 0:
        return 0.0
    orders = privacy.RDP_ORDERS
    rdp = [rounds * skellam_rdp(a, total_mu, d2, d1) for a in orders]
    return float(compute_epsilon(orders, rdp, delta)[0])


def gaussian_epsilon(z: float, rounds: int, delta: float) -> float:
    """``eps`` of the Gaussian approximation (dp-accounting's RDP accountant)."""
    return privacy.library_epsilon("distributed", float(z), int(rounds), float(delta))


@dataclass(frozen=True)
class Plan:
    """The calibrated noise of one network: share rate ``mu`` per member and
    coordinate, for L2 clip ``clip``, genesis ``scale`` and threshold ``t``, ``d``
    coordinates, ``rounds`` planned, target ``(epsilon, delta)``."""
    clip: float
    scale: int
    d: int
    threshold: int
    rounds: int
    epsilon: float
    delta: float
    mu: float                # Poisson rate of one member's share, per coordinate

    @property
    def delta2(self) -> float:
        return sensitivity(self.clip, self.scale, self.d)

    def total_mu(self, honest: int | None = None) -> float:
        """Poisson rate of the sum's noise with ``honest`` noised inputs (default t)."""
        return self.mu * (self.threshold if honest is None else honest)

    def noise_multiplier(self, honest: int | None = None) -> float:
        """z of the sum: noise std ``sqrt(2 h mu)`` over ``Delta_2``."""
        return math.sqrt(2 * self.total_mu(honest)) / self.delta2

    def epsilon_after(self, rounds: int, honest: int | None = None, range_clip: float | None = None) -> dict:
        """Both accountings after ``rounds`` inputs with ``honest`` noised inputs in each sum."""
        d1 = l1_sensitivity(self.clip, self.scale, self.d, self.clip if range_clip is None else range_clip)
        return {"gaussian": gaussian_epsilon(self.noise_multiplier(honest), rounds, self.delta),
                "skellam": skellam_epsilon(self.total_mu(honest), self.delta2, d1, rounds, self.delta)}


def calibrate(epsilon: float, delta: float, rounds: int, clip: float, scale: int, d: int,
              threshold: int, range_clip: float | None = None) -> Plan:
    """The share rate ``mu``: the Gaussian calibration (dp-accounting, noise
    multiplier z over ``rounds``) with ``t`` members' noise, then raised by steps
    of 0.1 % until the exact Skellam bound is within ``epsilon`` too."""
    if not (clip > 0 and math.isfinite(clip)):
        raise ConfigError(f"--dp-mode distributed needs an L2 clip C > 0 (--dp-clip), got {clip}")
    if threshold < 1 or d < 1 or scale < 1:
        raise ConfigError("distributed DP needs threshold, d and scale >= 1")
    z = privacy.calibrate(epsilon, delta, rounds, 1.0)
    d2 = sensitivity(clip, scale, d)
    d1 = l1_sensitivity(clip, scale, d, clip if range_clip is None else range_clip)
    total = (z * d2) ** 2 / 2.0
    for _ in range(10000):
        if skellam_epsilon(total, d2, d1, rounds, delta) <= epsilon:
            break
        total *= 1.001
    else:
        raise ConfigError("distributed DP: could not calibrate the Skellam noise")
    return Plan(clip, scale, d, threshold, rounds, epsilon, delta, total / threshold)


def skellam_tail(total_mu: float, a: float) -> float:
    """Chernoff bound on ``P(X >= a)`` for ``X ~ Skellam(total_mu)``:
    ``exp(min_s 2M (cosh s - 1) - s a)``, at ``s = asinh(a / 2M)``."""
    if a <= 0:
        return 1.0
    s = math.asinh(a / (2 * total_mu))
    return math.exp(min(0.0, 2 * total_mu * (math.cosh(s) - 1) - s * a))


def noise_margin(total_mu: float, d: int, rounds: int, failure: float = WRAP_FAILURE) -> float:
    """The ``a`` with ``2 d rounds P(X >= a) <= failure`` (two-sided, union bound)."""
    lo, hi = 0.0, 1.0
    while 2 * d * rounds * skellam_tail(total_mu, hi) > failure:
        lo, hi = hi, hi * 2
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 2 * d * rounds * skellam_tail(total_mu, mid) > failure else (lo, mid)
    return hi


def check_no_wrap(plan: Plan, n: int, range_clip: float) -> float:
    """Refuse (ConfigError, one line) a plan whose sum of ``n`` noised inputs could
    wrap; the bound ``n * ceil(clip * scale) + margin`` it checked otherwise."""
    inputs = n * math.ceil(range_clip * plan.scale)
    bound = inputs + noise_margin(plan.total_mu(n), plan.d, max(plan.rounds, 1))
    if bound >= SIGNED_LIMIT:
        raise ConfigError(f"--dp-mode distributed: the sum of {n} inputs ({inputs}) plus the Skellam noise "
                          f"(mu={plan.mu:.4g} per member) could reach {bound:.4g} >= 2^31 and wrap; lower "
                          f"--sa-scale, --sa-clip, --dp-clip or raise --dp-epsilon")
    return bound


def skellam(rng: np.random.Generator, mu: float, d: int) -> np.ndarray:
    """``d`` draws of ``Poisson(mu) - Poisson(mu)`` as int64."""
    if mu <= 0:
        return np.zeros(d, dtype=np.int64)
    return rng.poisson(mu, d).astype(np.int64) - rng.poisson(mu, d).astype(np.int64)


def clip_l2(flat: np.ndarray, clip: float) -> np.ndarray:
    """``flat * min(1, C / ||flat||_2)`` in float64."""
    flat = np.asarray(flat, dtype=np.float64)
    norm = float(np.sqrt(np.sum(flat * flat)))
    return flat * (clip / norm) if norm > clip else flat


@dataclass
class NoiseShare:
    """One member's noise: its ``plan`` and where the randomness comes from.
    ``seed`` None (a live node): OS entropy; an int (the simulator): a
    generator per round from ``(seed, round)``, reproducible and NOT private."""
    plan: Plan
    seed: int | None = None

    def rng(self, round: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(secrets.randbits(128))
        return np.random.default_rng([self.seed, round])

    def prepare(self, flat: np.ndarray, round: int) -> tuple[np.ndarray, np.ndarray]:
        """The L2-clipped delta and this round's integer noise share."""
        clipped = clip_l2(flat, self.plan.clip)
        return clipped, skellam(self.rng(round), self.plan.mu, clipped.size)

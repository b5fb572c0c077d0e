"""A participant: the learner role of a node, shared by the live node and the
in-process simulator so that what experiments measure is what the network runs.

Each round it takes the global model G(r-1) from the chain, trains E local
epochs on its own data, optionally applies differential privacy to the update
(clip + Gaussian noise, before signing), and signs one update transaction.
An attacking participant (an evaluation role) poisons its labels or its update.

With differential privacy the Gaussian noise comes from OS entropy
(:func:`learningchain.learning.privacy.os_rng`): the node's seed, address and the
round are public, so noise derived from them could be regenerated and
subtracted. ``reproducible_noise=True`` derives it from them instead: the
simulator's option for reproducible experiments, not private. The update tx
then also carries no local metrics: they are computed on the node's private
data and the accountant does not cover them.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from learningchain.learning import attacks, compression, privacy
from learningchain.core.crypto import PrivateKey
from learningchain.core.errors import ConfigError
from learningchain.learning.models import ModelSpec, build_model, dpsgd
from learningchain.ledger.tx import UpdateTx

ATTACKS = attacks.ATTACKS  # the names: one list, in learning.attacks


@dataclass(frozen=True)
class Role:
    """How a participant behaves: honest (attack None) or one named attack; and
    its optional differential privacy (learning/privacy.py):

    * ``dp_mode="node"`` (the default when DP is asked for without a mode): the
      whole update clipped to ``dp_clip`` and noised with std ``dp_sigma * C``;
      ``dp_epsilon`` instead of ``dp_sigma`` calibrates sigma for ``dp_rounds``.
    * ``dp_mode="sample"``: DP-SGD in local training; ``dp_epsilon`` calibrates
      the noise multiplier z over ``dp_rounds`` rounds of ``ceil(E / q)`` steps
      (``dp_sigma``, if given, is z itself). ``dp_clip``, ``dp_sample_rate``,
      ``dp_epochs`` and ``dp_lr`` default (0) to the tuned ``dpsgd.Recipe``: the
      participant's own local hyper-parameters, not the genesis spec's.
    * ``dp_mode="distributed"`` (secure aggregation only): the delta clipped to L2
      norm ``dp_clip`` and a Skellam noise share added to the quantised input
      before masking (learning/ddp.py); ``dp_epsilon`` is required (the share
      rate depends on the genesis scale and threshold, known at the first round)."""
    attack: str | None = None
    dp_sigma: float = 0.0
    dp_clip: float = 0.0
    dp_delta: float = 1e-5
    dp_mode: str | None = None
    dp_epsilon: float = 0.0          # a target: calibrates the noise (0: use dp_sigma)
    dp_rounds: int = 0               # rounds planned, for the calibration
    dp_sample_rate: float = 0.0      # sample mode: Poisson rate q (0: Recipe)
    dp_epochs: int = 0               # sample mode: local epochs (0: Recipe)
    dp_lr: float = 0.0               # sample mode: learning rate (0: Recipe)
    compression: str | None = None   # None, "q8" or "topk" (learningchain/learning/compression.py)
    topk_fraction: float = 0.1       # share of each array's entries a topk update sends
    skip_threshold: float = 0.0      # send a skip tx when ||w - G(r-1)||_2 is below this

    def __post_init__(self) -> None:
        """The one check of these settings for the node, the simulator and both CLIs
        (they turn the ConfigError into their one-line error). Every number must be
        finite: ``nan > 0`` is False, so a NaN sigma would otherwise switch DP off
        silently, and an infinite one would fail only inside the first round."""
        for name in ("dp_sigma", "dp_clip", "dp_delta", "dp_epsilon", "dp_sample_rate", "dp_lr",
                     "topk_fraction", "skip_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}")
        if self.compression not in (None, "q8", "topk"):
            raise ConfigError(f"unknown compression {self.compression!r}; choose q8 or topk")
        if not 0 < self.topk_fraction <= 1 or self.skip_threshold < 0:
            raise ConfigError("topk_fraction must be in (0, 1] and skip_threshold >= 0")
        if self.attack is not None and self.attack not in ATTACKS:
            raise ConfigError(f"unknown attack {self.attack!r}; choose one of {', '.join(ATTACKS)}")
        if self.dp_sigma < 0 or self.dp_clip < 0 or self.dp_epsilon < 0 or self.dp_lr < 0:
            raise ConfigError(f"dp sigma, clip, epsilon and lr must be >= 0, got {self.dp_sigma}, "
                              f"{self.dp_clip}, {self.dp_epsilon} and {self.dp_lr}")
        if self.dp_mode not in (None, *privacy.MODES):
            raise ConfigError(f"unknown dp mode {self.dp_mode!r}; choose one of {', '.join(privacy.MODES)}")
        for name in ("dp_rounds", "dp_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {v!r}")
        if not 0 <= self.dp_sample_rate <= 1:
            raise ConfigError(f"dp sample rate must lie in (0, 1], got {self.dp_sample_rate}")
        noised = self.dp_sigma > 0 or self.dp_epsilon > 0
        if self.dp_sigma > 0 and self.dp_epsilon > 0:
            raise ConfigError("pass --dp-sigma or --dp-epsilon, not both (epsilon calibrates the noise)")
        if self.dp_mode is not None and not noised:
            raise ConfigError(f"--dp-mode {self.dp_mode} needs --dp-epsilon (or --dp-sigma)")
        if self.mode == "distributed" and (self.dp_sigma > 0 or self.dp_epsilon <= 0):
            raise ConfigError("--dp-mode distributed needs --dp-epsilon (not --dp-sigma): the noise is "
                              "calibrated against the securely aggregated sum")
        if self.mode in ("node", "distributed") and noised and self.dp_clip <= 0:
            raise ConfigError("differential privacy needs a clip norm C > 0 (--dp-clip)")
        if self.dp_clip > 0 and not noised:
            raise ConfigError("--dp-clip needs --dp-sigma or --dp-epsilon (a clip without noise is not private)")
        if self.mode != "sample" and (self.dp_sample_rate or self.dp_epochs or self.dp_lr):
            raise ConfigError("--dp-sample-rate (and dp epochs, lr) apply to --dp-mode sample only")
        if self.dp_epsilon > 0 and self.dp_rounds < 1:
            raise ConfigError("--dp-epsilon needs the number of rounds planned (dp_rounds >= 1) to calibrate")
        if not 0 < self.dp_delta < 1:
            raise ConfigError(f"dp delta must lie in (0, 1), got {self.dp_delta}")

    @property
    def mode(self) -> str | None:
        """"node", "sample" or None (no DP); DP without a mode is node mode."""
        if self.dp_mode is not None:
            return self.dp_mode
        return "node" if self.dp_sigma > 0 or self.dp_epsilon > 0 else None

    @property
    def dp(self) -> bool:
        return self.mode is not None

    @property
    def sample_rate(self) -> float:
        return self.dp_sample_rate or dpsgd.Recipe.sample_rate

    @property
    def clip(self) -> float:
        return self.dp_clip or (dpsgd.Recipe.clip if self.mode == "sample" else 0.0)

    @property
    def local_steps(self) -> int:
        """Sample mode: DP-SGD steps per round, ``ceil(E / q)``."""
        return dpsgd.steps_per_round(self.dp_epochs or dpsgd.Recipe.epochs, self.sample_rate)

    def lr(self, kind: str) -> float:
        return self.dp_lr or dpsgd.Recipe.lr[kind]

    def make_accountant(self) -> "privacy.Accountant | None":
        """The accountant of this role's releases, its noise calibrated from
        ``dp_epsilon`` over ``dp_rounds`` when a target is given."""
        target = self.dp_epsilon or None
        if self.mode == "node":
            sigma = self.dp_sigma or privacy.node_sigma_for(self.dp_epsilon, self.dp_delta, self.dp_rounds)
            return privacy.node_accountant(sigma, self.dp_delta, target)
        if self.mode == "sample":
            steps, q = self.local_steps, self.sample_rate
            z = self.dp_sigma or privacy.calibrate(self.dp_epsilon, self.dp_delta, self.dp_rounds * steps, q)
            return privacy.Accountant("sample", z, self.dp_delta, steps, q, target)
        if self.mode == "distributed":  # z is raised to the plan's (ddp.calibrate) at the first input
            return privacy.Accountant("distributed", privacy.calibrate(self.dp_epsilon, self.dp_delta,
                                                                       self.dp_rounds), self.dp_delta,
                                      target_epsilon=target)
        return None


def derive_seed(*parts: object) -> int:
    """A 64-bit seed derived from the parts (stable across processes and runs)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def delta_norm(weights: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray]) -> float:
    """L2 norm of w - base over all arrays (the skip rule's measure)."""
    return float(np.sqrt(sum(float(np.sum((np.asarray(weights[k], np.float64) - np.asarray(base[k], np.float64)) ** 2))
                             for k in weights)))


@dataclass
class Participant:
    key: PrivateKey
    spec: ModelSpec
    X: np.ndarray
    y: np.ndarray
    role: Role = field(default_factory=Role)
    seed: int = 0
    reproducible_noise: bool = False  # True: DP noise from (seed, address, round): NOT private

    def __post_init__(self) -> None:
        if len(self.X) == 0 or len(self.X) != len(self.y):
            raise ConfigError("a participant needs local data: X and y of the same non-zero length")
        if self.X.ndim != 2 or self.X.shape[1] != self.spec.n_features:
            raise ConfigError(f"local data has {self.X.shape[-1] if self.X.ndim else 0} features, "
                              f"the network's model expects {self.spec.n_features}")
        if self.role.mode == "sample" and self.spec.backend != "numpy":
            raise ConfigError(f"sample-level DP-SGD (--dp sample) is built for the numpy models only; the "
                              f"network's model is {self.spec.label}: use --dp node or secure aggregation")
        self.model = build_model(self.spec)
        self.memory: dict = {}  # top-k error feedback: the part of past deltas not yet sent
        self.accountant = self.role.make_accountant()
        # what the txs claim: a DP node publishes a power-of-two bucket, not its size
        self.published_samples = privacy.published_samples(len(self.X)) if self.role.dp else len(self.X)
        if self.role.attack == "label-flip":
            rng = np.random.default_rng(derive_seed(self.seed, self.key.address, "labels"))
            self.y = attacks.poison_labels(self.y, self.spec.n_outputs, rng)

    @property
    def attacking(self) -> bool:
        return self.role.attack is not None

    def train(self, round: int, base: Mapping[str, np.ndarray]):
        """Honest local training from G(r-1); deterministic per (seed, node, round),
        except DP-SGD (sample mode) on a live node: its samples and noise come
        from OS entropy."""
        if self.role.mode == "sample":
            rng = np.random.default_rng(derive_seed(self.seed, self.key.address, round, "dp-sgd")) \
                if self.reproducible_noise else privacy.os_rng()
            return self.model.train_dp(base, self.X, self.y, steps=self.role.local_steps,
                                       sample_rate=self.role.sample_rate, clip=self.role.clip,
                                       noise_multiplier=self.accountant.noise_multiplier,
                                       lr=self.role.lr(self.spec.kind), rng=rng)
        return self.model.train(base, self.X, self.y, seed=derive_seed(self.seed, self.key.address, round))

    @property
    def sigma(self) -> float:
        """Node mode: the noise std in units of C (given, or calibrated from epsilon)."""
        return self.accountant.noise_multiplier * privacy.SENSITIVITY_IN_C

    def budget_spent(self) -> bool:
        """With a target epsilon: every planned round is released (one more would exceed it)."""
        return (self.accountant is not None and self.role.dp_epsilon > 0
                and self.accountant.rounds >= self.role.dp_rounds)

    def make_update(self, round: int, base: Mapping[str, np.ndarray], base_digest: str,
                    timestamp: int, benign: Sequence[Mapping[str, np.ndarray]] | None = None,
                    n_total: int | None = None, n_byzantine: int | None = None,
                    trained: Mapping[str, np.ndarray] | None = None) -> UpdateTx:
        """Train (unless ``trained`` is given), privatise, poison if attacking, sign.

        ``benign``, ``n_total`` and ``n_byzantine`` inform colluding attacks (ALIE)
        in the simulator; a live attacker passes nothing and estimates alone."""
        if self.role.mode == "distributed":
            raise ConfigError("--dp-mode distributed adds its noise to a secure-aggregation input, "
                              "never to a plain update")
        weights = trained if trained is not None else self.train(round, base)
        rng = np.random.default_rng(derive_seed(self.seed, self.key.address, round, "noise"))
        if self.role.mode == "node":  # the seeded rng stays for attacks and compression: public post-processing
            noise = rng if self.reproducible_noise else privacy.os_rng()
            weights = privacy.privatize(weights, base, self.role.dp_clip, self.sigma, noise)
        if self.role.dp:  # sample mode: train() was DP-SGD already
            self.accountant.step()
        if self.role.attack and self.role.attack != "label-flip":
            weights = attacks.poison_update(self.role.attack, weights, base, rng, benign=benign,
                                            n_total=n_total, n_byzantine=n_byzantine)
        metrics = {} if self.role.dp else self.local_metrics(weights)
        if self.role.skip_threshold > 0 and delta_norm(weights, base) < self.role.skip_threshold:
            return UpdateTx.create_skip(self.key, round, base_digest, self.published_samples, metrics, timestamp)
        if self.role.compression is not None:
            encoded, self.memory = compression.compress(weights, base, self.role.compression, rng,
                                                        self.role.topk_fraction, self.memory)
            return UpdateTx.create_compressed(self.key, round, base_digest, encoded, self.role.compression,
                                              self.published_samples, metrics=metrics, timestamp=timestamp)
        return UpdateTx.create(self.key, round, base_digest, weights, self.published_samples,
                               metrics=metrics, timestamp=timestamp)

    def make_delta(self, round: int, base: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Secure aggregation's input: w - G(r-1) as float64 arrays, after training,
        node-level DP (clip + noise on the delta) or DP-SGD, and the attack if any;
        the SecAggClient clips it per coordinate and quantises it. Counts one
        release in the accountant."""
        weights = self.train(round, base)
        rng = np.random.default_rng(derive_seed(self.seed, self.key.address, round, "noise"))
        if self.role.mode == "node":
            noise = rng if self.reproducible_noise else privacy.os_rng()
            weights = privacy.privatize(weights, base, self.role.dp_clip, self.sigma, noise)
        if self.role.dp:
            self.accountant.step()
        if self.role.attack and self.role.attack != "label-flip":
            weights = attacks.poison_update(self.role.attack, weights, base, rng)
        return {k: np.asarray(weights[k], np.float64) - np.asarray(base[k], np.float64) for k in base}

    def local_metrics(self, weights: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Scores of ``weights`` on the local data, published in the update tx
        (not with DP: they would leak the data outside the accountant)."""
        return {k: v for k, v in self.model.evaluate(weights, self.X, self.y).items()
                if np.isfinite(v) and abs(v) < 1e12}  # a poisoned model may blow up

    def privacy_spent(self) -> tuple[float, float] | None:
        """(epsilon, delta) spent so far, or None without differential privacy."""
        return (self.accountant.epsilon(), self.role.dp_delta) if self.accountant else None

"""The configuration of one simulation (:class:`SimConfig`): its keys, their
defaults and validation, loading ``configs/NAME.json`` with command-line
overrides (:func:`load_config`), and writing it back (:func:`dumps_config`).

Kept apart from :mod:`learningchain.sim.simulator` so that the CLI, the sweeps and
the benchmarks can build and check a configuration without the ledger core;
every bad value is a :class:`~learningchain.core.errors.ConfigError` naming the key.
"""
from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from learningchain.learning import aggregation, data, energy, selection
from learningchain.core.encoding import parse_json
from learningchain.core.errors import ConfigError, LearningChainError
from learningchain.learning.models import ModelSpec, backend_of, default_spec, load_torch, spec_for
from learningchain.node.participant import ATTACKS, Role

_MODEL_OVERRIDES = ("epochs", "batch_size", "lr", "l2", "hidden", "seed")


@dataclass
class SimConfig:
    """One simulation. Loaded from ``configs/NAME.json`` (same keys) and
    overridden by command-line flags."""
    name: str = "sim"
    nodes: int = 4
    rounds: int = 10
    dataset: str = "digits"
    samples: int | None = None         # synthetic datasets: samples generated (default: data.default_samples)
    split: str = "iid"
    data_dir: str | None = None        # a user's node0.npz, node1.npz, ... and test.npz instead of dataset/split
    alpha: float = 0.5
    model: str = "mlp"
    backend: str | None = None  # None: numpy, except cnn and a module:factory (torch)
    model_params: dict = field(default_factory=dict)  # ModelSpec overrides: epochs, lr, ...
    aggregator: str = "fedavg"
    aggregator_params: dict = field(default_factory=dict)
    byzantine: int = 0
    attack: str = "sign-flip"
    dp_sigma: float = 0.0
    dp_clip: float = 0.0
    dp_delta: float = 1e-5             # the delta of the (epsilon, delta) reported per round
    dp_noise: str = "seeded"           # "seeded": reproducible experiments, NOT private; "os": OS entropy
    dp_mode: str | None = None         # None (DP off, or node mode with dp_sigma), "node", "sample", "distributed" (SA)
    dp_epsilon: float = 0.0            # target epsilon over all rounds: calibrates the noise (0: dp_sigma)
    dp_sample_rate: float = 0.0        # sample mode: Poisson rate q (0: the tuned recipe, dpsgd.Recipe)
    dp_epochs: int = 0                 # sample mode: local epochs per round (0: the recipe)
    dp_lr: float = 0.0                 # sample mode: learning rate (0: the recipe)
    seed: int = 0
    quorum: int | None = None          # default: every node (nodes)
    full_nodes: int | None = None      # default: min(nodes, 3)
    round_timeout: int = 5             # blocks
    difficulty: int = 16384            # expected hashes per block (~6 ms of Python PoW)
    target_block_ms: int = 1000        # virtual time per block
    out: str | None = None
    description: str = ""
    target: dict | None = None         # what the config reproduces (read by bench/simulator.py)
    selection: str = "all"             # participant selection policy (selection.py)
    select_k: int | None = None        # k of random-k / top-k / energy-aware
    selection_params: dict = field(default_factory=dict)  # other policy parameters (min_k, explore, ...)
    energy_budget_j: float | None = None  # per-node learning budget in joules (energy-aware)
    hash_nj: int = energy.DEFAULT_PROFILE.hash_nj  # nanojoules per proof-of-work hash, every node
    compression: str | None = None     # None, "q8" or "topk"
    topk_fraction: float = 0.1
    skip_threshold: float = 0.0        # honest nodes send a skip tx when ||delta|| is below this
    secure_aggregation: bool = False   # genesis privacy.secure_aggregation (docs/protocol.md section 14)
    sa_threshold: int | None = None    # t (default floor(2N/3) + 1)
    sa_clip: str | float = "0.5"       # per-coordinate clipping range of a delta (a decimal)
    sa_scale: int | None = None        # fixed-point scale (default: genesis_privacy.default_params)
    sa_phase_timeout: int | None = None  # blocks (default round_timeout)
    sa_drop_after_setup: int = 0       # members (seeded choice per round) that vanish after setup
    sa_drop_after_input: int = 0       # ... after input (they never unmask)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)
        for name in ("nodes", "rounds", "round_timeout", "difficulty", "target_block_ms"):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                 f"{name} must be a positive integer, got {v!r}")
        need(self.dataset in data.DATASETS,
             f"unknown dataset {self.dataset!r}; choose one of {', '.join(data.DATASETS)}")
        if self.data_dir is not None:  # the user's files fix the nodes and the split
            need(isinstance(self.data_dir, str) and bool(self.data_dir), "data_dir must be a directory path")
            files, test = data.dir_files(self.data_dir)
            need(test is not None, f"{data.no_test_line(self.data_dir)}, and a simulation's metrics are its "
                                   f"measurements: add test.npz (arrays X and y) to {self.data_dir}")
            need(self.nodes == len(files), f"nodes {self.nodes} does not match the {len(files)} node files in "
                                           f"{self.data_dir} (node0..node{len(files) - 1}): leave nodes (--nodes) out")
            need(self.samples is None, f"samples does not apply to data_dir {self.data_dir} (its files fix it)")
        else:
            data.check_size(self.dataset, self.nodes, self.samples)  # one line: too small, or not resizable
        need(self.split in data.SPLITS, f"unknown split {self.split!r}; choose one of {', '.join(data.SPLITS)}")
        try:
            backend_of(self.model, self.backend)
        except ConfigError as exc:
            need(False, str(exc))
        need(self.aggregator in aggregation.RULES,
             f"unknown aggregator {self.aggregator!r}; choose one of {', '.join(aggregation.RULES)}")
        need(self.attack in ATTACKS, f"unknown attack {self.attack!r}; choose one of {', '.join(ATTACKS)}")
        need(isinstance(self.byzantine, int) and 0 <= self.byzantine < self.nodes,
             f"byzantine must be an integer in [0, nodes) = [0, {self.nodes}), got {self.byzantine!r}")
        need(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        need(isinstance(self.alpha, (int, float)) and not isinstance(self.alpha, bool) and self.alpha > 0,
             f"alpha must be a number > 0, got {self.alpha!r}")
        try:
            self.role()  # the DP rules live there
        except ConfigError as exc:
            key = next((k for k in ("dp_mode", "dp_epsilon", "dp_sample_rate", "dp_epochs", "dp_lr",
                                    "dp_sigma", "dp_clip", "dp_delta") if k in str(exc) or
                        k.replace("_", "-") in str(exc) or k.replace("_", " ") in str(exc)), "dp")
            raise ConfigError(f"{key}: {exc}") from None
        need(self.dp_noise in ("seeded", "os"), f"dp_noise must be seeded or os, got {self.dp_noise!r}")
        for name in ("quorum", "full_nodes"):
            v = getattr(self, name)
            need(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                 f"{name} must be a positive integer or null, got {v!r}")
        need(self.full_nodes is None or self.full_nodes <= self.nodes,
             f"full_nodes ({self.full_nodes}) cannot exceed nodes ({self.nodes})")
        need(isinstance(self.model_params, dict) and set(self.model_params) <= set(_MODEL_OVERRIDES),
             f"model_params may set only {', '.join(_MODEL_OVERRIDES)}, got {self.model_params!r}")
        need(isinstance(self.aggregator_params, dict), "aggregator_params must be an object")
        aggregation.check_params(self.aggregator, self.aggregator_params)
        need(self.selection in selection.POLICIES,
             f"unknown selection {self.selection!r}; choose one of {', '.join(selection.POLICIES)}")
        need(self.selection == "all" or (isinstance(self.select_k, int) and 1 <= self.select_k <= self.nodes),
             f"selection {self.selection} needs select_k in [1, nodes], got {self.select_k!r}")
        need(isinstance(self.selection_params, dict), "selection_params must be an object")
        need(self.compression in (None, "q8", "topk"), f"compression must be q8, topk or null, got {self.compression!r}")
        need(isinstance(self.topk_fraction, (int, float)) and 0 < self.topk_fraction <= 1,
             "topk_fraction must be in (0, 1]")
        need(isinstance(self.skip_threshold, (int, float)) and self.skip_threshold >= 0, "skip_threshold must be >= 0")
        need(isinstance(self.hash_nj, int) and not isinstance(self.hash_nj, bool) and 0 <= self.hash_nj < 2**53,
             f"hash_nj (nanojoules per hash) must be an integer >= 0, got {self.hash_nj!r}")
        need(self.energy_budget_j is None or (isinstance(self.energy_budget_j, (int, float)) and self.energy_budget_j > 0),
             "energy_budget_j must be > 0 or null")
        check_secure_aggregation(self, need)

    # --- derived --------------------------------------------------------------
    def role(self, **extra: Any) -> Role:
        """The DP settings of every participant (plus ``extra``: attack, compression ...)."""
        return Role(dp_sigma=self.dp_sigma, dp_clip=self.dp_clip, dp_delta=self.dp_delta,
                    dp_mode=self.dp_mode, dp_epsilon=self.dp_epsilon, dp_rounds=self.rounds,
                    dp_sample_rate=self.dp_sample_rate, dp_epochs=self.dp_epochs, dp_lr=self.dp_lr,
                    **extra)

    def sa_params(self):
        """The genesis SecAggParams of this run (None in plain mode)."""
        if not self.secure_aggregation:
            return None
        from learningchain.ledger.genesis_privacy import default_params
        return default_params(self.nodes, self.round_timeout, sa_clip_text(self.sa_clip), self.sa_threshold,
                              self.sa_scale, self.sa_phase_timeout)

    @property
    def n_samples(self) -> int:
        """Samples of the whole dataset (training and hold-out): ``samples``, the
        default for a synthetic set at this node count, or the fixed size."""
        return data.check_size(self.dataset, self.nodes, self.samples)

    @property
    def generate_samples(self) -> int | None:
        """What :func:`~learningchain.learning.data.load_dataset` is asked to generate
        (None for a fixed-size dataset)."""
        return self.n_samples if self.dataset in data.SYNTHETIC else None

    @property
    def n_quorum(self) -> int:
        return self.quorum or self.nodes

    @property
    def n_full(self) -> int:
        return self.full_nodes or min(self.nodes, 3)

    def model_spec(self) -> ModelSpec:
        from learningchain.node import user_models
        user_models.ensure(self.model)
        if self.data_dir is not None:  # built for the data's shape and classes, as genesis --data does
            info = data.load_data_dir(self.data_dir).info
            base = spec_for(info.task, info.n_features, info.n_outputs, self.model, seed=self.seed,
                            backend=self.backend)
        else:
            base = default_spec(self.dataset, self.model, seed=self.seed, backend=self.backend)
        over = dict(self.model_params)
        for name in ("hidden", "input_shape"):
            if name in over:
                over[name] = tuple(over[name])
        if base.backend == "torch" and ({"hidden", "input_shape"} & set(over)):
            tb = load_torch()  # the architecture changes: its arrays too
            module = tb.build_module(base.kind, base.n_features, base.n_outputs,
                                     over.get("hidden", base.hidden), over.get("input_shape", base.input_shape))
            over["layout"] = tb.module_layout(module)
        try:
            return replace(base, **over)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model_params: {exc}") from None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config") -> "SimConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            if d.get("data_dir") and "nodes" not in d:  # the node count comes from the files
                d = {**d, "nodes": len(data.dir_files(d["data_dir"])[0])}
            return cls(**d)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def sa_clip_text(clip: str | float) -> str:
    """The clipping range as genesis writes it: a plain decimal string."""
    if isinstance(clip, bool) or not isinstance(clip, (str, int, float)):
        raise ConfigError(f"sa_clip must be a positive decimal, got {clip!r}")
    text = clip if isinstance(clip, str) else repr(float(clip))
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ConfigError(f"sa_clip must be a positive decimal, got {clip!r}") from None
    if not d.is_finite() or d <= 0:
        raise ConfigError(f"sa_clip must be a positive decimal, got {clip!r}")
    return str(d.normalize()) if "E" not in str(d.normalize()) else format(d, "f")


def check_secure_aggregation(cfg: SimConfig, need) -> None:
    """The combinations secure aggregation cannot run (one line each)."""
    sa_keys = ("sa_threshold", "sa_scale", "sa_phase_timeout")
    need(cfg.dp_mode != "distributed" or cfg.secure_aggregation is True,
         "dp_mode distributed needs secure_aggregation (--secure-aggregation): its noise shares are only "
         "private inside a securely aggregated sum")
    if not cfg.secure_aggregation:
        need(all(getattr(cfg, k) is None for k in sa_keys) and cfg.sa_clip in ("0.5", 0.5)
             and not cfg.sa_drop_after_setup and not cfg.sa_drop_after_input,
             "sa_threshold, sa_clip, sa_scale, sa_phase_timeout and sa_drop_after_* need secure_aggregation")
        return
    need(cfg.secure_aggregation is True, f"secure_aggregation must be true or false, got {cfg.secure_aggregation!r}")
    for k in sa_keys:
        v = getattr(cfg, k)
        need(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
             f"{k} must be a positive integer or null, got {v!r}")
    for k in ("sa_drop_after_setup", "sa_drop_after_input"):
        v = getattr(cfg, k)
        need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"{k} must be an integer >= 0, got {v!r}")
    sa_clip_text(cfg.sa_clip)
    need(cfg.aggregator == "fedavg",
         f"aggregator {cfg.aggregator} cannot run under secure aggregation: a robust rule must see each update, "
         f"and only the sum of the masked updates is revealed; use fedavg (the clipping range sa_clip bounds "
         f"each participant's influence instead)")
    need(cfg.selection == "all", "secure aggregation in the simulator runs with selection all (the roster is "
                                 "every participant)")
    need(cfg.compression is None and cfg.skip_threshold == 0,
         "compression and skip txs do not exist under secure aggregation (every member sends one masked input)")
    p = cfg.sa_params()
    t, n = p.threshold, cfg.nodes
    need(n // 2 + 1 <= t <= n, f"sa_threshold {t} must be in [floor(N/2)+1, N] = [{n // 2 + 1}, {n}] for N={n} nodes")
    need(cfg.n_quorum >= t, f"quorum {cfg.n_quorum} is below the secure-aggregation threshold t={t}")
    gone = cfg.sa_drop_after_setup + cfg.sa_drop_after_input
    need(n - gone >= t, f"dropping {cfg.sa_drop_after_setup} after setup and {cfg.sa_drop_after_input} after "
                        f"input leaves {n - gone} of {n} members to unmask, fewer than the threshold t={t}: "
                        f"every round would fail (at most n - t = {n - t} may drop)")


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> SimConfig:
    """``configs/NAME.json`` merged with ``overrides`` (keys whose value is None are ignored)."""
    p = Path(path)
    try:
        doc = parse_json(p.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror})") from None
    except LearningChainError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: a config must be a JSON object")
    doc.setdefault("name", p.stem)
    doc.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return SimConfig.from_dict(doc, str(p))


def dumps_config(cfg: SimConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True)

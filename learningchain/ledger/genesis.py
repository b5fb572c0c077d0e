"""Genesis: the network configuration and the block that carries it.

Every rule a validator needs that is not hard-coded in the protocol lives in
:class:`NetworkConfig` (model, aggregation rule, quorum, difficulty, limits),
and the configuration travels inside the genesis block (``Block.config``), so a
network *is* its genesis hash: two nodes agree on the rules iff they agree on
that hash. Genesis proof of work is not checked (Bitcoin's genesis is also an
anchor, not a mined claim); see docs/protocol.md, "Genesis".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from learningchain.learning import aggregation
from learningchain.core import crypto
from learningchain.ledger.block import ZERO_HASH, Block, make_block
from learningchain.core.encoding import EncodingError, canonical_json, is_hex
from learningchain.core.errors import ConfigError
from learningchain.learning.energy import EnergyProfile, random_profiles
from learningchain.learning.selection import minimum_selected, parse_selection
from learningchain.learning.models import ModelSpec, default_spec, expected_shapes
from learningchain.ledger.genesis_privacy import SecAggParams, parse_privacy

#: Miner field of every genesis header: the compressed public key of secret 1
#: (the secp256k1 generator G). Nobody is rewarded by genesis; the key is public.
GENESIS_MINER = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
#: Default genesis time of the demo network (2023-11-14T22:13:20Z), fixed so
#: that every demo node derives the same genesis hash.
DEMO_TIMESTAMP = 1_700_000_000_000

_INT_FIELDS = ("quorum", "round_timeout", "target_block_ms", "retarget_window", "max_tx_bytes",
               "max_block_bytes", "max_future_ms", "timestamp")
_FIELDS = {"network", "model", "aggregation", "initial_target", "pow_limit", "allow_list",
           "participants", "selection", "stamp_bits", "max_samples", "privacy", *_INT_FIELDS}
_DEFAULTS = {"max_future_ms": None, "allow_list": None, "participants": None, "selection": None,
             "stamp_bits": None, "max_samples": None, "privacy": None}
#: max_future_ms is at most this many block intervals (and is that when absent):
#: a clock allowance much longer than a block lets one block's timestamp weigh
#: on a retarget window (docs/protocol.md sections 5 and 6; issue 10 item 10).
MAX_FUTURE_BLOCKS = 4
#: optional fields written by ``to_dict`` only when set, so that a network
#: without them keeps the genesis hash it always had.
_OMITTED_WHEN_NULL = ("participants", "selection", "stamp_bits", "max_samples", "privacy")
#: the most leading zero bits a genesis may ask of every tx id (2^32 hashes of a body)
MAX_STAMP_BITS = 32
#: stamp of ``genesis --open`` (about 65k tries, ~0.5 s for a digits MLP update on one core)
OPEN_STAMP_BITS = 16
#: the block interval of a network on one machine (``node.py demo``, ``tmux_demo.sh``):
#: measured on 2 cores with 4 nodes and 2 miners (docs/protocol.md section 5, "Choosing
#: target_block_ms"): 50 ms gave 19 % stale blocks, 100 ms 15 %, 150 ms 7 %, 200 ms
#: 4.5 %, at median rounds of 0.13-0.19 s; the nodes share the cores, so a block
#: spends tens of ms in flight whenever they all train or validate at once.
LOCAL_BLOCK_MS = 200
#: how long a round of those networks waits for a slow node before it closes anyway.
LOCAL_ROUND_TIMEOUT_MS = 10_000


def blocks_for(ms: int, target_block_ms: int) -> int:
    """Blocks that take about ``ms`` at ``target_block_ms`` per block (at least 1)."""
    return max(1, -(-int(ms) // int(target_block_ms)))


def _uint(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value < 2**53:
        raise ConfigError(f"genesis: {name} must be an integer in [{minimum}, 2^53), got {value!r}")
    return value


def _target(name: str, value: Any) -> int:
    if isinstance(value, str) and is_hex(value, 32):
        value = int(value, 16)
    elif not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"genesis: {name} must be 64 lowercase hex chars, got {value!r}")
    if not 1 <= value < 2**256:
        raise ConfigError(f"genesis: {name} must be in [1, 2^256)")
    return value


@dataclass(frozen=True)
class NetworkConfig:
    """The consensus parameters of one network (all integers, strings and lists,
    so the genesis document hashes canonically)."""
    network: str
    model: dict                 # ModelSpec.to_dict()
    aggregation: dict           # {"rule": str, "params": {...}}
    quorum: int                 # updates that close a round
    round_timeout: int          # blocks after the round opened at which it closes anyway
    target_block_ms: int        # desired block interval
    initial_target: int         # target of block 1 (and of genesis)
    pow_limit: int              # easiest target ever allowed
    retarget_window: int        # blocks between difficulty adjustments
    max_tx_bytes: int
    max_block_bytes: int
    # how far a block's timestamp may run ahead of our clock; None: MAX_FUTURE_BLOCKS * target_block_ms
    max_future_ms: int | None = None
    allow_list: tuple[str, ...] | None = None  # senders allowed to submit; None = open
    timestamp: int = DEMO_TIMESTAMP  # genesis time, unix ms
    # [{"pubkey", "energy": {...}}] (energy.py); also the allow-list when allow_list is null
    participants: tuple[dict, ...] | None = None
    selection: dict | None = None  # {"policy", "params"} (selection.py); None = policy "all"
    # Sybil pricing (docs/protocol.md section 6): every tx id must start with this
    # many zero bits (None = no stamp); FedAvg counts a claim as at most max_samples
    stamp_bits: int | None = None
    max_samples: int | None = None
    # {"secure_aggregation": {"threshold", "clip", "scale", "phase_timeout"}} (docs/protocol.md
    # section 14.1); None = plain mode
    privacy: dict | None = None
    _spec: ModelSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.network, str) or not 1 <= len(self.network) <= 64:
            raise ConfigError(f"genesis: network must be a name of 1..64 characters, got {self.network!r}")
        object.__setattr__(self, "_spec", ModelSpec.from_dict(self.model))
        object.__setattr__(self, "model", self._spec.to_dict())
        if self.max_future_ms is None and _uint("target_block_ms", self.target_block_ms):
            object.__setattr__(self, "max_future_ms", MAX_FUTURE_BLOCKS * self.target_block_ms)
        for name in _INT_FIELDS:
            _uint(name, getattr(self, name), 0 if name == "timestamp" else 1)
        self._check_sizes()
        object.__setattr__(self, "initial_target", _target("initial_target", self.initial_target))
        object.__setattr__(self, "pow_limit", _target("pow_limit", self.pow_limit))
        if self.initial_target > self.pow_limit:
            raise ConfigError("genesis: initial_target must not exceed pow_limit (the easiest target)")
        if self.stamp_bits is not None:
            _uint("stamp_bits", self.stamp_bits)
            if self.stamp_bits > MAX_STAMP_BITS:
                raise ConfigError(f"genesis: stamp_bits must be at most {MAX_STAMP_BITS}, got {self.stamp_bits}")
        if self.max_samples is not None:
            _uint("max_samples", self.max_samples)
        self._check_aggregation()
        self._check_allow_list()
        self._check_participants()
        secagg = parse_privacy(self)
        object.__setattr__(self, "_secagg", secagg)
        if secagg is not None:
            object.__setattr__(self, "privacy", {"secure_aggregation": secagg.to_dict()})

    def _check_sizes(self) -> None:
        """Limits every honest block and update can meet: the clock allowance is
        bounded by the block interval, and a plain update of the model fits
        ``max_tx_bytes`` (else no round could ever close with an update)."""
        most = MAX_FUTURE_BLOCKS * self.target_block_ms
        if self.max_future_ms > most:
            raise ConfigError(f"genesis: max_future_ms {self.max_future_ms} exceeds {MAX_FUTURE_BLOCKS} block "
                              f"intervals ({MAX_FUTURE_BLOCKS} x target_block_ms {self.target_block_ms} = "
                              f"{most} ms); a larger clock allowance lets one block's timestamp move "
                              f"a retarget: lower it to at most {most}")
        need = min_update_bytes(expected_shapes(self._spec))
        if self.max_tx_bytes < need:
            raise ConfigError(f"genesis: max_tx_bytes {self.max_tx_bytes} is below the {need} bytes a plain "
                              f"update of this model needs (without metrics); raise max_tx_bytes to at "
                              f"least {need}")

    def _check_aggregation(self) -> None:
        agg = self.aggregation
        if not isinstance(agg, Mapping) or set(agg) != {"rule", "params"}:
            raise ConfigError('genesis: aggregation must be {"rule": ..., "params": {...}}')
        rule, params = agg["rule"], agg["params"]
        if not isinstance(params, Mapping):
            raise ConfigError("genesis: aggregation params must be an object")
        aggregation.check_params(rule, params)
        try:
            canonical_json(dict(params))
        except EncodingError:
            raise ConfigError("genesis: aggregation params must be integers or decimal strings "
                              "(e.g. \"0.1\"), never floats, because genesis is hashed") from None
        need = aggregation.min_updates(rule, params)
        if self.quorum < need:
            raise ConfigError(f"genesis: quorum {self.quorum} is below the {need} updates rule "
                              f"{rule!r} needs with params {dict(params)}; raise quorum or lower "
                              f"the rule's parameters")
        object.__setattr__(self, "aggregation", {"rule": rule, "params": dict(params)})

    def _check_allow_list(self) -> None:
        if self.allow_list is None:
            return
        if isinstance(self.allow_list, str) or not all(isinstance(k, str) for k in self.allow_list):
            raise ConfigError("genesis: allow_list must be a list of public key hex strings or null")
        keys = tuple(self.allow_list)
        for key in keys:
            try:
                crypto.parse_public_key(key)
            except crypto.InvalidKey as exc:
                raise ConfigError(f"genesis: allow_list entry {key[:16]!r}...: {exc}") from None
        if len(set(keys)) != len(keys):
            raise ConfigError("genesis: allow_list lists a key twice")
        object.__setattr__(self, "allow_list", keys)

    def _check_participants(self) -> None:
        profiles: dict = {}
        if self.participants is not None:
            if isinstance(self.participants, (str, Mapping)):
                raise ConfigError('genesis: participants must be a list of {"pubkey", "energy"}')
            for entry in self.participants:
                if not isinstance(entry, Mapping) or set(entry) != {"pubkey", "energy"}:
                    raise ConfigError('genesis: each participant must be {"pubkey": hex, "energy": {...}}')
                try:
                    crypto.parse_public_key(entry["pubkey"])
                except crypto.InvalidKey as exc:
                    raise ConfigError(f"genesis: participant {str(entry['pubkey'])[:16]!r}...: {exc}") from None
                if entry["pubkey"] in profiles:
                    raise ConfigError("genesis: participants list a key twice")
                profiles[entry["pubkey"]] = EnergyProfile.from_dict(entry["energy"])
            object.__setattr__(self, "participants",
                               tuple({"pubkey": k, "energy": p.to_dict()} for k, p in profiles.items()))
        object.__setattr__(self, "_profiles", profiles)
        policy, params = parse_selection(self.selection)
        object.__setattr__(self, "_selection", (policy, params))
        if self.selection is not None:
            object.__setattr__(self, "selection", {"policy": policy, "params": dict(params)})
        least = minimum_selected(policy, params)
        if least is not None:
            if not self.candidates:
                raise ConfigError(f"genesis: selection policy {policy!r} needs the candidates: "
                                  f"set participants (or allow_list)")
            need = aggregation.min_updates(self.rule, self.params)
            if least < need:
                raise ConfigError(f"genesis: selection may pick only {least} sender(s) but rule "
                                  f"{self.rule!r} needs {need} updates; raise k / min_k")

    # --- derived ------------------------------------------------------------
    @property
    def model_spec(self) -> ModelSpec:
        return self._spec

    @property
    def allowed(self) -> tuple[str, ...] | None:
        """Who may submit: allow_list, else the participants' keys, else anyone (None)."""
        if self.allow_list is not None:
            return self.allow_list
        return tuple(p["pubkey"] for p in self.participants) if self.participants is not None else None

    @property
    def roster(self) -> tuple[str, ...]:
        """The genesis list of keys in its order: ``participants``, else
        ``allow_list``, else none (an open network). Not a consensus rule: what
        names node ``i`` (the explorer's ``node{i}``) and seeds its local-only
        baseline, one order for both."""
        if self.participants is not None:
            return tuple(p["pubkey"] for p in self.participants)
        return tuple(self.allow_list or ())

    @property
    def candidates(self) -> tuple[str, ...]:
        """Who selection chooses from (sorted)."""
        return tuple(sorted(self.allowed or ()))

    @property
    def profiles(self) -> dict:
        """pubkey -> EnergyProfile of the declared participants."""
        return self._profiles  # type: ignore[attr-defined]

    @property
    def selection_policy(self) -> tuple[str, dict]:
        return self._selection  # type: ignore[attr-defined]

    @property
    def secure_aggregation(self) -> SecAggParams | None:
        """The secure-aggregation parameters (docs/protocol.md section 14), None in plain mode."""
        return self._secagg  # type: ignore[attr-defined]

    @property
    def rule(self) -> str:
        return self.aggregation["rule"]

    @property
    def params(self) -> dict:
        return self.aggregation["params"]

    # --- serialisation --------------------------------------------------------
    def to_dict(self) -> dict:
        return {"network": self.network, "model": dict(self.model),
                "aggregation": {"rule": self.rule, "params": dict(self.params)},
                "quorum": self.quorum, "round_timeout": self.round_timeout,
                "target_block_ms": self.target_block_ms,
                "initial_target": f"{self.initial_target:064x}", "pow_limit": f"{self.pow_limit:064x}",
                "retarget_window": self.retarget_window, "max_tx_bytes": self.max_tx_bytes,
                "max_block_bytes": self.max_block_bytes, "max_future_ms": self.max_future_ms,
                "allow_list": None if self.allow_list is None else list(self.allow_list),
                "timestamp": self.timestamp,
                **{k: (list(getattr(self, k)) if k == "participants" else getattr(self, k))
                   for k in _OMITTED_WHEN_NULL if getattr(self, k) is not None}}

    def with_secure_aggregation(self, params: SecAggParams | None) -> "NetworkConfig":
        """This configuration in secure-aggregation mode (``params``), or plain (None)."""
        return replace(self, privacy=None if params is None else {"secure_aggregation": params.to_dict()})

    @classmethod
    def from_dict(cls, d: Any) -> "NetworkConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"genesis config must be an object, got {type(d).__name__}")
        unknown = sorted(set(d) - _FIELDS)
        if unknown:
            raise ConfigError(f"genesis: unknown field(s) {', '.join(unknown)}")
        missing = sorted(_FIELDS - set(d) - set(_DEFAULTS))
        if missing:
            raise ConfigError(f"genesis: missing field(s) {', '.join(missing)}")
        kw = {**_DEFAULTS, **d}
        for name in ("initial_target", "pow_limit"):
            if not (isinstance(kw[name], str) and is_hex(kw[name], 32)):
                raise ConfigError(f"genesis: {name} must be 64 lowercase hex chars, got {kw[name]!r}")
        if kw["allow_list"] is not None and not isinstance(kw["allow_list"], list):
            raise ConfigError("genesis: allow_list must be a list of public key hex strings or null")
        if kw["participants"] is not None:
            if not isinstance(kw["participants"], list):
                raise ConfigError('genesis: participants must be a list of {"pubkey", "energy"} or absent')
            kw["participants"] = tuple(kw["participants"])
        return cls(**kw)

    @classmethod
    def from_genesis(cls, block: Block) -> "NetworkConfig":
        if block.config is None:
            raise ConfigError("genesis block carries no configuration")
        return cls.from_dict(block.config)

    def expected_shapes(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        return expected_shapes(self._spec)


def min_update_bytes(shapes: Mapping[str, tuple[str, tuple[int, ...]]]) -> int:
    """Bytes of the canonical wire form of the largest plain update tx without
    metrics for a model of these arrays (name -> (dtype, shape)): every integer
    field at 2^53 - 1, a 72-byte DER signature (docs/protocol.md section 3, size)."""
    weights = {name: {"data": "A" * (4 * -(-math.prod(shape) * np.dtype(dtype).itemsize // 3)),
                      "dtype": dtype, "shape": list(shape)} for name, (dtype, shape) in shapes.items()}
    big = 2**53 - 1
    doc = {"type": "update", "version": 1, "sender": "02" + "00" * 32, "round": big, "base": "00" * 32,
           "weights": weights, "num_samples": big, "metrics": {}, "timestamp": big, "signature": "00" * 72}
    return len(canonical_json(doc))


def make_genesis(config: NetworkConfig) -> Block:
    """The genesis block of ``config``: deterministic, so the same configuration
    always yields the same genesis hash."""
    return make_block(height=0, prev_hash=ZERO_HASH, timestamp=config.timestamp,
                      target=config.initial_target, miner=GENESIS_MINER, txs=(), commitment=None,
                      config=config.to_dict(), nonce=0)


def target_for_hashes(expected_hashes: int) -> int:
    """Target at which a block takes ``expected_hashes`` tries on average."""
    return max(1, (1 << 256) // max(1, expected_hashes) - 1)


def default_config(n_nodes: int = 4, *, network: str = "learningchain-demo", dataset: str = "digits",
                   kind: str = "mlp", rule: str = "fedavg", params: Mapping[str, Any] | None = None,
                   quorum: int | None = None, round_timeout: int = 20, target_block_ms: int = 500,
                   hashrate: int = 2_500_000, allow_list: list[str] | None = None,
                   timestamp: int = DEMO_TIMESTAMP, spec: ModelSpec | None = None) -> NetworkConfig:
    """The demo network: digits MLP, FedAvg, a round closes when every node has
    submitted (quorum = n_nodes), and a target at which one Python worker at
    ``hashrate`` H/s finds a block in about ``target_block_ms``. ``spec``, when
    given (e.g. from a user's data file, ``models.spec_for``), replaces the
    default model of ``dataset``/``kind``."""
    spec = spec or default_spec(dataset, kind)
    expected_hashes = max(1, hashrate * target_block_ms // 1000)
    return NetworkConfig(
        network=network, model=spec.to_dict(),
        aggregation={"rule": rule, "params": dict(params or aggregation.default_params(rule, quorum or n_nodes))},
        quorum=quorum or n_nodes, round_timeout=round_timeout, target_block_ms=target_block_ms,
        initial_target=target_for_hashes(expected_hashes), pow_limit=(1 << 255) - 1,
        retarget_window=20, max_tx_bytes=1 << 20, max_block_bytes=16 << 20,
        allow_list=tuple(allow_list) if allow_list is not None else None, timestamp=timestamp)


def open_network(config: NetworkConfig, stamp_bits: int = OPEN_STAMP_BITS,
                 max_samples: int | None = None) -> NetworkConfig:
    """``config`` as an open network (anyone may submit), priced against Sybils: a
    ``stamp_bits`` stamp on every tx and FedAvg claims capped at ``max_samples``."""
    return replace(config, allow_list=None, participants=None, stamp_bits=stamp_bits or None,
                   max_samples=max_samples)


def permissioned(config: NetworkConfig, pubkeys: list[str]) -> NetworkConfig:
    """``config`` with ``pubkeys`` as its allow-list: the default for every network
    whose node keys are known when genesis is written (demo, tmux demo, ``genesis
    --allow-list``); docs/protocol.md section 6."""
    return replace(config, allow_list=tuple(pubkeys))


def with_participants(config: NetworkConfig, pubkeys: list[str], policy: str = "all", k: int | None = None,
                      energy_seed: int = 0) -> NetworkConfig:
    """``config`` with ``pubkeys`` as its participants, each with an energy profile
    drawn from ``energy_seed`` (energy.random_profiles), and selection ``policy``
    choosing ``k`` of them per round (``all``: no selection)."""

    profiles = random_profiles(len(pubkeys), energy_seed)
    return replace(config, allow_list=None,
                   participants=tuple({"pubkey": key, "energy": p.to_dict()} for key, p in zip(pubkeys, profiles)),
                   selection=None if policy == "all" else {"policy": policy, "params": {"k": k}})

"""Model specification: the part of genesis that fixes the architecture and the
local training recipe every participant must follow.

Genesis is hashed with :func:`learningchain.core.encoding.canonical_json`, which
refuses floats, so :meth:`ModelSpec.to_dict` writes ``lr`` and ``l2`` as
decimal strings ("0.05"); :meth:`ModelSpec.from_dict` accepts strings or
numbers and raises :class:`~learningchain.core.errors.ConfigError` for anything
unusable.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from learningchain.core.errors import ConfigError

KINDS = ("linear", "softmax", "mlp")
#: model backends: "numpy" (the kinds above, learning/models/network.py) and
#: "torch" (learning/models/torch_backend.py: "mlp", "cnn" or a user's "module:factory")
BACKENDS = ("numpy", "torch")
TORCH_KINDS = ("mlp", "cnn")
TASKS = ("classification", "regression")
_KIND_TASKS = {"linear": ("regression",), "softmax": ("classification",),
               "mlp": ("classification", "regression")}
_FIELDS = ("kind", "task", "n_features", "n_outputs", "hidden", "seed", "epochs",
           "batch_size", "lr", "l2", "backend", "input_shape", "layout")
#: a user's architecture: "package.module:factory" (a callable returning a torch.nn.Module)
FACTORY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
_NAME_RE = re.compile(r"[A-Za-z0-9_.]{1,128}")
#: arrays of one model at most (a layout is part of genesis)
MAX_ARRAYS = 1024
#: parameters of one model at most: 2^24 float32 = 64 MiB, far above what a tx can carry (the
#: genesis max_tx_bytes check follows); a layout of 2^50 parameters made that check allocate them
MAX_PARAMETERS = 1 << 24
#: dims of a layout array: what an array on the wire may have (core/encoding.py, docs/protocol.md
#: section 1), and at least one: weights_digest summarises a 0-d array as shape [1], not []
MAX_DIMS = 8


def is_factory(kind: str) -> bool:
    """``kind`` names a user's ``module:factory`` rather than a built-in architecture."""
    return bool(FACTORY_RE.fullmatch(kind))


def decimal_string(value: float) -> str:
    """Shortest positional decimal text of a float: 0.05 -> "0.05", 1e-5 -> "0.00001"."""
    return np.format_float_positional(float(value), trim="-")


@dataclass(frozen=True)
class ModelSpec:
    """The genesis model. With ``backend`` "numpy" (the default, written to genesis
    exactly as before the torch backend existed) ``kind`` is linear / softmax /
    mlp and the arrays are ``W{i}``/``b{i}``. With "torch", ``kind`` is mlp, cnn or
    a user's ``module:factory``, and ``layout`` lists every array (name, shape)
    of the module's ``state_dict``: the ledger takes shapes and G0 from the
    layout alone, so validating a chain never needs PyTorch."""
    kind: str                   # "linear" | "softmax" | "mlp" (numpy); "mlp" | "cnn" | "mod:fn" (torch)
    task: str                   # "classification" | "regression"
    n_features: int
    n_outputs: int              # number of classes, or 1 for regression
    hidden: tuple[int, ...] = ()  # hidden layer widths, mlp only
    seed: int = 0               # seed of the initial weights G0
    epochs: int = 1             # local epochs per round (E)
    batch_size: int = 32        # mini-batch size (B)
    lr: float = 0.05            # SGD learning rate
    l2: float = 0.0             # penalty (l2 / 2) * sum of squared weight matrices
    backend: str = "numpy"      # "numpy" | "torch"
    input_shape: tuple[int, ...] = ()  # torch: the shape of one sample, e.g. (1, 32, 32); () = flat
    layout: tuple[tuple[str, tuple[int, ...]], ...] = ()  # torch: (name, shape) of every array, by name

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "layout", tuple(sorted((n, tuple(sh)) for n, sh in self.layout)))
        if self.backend not in BACKENDS:
            raise ConfigError(f"model spec: backend {self.backend!r} unknown; choose one of {', '.join(BACKENDS)}")
        if self.backend == "torch":
            self._check_torch()
        elif self.input_shape or self.layout:
            raise ConfigError("model spec: input_shape and layout belong to the torch backend")
        self._check_common()

    def _check_torch(self) -> None:
        if self.kind not in TORCH_KINDS and not is_factory(self.kind):
            raise ConfigError(f"model spec: torch model {self.kind!r} unknown; choose one of "
                              f"{', '.join(TORCH_KINDS)} or your own 'package.module:factory'")
        if self.task not in TASKS:
            raise ConfigError(f"model spec: task {self.task!r} unknown; choose one of {', '.join(TASKS)}")
        if any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in self.input_shape):
            raise ConfigError(f"model spec: input_shape must be positive integers, got {self.input_shape}")
        if self.input_shape and math.prod(self.input_shape) != self.n_features:
            raise ConfigError(f"model spec: input_shape {list(self.input_shape)} holds "
                              f"{math.prod(self.input_shape)} values, not n_features {self.n_features}")
        if self.kind == "mlp" and not self.hidden:
            raise ConfigError("model spec: mlp needs at least one hidden layer width")
        if self.kind == "cnn":
            if len(self.hidden) != 3:
                raise ConfigError(f"model spec: cnn takes hidden = [conv1 channels, conv2 channels, dense width], "
                                  f"got {list(self.hidden)}")
            if len(self.input_shape) != 3 or self.input_shape[1] % 4 or self.input_shape[2] % 4:
                raise ConfigError(f"model spec: cnn needs input_shape [channels, height, width] with height and "
                                  f"width multiples of 4, got {list(self.input_shape)}")
        if not self.layout or len(self.layout) > MAX_ARRAYS:
            raise ConfigError(f"model spec: a torch model needs a layout of 1 to {MAX_ARRAYS} arrays "
                              f"(name, shape), got {len(self.layout)}")
        names = [n for n, _ in self.layout]
        if len(set(names)) != len(names):
            raise ConfigError("model spec: layout names must be unique")
        for name, shape in self.layout:
            if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                raise ConfigError(f"model spec: layout name {name!r} must be 1-128 letters, digits, '_' or '.'")
            if (not 1 <= len(shape) <= MAX_DIMS
                    or any(not isinstance(d, int) or isinstance(d, bool) or not 0 < d < 2**31 for d in shape)):
                raise ConfigError(f"model spec: layout {name}: shape must be 1 to {MAX_DIMS} positive integers "
                                  f"below 2^31 (make a scalar parameter shape [1]), got {list(shape)}")
        total = sum(math.prod(shape) for _, shape in self.layout)
        if total > MAX_PARAMETERS:
            raise ConfigError(f"model spec: the layout holds {total} parameters, more than {MAX_PARAMETERS} "
                              f"(a genesis is checked, and G0 derived, before anything else)")

    def _check_common(self) -> None:
        for name in ("lr", "l2"):  # accept ints for convenience; store floats
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.backend == "numpy" and self.kind not in KINDS:
            raise ConfigError(f"model kind {self.kind!r} unknown; choose one of {', '.join(KINDS)}")
        if self.backend == "numpy" and self.task not in _KIND_TASKS[self.kind]:
            raise ConfigError(f"model kind {self.kind!r} cannot do {self.task!r}; it does "
                              f"{' or '.join(_KIND_TASKS[self.kind])}")
        for name in ("n_features", "n_outputs", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"model spec: {name} must be a positive integer, got {value!r}")
        if self.task == "regression" and self.n_outputs != 1:
            raise ConfigError(f"model spec: regression needs n_outputs 1, got {self.n_outputs}")
        if self.task == "classification" and self.n_outputs < 2:
            raise ConfigError(f"model spec: classification needs n_outputs >= 2 classes, "
                              f"got {self.n_outputs}")
        if self.kind == "mlp" and not self.hidden:
            raise ConfigError("model spec: mlp needs at least one hidden layer width")
        if self.backend == "numpy" and self.kind != "mlp" and self.hidden:
            raise ConfigError(f"model spec: {self.kind} has no hidden layers, got {self.hidden}")
        if any(not isinstance(h, int) or isinstance(h, bool) or h <= 0 for h in self.hidden):
            raise ConfigError(f"model spec: hidden widths must be positive integers, "
                              f"got {self.hidden}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**64:
            # G0 hashes it as a u64 (docs/protocol.md section 7): a larger seed crashed G0 with OverflowError
            raise ConfigError(f"model spec: seed must be an integer in [0, 2^64), got {self.seed!r}")
        if not (isinstance(self.lr, float) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"model spec: lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.l2, float) and math.isfinite(self.l2) and self.l2 >= 0):
            raise ConfigError(f"model spec: l2 must be a number >= 0, got {self.l2!r}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_features, *self.hidden, self.n_outputs)

    def to_dict(self) -> dict:
        """Canonical-JSON-safe form: ints, strings and lists only. A numpy spec has
        no backend, input_shape or layout keys (genesis hashes stay as they were)."""
        out = {"kind": self.kind, "task": self.task, "n_features": self.n_features,
               "n_outputs": self.n_outputs, "hidden": list(self.hidden), "seed": self.seed,
               "epochs": self.epochs, "batch_size": self.batch_size,
               "lr": decimal_string(self.lr), "l2": decimal_string(self.l2)}
        if self.backend != "numpy":
            out.update(backend=self.backend, input_shape=list(self.input_shape),
                       layout=[[name, list(shape)] for name, shape in self.layout])
        return out

    @property
    def label(self) -> str:
        """How tables and titles name the model: "mlp", "torch mlp", "torch cnn"."""
        return self.kind if self.backend == "numpy" else f"{self.backend} {self.kind}"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        if not isinstance(d, Mapping):
            raise ConfigError(f"model spec must be an object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"model spec: unknown field(s) {', '.join(unknown)}")
        for name in ("kind", "task", "n_features", "n_outputs"):
            if name not in d:
                raise ConfigError(f"model spec: missing field {name!r}")
        kw: dict[str, Any] = {"kind": _text(d, "kind"), "task": _text(d, "task")}
        for name in ("n_features", "n_outputs", "seed", "epochs", "batch_size"):
            if name in d:
                kw[name] = _int(d[name], name)
        if "hidden" in d:
            h = d["hidden"]
            if not isinstance(h, (list, tuple)):
                raise ConfigError(f"model spec: hidden must be a list of integers, got {h!r}")
            kw["hidden"] = tuple(_int(x, "hidden") for x in h)
        for name in ("lr", "l2"):
            if name in d:
                kw[name] = _float(d[name], name)
        if "backend" in d:
            kw["backend"] = _text(d, "backend")
        if "input_shape" in d:
            shape = d["input_shape"]
            if not isinstance(shape, (list, tuple)):
                raise ConfigError(f"model spec: input_shape must be a list of integers, got {shape!r}")
            kw["input_shape"] = tuple(_int(x, "input_shape") for x in shape)
        if "layout" in d:
            kw["layout"] = _layout(d["layout"])
        return cls(**kw)


def _layout(value: Any) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"model spec: layout must be a list of [name, shape], got {type(value).__name__}")
    out = []
    for item in value:
        if (not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str)
                or not isinstance(item[1], (list, tuple))):
            raise ConfigError(f"model spec: each layout entry must be [name, [dims...]], got {item!r}")
        out.append((item[0], tuple(_int(x, "layout shape") for x in item[1])))
    return tuple(out)


def _text(d: Mapping[str, Any], name: str) -> str:
    if not isinstance(d[name], str):
        raise ConfigError(f"model spec: {name} must be a string, got {d[name]!r}")
    return d[name]


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"model spec: {name} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ConfigError(f"model spec: {name} must be an integer, got {value!r}")


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"model spec: {name} must be a decimal string or number, got {value!r}")
    try:
        out = float(value)
    except ValueError:
        raise ConfigError(f"model spec: {name} must be a decimal number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"model spec: {name} must be finite, got {value!r}")
    return out

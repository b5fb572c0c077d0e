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
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from learningchain.core.errors import ConfigError

KINDS = ("linear", "softmax", "mlp")
TASKS = ("classification", "regression")
_KIND_TASKS = {"linear": ("regression",), "softmax": ("classification",),
               "mlp": ("classification", "regression")}
_FIELDS = ("kind", "task", "n_features", "n_outputs", "hidden", "seed", "epochs",
           "batch_size", "lr", "l2")


def decimal_string(value: float) -> str:
    """Shortest positional decimal text of a float: 0.05 -> "0.05", 1e-5 -> "0.00001"."""
    return np.format_float_positional(float(value), trim="-")


@dataclass(frozen=True)
class ModelSpec:
    kind: str                   # "linear" | "softmax" | "mlp"
    task: str                   # "classification" | "regression"
    n_features: int
    n_outputs: int              # number of classes, or 1 for regression
    hidden: tuple[int, ...] = ()  # hidden layer widths, mlp only
    seed: int = 0               # seed of the initial weights G0
    epochs: int = 1             # local epochs per round (E)
    batch_size: int = 32        # mini-batch size (B)
    lr: float = 0.05            # SGD learning rate
    l2: float = 0.0             # penalty (l2 / 2) * sum of squared weight matrices

    def __post_init__(self) -> None:
        for name in ("lr", "l2"):  # accept ints for convenience; store floats
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.kind not in KINDS:
            raise ConfigError(f"model kind {self.kind!r} unknown; choose one of {', '.join(KINDS)}")
        if self.task not in _KIND_TASKS[self.kind]:
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
        if self.kind != "mlp" and self.hidden:
            raise ConfigError(f"model spec: {self.kind} has no hidden layers, got {self.hidden}")
        if any(not isinstance(h, int) or isinstance(h, bool) or h <= 0 for h in self.hidden):
            raise ConfigError(f"model spec: hidden widths must be positive integers, "
                              f"got {self.hidden}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"model spec: seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.lr, float) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"model spec: lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.l2, float) and math.isfinite(self.l2) and self.l2 >= 0):
            raise ConfigError(f"model spec: l2 must be a number >= 0, got {self.l2!r}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_features, *self.hidden, self.n_outputs)

    def to_dict(self) -> dict:
        """Canonical-JSON-safe form: ints, strings and lists only."""
        return {"kind": self.kind, "task": self.task, "n_features": self.n_features,
                "n_outputs": self.n_outputs, "hidden": list(self.hidden), "seed": self.seed,
                "epochs": self.epochs, "batch_size": self.batch_size,
                "lr": decimal_string(self.lr), "l2": decimal_string(self.l2)}

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
        return cls(**kw)


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

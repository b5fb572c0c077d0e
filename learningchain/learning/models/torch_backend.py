"""The PyTorch model backend: a ``torch.nn.Module`` behind the interface the
ledger and the nodes use (named float32 arrays in and out, G0, local training
from given weights, evaluation), as :class:`~.model.Model` is for NumPy.

* Architectures come from a registry: ``mlp`` and ``cnn`` are built in; a
  user's ``package.module:factory`` is loaded by a shell (``node``, ``sim``,
  ``cli``: :mod:`learningchain.node.user_models`) and :func:`register`-ed here,
  since the pure layers load no code.
* The arrays are the module's ``state_dict`` entries of a floating dtype, by
  name ("conv0.weight", ...), as float32; their names and shapes are the
  spec's ``layout``, checked against the module when it is built.
* G0 is not PyTorch's initialisation (its generator is not specified across
  versions and machines) but :func:`.layout.initial_weights`, from the layout
  and the seed alone.
* Training: ``spec.epochs`` epochs of mini-batch SGD (``torch.optim.SGD``,
  learning rate ``lr``, weight decay ``l2`` on arrays of two or more
  dimensions only, as the NumPy backend penalises its matrices), mean
  cross-entropy or half mean squared error, batches in the order of
  ``numpy.random.default_rng(seed).permutation`` each epoch: the NumPy
  backend's recipe.

Importing this module imports torch (about 1 s); :func:`learningchain.learning.models.build_model`
does so only for a torch spec.
"""
from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from learningchain.core.errors import ConfigError
from learningchain.learning.models import layout
from learningchain.learning.models.model import class_labels, evaluate_predictions
from learningchain.learning.models.spec import ModelSpec, is_factory

# One intra-op thread: these models are small, and PyTorch's default (one per core) made
# a 3-node, 2-round digits CNN simulation take 19.3 s instead of 1.9 s on a loaded
# 2-core machine. A node may raise it (LC_TORCH_THREADS, node/service.py).
torch.set_num_threads(1)

#: user architectures by "module:factory", filled by :func:`register`
_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register(kind: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``kind`` ("package.module:factory") buildable in this process."""
    if not is_factory(kind):
        raise ConfigError(f"a user architecture is named 'package.module:factory', got {kind!r}")
    _FACTORIES[kind] = factory


def registered(kind: str) -> bool:
    return kind in _FACTORIES


class MLP(nn.Module):
    """Dense ReLU layers ``fc0 .. fc{k}``: the NumPy ``mlp`` as a module."""

    def __init__(self, n_features: int, hidden: tuple[int, ...], n_outputs: int):
        super().__init__()
        sizes = (n_features, *hidden, n_outputs)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.add_module(f"fc{i}", nn.Linear(a, b))
        self.depth = len(sizes) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i in range(self.depth):
            x = getattr(self, f"fc{i}")(x)
            if i < self.depth - 1:
                x = F.relu(x)
        return x


class CNN(nn.Module):
    """Two 3x3 convolutions (padding 1, ReLU, 2x2 max-pool each) and two dense
    layers: ``conv0`` (C -> c0), ``conv1`` (c0 -> c1), ``fc0`` (c1 * H/4 * W/4 -> d),
    ``fc1`` (d -> outputs), for ``hidden = (c0, c1, d)``."""

    def __init__(self, input_shape: tuple[int, int, int], hidden: tuple[int, int, int], n_outputs: int):
        super().__init__()
        c, h, w = input_shape
        c0, c1, d = hidden
        self.conv0 = nn.Conv2d(c, c0, 3, padding=1)
        self.conv1 = nn.Conv2d(c0, c1, 3, padding=1)
        self.fc0 = nn.Linear(c1 * (h // 4) * (w // 4), d)
        self.fc1 = nn.Linear(d, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv0(x)), 2)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc1(F.relu(self.fc0(x.flatten(1))))


def build_module(kind: str, n_features: int, n_outputs: int, hidden: tuple[int, ...] = (),
                 input_shape: tuple[int, ...] = ()) -> nn.Module:
    """The module of architecture ``kind``; a user factory is called with the
    keywords of ``input_shape``, ``n_features`` and ``n_outputs`` its signature
    accepts (none at all is fine: ``Net()``)."""
    if kind == "mlp":
        return MLP(n_features, tuple(hidden), n_outputs)
    if kind == "cnn":
        return CNN(tuple(input_shape), tuple(hidden), n_outputs)
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise ConfigError(f"model {kind!r} is not loaded in this process (a shell loads a user's "
                          f"'module:factory' before building it)")
    offered = {"input_shape": tuple(input_shape), "n_features": n_features, "n_outputs": n_outputs,
               "hidden": tuple(hidden)}
    try:
        params = inspect.signature(factory).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        module = factory(**{k: v for k, v in offered.items() if takes_all or k in params})
    except Exception as exc:  # the user's code: any failure is a configuration error
        raise ConfigError(f"model {kind}: the factory failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model {kind}: the factory returned {type(module).__name__}, not a torch.nn.Module")
    return module


def module_layout(module: nn.Module) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(name, shape) of every floating entry of the module's ``state_dict``, by name
    (integer buffers such as BatchNorm's ``num_batches_tracked`` stay local)."""
    return tuple(sorted((name, tuple(int(d) for d in t.shape)) for name, t in module.state_dict().items()
                        if t.is_floating_point()))


class TorchModel:
    """The model of a torch :class:`ModelSpec`, with :class:`~.model.Model`'s interface."""

    def __init__(self, spec: ModelSpec):
        if spec.backend != "torch":
            raise ConfigError(f"TorchModel needs a torch spec, got backend {spec.backend!r}")
        self.spec = spec
        self.classification = spec.task == "classification"
        self.module = build_module(spec.kind, spec.n_features, spec.n_outputs, spec.hidden, spec.input_shape)
        got = module_layout(self.module)
        if got != spec.layout:
            diff = sorted(set(got) ^ set(spec.layout))[:3]
            raise ConfigError(f"model {spec.kind}: the module's arrays do not match the genesis layout "
                              f"(first differences: {diff}); was the module changed after genesis?")
        self.module.to(torch.float32)

    # --- weights ----------------------------------------------------------
    def initial_weights(self) -> "OrderedDict[str, np.ndarray]":
        return layout.initial_weights(self.spec)

    def expected_shapes(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        return layout.expected_shapes(self.spec)

    def _load(self, weights: Mapping[str, np.ndarray]) -> None:
        shapes = self.expected_shapes()
        if set(weights) != set(shapes):
            raise ConfigError(f"weights have arrays {sorted(weights)[:8]}, model expects {sorted(shapes)[:8]}")
        state = {}
        for name, (_, shape) in shapes.items():
            arr = np.asarray(weights[name])
            if arr.shape != shape:
                raise ConfigError(f"weights: {name} has shape {arr.shape}, expected {shape}")
            state[name] = torch.from_numpy(np.array(arr, dtype=np.float32))  # a copy: callers' arrays untouched
        self.module.load_state_dict(state, strict=False)

    def _export(self) -> "OrderedDict[str, np.ndarray]":
        state = self.module.state_dict()
        return OrderedDict((name, state[name].detach().cpu().numpy().astype(np.float32, copy=True))
                           for name in sorted(self.expected_shapes()))

    def state_dict(self, weights: Mapping[str, np.ndarray]) -> dict:
        """``weights`` as the module's ``state_dict`` (for ``torch.save``: a ``.pt`` export)."""
        self._load(weights)
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    # --- learning ---------------------------------------------------------
    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.spec.n_features:
            raise ConfigError(f"data has shape {X.shape}, model expects (n, {self.spec.n_features})")
        t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        return t.reshape(-1, *self.spec.input_shape) if self.spec.input_shape else t

    def _target(self, y: np.ndarray) -> torch.Tensor:
        y = np.asarray(y)
        if self.classification:
            return torch.from_numpy(class_labels(y, self.spec.n_outputs))
        return torch.from_numpy(y.astype(np.float32).reshape(-1, 1))

    def _loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.classification:
            return F.cross_entropy(out, target)
        return 0.5 * F.mse_loss(out, target)

    def train(self, weights: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray,
              seed: int) -> "OrderedDict[str, np.ndarray]":
        """``spec.epochs`` epochs of mini-batch SGD from ``weights``; the batch
        order comes from ``seed`` only."""
        inputs, target = self._inputs(X), self._target(y)
        n = inputs.shape[0]
        if n == 0:
            raise ConfigError("cannot train on an empty data set")
        self._load(weights)
        s = self.spec
        decay = [p for p in self.module.parameters() if p.ndim >= 2]
        rest = [p for p in self.module.parameters() if p.ndim < 2]
        opt = torch.optim.SGD([{"params": decay, "weight_decay": s.l2}, {"params": rest, "weight_decay": 0.0}],
                              lr=s.lr)
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed % (1 << 63))  # a user module's dropout or noise: reproducible per seed too
        self.module.train()
        for _ in range(s.epochs):
            order = torch.from_numpy(rng.permutation(n))
            for start in range(0, n, s.batch_size):
                idx = order[start:start + s.batch_size]
                opt.zero_grad(set_to_none=True)
                self._loss(self.module(inputs[idx]), target[idx]).backward()
                opt.step()
        return self._export()

    def train_dp(self, *args, **kwargs):
        raise ConfigError("sample-level DP-SGD is built for the numpy backend only; with a torch model use "
                          "distributed DP or secure aggregation")

    def per_example_grads(self, *args, **kwargs):
        raise ConfigError("per-example gradients (sample-level DP) are built for the numpy backend only")

    def predict(self, weights: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
        self._load(weights)
        inputs = self._inputs(X)
        self.module.eval()
        outs = []
        with torch.no_grad():
            for start in range(0, max(1, inputs.shape[0]), 1024):
                outs.append(self.module(inputs[start:start + 1024]).numpy())
        out = np.concatenate(outs) if outs else np.zeros((0, self.spec.n_outputs))
        return out.argmax(axis=1) if self.classification else out[:, 0].astype(np.float64)

    def evaluate(self, weights: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return evaluate_predictions(self.classification, y, self.predict(weights, X))


def spec_with_layout(kind: str, task: str, n_features: int, n_outputs: int, **recipe) -> ModelSpec:
    """A torch spec whose ``layout`` is read off the module it names."""
    module = build_module(kind, n_features, n_outputs, tuple(recipe.get("hidden", ())),
                          tuple(recipe.get("input_shape", ())))
    return ModelSpec(kind, task, n_features, n_outputs, backend="torch", layout=module_layout(module), **recipe)


def square_image(n_features: int) -> tuple[int, int, int]:
    """(1, s, s) for ``n_features`` = s * s with s a multiple of 4 (a cnn's input
    for flattened square grey images), else a ConfigError saying so."""
    side = math.isqrt(n_features)
    if side * side != n_features or side % 4:
        raise ConfigError(f"cnn needs square images whose side is a multiple of 4 (1 x s x s pixels, "
                          f"flattened); {n_features} features are not")
    return (1, side, side)

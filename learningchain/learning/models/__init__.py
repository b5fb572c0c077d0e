"""Models: specification (:mod:`.spec`), what the ledger needs of one
(:mod:`.layout`: shapes and G0, no backend), and two backends behind one
interface (``initial_weights``, ``expected_shapes``, ``train``, ``predict``,
``evaluate``): NumPy (:mod:`.network`, :class:`Model`) and PyTorch
(:mod:`.torch_backend`, an optional extra imported only for a torch spec).
Pure, no I/O."""
from __future__ import annotations

from learningchain.core.errors import ConfigError
from learningchain.learning.models.layout import expected_shapes, initial_weights
from learningchain.learning.models.model import Model
from learningchain.learning.models.spec import (BACKENDS, KINDS, TASKS, TORCH_KINDS, ModelSpec, decimal_string,
                                                is_factory)

__all__ = ["Model", "ModelSpec", "KINDS", "TORCH_KINDS", "BACKENDS", "TASKS", "build_model", "default_spec",
           "spec_for", "decimal_string", "expected_shapes", "initial_weights", "is_factory", "load_torch",
           "MODEL_CHOICES"]

#: what ``--model`` takes: the numpy kinds, the torch architectures, or a user's module:factory
MODEL_CHOICES = ("linear", "softmax", "mlp", "cnn")
TORCH_EXTRA = "pip install -r requirements-torch.txt (PyTorch, CPU build)"


def load_torch():
    """The PyTorch backend module, or a ConfigError saying how to install it."""
    try:
        from learningchain.learning.models import torch_backend as tb
    except ImportError as exc:
        if getattr(exc, "name", "") not in ("torch", None) and not str(exc).startswith("No module named 'torch"):
            raise
        raise ConfigError(f"this model needs PyTorch, an optional extra: {TORCH_EXTRA}") from None
    return tb

#: dataset -> (task, n_features, n_outputs), for :func:`default_spec`.
_DATASETS = {"digits": ("classification", 64, 10), "breast-cancer": ("classification", 30, 2),
             "diabetes": ("regression", 10, 1),
             "synthetic-classification": ("classification", 20, 2),
             "synthetic-regression": ("regression", 20, 1),
             "ct-phantoms": ("classification", 32 * 32, 3)}  # phantoms.SIZE squared, flattened


def build_model(spec: ModelSpec):
    """The backend's model object of ``spec`` (:class:`Model` or a TorchModel)."""
    if spec.backend == "torch":
        return load_torch().TorchModel(spec)
    return Model(spec)


def backend_of(kind: str, backend: str | None = None) -> str:
    """The backend a ``--model`` choice runs on: cnn and a module:factory are torch
    models; mlp is numpy unless ``backend`` says torch; linear / softmax are numpy."""
    if backend not in (None, *BACKENDS):
        raise ConfigError(f"backend {backend!r} unknown; choose one of {', '.join(BACKENDS)}")
    if kind == "cnn" or is_factory(kind):
        if backend == "numpy":
            raise ConfigError(f"model {kind} is a PyTorch model: drop --backend numpy")
        return "torch"
    if kind not in KINDS:
        raise ConfigError(f"model {kind!r} unknown; choose one of {', '.join(MODEL_CHOICES)} "
                          f"or your own 'package.module:factory'")
    if backend == "torch" and kind != "mlp":
        raise ConfigError(f"the torch backend has mlp, cnn and your own module:factory, not {kind}")
    return backend or "numpy"


def default_spec(dataset: str, kind: str = "mlp", *, seed: int = 0, backend: str | None = None) -> ModelSpec:
    """Tuned defaults for the bundled datasets (see bench/learning_targets.py).
    For a user's own data use :func:`spec_for` (``node.py genesis --data FILE``)."""
    if dataset not in _DATASETS:
        raise ConfigError(f"no default model for dataset {dataset!r}; known: "
                          f"{', '.join(_DATASETS)} (for your own data use --data FILE)")
    task, n_features, n_outputs = _DATASETS[dataset]
    return spec_for(task, n_features, n_outputs, kind, seed=seed, backend=backend)


def _torch_spec(task: str, n_features: int, n_outputs: int, kind: str, seed: int) -> ModelSpec:
    tb = load_torch()
    if kind == "cnn":
        # Tuned on ct-phantoms (bench/torch_models.py)
        return tb.spec_with_layout("cnn", task, n_features, n_outputs, input_shape=tb.square_image(n_features),
                                   hidden=(8, 16, 32), seed=seed, epochs=2, batch_size=16, lr=0.05)
    if kind == "mlp":  # the numpy mlp's recipe, so the two backends can be compared
        numpy_spec = spec_for(task, n_features, n_outputs, "mlp", seed=seed)
        return tb.spec_with_layout("mlp", task, n_features, n_outputs, hidden=numpy_spec.hidden, seed=seed,
                                   epochs=numpy_spec.epochs, batch_size=numpy_spec.batch_size, lr=numpy_spec.lr,
                                   l2=numpy_spec.l2)
    return tb.spec_with_layout(kind, task, n_features, n_outputs, seed=seed, epochs=5, batch_size=16, lr=0.05)


def spec_for(task: str, n_features: int, n_outputs: int, kind: str = "mlp", *,
             seed: int = 0, backend: str | None = None) -> ModelSpec:
    """The model ``kind`` for any data shape, with the recipe tuned on the bundled
    sets (digits for classification, diabetes for regression). Raises ConfigError
    when ``kind`` cannot do ``task`` (linear: regression; softmax: classification).
    ``cnn``, a ``module:factory`` and ``backend="torch"`` build a PyTorch model."""
    if backend_of(kind, backend) == "torch":
        return _torch_spec(task, n_features, n_outputs, kind, seed)
    if kind == "linear":
        return ModelSpec("linear", task, n_features, 1, (), seed, 5, 16, 0.02)
    if kind == "softmax":
        return ModelSpec("softmax", task, n_features, n_outputs, (), seed, 5, 16, 0.05)
    if task == "classification":
        # Tuned on digits (4 IID nodes, 10 FedAvg rounds): 97-98 % over seeds vs
        # 95.8 % for E=5, lr=0.05, l2=0 (bench/learning_targets.py).
        return ModelSpec("mlp", task, n_features, n_outputs, (32,), seed, 10, 16, 0.2, 0.003)
    return ModelSpec("mlp", task, n_features, n_outputs, (32,), seed, 5, 16, 0.001)

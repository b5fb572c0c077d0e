"""Models: specification (:mod:`.spec`), NumPy network math (:mod:`.network`)
and the :class:`Model` API (:mod:`.model`). Pure, no I/O."""
from __future__ import annotations

from learningchain.core.errors import ConfigError
from learningchain.learning.models.model import Model
from learningchain.learning.models.spec import KINDS, TASKS, ModelSpec, decimal_string

__all__ = ["Model", "ModelSpec", "KINDS", "TASKS", "build_model", "default_spec",
           "spec_for", "decimal_string"]

#: dataset -> (task, n_features, n_outputs), for :func:`default_spec`.
_DATASETS = {"digits": ("classification", 64, 10), "breast-cancer": ("classification", 30, 2),
             "diabetes": ("regression", 10, 1),
             "synthetic-classification": ("classification", 20, 2),
             "synthetic-regression": ("regression", 20, 1),
             "ct-phantoms": ("classification", 32 * 32, 3)}  # phantoms.SIZE squared, flattened


def build_model(spec: ModelSpec) -> Model:
    return Model(spec)


def default_spec(dataset: str, kind: str = "mlp", *, seed: int = 0) -> ModelSpec:
    """Tuned defaults for the bundled datasets (see bench/learning_targets.py).
    For a user's own data use :func:`spec_for` (``node.py genesis --data FILE``)."""
    if dataset not in _DATASETS:
        raise ConfigError(f"no default model for dataset {dataset!r}; known: "
                          f"{', '.join(_DATASETS)} (for your own data use --data FILE)")
    task, n_features, n_outputs = _DATASETS[dataset]
    return spec_for(task, n_features, n_outputs, kind, seed=seed)


def spec_for(task: str, n_features: int, n_outputs: int, kind: str = "mlp", *,
             seed: int = 0) -> ModelSpec:
    """The model ``kind`` for any data shape, with the recipe tuned on the bundled
    sets (digits for classification, diabetes for regression). Raises ConfigError
    when ``kind`` cannot do ``task`` (linear: regression; softmax: classification)."""
    if kind not in KINDS:
        raise ConfigError(f"model kind {kind!r} unknown; choose one of {', '.join(KINDS)}")
    if kind == "linear":
        return ModelSpec("linear", task, n_features, 1, (), seed, 5, 16, 0.02)
    if kind == "softmax":
        return ModelSpec("softmax", task, n_features, n_outputs, (), seed, 5, 16, 0.05)
    if task == "classification":
        # Tuned on digits (4 IID nodes, 10 FedAvg rounds): 97-98 % over seeds vs
        # 95.8 % for E=5, lr=0.05, l2=0 (bench/learning_targets.py).
        return ModelSpec("mlp", task, n_features, n_outputs, (32,), seed, 10, 16, 0.2, 0.003)
    return ModelSpec("mlp", task, n_features, n_outputs, (32,), seed, 5, 16, 0.001)

"""What the ledger needs of a model, from the genesis spec alone: the names and
shapes of its arrays, and G0. Pure, and free of any backend: a torch model's
arrays are listed in its spec's ``layout``, so a validator checks and replays a
chain of a PyTorch network without PyTorch (docs/protocol.md, G0).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from learningchain.learning.models import network
from learningchain.learning.models.spec import ModelSpec

Shapes = "dict[str, tuple[str, tuple[int, ...]]]"


def expected_shapes(spec: ModelSpec) -> Shapes:
    """``{name: ("<f4", shape)}`` of every array of the model, sorted by name."""
    if spec.backend == "numpy":
        out = {}
        sizes = spec.layer_sizes
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            out[f"W{i}"] = ("<f4", (fan_in, fan_out))
            out[f"b{i}"] = ("<f4", (fan_out,))
        return dict(sorted(out.items()))
    return {name: ("<f4", shape) for name, shape in spec.layout}


def initial_weights(spec: ModelSpec) -> "OrderedDict[str, np.ndarray]":
    """G0 of ``spec``: the same on every machine (SHA-256 counter mode, no
    library's generator)."""
    if spec.backend == "numpy":
        w = network.init_params(spec.layer_sizes, spec.seed, zero=spec.kind != "mlp")
        return OrderedDict((name, w[name]) for name in sorted(w))
    return OrderedDict((name, layout_array(spec.seed, name, shape)) for name, shape in spec.layout)


def layout_array(seed: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """G0's array ``name`` of a layout model. An array of two or more dimensions
    (PyTorch's ``(out, in, *kernel)``) is Glorot-uniform with PyTorch's fans,
    ``fan_in = shape[1] * r`` and ``fan_out = shape[0] * r`` for ``r`` the
    product of ``shape[2:]``, drawn as the numpy MLP's ``W{i}`` are (row-major,
    :func:`network.protocol_uniform` keyed by ``name``). A vector is zeros (a
    bias), except a norm layer's scale (a name ending ``weight``) and a running
    variance (ending ``running_var``), which are ones."""
    if len(shape) >= 2:
        receptive = math.prod(shape[2:])
        fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
        u = network.protocol_uniform(seed, name, math.prod(shape)).reshape(shape)
        return ((2.0 * u - 1.0) * math.sqrt(6.0 / (fan_in + fan_out))).astype(np.float32)
    ones = name.endswith("weight") or name.endswith("running_var")
    return (np.ones if ones else np.zeros)(shape, dtype=np.float32)

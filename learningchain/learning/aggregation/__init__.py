"""Aggregation rules: pure functions from a round's updates to the global model.

Policy (which rule, which parameters, which updates reach the rule) belongs to
the chain; this package only does the math, in the manner of Flower's
``strategy/aggregate.py``. One module per rule: :mod:`.fedavg`, :mod:`.median`,
:mod:`.trimmed_mean`, :mod:`.krum` (Krum and Multi-Krum), :mod:`.bulyan`,
:mod:`.l_nearest`.

Determinism (every validator must derive the same bytes):

* updates are sorted by transaction id first, so any input order gives the
  same result;
* each update is flattened (arrays in sorted name order, C order) into one
  float64 row; sums run row by row in id order (see :mod:`.common`);
* the result is cast to float32 once, at the end, and returned with its names
  sorted.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from learningchain.learning.aggregation.bulyan import bulyan
from learningchain.learning.aggregation.common import RuleOutput
from learningchain.learning.aggregation.fedavg import fedavg
from learningchain.learning.aggregation.krum import krum, multi_krum
from learningchain.learning.aggregation.l_nearest import l_nearest
from learningchain.learning.aggregation.median import median
from learningchain.learning.aggregation.params import (RULES, AggregationError, default_params, max_byzantine,
                                              min_nodes, min_updates, parse_params, robust_params, sized_params,
                                              undersized)
from learningchain.learning.aggregation.trimmed_mean import trimmed_mean

__all__ = ["Update", "AggregationResult", "AggregationError", "RULES", "aggregate",
           "min_updates", "check_params", "default_params", "robust_params", "undersized", "sized_params",
           "min_nodes", "max_byzantine"]


@dataclass(frozen=True)
class Update:
    id: str                             # transaction id hex: the stable sort key
    sender: str                         # public key hex
    weights: Mapping[str, np.ndarray]   # float32 arrays, same names/shapes for all
    num_samples: int                    # self-reported


@dataclass(frozen=True)
class AggregationResult:
    weights: "OrderedDict[str, np.ndarray]"   # float32, keys sorted
    accepted: tuple[str, ...]                 # update ids, sorted
    rejected: dict[str, str]                  # id -> reason text


def check_params(rule: str, params: Mapping[str, Any]) -> None:
    """Raise :class:`~learningchain.core.errors.ConfigError` for an unknown rule, an
    unknown parameter name or an out-of-range value (independent of n)."""
    parse_params(rule, params)


def _stack(updates: Sequence[Update]) -> tuple[np.ndarray, list[tuple[str, tuple[int, ...]]]]:
    """Rows of flattened float64 weights (in the given order) and the layout."""
    first = updates[0].weights
    layout = [(name, tuple(np.shape(first[name]))) for name in sorted(first)]
    names = [name for name, _ in layout]
    spans, pos = [], 0  # (name, shape, start, end) of each array in a row
    for name, shape in layout:
        spans.append((name, shape, pos, pos + math.prod(shape)))
        pos += math.prod(shape)
    X = np.empty((len(updates), pos), dtype=np.float64)
    for row, upd in enumerate(updates):
        if sorted(upd.weights) != names:
            raise AggregationError(f"update {upd.id} has arrays {sorted(upd.weights)}, expected {names}")
        for name, shape, start, end in spans:
            arr = np.asarray(upd.weights[name])
            if arr.shape != shape:
                raise AggregationError(f"update {upd.id}: {name} has shape {arr.shape}, "
                                       f"expected {shape}")
            X[row, start:end] = arr.reshape(-1)
        if not np.isfinite(X[row]).all():  # row by row: the first fault in order names the error
            raise AggregationError(f"update {upd.id} contains NaN or infinite values")
    return X, layout


def _unstack(vector: np.ndarray, layout) -> "OrderedDict[str, np.ndarray]":
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    pos = 0
    for name, shape in layout:
        count = int(np.prod(shape))
        out[name] = vector[pos:pos + count].astype(np.float32).reshape(shape)
        pos += count
    return out


def aggregate(rule: str, updates: Sequence[Update], params: Mapping[str, Any]) -> AggregationResult:
    """Aggregate one round's updates with ``rule`` (one of :data:`RULES`).

    Raises :class:`AggregationError` for an empty list, duplicate ids,
    inconsistent shapes, non-finite values, or too few updates for the rule.
    """
    p = parse_params(rule, params)
    if not updates:
        raise AggregationError(f"{rule}: no updates to aggregate")
    ordered = sorted(updates, key=lambda u: u.id)
    ids = [u.id for u in ordered]
    if len(set(ids)) != len(ids):
        raise AggregationError(f"{rule}: duplicate update ids")
    X, layout = _stack(ordered)
    out: RuleOutput
    if rule == "fedavg":
        counts = np.array([max(int(u.num_samples), 0) for u in ordered], dtype=np.float64)
        out = fedavg(X, counts, p["cap_factor"])
    elif rule == "median":
        out = median(X)
    elif rule == "trimmed-mean":
        out = trimmed_mean(X, p["beta"])
    elif rule == "krum":
        out = krum(X, p["f"])
    elif rule == "multi-krum":
        out = multi_krum(X, p["f"], p["m"])
    elif rule == "bulyan":
        out = bulyan(X, p["f"])
    else:  # l-nearest: the reference is the median of the updates, never a chosen sender
        out = l_nearest(X, p["l"])
    return AggregationResult(
        weights=_unstack(out.vector, layout),
        accepted=tuple(sorted(ids[i] for i in out.accepted)),
        rejected={ids[i]: reason for i, reason in sorted(out.rejected.items())},
    )

"""Each update's L2 distance to its round's aggregate G(r), for the round page.

An update's weights are decoded as the chain decodes them (``full_weights`` on
the round's base G(r-1): a compressed delta becomes full weights) and compared
with G(r), the model after the round's closing block: the L2 norm of the
difference in float64 (for display: reputation's exact ``math.fsum`` order
statistic is not needed here, and NumPy's sum is ~50x faster on a large model). A
masked secure-aggregation input cannot be decoded (only the round's sum ever
is): no distance. Skips carry no weights: none either.

A closed round never changes, but a reorg may replace its closing block, so the
cache is keyed by the closing block's hash. Under the node's lock only the
models and txs are looked up; decoding and the sums run outside it.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from learningchain.ledger.txs import is_secagg

#: rounds kept in the cache (a round of 8 updates is 8 floats).
CACHE_ROUNDS = 512

_cache: "OrderedDict[str, dict[str, float]]" = OrderedDict()
_lock = threading.Lock()


def l2_distance(weights, model) -> float:
    """sqrt(sum over arrays of sum((w - m)^2)), in float64."""
    total = 0.0
    for k in model:
        d = np.asarray(weights[k], dtype=np.float64) - np.asarray(model[k], dtype=np.float64)
        total += float(np.dot(d.ravel(), d.ravel()))
    return math.sqrt(total)


def round_distances(node: Any, summary: dict) -> dict[str, float]:
    """tx id -> L2 distance to G(r) for the decodable updates of a closed round
    (``summary``: :meth:`Chain.round_summary`); {} for an open round."""
    closing = summary.get("block")
    if summary.get("status") != "closed" or not closing:
        return {}
    with _lock:
        if closing in _cache:
            _cache.move_to_end(closing)
            return _cache[closing]
    with node.lock:
        chain = node.chain
        if closing not in chain:
            return {}
        aggregate = chain.model(closing)[0]
        base = chain.model(chain.index.main[summary["opened_at"]])[0]
        txs = []
        for u in summary["updates"]:
            found = chain.find_tx(u["id"])
            if found is not None and not found[0].is_skip and not is_secagg(found[0]):
                txs.append(found[0])
    out = {}
    for tx in txs:
        try:
            out[tx.id] = l2_distance(tx.full_weights(base), aggregate)
        except (ValueError, KeyError):  # cannot happen for a valid tx; never fail a page on it
            continue
    with _lock:
        _cache[closing] = out
        while len(_cache) > CACHE_ROUNDS:
            _cache.popitem(last=False)
    return out

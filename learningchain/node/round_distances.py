"""Each update's L2 distance to its round's aggregate G(r), for the explorer's round page.

An update's weights are decoded as the chain decodes them (``full_weights`` on
the round's base G(r-1): a compressed delta becomes full weights) and compared
with G(r), the model after the round's closing block: the L2 norm of the
difference in float64 (for display: reputation's exact ``math.fsum`` order
statistic is not needed here, and NumPy's sum is ~50x faster on a large model). A
masked secure-aggregation input cannot be decoded (only the round's sum ever
is): no distance. Skips carry no weights: none either.

Decoding every update of a round costs tens to hundreds of ms on a large model,
so requests never do it in the normal case: the evaluator thread
(:func:`measure_round_distances`, after it measured the rounds) computes each
closed round's distances once, while the round's models are still in memory,
and keeps those of the newest :data:`KEEP_ROUNDS` rounds in
:class:`RoundDistances` (``node.round_distances``), each under its closing block's
hash: a reorg that replaces the closing block makes it stale, and it is computed
again. Models are read with :meth:`Chain.peek_model`, which leaves the chain's
model LRU (consensus' working set) as it is. The explorer only reads them
(:mod:`learningchain.node.web.distances` computes a round outside the window on
demand, one at a time).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Mapping

import numpy as np

from learningchain.ledger.txs import is_secagg

#: rounds (the newest) whose distances the evaluator computes and keeps.
KEEP_ROUNDS = 256
#: rounds the evaluator computes per pass (it goes back to measuring in between).
BATCH = 4


def l2_distance(weights, model) -> float:
    """sqrt(sum over arrays of sum((w - m)^2)), in float64."""
    total = 0.0
    for k in model:
        d = np.asarray(weights[k], dtype=np.float64) - np.asarray(model[k], dtype=np.float64)
        d = d.ravel()
        total += float(np.dot(d, d))
    return math.sqrt(total)


def distances_of(txs, base: Mapping[str, np.ndarray], aggregate: Mapping[str, np.ndarray]) -> dict[str, float]:
    """tx id -> L2 distance to ``aggregate`` of each decodable tx (no skip, no
    masked input), decoded on ``base`` (no lock needed: pure arithmetic)."""
    out = {}
    for tx in txs:
        if tx.is_skip or is_secagg(tx):
            continue
        try:
            out[tx.id] = l2_distance(tx.full_weights(base), aggregate)
        except (ValueError, KeyError):  # cannot happen for a valid tx; never fail a page on it
            continue
    return out


def round_inputs(chain: Any, summary: dict, txs: dict[str, Any]) -> tuple[Any, Any, list] | None:
    """(chain's lock held) G(r), G(r-1) and the decodable txs of the closed round
    ``summary`` (``txs``: the ones :meth:`Chain.round_summary` filled in with it:
    no block is read twice, and a deep one comes from the store), or None when a
    model is not at hand without recomputing it. Never touches the chain's model LRU."""
    closing = summary.get("block")
    if summary.get("status") != "closed" or not closing or closing not in chain:
        return None
    aggregate = chain.peek_model(closing)
    base = chain.peek_model(chain.index.main[summary["opened_at"]])
    if aggregate is None or base is None:
        return None
    return aggregate, base, [t for t in txs.values() if not t.is_skip and not is_secagg(t)]


class RoundDistances:
    """round -> (closing block hash, {tx id: distance}, or None when the round's
    models were not at hand) for the newest ``keep`` rounds put; thread-safe (the
    evaluator writes, request threads read)."""

    def __init__(self, keep: int = KEEP_ROUNDS):
        self.keep = keep
        self._rounds: dict[int, tuple[str, dict[str, float] | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, r: int, closing: str) -> tuple[bool, dict[str, float] | None]:
        """(held, distances): held False when round ``r`` under this closing block
        was never computed (or is stale: another closing block, or evicted)."""
        with self._lock:
            held = self._rounds.get(r)
        if held is None or held[0] != closing:
            return False, None
        return True, held[1]

    def has(self, r: int, closing: str) -> bool:
        return self.lookup(r, closing)[0]

    def wanted(self, r: int, current: int) -> bool:
        """Is round ``r`` among the newest ``keep`` when ``current`` is open?"""
        return r >= current - self.keep

    def put(self, r: int, closing: str, distances: dict[str, float] | None) -> None:
        with self._lock:
            self._rounds[r] = (closing, distances)
            if len(self._rounds) > self.keep:
                for old in sorted(self._rounds)[: len(self._rounds) - self.keep]:
                    del self._rounds[old]

    def __len__(self) -> int:
        with self._lock:
            return len(self._rounds)


def measure_round_distances(node: Any, batch: int = BATCH) -> int:
    """(the evaluator thread, node lock NOT held) compute the distances of up to
    ``batch`` closed rounds among the newest ``node.round_distances.keep`` whose
    current closing block has none yet, newest first; returns how many. Under the
    lock: the round closes, summaries and models (kept, no recomputation);
    decoding and sums outside it."""
    held: RoundDistances = node.round_distances
    with node.lock:
        chain = node.chain
        current = chain.tip_state.round
        closes = chain.round_closes(max(1, current - held.keep))
        missing = [(r, h) for r, _height, h in reversed(closes) if not held.has(r, h)][:batch]
        work = []
        for r, closing in missing:
            txs: dict = {}
            inputs = round_inputs(chain, chain.round_summary(r, txs) or {}, txs)
            if inputs is not None:
                work.append((r, closing, inputs))
            else:  # a model not at hand without recomputing it: none, and not tried again
                held.put(r, closing, None)
    for r, closing, (aggregate, base, txs) in work:
        t0 = time.perf_counter()
        held.put(r, closing, distances_of(txs, base, aggregate))
        node.add_timing("distances", time.perf_counter() - t0)
    return len(missing)

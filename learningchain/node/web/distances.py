"""The distances of a round's updates to G(r) as the round page and
``/rounds/<r>`` show them (:mod:`learningchain.node.round_distances` says how
they are computed).

A request only reads what the evaluator computed (``node.round_distances``: the
newest rounds). A round outside that (older than its window, or on a node that
just started and has not got to it yet) is computed here on demand, at most one
at a time for the whole node: while one runs, other such requests are answered
at once without distances and with a note, so a loop over old rounds costs at
most one core, and the node's lock is held only to read the round's txs and its
two models (which never touches the chain's model LRU). Results go into
``node.round_distances`` when the round is in its window, else into a small LRU
of their own, so outsiders cannot evict the newest rounds.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from learningchain.node.round_distances import distances_of, round_inputs

#: old rounds (outside node.round_distances) computed on demand and kept.
CACHE_ROUNDS = 64

BUSY = "being computed for another round: reload in a moment"
NO_MODEL = "not available: a model of this round is not at hand on this node"

_cache: "OrderedDict[str, dict[str, float] | None]" = OrderedDict()  # closing block hash -> distances
_lock = threading.Lock()
_computing = threading.Semaphore(1)


def round_distances(node: Any, summary: dict, txs: dict) -> tuple[dict[str, float], str | None]:
    """(tx id -> L2 distance to G(r) for the decodable updates of a closed round,
    a note when there are none to show: :data:`BUSY` or :data:`NO_MODEL`);
    ``({}, None)`` for an open round. ``summary``: :meth:`Chain.round_summary`;
    ``txs``: its txs by id (filled in by :meth:`Chain.round_summary`)."""
    closing, r = summary.get("block"), summary.get("round")
    if summary.get("status") != "closed" or not closing:
        return {}, None
    held = node.round_distances
    found, got = held.lookup(r, closing)
    if not found:
        with _lock:
            found = closing in _cache
            if found:
                _cache.move_to_end(closing)
                got = _cache[closing]
    if found:
        return (got, None) if got is not None else ({}, NO_MODEL)
    if not _computing.acquire(blocking=False):  # one cold round at a time
        return {}, BUSY
    try:
        with node.lock:
            inputs = round_inputs(node.chain, summary, txs)
            window = held.wanted(r, node.chain.tip_state.round)
        got = distances_of(inputs[2], inputs[1], inputs[0]) if inputs is not None else None
    finally:
        _computing.release()
    if window:
        held.put(r, closing, got)
    else:
        with _lock:
            _cache[closing] = got
            while len(_cache) > CACHE_ROUNDS:
                _cache.popitem(last=False)
    return (got, None) if got is not None else ({}, NO_MODEL)

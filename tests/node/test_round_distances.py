"""The bounded store of the newest rounds' update distances
(:class:`learningchain.node.round_distances.RoundDistances`) and the distance itself.
The evaluator's pass and the explorer's reads over a real node: tests/node/web/test_pages.py."""
from __future__ import annotations

import math

import numpy as np

from learningchain.node.round_distances import RoundDistances, l2_distance


def test_only_the_newest_rounds_are_kept_each_under_its_closing_block():
    held = RoundDistances(keep=8)
    for r in range(1, 21):
        held.put(r, f"close{r}", {f"tx{r}": float(r)})
    assert len(held) == 8
    assert held.lookup(12, "close12") == (False, None)  # evicted: older than the newest 8
    assert held.lookup(13, "close13") == (True, {"tx13": 13.0})
    assert held.lookup(13, "other") == (False, None)  # a reorg replaced round 13's closing block
    held.put(13, "other", None)  # models not at hand: held as none
    assert held.lookup(13, "other") == (True, None) and not held.has(13, "close13")
    assert held.wanted(13, 21) and not held.wanted(12, 21)
    held.put(5, "close5", {})  # an old round put late is the first to go
    assert not held.has(5, "close5") and len(held) == 8


def test_l2_distance_is_the_norm_of_the_difference_over_every_array():
    a = {"w": np.array([[1.0, 2.0]], dtype=np.float32), "b": np.array([3.0], dtype=np.float32)}
    b = {"w": np.array([[1.0, 0.0]], dtype=np.float32), "b": np.array([0.0], dtype=np.float32)}
    assert l2_distance(a, b) == math.sqrt(4.0 + 9.0)

"""Secure aggregation's arithmetic, pure NumPy: a delta in fixed point modulo
2^32 (clipped to the genesis range, scaled), masked with a self mask and
pairwise masks that cancel in the sum, and the sum decoded back to the average
delta (docs/protocol.md section 14, "What a participant sends", "The aggregate").
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

MOD_BITS = 32


def quantize(delta: np.ndarray, clip: float, scale: int, noise: np.ndarray | None = None) -> np.ndarray:
    """``round_half_even(clamp(delta, -clip, clip) * scale)`` (+ integer noise) mod 2^32."""
    q = np.rint(np.clip(np.asarray(delta, dtype=np.float64), -clip, clip) * scale).astype(np.int64)
    if noise is not None:
        q = q + noise.astype(np.int64)
    return (q & 0xFFFFFFFF).astype(np.uint32)


def sign(me: str, other: str) -> int:
    """+1 if ``me`` sorts before ``other`` (key hex order), else -1."""
    return 1 if me < other else -1


def mask(q: np.ndarray, self_mask: np.ndarray, pair_masks: Mapping[str, np.ndarray], me: str) -> np.ndarray:
    """y = q + self mask + Σ sign(me, v)·pair mask(v)  (mod 2^32)."""
    y = q.astype(np.uint32) + self_mask
    for other, m in pair_masks.items():
        y = y + m if sign(me, other) > 0 else y - m
    return y


def unmask(y: np.ndarray, self_mask: np.ndarray, pair_masks: Mapping[str, np.ndarray], me: str) -> np.ndarray:
    """y − self mask − Σ sign(me, u)·pair mask(u) (mod 2^32): one counted input
    with its self mask and its masks with the uncounted members removed."""
    out = y.astype(np.uint32) - self_mask
    for other, m in pair_masks.items():
        out = out - m if sign(me, other) > 0 else out + m
    return out


def add_mod(vectors: Iterable[np.ndarray], d: int) -> np.ndarray:
    total = np.zeros(d, dtype=np.uint32)
    for v in vectors:
        total += v
    return total


def decode_average(total: np.ndarray, count: int, scale: int) -> np.ndarray:
    """The average delta: the sum read as signed 32-bit, over scale·count (one division)."""
    signed = total.astype(np.int64)
    signed[signed >= 1 << 31] -= 1 << 32
    return signed.astype(np.float64) / float(scale * count)

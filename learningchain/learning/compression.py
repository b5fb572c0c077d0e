"""Compressed updates: the difference to the global model, quantised or sparsified.

A compressed update tx carries ``"compression": SCHEME`` in its signed body and
``weights`` maps each array name to a scheme object instead of an array; what
it commits to is the *delta* Δ = w − G(r−1) in that encoding. Validators decode
against the base model the tx names (``base`` = digest of G(r−1), which the
round state holds), so the chain and the aggregation rules see full float32
weights ``w = float32(G(r−1) + Δ)``, exactly as for an uncompressed tx.

``q8`` (8-bit, stochastic rounding; Alistarh et al., QSGD, NeurIPS 2017)::

    {"lo": <f4 [1], "scale": <f4 [1], "q": |u1 same shape as the array}
    Δ = float32(lo + float32(q) * scale)          (float32 multiply, then add)

The encoder takes lo = min Δ, scale = float32((max Δ − lo) / 255) and
q = clip(floor((Δ − lo) / scale + u), 0, 255), u ~ U[0, 1) (unbiased).

``topk`` (sparsification with error feedback kept by the sender; Stich et al.,
"Sparsified SGD with memory", NeurIPS 2018)::

    {"idx": <i4 [k] strictly increasing flat C-order indices, "val": <f4 [k]}
    Δ = zeros of the array's shape with Δ.flat[idx] = val

Arrays use the wire array form of encoding.py (``|u1`` is the uint8 code).
Pure: no I/O.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Mapping

import numpy as np

from learningchain.core import errors
from learningchain.core.encoding import EncodingError, decode_array, encode_array
from learningchain.core.errors import ValidationError

SCHEMES = ("q8", "topk")
_KEYS = {"q8": {"lo", "scale", "q"}, "topk": {"idx", "val"}}


def _bad(detail: str) -> ValidationError:
    return ValidationError(errors.TX_MALFORMED, f"compressed weights: {detail}")


# --- encoding (the sender) -----------------------------------------------------------

def encode_q8(delta: np.ndarray, rng: np.random.Generator) -> dict:
    d = np.asarray(delta, dtype=np.float32)
    lo = np.float32(d.min()) if d.size else np.float32(0)
    hi = np.float32(d.max()) if d.size else np.float32(0)
    scale = np.float32((np.float64(hi) - np.float64(lo)) / 255.0)
    if scale > 0:
        q = np.floor((d.astype(np.float64) - float(lo)) / float(scale) + rng.random(d.shape))
        q = np.clip(q, 0, 255).astype(np.uint8)
    else:
        q = np.zeros(d.shape, dtype=np.uint8)
    return {"lo": encode_array(np.array([lo], np.float32)), "scale": encode_array(np.array([scale], np.float32)),
            "q": encode_array(q)}


def encode_topk(delta: np.ndarray, fraction: float) -> tuple[dict, np.ndarray]:
    """The encoded k largest |Δ| entries and the residual left behind (Δ − sent)."""
    d = np.asarray(delta, dtype=np.float32)
    flat = d.reshape(-1)
    k = max(1, min(flat.size, math.ceil(fraction * flat.size)))
    idx = np.sort(np.argsort(-np.abs(flat), kind="stable")[:k]).astype(np.int32)
    val = flat[idx].astype(np.float32)
    residual = flat.copy()
    residual[idx] = 0.0
    return {"idx": encode_array(idx), "val": encode_array(val)}, residual.reshape(d.shape)


def compress(weights: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray], scheme: str,
             rng: np.random.Generator, fraction: float = 0.1,
             memory: Mapping[str, np.ndarray] | None = None) -> tuple[dict, dict]:
    """(encoded weights, new error-feedback memory) for ``weights`` trained from ``base``.
    ``memory`` (topk only) is added to Δ before selecting, the unsent part is kept."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown compression {scheme!r}; choose one of {', '.join(SCHEMES)}")
    enc, mem = {}, {}
    for name in sorted(weights):
        delta = np.asarray(weights[name], np.float32) - np.asarray(base[name], np.float32)
        if scheme == "q8":
            enc[name] = encode_q8(delta, rng)
        else:
            if memory is not None and name in memory:
                delta = (delta + memory[name]).astype(np.float32)
            enc[name], mem[name] = encode_topk(delta, fraction)
    return enc, mem


# --- checking and decoding (every validator) -------------------------------------------

def _array(doc: Any, what: str, dtype: str, shape: list | None = None) -> np.ndarray:
    try:
        arr = decode_array(doc)
    except EncodingError as exc:
        raise _bad(f"{what}: {exc}") from None
    if doc["dtype"] != dtype:
        raise ValidationError(errors.TX_DTYPE_MISMATCH, f"{what} must be {dtype}, got {doc['dtype']!r}")
    if shape is not None and list(arr.shape) != shape:
        raise ValidationError(errors.TX_SHAPE_MISMATCH, f"{what} must have shape {shape}, got {list(arr.shape)}")
    return arr


def decode_delta(scheme: str, name: str, doc: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Δ of one array (float32, ``shape``); raises the tx-level ValidationError."""
    if not isinstance(doc, dict) or set(doc) != _KEYS[scheme]:
        raise _bad(f"{name} must be an object with exactly {', '.join(sorted(_KEYS[scheme]))}")
    if scheme == "q8":
        lo = _array(doc["lo"], f"{name}.lo", "<f4", [1])
        scale = _array(doc["scale"], f"{name}.scale", "<f4", [1])
        q = _array(doc["q"], f"{name}.q", "|u1", list(shape))
        if not (np.isfinite(lo).all() and np.isfinite(scale).all()) or scale[0] < 0:
            raise ValidationError(errors.TX_NON_FINITE, f"{name}: lo and scale must be finite, scale >= 0")
        return (lo[0] + q.astype(np.float32) * scale[0]).astype(np.float32)
    idx = _array(doc["idx"], f"{name}.idx", "<i4")
    val = _array(doc["val"], f"{name}.val", "<f4")
    size = int(np.prod(shape))
    if idx.ndim != 1 or val.shape != idx.shape or not 1 <= idx.size <= size:
        raise ValidationError(errors.TX_SHAPE_MISMATCH, f"{name}: idx and val must be 1-D of equal length in [1, {size}]")
    if idx[0] < 0 or idx[-1] >= size or (idx.size > 1 and not (np.diff(idx) > 0).all()):
        raise _bad(f"{name}.idx must be strictly increasing indices in [0, {size})")
    if not np.isfinite(val).all():
        raise ValidationError(errors.TX_NON_FINITE, f"{name}.val holds NaN or infinite values")
    out = np.zeros(size, dtype=np.float32)
    out[idx] = val
    return out.reshape(shape)


def check(scheme: str, weights: Any, expected: Mapping[str, tuple[str, tuple[int, ...]]]) -> None:
    """Context-free checks of compressed weights against the model's names and shapes."""
    if scheme not in SCHEMES:
        raise _bad(f"unknown compression {scheme!r}; one of {', '.join(SCHEMES)}")
    if not isinstance(weights, dict) or set(weights) != set(expected):
        raise ValidationError(errors.TX_SHAPE_MISMATCH, f"weights must be named {sorted(expected)}")
    for name, (_dtype, shape) in expected.items():
        decode_delta(scheme, name, weights[name], shape)


def decode(scheme: str, weights: Mapping[str, Any], base: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    """Full float32 weights ``float32(base + Δ)``, names sorted."""
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for name in sorted(base):
        b = np.asarray(base[name], np.float32)
        out[name] = (b + decode_delta(scheme, name, weights[name], b.shape)).astype(np.float32)
    return out


def payload_bytes(weights: Mapping[str, Any]) -> int:
    """Binary bytes the encoded arrays carry (before base64), for size reports."""
    total = 0
    for obj in weights.values():
        arrays = obj.values() if "data" not in obj else [obj]
        for a in arrays:
            total += math.prod(a["shape"]) * np.dtype(a["dtype"]).itemsize
    return total

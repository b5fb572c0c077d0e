"""Weight-update transactions.

A transaction is one participant's model for one round::

    body = {"type": "update", "version": 1, "sender": <pubkey hex>,
            "round": r, "base": <digest of G(r-1) it was trained from>,
            "weights": {name: <encoded array>}, "num_samples": n,
            "metrics": {name: "0.953125"}, "timestamp": <unix ms>}
    id   = SHA-256(canonical_json(body))          (hex)
    sig  = ECDSA-secp256k1 over the 32 bytes of id (low-S DER hex)
    wire = body + {"signature": sig}

Checks here are *context-free* (syntax, limits, signature). Whether the round is
open, the base digest right and the sender allowed is decided by the chain
(:mod:`learningchain.ledger.chain`), which knows the context.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from learningchain.core import crypto, errors
from learningchain.core.encoding import (EncodingError, decode_metric, decode_weights,
                                    encode_metrics, encode_weights, is_hex)
from learningchain.core.errors import ValidationError
from learningchain.learning import compression
from learningchain.ledger.tx_body import is_int as _is_int
from learningchain.ledger.tx_body import SignedBody  # id, wire form, size, signature check

TX_TYPE = "update"
SKIP_TYPE = "skip"
TX_VERSION = 1
_FIELDS = {"type", "version", "sender", "round", "base", "weights", "num_samples", "metrics",
           "timestamp", "signature"}
#: a skip tx: "I trained from G(r-1) and my update would change it too little to send".
_SKIP_FIELDS = _FIELDS - {"weights"}
MAX_METRICS = 16


@dataclass(frozen=True)
class UpdateTx(SignedBody):
    sender: str
    round: int
    base: str
    weights: dict  # encoded: {name: {"dtype", "shape", "data"}}
    num_samples: int
    metrics: dict = field(default_factory=dict)
    timestamp: int = 0
    signature: str = ""
    kind: str = TX_TYPE              # "update" or "skip" (the body's "type")
    compression: str | None = None   # None, "q8" or "topk" (compression.py); in the signed body

    # --- construction ---------------------------------------------------
    @classmethod
    def create(cls, key: crypto.PrivateKey, round: int, base: str,
               weights: Mapping[str, np.ndarray], num_samples: int,
               metrics: Mapping[str, float] | None = None, timestamp: int = 0) -> "UpdateTx":
        unsigned = cls(sender=key.public_hex, round=round, base=base,
                       weights=encode_weights(weights), num_samples=int(num_samples),
                       metrics=encode_metrics(metrics or {}), timestamp=int(timestamp))
        return unsigned.signed(key)

    def signed(self, key: crypto.PrivateKey) -> "UpdateTx":
        fields = {k: v for k, v in self.__dict__.items() if k in self.__dataclass_fields__}
        return UpdateTx(**{**fields, "signature": key.sign_digest(self.id_bytes)})

    @classmethod
    def create_skip(cls, key: crypto.PrivateKey, round: int, base: str, num_samples: int,
                    metrics: Mapping[str, float] | None = None, timestamp: int = 0) -> "UpdateTx":
        """A signed skip: counts toward closing the round, carries no weights."""
        return cls(sender=key.public_hex, round=round, base=base, weights={}, num_samples=int(num_samples),
                   metrics=encode_metrics(metrics or {}), timestamp=int(timestamp), kind=SKIP_TYPE).signed(key)

    @classmethod
    def create_compressed(cls, key: crypto.PrivateKey, round: int, base: str, encoded: dict,
                          scheme: str, num_samples: int, metrics: Mapping[str, float] | None = None,
                          timestamp: int = 0) -> "UpdateTx":
        """A signed update whose weights are ``encoded`` by :mod:`learningchain.learning.compression`."""
        return cls(sender=key.public_hex, round=round, base=base, weights=encoded, num_samples=int(num_samples),
                   metrics=encode_metrics(metrics or {}), timestamp=int(timestamp),
                   compression=scheme).signed(key)

    @property
    def is_skip(self) -> bool:
        return self.kind == SKIP_TYPE

    # --- serialisation ----------------------------------------------------
    def body(self) -> dict:
        doc = {"type": self.kind, "version": TX_VERSION, "sender": self.sender, "round": self.round,
               "base": self.base, "weights": self.weights, "num_samples": self.num_samples,
               "metrics": self.metrics, "timestamp": self.timestamp}
        if self.is_skip:
            del doc["weights"]
        elif self.compression is not None:
            doc["compression"] = self.compression
        return doc

    @classmethod
    def parse(cls, doc: Any) -> "UpdateTx":
        """Build from a decoded JSON document, checking every field's type and form."""
        def bad(detail: str) -> ValidationError:
            return ValidationError(errors.TX_MALFORMED, detail)
        if not isinstance(doc, dict):
            raise bad("a transaction must be a JSON object")
        kind = doc.get("type")
        version = doc.get("version")  # an integer, not true or 1.0 (both == 1 in Python)
        if kind not in (TX_TYPE, SKIP_TYPE) or not _is_int(version) or version != TX_VERSION:
            raise bad(f"type must be {TX_TYPE!r} or {SKIP_TYPE!r} and version {TX_VERSION}")
        want = _SKIP_FIELDS if kind == SKIP_TYPE else _FIELDS | ({"compression"} if "compression" in doc else set())
        missing, extra = want - set(doc), set(doc) - want
        if missing:
            raise bad(f"missing field(s): {', '.join(sorted(missing))}")
        if extra:
            raise bad(f"unknown field(s): {', '.join(sorted(extra))}")
        compression = doc.get("compression")
        if "compression" in doc and compression not in ("q8", "topk"):
            raise bad("compression must be \"q8\" or \"topk\"")
        for name in ("round", "num_samples", "timestamp"):
            if not _is_int(doc[name]) or not 0 <= doc[name] < 2**53:
                raise bad(f"{name} must be a non-negative integer below 2^53")
        if not is_hex(doc["base"], 32):
            raise bad("base must be a 64-char lowercase hex digest")
        metrics = doc["metrics"]
        if not isinstance(metrics, dict) or len(metrics) > MAX_METRICS:
            raise bad(f"metrics must be an object of at most {MAX_METRICS} entries")
        for key, value in metrics.items():
            if len(key) > 32:
                raise bad("metric names are at most 32 Unicode code points")
            try:
                decode_metric(value)
            except EncodingError as exc:
                raise bad(f"metric {key!r}: {exc}") from None
        weights = doc.get("weights", {})
        if kind == TX_TYPE and (not isinstance(weights, dict) or not weights):
            raise bad("weights must be a non-empty object of encoded arrays")
        tx = cls(sender=doc["sender"], round=doc["round"], base=doc["base"], weights=weights,
                 num_samples=doc["num_samples"], metrics=metrics, timestamp=doc["timestamp"],
                 signature=doc["signature"], kind=kind, compression=compression)
        tx.check_canonical()  # tx-malformed unless canonical; computes the id on the way
        if not isinstance(doc["sender"], str):  # after every tx-malformed check (protocol.md §3)
            raise ValidationError(errors.TX_MALFORMED_KEY, "sender must be a hex public key")
        if not isinstance(doc["signature"], str):
            raise ValidationError(errors.TX_BAD_SIGNATURE, "signature must be a DER hex string")
        return tx

    @property
    def decoded_weights(self):
        """The named arrays (sorted by name) as carried; for a compressed tx see
        :meth:`full_weights`. Raises ValidationError if malformed. Decoded on each
        call (about 0.1 ms for the digits MLP), never cached: a tx in memory holds
        its weights once, in the base64 form it is hashed and sent in, not also
        as arrays (issue 10 item 12; :meth:`check` remembers what it checked)."""
        if self.is_skip or self.compression is not None:
            raise ValidationError(errors.TX_MALFORMED, "a skip or compressed tx has no plain weights")
        try:
            return decode_weights(self.weights)
        except EncodingError as exc:
            raise ValidationError(errors.TX_MALFORMED, f"weights: {exc}") from None

    def full_weights(self, base: Mapping[str, np.ndarray]):
        """Float32 weights the aggregation sees: the plain arrays, or ``base + Δ``
        for a compressed tx (``base`` must be the model the tx names, G(r-1));
        decoded on each call."""
        if self.compression is None:
            return self.decoded_weights
        return compression.decode(self.compression, self.weights, base)

    def decoded_metrics(self) -> dict[str, float]:
        return {k: decode_metric(v) for k, v in self.metrics.items()}

    # --- context-free checks -------------------------------------------------
    def check(self, expected: Mapping[str, tuple[str, tuple[int, ...]]], max_bytes: int,
              verify_signature: bool = True, decoded: dict | None = None) -> None:
        """Key, size, sample count, weights against the model spec (name -> (dtype,
        shape)), finiteness and, unless already done, the signature: in the order
        of docs/protocol.md section 3, so a tx with two faults names the first.
        ``decoded``: where to leave the arrays decoded for the finiteness check
        (``decoded[id] = weights``), so the block's aggregation need not decode them again."""
        try:  # cached, and cheap once the key has been seen
            crypto.check_public_key(self.sender)
        except crypto.InvalidKey as exc:
            raise ValidationError(errors.TX_MALFORMED_KEY, str(exc)) from None
        if self.size > max_bytes:
            raise ValidationError(errors.TX_TOO_LARGE, f"transaction is {self.size} bytes, limit {max_bytes}")
        if self.num_samples < 1:
            raise ValidationError(errors.TX_BAD_SAMPLES, "num_samples must be at least 1")
        if self.is_skip or self.compression is not None:
            if self.compression is not None:
                compression.check(self.compression, self.weights, expected)
            if verify_signature:
                self.verify_signature()
            return
        spec = tuple(sorted(expected.items()))
        checked = (max_bytes, spec)
        if self.__dict__.get("_checked") == checked:  # the weights below passed before: decode once
            if verify_signature:
                self.verify_signature()
            return
        if set(self.weights) != set(expected):
            raise ValidationError(errors.TX_SHAPE_MISMATCH,
                                  f"weights must be named {sorted(expected)}, got {sorted(self.weights)}")
        for name, (_, shape) in spec:  # every shape before any dtype
            enc = self.weights[name]
            if isinstance(enc, dict) and enc.get("shape") != list(shape):
                raise ValidationError(errors.TX_SHAPE_MISMATCH,
                                      f"{name} must have shape {list(shape)}, got {enc.get('shape')!r}")
        for name, (dtype, _) in spec:
            enc = self.weights[name]
            if isinstance(enc, dict) and enc.get("dtype") != dtype:
                raise ValidationError(errors.TX_DTYPE_MISMATCH, f"{name} must be {dtype}, got {enc.get('dtype')!r}")
        weights = self.decoded_weights
        for name, arr in weights.items():
            if not np.isfinite(arr).all():
                raise ValidationError(errors.TX_NON_FINITE, f"{name} holds NaN or infinite values")
        self.__dict__["_checked"] = checked
        if decoded is not None:
            decoded[self.id] = weights
        if verify_signature:
            self.verify_signature()

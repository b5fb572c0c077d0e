"""Secure-aggregation transactions: ``sa-setup``, ``sa-input``, ``sa-unmask``
(docs/protocol.md section 14.3).

The common body (type, version 1, sender, round, base, timestamp), the id and
the signature are those of every tx (:mod:`learningchain.ledger.tx_body`); each
type adds exactly its own fields::

    sa-setup   mask_key, enc_key, proofs {"mask", "enc"}, roster, commitments {"self": [..t], "mask": [..t]},
               shares [N_r - 1 ciphertexts]
    sa-input   input (array "<u4" [d]), num_samples, complaints [{"against", "point", "proof"}], setups
    sa-unmask  self_shares [hex32|null], mask_shares [hex32|null], seeds [{"point", "proof"}|null], inputs

:meth:`SecAggTx.parse` checks the JSON shape (``tx-malformed``);
:meth:`SecAggTx.check` the context-free rules: key, size, sample count, points
and scalars (``sa-bad-point``), the lengths genesis fixes and the ciphertext
sizes (``sa-malformed``), the setup's proofs of knowledge of m and e
(``sa-bad-proof``), the input array, then the signature. What needs the
round (the roster, the setups, complaints, revealed shares) is checked in
:mod:`learningchain.ledger.secagg_round`.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

import numpy as np

from learningchain.core import crypto, ec, errors
from learningchain.core.encoding import EncodingError, decode_array, encode_array
from learningchain.core.errors import ValidationError
from learningchain.core.secagg_crypto import SEALED_BYTES
from learningchain.ledger.tx_body import (SignedBody, check_common, check_key_and_size,
                                          check_sender_and_signature_types, is_int, malformed)

SETUP, INPUT, UNMASK = "sa-setup", "sa-input", "sa-unmask"
SA_TYPES = (SETUP, INPUT, UNMASK)
#: the phase of the round each type belongs to, in order
PHASE_OF = {SETUP: "setup", INPUT: "input", UNMASK: "unmask"}
PHASES = ("setup", "input", "unmask")
_FIELDS = {SETUP: {"mask_key", "enc_key", "proofs", "roster", "commitments", "shares"},
           INPUT: {"input", "num_samples", "complaints", "setups"},
           UNMASK: {"self_shares", "mask_shares", "seeds", "inputs"}}
#: the binding field of each type: a SHA-256 (64 lowercase hex) of its context (section 14.3)
BINDING = {SETUP: "roster", INPUT: "setups", UNMASK: "inputs"}
SEALED_B64 = 4 * -(-SEALED_BYTES // 3)  # 108 chars of standard base64


def _bad_point(detail: str) -> ValidationError:
    return ValidationError(errors.SA_BAD_POINT, detail)


def _sa_malformed(detail: str) -> ValidationError:
    return ValidationError(errors.SA_MALFORMED, detail)


def _point(text: Any, what: str) -> ec.Point:
    try:
        return ec.parse_point(text)
    except ValueError as exc:
        raise _bad_point(f"{what}: {exc}") from None


def _scalar(text: Any, what: str) -> int:
    try:
        return ec.parse_scalar(text)
    except ValueError as exc:
        raise _bad_point(f"{what}: {exc}") from None


def _str_list(v: Any, what: str, nullable: bool = False) -> None:
    if not isinstance(v, list) or not all(isinstance(x, str) or (nullable and x is None) for x in v):
        raise malformed(f"{what} must be a list of strings{' or nulls' if nullable else ''}")


def _proof_shape(p: Any, what: str) -> None:
    if not isinstance(p, dict) or set(p) != {"c", "z"} or not all(isinstance(p[k], str) for k in p):
        raise malformed(f"{what} must be {{\"c\": hex32, \"z\": hex32}}")


def _check_shape(kind: str, doc: dict) -> None:
    """tx-malformed: the JSON types of the per-type fields."""
    b = doc[BINDING[kind]]
    if not isinstance(b, str) or len(b) != 64 or any(ch not in "0123456789abcdef" for ch in b):
        raise malformed(f"{BINDING[kind]} must be a SHA-256 digest as 64 lowercase hex chars")
    if kind == SETUP:
        if not isinstance(doc["mask_key"], str) or not isinstance(doc["enc_key"], str):
            raise malformed("mask_key and enc_key must be point hex strings")
        pr = doc["proofs"]
        if not isinstance(pr, dict) or set(pr) != {"mask", "enc"}:
            raise malformed('proofs must be {"mask": {...}, "enc": {...}}')
        _proof_shape(pr["mask"], "proofs.mask")
        _proof_shape(pr["enc"], "proofs.enc")
        c = doc["commitments"]
        if not isinstance(c, dict) or set(c) != {"self", "mask"}:
            raise malformed('commitments must be {"self": [...], "mask": [...]}')
        _str_list(c["self"], "commitments.self")
        _str_list(c["mask"], "commitments.mask")
        _str_list(doc["shares"], "shares")
    elif kind == INPUT:
        if not isinstance(doc["input"], dict):
            raise malformed("input must be an encoded array")
        if not is_int(doc["num_samples"]) or not 0 <= doc["num_samples"] < 2**53:
            raise malformed("num_samples must be a non-negative integer below 2^53")
        cs = doc["complaints"]
        if not isinstance(cs, list):
            raise malformed("complaints must be a list")
        for c in cs:
            if (not isinstance(c, dict) or set(c) != {"against", "point", "proof"}
                    or not isinstance(c["against"], str) or not isinstance(c["point"], str)):
                raise malformed('each complaint must be {"against": key, "point": hex, "proof": {...}}')
            _proof_shape(c["proof"], "a complaint's proof")
    else:
        _str_list(doc["self_shares"], "self_shares", nullable=True)
        _str_list(doc["mask_shares"], "mask_shares", nullable=True)
        seeds = doc["seeds"]
        if not isinstance(seeds, list):
            raise malformed("seeds must be a list")
        for s in seeds:
            if s is None:
                continue
            if not isinstance(s, dict) or set(s) != {"point", "proof"} or not isinstance(s["point"], str):
                raise malformed('each seed must be {"point": hex, "proof": {...}} or null')
            _proof_shape(s["proof"], "a seed's proof")


@dataclass(frozen=True)
class SecAggTx(SignedBody):
    kind: str                  # sa-setup | sa-input | sa-unmask (the body's "type")
    sender: str
    round: int
    base: str                  # digest of G(r-1)
    fields: dict               # the per-type fields, as they travel
    timestamp: int = 0
    signature: str = ""
    metrics: dict = field(default_factory=dict)  # SA txs carry none (the interface of a tx)
    compression: None = None
    is_skip = False

    # --- construction ---------------------------------------------------------------
    @classmethod
    def create(cls, key: crypto.PrivateKey, kind: str, round: int, base: str, fields: Mapping[str, Any],
               timestamp: int = 0) -> "SecAggTx":
        unsigned = cls(kind=kind, sender=key.public_hex, round=int(round), base=base, fields=dict(fields),
                       timestamp=int(timestamp))
        return unsigned.signed(key)

    def signed(self, key: crypto.PrivateKey) -> "SecAggTx":
        return SecAggTx(self.kind, self.sender, self.round, self.base, self.fields, self.timestamp,
                        key.sign_digest(self.id_bytes))

    @staticmethod
    def encode_input(y: np.ndarray) -> dict:
        return encode_array(np.ascontiguousarray(y, dtype="<u4").reshape(-1))

    # --- serialisation --------------------------------------------------------------
    def body(self) -> dict:
        return {"type": self.kind, "version": 1, "sender": self.sender, "round": self.round,
                "base": self.base, "timestamp": self.timestamp, **self.fields}

    @classmethod
    def parse(cls, doc: Any) -> "SecAggTx":
        """Build from a decoded JSON document, checking the shape of every field (tx-malformed)."""
        kind = check_common(doc, SA_TYPES, _FIELDS.get(doc.get("type") if isinstance(doc, dict) else None,
                                                        set()))
        _check_shape(kind, doc)
        tx = cls(kind=kind, sender=doc["sender"], round=doc["round"], base=doc["base"],
                 fields={k: doc[k] for k in sorted(_FIELDS[kind])}, timestamp=doc["timestamp"],
                 signature=doc["signature"])
        tx.check_canonical()
        check_sender_and_signature_types(doc)
        return tx

    @property
    def num_samples(self) -> int:
        return self.fields["num_samples"] if self.kind == INPUT else 0

    @property
    def phase(self) -> str:
        return PHASE_OF[self.kind]

    # --- parsed views (after check) --------------------------------------------------
    @cached_property
    def mask_key(self) -> ec.Point:
        return _point(self.fields["mask_key"], "mask_key")

    @cached_property
    def enc_key(self) -> ec.Point:
        return _point(self.fields["enc_key"], "enc_key")

    @cached_property
    def self_commitments(self) -> tuple[ec.Point, ...]:
        return tuple(_point(p, f"commitments.self[{j}]") for j, p in enumerate(self.fields["commitments"]["self"]))

    @cached_property
    def mask_commitments(self) -> tuple[ec.Point, ...]:
        return tuple(_point(p, f"commitments.mask[{j}]") for j, p in enumerate(self.fields["commitments"]["mask"]))

    @cached_property
    def sealed(self) -> tuple[bytes, ...]:
        out = []
        for j, text in enumerate(self.fields["shares"]):
            try:
                raw = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != SEALED_BYTES or base64.b64encode(raw).decode() != text:
                raise _sa_malformed(f"shares[{j}] must be {SEALED_BYTES} bytes as standard base64 "
                                    f"({SEALED_B64} chars)")
            out.append(raw)
        return tuple(out)

    @cached_property
    def input_array(self) -> np.ndarray:
        try:
            return decode_array(self.fields["input"]).astype(np.uint32)
        except EncodingError as exc:
            raise malformed(f"input: {exc}") from None

    @cached_property
    def complaints(self) -> tuple[tuple[str, ec.Point, dict], ...]:
        return tuple((c["against"], _point(c["point"], "complaint point"), c["proof"])
                     for c in self.fields["complaints"])

    @cached_property
    def self_shares(self) -> tuple[int | None, ...]:
        return tuple(None if s is None else _scalar(s, f"self_shares[{j}]")
                     for j, s in enumerate(self.fields["self_shares"]))

    @cached_property
    def mask_shares(self) -> tuple[int | None, ...]:
        return tuple(None if s is None else _scalar(s, f"mask_shares[{j}]")
                     for j, s in enumerate(self.fields["mask_shares"]))

    @cached_property
    def seeds(self) -> tuple[tuple[ec.Point, dict] | None, ...]:
        return tuple(None if s is None else (_point(s["point"], f"seeds[{j}].point"), s["proof"])
                     for j, s in enumerate(self.fields["seeds"]))

    # --- context-free checks ---------------------------------------------------------
    def check(self, threshold: int, d: int, max_bytes: int, verify_signature: bool = True) -> None:
        """Key, size, sample count, points and scalars, the lengths genesis fixes
        (``threshold`` commitments; an input of ``d`` uint32), D_0 = mask_key,
        ciphertext sizes, the setup's proofs of knowledge, sorted complaints; then, unless already done, the signature."""
        check_key_and_size(self.sender, self.size, max_bytes)
        if self.kind == SETUP:
            self._check_setup(threshold)
        elif self.kind == INPUT:
            self._check_input(d)
        else:
            _ = self.self_shares, self.mask_shares, self.seeds
        if verify_signature:
            self.verify_signature()

    def _check_setup(self, threshold: int) -> None:
        _ = self.mask_key, self.enc_key, self.self_commitments, self.mask_commitments
        if len(self.self_commitments) != threshold or len(self.mask_commitments) != threshold:
            raise _sa_malformed(f"commitments must list t={threshold} points each, got "
                                f"{len(self.self_commitments)} and {len(self.mask_commitments)}")
        if self.fields["commitments"]["mask"][0] != self.fields["mask_key"]:
            raise _sa_malformed("commitments.mask[0] (D_0) must equal mask_key")
        _ = self.sealed
        me = bytes.fromhex(self.sender)
        for name, point, what in (("mask", self.mask_key, "m (mask_key)"), ("enc", self.enc_key, "e (enc_key)")):
            if not ec.pok_verify(point, self.round, me, self.fields["proofs"][name]):
                raise ValidationError(errors.SA_BAD_PROOF, f"proofs.{name}: the proof of knowledge of {what} fails")

    def _check_input(self, d: int) -> None:
        if self.num_samples < 1:
            raise ValidationError(errors.TX_BAD_SAMPLES, "num_samples must be at least 1")
        _ = self.complaints
        against = [c[0] for c in self.complaints]
        for key in against:
            _point(key, "complaint against")
        if against != sorted(set(against)):
            raise _sa_malformed("complaints must be sorted by against, at most one each")
        if self.sender in against:
            raise _sa_malformed("a member cannot complain against itself")
        enc = self.fields["input"]
        if isinstance(enc, dict) and enc.get("shape") != [d]:
            raise ValidationError(errors.TX_SHAPE_MISMATCH, f"input must have shape [{d}], got {enc.get('shape')!r}")
        if isinstance(enc, dict) and enc.get("dtype") != "<u4":
            raise ValidationError(errors.TX_DTYPE_MISMATCH, f"input must be <u4, got {enc.get('dtype')!r}")
        if self.input_array.shape != (d,):
            raise ValidationError(errors.TX_SHAPE_MISMATCH, f"input must have shape [{d}]")

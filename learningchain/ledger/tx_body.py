"""What every transaction type shares: the common body fields (type, version,
sender, round, base, timestamp), the id (SHA-256 of the canonical body), the
signature over it, and the wire size (docs/protocol.md section 3).

:class:`~learningchain.ledger.tx.UpdateTx` keeps its own byte-for-byte form;
the secure-aggregation txs (:mod:`learningchain.ledger.secagg_tx`) build on
:class:`SignedBody`.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any

from learningchain.core import crypto, errors
from learningchain.core.encoding import EncodingError, canonical_json, is_hex, sha256
from learningchain.core.errors import ValidationError

TX_VERSION = 1
COMMON_FIELDS = ("type", "version", "sender", "round", "base", "timestamp")
_SIGNATURE_MEMBER = b',"signature":'


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def malformed(detail: str) -> ValidationError:
    return ValidationError(errors.TX_MALFORMED, detail)


def check_common(doc: Any, kinds: tuple[str, ...], fields: set[str]) -> str:
    """The common part of parsing: a JSON object of one of ``kinds`` at version 1
    with exactly ``fields`` (+ signature), integers below 2^53, a hex base. Returns the kind."""
    if not isinstance(doc, dict):
        raise malformed("a transaction must be a JSON object")
    kind, version = doc.get("type"), doc.get("version")
    if kind not in kinds or not is_int(version) or version != TX_VERSION:
        raise malformed(f"type must be one of {', '.join(kinds)} and version {TX_VERSION}")
    want = set(COMMON_FIELDS) | fields | {"signature"}
    missing, extra = want - set(doc), set(doc) - want
    if missing:
        raise malformed(f"missing field(s): {', '.join(sorted(missing))}")
    if extra:
        raise malformed(f"unknown field(s): {', '.join(sorted(extra))}")
    for name in ("round", "timestamp"):
        if not is_int(doc[name]) or not 0 <= doc[name] < 2**53:
            raise malformed(f"{name} must be a non-negative integer below 2^53")
    if not is_hex(doc["base"], 32):
        raise malformed("base must be a 64-char lowercase hex digest")
    return kind


def check_sender_and_signature_types(doc: dict) -> None:
    """After every tx-malformed check (protocol.md section 3): the sender a string, the signature a string."""
    if not isinstance(doc["sender"], str):
        raise ValidationError(errors.TX_MALFORMED_KEY, "sender must be a hex public key")
    if not isinstance(doc["signature"], str):
        raise ValidationError(errors.TX_BAD_SIGNATURE, "signature must be a DER hex string")


def verify_signature(sender: str, id_bytes: bytes, signature: str) -> None:
    try:
        crypto.verify(sender, id_bytes, signature)
    except crypto.InvalidKey as exc:
        raise ValidationError(errors.TX_MALFORMED_KEY, str(exc)) from None
    except crypto.InvalidSignature as exc:
        raise ValidationError(errors.TX_BAD_SIGNATURE, str(exc)) from None


def check_key_and_size(sender: str, size: int, max_bytes: int) -> None:
    try:
        crypto.check_public_key(sender)
    except crypto.InvalidKey as exc:
        raise ValidationError(errors.TX_MALFORMED_KEY, str(exc)) from None
    if size > max_bytes:
        raise ValidationError(errors.TX_TOO_LARGE, f"transaction is {size} bytes, limit {max_bytes}")


class SignedBody:
    """Mixin of a frozen dataclass with ``sender``, ``signature`` and a ``body()``:
    its id, wire form, size and signature check."""
    sender: str
    signature: str

    def body(self) -> dict:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _encode_body(self) -> None:
        """Encode the body once, for both the id and the wire size: the encoding
        is the costly part of either (~75 us for a 13 kB update) and is not kept
        (a tx in memory holds its weights once)."""
        encoded = canonical_json(self.body())
        self.__dict__["id_bytes"] = sha256(encoded)
        self.__dict__["_body_bytes"] = len(encoded)

    @cached_property
    def id_bytes(self) -> bytes:
        self._encode_body()
        return self.__dict__["id_bytes"]

    @cached_property
    def id(self) -> str:
        return self.id_bytes.hex()

    def to_dict(self) -> dict:
        return {**self.body(), "signature": self.signature}

    def serialize(self) -> bytes:
        return canonical_json(self.to_dict())

    @cached_property
    def size(self) -> int:
        """Bytes on the wire (canonical form), the figure size limits apply to:
        ``len(serialize())``, counted without encoding the body again. The
        canonical object with the ``"signature"`` member is the body's with
        ``,"signature":<the signature as a JSON string>`` added (the body is never
        empty, and members are sorted, so only the position differs)."""
        if "_body_bytes" not in self.__dict__:
            self._encode_body()
        return self.__dict__["_body_bytes"] + len(_SIGNATURE_MEMBER) + len(canonical_json(self.signature))

    def verify_signature(self) -> None:
        verify_signature(self.sender, self.id_bytes, self.signature)

    def check_canonical(self) -> None:
        """tx-malformed unless the body encodes canonically (it then also yields the id)."""
        try:
            self._encode_body()
        except EncodingError as exc:
            raise malformed(str(exc)) from None

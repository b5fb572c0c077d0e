"""Identities: ECDSA keys on secp256k1, signatures over SHA-256.

Wire forms (docs/protocol.md, "Keys and signatures"):

* public key: SEC1 *compressed* point, 33 bytes, as lowercase hex (66 chars);
* signature: strict DER ``SEQUENCE{INTEGER r, INTEGER s}`` as lowercase hex,
  with *low S* (``s <= n/2``). High-S or any non-minimal DER is rejected, so a
  signature has exactly one valid encoding (no malleability) and libsecp256k1,
  OpenSSL and python-ecdsa all agree on validity;
* what is signed is always a 32-byte SHA-256 digest (a transaction id), signed
  deterministically (RFC 6979);
* address: the first 20 bytes of SHA-256(compressed public key), as 40 hex chars.

Verification dominates the ledger's CPU time, so verifying keys are built with
their curve order, ``precompute()``-d and cached per sender (FACTS.md: about 2x).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import ecdsa
from ecdsa import SECP256k1, SigningKey, VerifyingKey, ellipticcurve
from ecdsa.util import sigdecode_der, sigencode_der, sigencode_der_canonize


CURVE = SECP256k1
ORDER = SECP256k1.order
HALF_ORDER = ORDER // 2


class InvalidKey(ValueError):
    """The bytes are not a valid secp256k1 key (a compressed public key, or a PEM private key)."""


class WrongCurve(InvalidKey):
    """A well-formed EC key on another curve than secp256k1."""


class InvalidSignature(ValueError):
    """The signature is malformed, not canonical, or does not verify."""


@lru_cache(maxsize=4096)
def _parse_point(pubkey_hex: str) -> VerifyingKey:
    """Decode and check the point only (decompression, ~0.1 ms). Header miner keys
    use this: they are never verified against, so the ~2 ms of ``precompute()``
    would be a gift to whoever sends headers with many fresh keys."""
    try:
        raw = bytes.fromhex(pubkey_hex)
    except (ValueError, TypeError):
        raise InvalidKey("public key is not hex") from None
    if raw.hex() != pubkey_hex:
        raise InvalidKey("public key hex must be lowercase (one spelling per key)")
    if len(raw) != 33 or raw[0] not in (2, 3):
        raise InvalidKey("public key must be a 33-byte SEC1 compressed point")
    try:
        return VerifyingKey.from_string(raw, curve=CURVE, hashfunc=hashlib.sha256)
    except (ecdsa.MalformedPointError, ValueError, AssertionError):
        raise InvalidKey("public key is not a point on secp256k1") from None


def check_public_key(pubkey_hex: str) -> None:
    """Raise InvalidKey unless ``pubkey_hex`` is a lowercase compressed secp256k1
    point (docs/protocol.md section 2). Cached, and cheaper than
    :func:`parse_public_key` because it does not precompute."""
    if not isinstance(pubkey_hex, str):
        raise InvalidKey("public key must be a hex string")
    _parse_point(pubkey_hex)


@lru_cache(maxsize=4096)
def _verifying_key(pubkey_hex: str) -> VerifyingKey:
    parsed = _parse_point(pubkey_hex)
    # from_string keys lack the curve order and cannot precompute (FACTS.md trap).
    p = parsed.pubkey.point
    point = ellipticcurve.Point(CURVE.curve, p.x(), p.y(), ORDER)
    vk = VerifyingKey.from_public_point(point, curve=CURVE, hashfunc=hashlib.sha256)
    vk.precompute()
    return vk


def parse_public_key(pubkey_hex: str) -> VerifyingKey:
    """The cached, precomputed verifying key for a hex public key (or InvalidKey)."""
    if not isinstance(pubkey_hex, str):
        raise InvalidKey("public key must be a hex string")
    return _verifying_key(pubkey_hex)


def address(pubkey_hex: str) -> str:
    """Short address: hex of the first 20 bytes of SHA-256(compressed key)."""
    return hashlib.sha256(bytes.fromhex(pubkey_hex)).hexdigest()[:40]


def verify(pubkey_hex: str, digest: bytes, signature_hex: str) -> None:
    """Raise InvalidKey or InvalidSignature unless ``signature_hex`` is the
    canonical low-S DER signature of ``digest`` by ``pubkey_hex``."""
    vk = parse_public_key(pubkey_hex)
    if not isinstance(signature_hex, str) or len(signature_hex) > 144:
        raise InvalidSignature("signature must be a DER hex string of at most 72 bytes")
    try:
        sig = bytes.fromhex(signature_hex)
    except ValueError:
        raise InvalidSignature("signature is not hex") from None
    if sig.hex() != signature_hex:
        raise InvalidSignature("signature hex must be lowercase")
    try:
        r, s = sigdecode_der(sig, ORDER)
    except Exception:  # ecdsa raises several DER error types
        raise InvalidSignature("signature is not valid DER") from None
    if not (1 <= r < ORDER and 1 <= s < ORDER):
        raise InvalidSignature("signature r or s out of range")
    if s > HALF_ORDER:
        raise InvalidSignature("signature has high S (only low-S signatures are canonical)")
    if sigencode_der(r, s, ORDER) != sig:
        raise InvalidSignature("signature DER is not minimal")
    try:
        ok = vk.verify_digest(sig, digest, sigdecode=sigdecode_der)
    except ecdsa.BadSignatureError:
        ok = False
    if not ok:
        raise InvalidSignature("signature does not verify against the sender's key")


class PrivateKey:
    """A node's signing key. Never serialised anywhere but its PEM file."""

    def __init__(self, sk: SigningKey):
        self._sk = sk
        self.public_hex = sk.get_verifying_key().to_string("compressed").hex()
        self.address = address(self.public_hex)

    @classmethod
    def generate(cls) -> "PrivateKey":
        return cls(SigningKey.generate(curve=CURVE, hashfunc=hashlib.sha256))

    @classmethod
    def from_secret(cls, secret: int) -> "PrivateKey":
        """Deterministic key for simulations and tests (never for real nodes)."""
        return cls(SigningKey.from_secret_exponent(secret % (ORDER - 1) + 1, curve=CURVE,
                                                   hashfunc=hashlib.sha256))

    def sign_digest(self, digest: bytes) -> str:
        """Deterministic (RFC 6979), low-S, DER hex signature of a 32-byte digest."""
        sig = self._sk.sign_digest_deterministic(digest, hashfunc=hashlib.sha256,
                                                 sigencode=sigencode_der_canonize)
        return sig.hex()

    def secret_scalar(self) -> int:
        """The secret exponent, for secure aggregation's ECDH only (the keys of the
        shares a dealer seals to this member, and the proofs of a complaint;
        docs/protocol.md section 14.2). Never serialised."""
        return int(self._sk.privkey.secret_multiplier)

    def to_pem(self) -> bytes:
        return self._sk.to_pem()

    @classmethod
    def from_pem(cls, data: bytes) -> "PrivateKey":
        """The key in PEM ``data``; :class:`InvalidKey` if it is no PEM EC key,
        :class:`WrongCurve` if it is one on another curve."""
        try:
            sk = SigningKey.from_pem(data, hashfunc=hashlib.sha256)
        except Exception:
            raise InvalidKey("not a valid PEM EC key") from None
        if sk.curve != CURVE:
            raise WrongCurve("not a key on secp256k1")
        return cls(sk)

    def __repr__(self) -> str:  # never show the secret
        return f"PrivateKey(address={self.address})"

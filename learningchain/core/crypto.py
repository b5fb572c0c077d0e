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

Two backends do the curve arithmetic (decompressing a key, the ECDSA equation,
signing): libsecp256k1 through ``coincurve`` (the default, ~20x faster) and
python-ecdsa (fixed by the product owner for key generation and PEM files; the
fallback when ``coincurve`` does not import). Select one with the environment
variable ``LEARNINGCHAIN_ECDSA_BACKEND=coincurve|python-ecdsa`` (read at import)
or :func:`use_backend`. Every format rule above (hex, lengths, DER, ranges, low
S) is checked here in Python *before* the backend is asked, by the same code for
both, so the two accept and reject exactly the same inputs with the same
messages; RFC 6979 makes their signatures byte-identical
(tests/core/test_crypto.py checks both on the same vectors).

Parsed keys are cached per sender in a bounded LRU (4,096 keys): an attacker
can send many fresh keys, and python-ecdsa's precomputed keys are ~90 kB each.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from typing import Any

import ecdsa
from ecdsa import SECP256k1, SigningKey, VerifyingKey, ellipticcurve
from ecdsa.util import sigencode_der_canonize

try:  # libsecp256k1; python-ecdsa stands in when it is missing
    import coincurve
except ImportError:  # pragma: no cover - coincurve is in requirements.txt
    coincurve = None


CURVE = SECP256k1
ORDER = int(SECP256k1.order)  # a plain int (the curve's is an mpz when gmpy2 is active)
HALF_ORDER = ORDER // 2
BACKENDS = ("coincurve", "python-ecdsa")
ENV_VAR = "LEARNINGCHAIN_ECDSA_BACKEND"


class InvalidKey(ValueError):
    """The bytes are not a valid secp256k1 key (a compressed public key, or a PEM private key)."""


class WrongCurve(InvalidKey):
    """A well-formed EC key on another curve than secp256k1."""


class InvalidSignature(ValueError):
    """The signature is malformed, not canonical, or does not verify."""


# --- the two backends: only curve arithmetic, on inputs already checked -------------------
class _Coincurve:
    name = "coincurve"

    @staticmethod
    def parse(raw: bytes) -> Any:
        """The point of a 33-byte compressed key; ValueError if x is not on the curve."""
        return coincurve.PublicKey(raw)

    @staticmethod
    def verifier(parsed: Any) -> Any:
        return parsed  # nothing to precompute: libsecp256k1 is fast on a bare point

    @staticmethod
    def verify(key: Any, digest: bytes, sig: bytes, r: int, s: int) -> bool:
        try:
            return key.verify(sig, digest, hasher=None)
        except ValueError:  # unparsable DER; cannot happen after der_decode, but never accept
            return False

    @staticmethod
    def signer(sk: SigningKey) -> Any:
        return coincurve.PrivateKey(int(sk.privkey.secret_multiplier).to_bytes(32, "big"))

    @staticmethod
    def sign(signer: Any, digest: bytes) -> bytes:
        # libsecp256k1's default nonce is RFC 6979 (HMAC-SHA256), and it normalises to low S
        return signer.sign(digest, hasher=None)


class _PythonEcdsa:
    name = "python-ecdsa"

    @staticmethod
    def parse(raw: bytes) -> Any:
        try:
            return VerifyingKey.from_string(raw, curve=CURVE, hashfunc=hashlib.sha256)
        except (ecdsa.MalformedPointError, AssertionError) as exc:
            raise ValueError(str(exc)) from None

    @staticmethod
    def verifier(parsed: Any) -> Any:
        # from_string keys lack the curve order and cannot precompute (FACTS.md trap).
        p = parsed.pubkey.point
        point = ellipticcurve.Point(CURVE.curve, p.x(), p.y(), ORDER)
        vk = VerifyingKey.from_public_point(point, curve=CURVE, hashfunc=hashlib.sha256)
        vk.precompute()  # ~2x faster verification (FACTS.md)
        return vk

    @staticmethod
    def verify(key: Any, digest: bytes, sig: bytes, r: int, s: int) -> bool:
        return bool(key.pubkey.verifies(int.from_bytes(digest, "big"), ecdsa.ecdsa.Signature(r, s)))

    @staticmethod
    def signer(sk: SigningKey) -> Any:
        return sk

    @staticmethod
    def sign(signer: Any, digest: bytes) -> bytes:
        return signer.sign_digest_deterministic(digest, hashfunc=hashlib.sha256,
                                                sigencode=sigencode_der_canonize)


_BY_NAME = {"coincurve": _Coincurve, "python-ecdsa": _PythonEcdsa}
_backend: Any = _PythonEcdsa


def backend() -> str:
    """The name of the backend in use: ``coincurve`` or ``python-ecdsa``."""
    return _backend.name


def use_backend(name: str) -> None:
    """Switch the backend (and drop the cached keys, which are the backend's objects).
    ValueError for an unknown name, or for ``coincurve`` when it does not import."""
    global _backend
    if name not in _BY_NAME:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(BACKENDS)}, not {name!r}")
    if name == "coincurve" and coincurve is None:
        raise ValueError("the coincurve backend is not installed")
    _backend = _BY_NAME[name]
    _parse_point.cache_clear()
    _verifying_key.cache_clear()


# --- keys ---------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _parse_point(pubkey_hex: str) -> Any:
    """Decode and check the point only. Header miner keys use this: they are never
    verified against, so python-ecdsa's ~2 ms ``precompute()`` would be a gift to
    whoever sends headers with many fresh keys."""
    try:
        raw = bytes.fromhex(pubkey_hex)
    except (ValueError, TypeError):
        raise InvalidKey("public key is not hex") from None
    if raw.hex() != pubkey_hex:
        raise InvalidKey("public key hex must be lowercase (one spelling per key)")
    if len(raw) != 33 or raw[0] not in (2, 3):
        raise InvalidKey("public key must be a 33-byte SEC1 compressed point")
    try:
        return _backend.parse(raw)
    except ValueError:
        raise InvalidKey("public key is not a point on secp256k1") from None


def check_public_key(pubkey_hex: str) -> None:
    """Raise InvalidKey unless ``pubkey_hex`` is a lowercase compressed secp256k1
    point (docs/protocol.md section 2). Cached, and with python-ecdsa cheaper than
    :func:`parse_public_key` because it does not precompute."""
    if not isinstance(pubkey_hex, str):
        raise InvalidKey("public key must be a hex string")
    _parse_point(pubkey_hex)


@lru_cache(maxsize=4096)
def _verifying_key(pubkey_hex: str) -> Any:
    return _backend.verifier(_parse_point(pubkey_hex))


def parse_public_key(pubkey_hex: str) -> Any:
    """The cached verifying key (the backend's object) for a hex public key, or InvalidKey."""
    if not isinstance(pubkey_hex, str):
        raise InvalidKey("public key must be a hex string")
    return _verifying_key(pubkey_hex)


def address(pubkey_hex: str) -> str:
    """Short address: hex of the first 20 bytes of SHA-256(compressed key)."""
    return hashlib.sha256(bytes.fromhex(pubkey_hex)).hexdigest()[:40]


# --- signatures ---------------------------------------------------------------------------
def _der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # minimal, sign byte when needed
    return b"\x02" + bytes((len(body),)) + body


def der_encode(r: int, s: int) -> bytes:
    """The minimal DER ``SEQUENCE{INTEGER r, INTEGER s}`` of two positive integers."""
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes((len(body),)) + body


def der_decode(signature_hex: Any) -> tuple[bytes, int, int]:
    """(DER bytes, r, s) of a signature that passes every format rule of
    docs/protocol.md section 2 (lowercase hex, at most 72 bytes, 1 <= r, s < n,
    low S, exactly the minimal DER of (r, s)); InvalidSignature otherwise."""
    if not isinstance(signature_hex, str) or len(signature_hex) > 144:
        raise InvalidSignature("signature must be a DER hex string of at most 72 bytes")
    try:
        sig = bytes.fromhex(signature_hex)
    except ValueError:
        raise InvalidSignature("signature is not hex") from None
    if sig.hex() != signature_hex:
        raise InvalidSignature("signature hex must be lowercase")
    # SEQUENCE, short length = the rest; INTEGER r; INTEGER s; nothing after
    n = len(sig)
    if n < 8 or sig[0] != 0x30 or sig[1] != n - 2 or sig[2] != 0x02:
        raise InvalidSignature("signature is not valid DER")
    end_r = 4 + sig[3]
    if end_r + 2 > n or sig[end_r] != 0x02 or end_r + 2 + sig[end_r + 1] != n:
        raise InvalidSignature("signature is not valid DER")
    r = int.from_bytes(sig[4:end_r], "big")
    s = int.from_bytes(sig[end_r + 2:], "big")
    if not (1 <= r < ORDER and 1 <= s < ORDER):
        raise InvalidSignature("signature r or s out of range")
    if s > HALF_ORDER:
        raise InvalidSignature("signature has high S (only low-S signatures are canonical)")
    if der_encode(r, s) != sig:  # padded, negative or long-form integers
        raise InvalidSignature("signature DER is not minimal")
    return sig, r, s


def verify(pubkey_hex: str, digest: bytes, signature_hex: str) -> None:
    """Raise InvalidKey or InvalidSignature unless ``signature_hex`` is the
    canonical low-S DER signature of the 32-byte ``digest`` by ``pubkey_hex``."""
    key = parse_public_key(pubkey_hex)
    sig, r, s = der_decode(signature_hex)
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise InvalidSignature("the signed digest must be 32 bytes")
    if not _backend.verify(key, digest, sig, r, s):
        raise InvalidSignature("signature does not verify against the sender's key")


class PrivateKey:
    """A node's signing key (python-ecdsa, for generation and PEM). Never
    serialised anywhere but its PEM file."""

    def __init__(self, sk: SigningKey):
        self._sk = sk
        self.public_hex = sk.get_verifying_key().to_string("compressed").hex()
        self.address = address(self.public_hex)
        self._signer: Any = None  # the backend's signing key, made on first use

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
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise ValueError("the signed digest must be 32 bytes")
        if self._signer is None or self._signer[0] is not _backend:
            self._signer = (_backend, _backend.signer(self._sk))
        return _backend.sign(self._signer[1], digest).hex()

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


def _default_backend() -> str:
    """The backend named by the environment; coincurve when unset, python-ecdsa
    when coincurve does not import."""
    name = os.environ.get(ENV_VAR) or "coincurve"
    return "python-ecdsa" if name == "coincurve" and coincurve is None else name


use_backend(_default_backend())

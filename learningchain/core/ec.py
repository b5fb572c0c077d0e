"""Point arithmetic on secp256k1 for secure aggregation (libsecp256k1 through
``coincurve``): parsing and writing points and scalars, k·P, sums of points,
and Chaum–Pedersen proofs that two points share one discrete log (DLEQ).

A point is a ``coincurve.PublicKey``; ``None`` stands for the point at
infinity, which never travels (docs/protocol.md section 14.2).
"""
from __future__ import annotations

import hashlib

from coincurve import PrivateKey, PublicKey
from coincurve.utils import GROUP_ORDER_INT

#: the order n of secp256k1's group
N = GROUP_ORDER_INT
Point = PublicKey


def parse_point(text: object) -> Point:
    """A compressed point from 66 lowercase hex chars; ValueError otherwise."""
    if not isinstance(text, str) or len(text) != 66 or text != text.lower() or text[:2] not in ("02", "03"):
        raise ValueError("a point is 66 lowercase hex chars of a compressed SEC1 key (02/03 prefix)")
    try:
        return PublicKey(bytes.fromhex(text))
    except ValueError:
        raise ValueError("not a point on secp256k1") from None


def point_bytes(p: Point) -> bytes:
    return p.format(compressed=True)


def point_hex(p: Point) -> str:
    return point_bytes(p).hex()


def parse_scalar(text: object) -> int:
    """A scalar in [0, n) from 64 lowercase hex chars; ValueError otherwise."""
    if not isinstance(text, str) or len(text) != 64 or text != text.lower():
        raise ValueError("a scalar is 64 lowercase hex chars")
    try:
        k = int(text, 16)
    except ValueError:
        raise ValueError("a scalar is 64 lowercase hex chars") from None
    if k >= N:
        raise ValueError("a scalar must be below the group order")
    return k


def scalar_bytes(k: int) -> bytes:
    return (k % N).to_bytes(32, "big")


def scalar_hex(k: int) -> str:
    return scalar_bytes(k).hex()


def base_mul(k: int) -> Point | None:
    """k·G."""
    k %= N
    return None if k == 0 else PrivateKey(scalar_bytes(k)).public_key


def mul(p: Point | None, k: int) -> Point | None:
    """k·P (None, the point at infinity, when k = 0 mod n or P is)."""
    k %= N
    if k == 0 or p is None:
        return None
    return p.multiply(scalar_bytes(k))


def add(*points: Point | None) -> Point | None:
    """The sum of the points (None terms skipped; None if the sum is infinity)."""
    terms = [p for p in points if p is not None]
    if not terms:
        return None
    if len(terms) == 1:
        return terms[0]
    try:
        return PublicKey.combine_keys(terms)
    except ValueError:  # the sum is the point at infinity
        return None


def same(p: Point | None, q: Point | None) -> bool:
    if p is None or q is None:
        return p is None and q is None
    return point_bytes(p) == point_bytes(q)


def _challenge(*points: Point) -> int:
    h = hashlib.sha256(b"learningchain-dleq")
    for p in points:
        h.update(point_bytes(p))
    return int.from_bytes(h.digest(), "big") % N


def dleq_prove(a: int, p: Point) -> tuple[Point, dict]:
    """K = a·P and a proof that log_G(a·G) = log_P(K) (docs/protocol.md 14.2)."""
    a %= N
    big_a, k_point = base_mul(a), mul(p, a)
    nonce = int.from_bytes(hashlib.sha256(b"learningchain-dleq-nonce" + scalar_bytes(a) + point_bytes(p)
                                          + point_bytes(k_point)).digest(), "big") % N
    if nonce == 0:  # probability 2^-256
        nonce = 1
    u, v = base_mul(nonce), mul(p, nonce)
    c = _challenge(big_a, p, k_point, u, v)
    z = (nonce + c * a) % N
    return k_point, {"c": scalar_hex(c), "z": scalar_hex(z)}


def _proof_scalars(proof: object) -> tuple[int, int] | None:
    """(c, z) of a proof {"c": hex32, "z": hex32}, both in [1, n); None if malformed."""
    if not isinstance(proof, dict) or set(proof) != {"c", "z"}:
        return None
    try:
        c, z = parse_scalar(proof["c"]), parse_scalar(proof["z"])
    except ValueError:
        return None
    return None if c == 0 or z == 0 else (c, z)


def dleq_verify(big_a: Point, p: Point, k_point: Point, proof: object) -> bool:
    """Whether ``proof`` shows log_G(A) = log_P(K). Malformed proofs are False."""
    parsed = _proof_scalars(proof)
    if parsed is None:
        return False
    c, z = parsed
    u = add(base_mul(z), mul(big_a, N - c))
    v = add(mul(p, z), mul(k_point, N - c))
    if u is None or v is None:
        return False
    return _challenge(big_a, p, k_point, u, v) == c


def _pok_challenge(round: int, sender: bytes, p: Point, r: Point) -> int:
    h = hashlib.sha256(b"learningchain-secagg-pok" + int(round).to_bytes(8, "big") + sender
                       + point_bytes(p) + point_bytes(r))
    return int.from_bytes(h.digest(), "big") % N


def pok_prove(a: int, round: int, sender: bytes) -> dict:
    """A Schnorr proof of knowledge of a = log_G(a·G), bound to the round and the
    sender's 33-byte key (docs/protocol.md 14.2): {"c", "z"} with z = k + c·a."""
    a %= N
    p = base_mul(a)
    nonce = int.from_bytes(hashlib.sha256(b"learningchain-secagg-pok-nonce" + scalar_bytes(a)
                                          + int(round).to_bytes(8, "big") + sender).digest(), "big") % N
    if nonce == 0:  # probability 2^-256
        nonce = 1
    c = _pok_challenge(round, sender, p, base_mul(nonce))
    return {"c": scalar_hex(c), "z": scalar_hex((nonce + c * a) % N)}


def pok_verify(p: Point, round: int, sender: bytes, proof: object) -> bool:
    """Whether ``proof`` shows knowledge of log_G(P): R' = z·G - c·P, c == H(.., R')."""
    parsed = _proof_scalars(proof)
    if parsed is None:
        return False
    c, z = parsed
    r = add(base_mul(z), mul(p, N - c))
    if r is None:
        return False
    return _pok_challenge(round, sender, p, r) == c

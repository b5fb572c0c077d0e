"""Shamir secret sharing over the scalars of secp256k1 with Feldman commitments:
a dealer shares a secret among indexed members so that any ``t`` shares
rebuild it, and anyone can check a revealed share against the dealer's
commitments without learning the secret (docs/protocol.md section 14.2).
"""
from __future__ import annotations

import secrets
from typing import Callable, Mapping, Sequence

from learningchain.core.ec import N, Point, add, base_mul, mul, same


def random_scalar(randbelow: Callable[[int], int] = secrets.randbelow) -> int:
    """Uniform in [1, n)."""
    return 1 + randbelow(N - 1)


def deal(secret: int, t: int, indices: Sequence[int],
         randbelow: Callable[[int], int] = secrets.randbelow) -> tuple[list[Point], dict[int, int]]:
    """Commitments ``[a_j·G]`` of a random polynomial of degree t-1 with constant
    ``secret`` and its shares ``{i: f(i)}`` for each index (1-based, distinct)."""
    if not 1 <= t or not 0 < secret < N:
        raise ValueError("threshold must be >= 1 and the secret in [1, n)")
    coeffs = [secret] + [random_scalar(randbelow) for _ in range(t - 1)]
    commitments = [base_mul(a) for a in coeffs]
    shares = {i: evaluate(coeffs, i) for i in indices}
    return commitments, shares  # type: ignore[return-value]


def evaluate(coeffs: Sequence[int], x: int) -> int:
    acc = 0
    for a in reversed(coeffs):
        acc = (acc * x + a) % N
    return acc


def public_share(i: int, commitments: Sequence[Point]) -> Point | None:
    """``f(i)·G`` from the commitments alone: Σ_j (i^j mod n)·C_j."""
    return add(*(mul(c, pow(i, j, N)) for j, c in enumerate(commitments)))


def verify_share(share: int, i: int, commitments: Sequence[Point]) -> bool:
    """Whether ``share`` is f(i) for the committed polynomial."""
    return same(base_mul(share), public_share(i, commitments))


def reconstruct(shares: Mapping[int, int]) -> int:
    """f(0) from ``{i: f(i)}`` (exactly t shares of a degree t-1 polynomial), by
    Lagrange interpolation mod n."""
    xs = list(shares)
    if len(set(xs)) != len(xs) or any(x % N == 0 for x in xs):
        raise ValueError("share indices must be distinct and non-zero")
    total = 0
    for i in xs:
        num, den = 1, 1
        for j in xs:
            if j != i:
                num = num * (-j) % N
                den = den * (i - j) % N
        total = (total + shares[i] * num * pow(den, -1, N)) % N
    return total

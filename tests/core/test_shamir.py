"""Shamir sharing with Feldman commitments (learningchain/core/shamir.py): any t
shares rebuild the secret, fewer do not, and a revealed share is checked
against the dealer's commitments."""
import itertools
import random

import pytest

from learningchain.core import ec, shamir


def rng(seed):
    r = random.Random(seed)
    return lambda n: r.randrange(n)


def test_any_t_shares_rebuild_the_secret_and_t_minus_1_do_not():
    secret = 0x1F2E3D4C5B6A
    commitments, shares = shamir.deal(secret, 3, range(1, 6), rng(1))
    assert len(commitments) == 3 and ec.same(commitments[0], ec.base_mul(secret))
    for subset in itertools.combinations(shares, 3):
        assert shamir.reconstruct({i: shares[i] for i in subset}) == secret
    assert shamir.reconstruct({i: shares[i] for i in (1, 2)}) != secret


def test_feldman_accepts_true_shares_and_refuses_any_other():
    commitments, shares = shamir.deal(12345, 4, range(1, 8), rng(2))
    assert all(shamir.verify_share(s, i, commitments) for i, s in shares.items())
    assert not shamir.verify_share(shares[3] + 1, 3, commitments)
    assert not shamir.verify_share(shares[3], 4, commitments)          # another member's share
    other, _ = shamir.deal(12345, 4, range(1, 8), rng(3))
    assert not shamir.verify_share(shares[3], 3, other)                 # another polynomial


def test_a_zero_share_is_checked_too():
    # f(x) = s + a x with f(1) = 0: a = -s
    s = 99
    commitments = [ec.base_mul(s), ec.base_mul(ec.N - s)]
    assert shamir.verify_share(0, 1, commitments)
    assert not shamir.verify_share(0, 2, commitments)


def test_refusals():
    with pytest.raises(ValueError):
        shamir.deal(0, 2, [1, 2])
    with pytest.raises(ValueError):
        shamir.reconstruct({1: 5, 1 + ec.N: 6})
    with pytest.raises(ValueError):
        shamir.reconstruct({0: 5, 2: 6})

"""Secure aggregation's symmetric parts (learningchain/core/secagg_crypto.py):
share keys depend on every input, a sealed pair of shares opens only with its
key and untouched, and the PRG is the ChaCha20 keystream."""
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from learningchain.core import secagg_crypto as sc

A, B = b"\x02" + b"a" * 32, b"\x03" + b"b" * 32


def test_share_keys_differ_by_round_direction_and_secret():
    k = sc.share_key(b"x" * 32, 1, A, B)
    assert len(k) == 32
    assert len({k, sc.share_key(b"x" * 32, 2, A, B), sc.share_key(b"x" * 32, 1, B, A),
                sc.share_key(b"y" * 32, 1, A, B)}) == 4


def test_sealed_shares_open_only_with_their_key_and_untouched():
    key = sc.share_key(b"x" * 32, 1, A, B)
    sealed = sc.seal_shares(key, 5, 2**255 + 7)
    assert len(sealed) == sc.SEALED_BYTES
    assert sc.open_shares(key, sealed) == (5, 2**255 + 7)
    assert sc.open_shares(sc.share_key(b"y" * 32, 1, A, B), sealed) is None
    for i in (0, 40, 79):
        flipped = bytearray(sealed)
        flipped[i] ^= 1
        assert sc.open_shares(key, bytes(flipped)) is None
    assert sc.open_shares(key, sealed[:-1]) is None


def test_prg_is_the_chacha20_keystream_as_little_endian_uint32():
    seed = bytes(range(32))
    out = sc.prg(seed, 1000)
    assert out.dtype == np.uint32 and out.shape == (1000,)
    stream = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor().update(bytes(4000))
    assert out.tobytes() == np.frombuffer(stream, "<u4").tobytes()
    assert np.array_equal(sc.prg(seed, 10), out[:10])
    assert not np.array_equal(sc.prg(bytes(32), 10), out[:10])


def test_seeds_are_domain_separated():
    assert sc.self_seed(5) != sc.self_seed(6)
    assert sc.pair_seed(1, A) != sc.pair_seed(2, A) != sc.pair_seed(1, B)
    assert len(sc.self_seed(5)) == len(sc.pair_seed(1, A)) == 32

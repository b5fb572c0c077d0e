"""The symmetric parts of secure aggregation, all from ``cryptography``
(OpenSSL): the key that encrypts a dealer's shares to one recipient (HKDF-SHA256
of their ECDH value), the encryption itself (ChaCha20-Poly1305), and the
pseudo-random generator that expands a seed into a mask (the ChaCha20 keystream).
Byte layouts: docs/protocol.md section 14.2.
"""
from __future__ import annotations

import hashlib

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SHARE_INFO = b"learningchain-secagg-share"
SELF_TAG = b"learningchain-secagg-self"
PAIR_TAG = b"learningchain-secagg-pair"
#: bytes of one sealed pair of shares: two 32-byte scalars and the 16-byte tag
SEALED_BYTES = 80
_NONCE = bytes(12)


def share_key(ecdh_x: bytes, round: int, dealer: bytes, recipient: bytes) -> bytes:
    """The one-use key of the shares ``dealer`` sends ``recipient`` in ``round``
    (both 33-byte compressed keys): HKDF-SHA256 of the x-coordinate of their ECDH value."""
    info = SHARE_INFO + round.to_bytes(8, "big") + dealer + recipient
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ecdh_x)


def seal_shares(key: bytes, self_share: int, mask_share: int) -> bytes:
    """The 80-byte ciphertext of the two shares (32 bytes big-endian each)."""
    plain = self_share.to_bytes(32, "big") + mask_share.to_bytes(32, "big")
    return ChaCha20Poly1305(key).encrypt(_NONCE, plain, None)


def open_shares(key: bytes, sealed: bytes) -> tuple[int, int] | None:
    """The two shares, or None if the ciphertext does not authenticate."""
    if len(sealed) != SEALED_BYTES:
        return None
    try:
        plain = ChaCha20Poly1305(key).decrypt(_NONCE, sealed, None)
    except InvalidTag:
        return None
    return int.from_bytes(plain[:32], "big"), int.from_bytes(plain[32:], "big")


def prg(seed: bytes, d: int) -> np.ndarray:
    """``d`` uint32 from the ChaCha20 keystream of ``seed`` (counter 0, zero nonce), little-endian."""
    enc = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor()
    return np.frombuffer(enc.update(bytes(4 * d)), dtype="<u4").astype(np.uint32)


def self_seed(b: int) -> bytes:
    """The PRG seed of a member's self mask, from its shared secret b."""
    return hashlib.sha256(SELF_TAG + b.to_bytes(32, "big")).digest()


def pair_seed(round: int, shared_point: bytes) -> bytes:
    """The PRG seed of the pairwise mask of two members, from their ECDH point (33 bytes)."""
    return hashlib.sha256(PAIR_TAG + round.to_bytes(8, "big") + shared_point).digest()

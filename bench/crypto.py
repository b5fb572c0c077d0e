"""Signature and block-validation rates.

Sections (run all, or pick with ``--only``):

* ``signatures``: ECDSA secp256k1/SHA-256 verification with python-ecdsa, a plain
  ``VerifyingKey.from_string`` key vs :func:`learningchain.crypto.verify`
  (cached, precomputed key, strict DER/low-S checks included); whether gmpy2 is
  active; signing rate; OpenSSL (``cryptography``) for reference.
* ``block``: the ledger issue's "block validation rate (transactions per second)
  for a block of 100 update transactions whose signatures were already checked
  when they entered the mempool". The chain module does not exist yet, so this
  measures what does: JSON decode + ``Block.parse`` + ``Block.check_structure`` +
  each tx's ``check(expected, max_bytes, verify_signature=False)``, and the same
  with ``verify_signature=True``.

A ``chain`` section (contextual validation through learningchain.chain) is to be
added to :data:`SECTIONS` when that module lands.
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ecdsa  # noqa: E402
import numpy as np  # noqa: E402
from ecdsa import SECP256k1, VerifyingKey  # noqa: E402
from ecdsa.util import sigdecode_der  # noqa: E402

from learningchain import crypto  # noqa: E402
from learningchain.block import Block, make_block  # noqa: E402
from learningchain.encoding import parse_json  # noqa: E402
from learningchain.tx import UpdateTx  # noqa: E402
from miner.pow import search  # noqa: E402

#: the digits MLP 64-32-10 (2,410 float32 parameters)
MLP_SPEC = {"W0": ("<f4", (64, 32)), "b0": ("<f4", (32,)), "W1": ("<f4", (32, 10)), "b1": ("<f4", (10,))}
MAX_TX_BYTES = 1 << 20
EASY = 1 << 250


def rate(fn: Callable[[], int], repeats: int) -> tuple[float, float]:
    """(median items/s, first run items/s); ``fn`` returns the number of items it did."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), rates[0]


def row(label: str, value: float, unit: str, note: str = "") -> None:
    print(f"  {label:<58}{value:>10,.0f} {unit}{('  ' + note) if note else ''}")


# --- signatures ----------------------------------------------------------------------
def bench_signatures(n: int, repeats: int) -> None:
    print(f"ECDSA secp256k1 / SHA-256, python-ecdsa {ecdsa.__version__}, "
          f"gmpy2 active: {bool(ecdsa.ellipticcurve.GMPY)}; {n} signatures, median of {repeats}")
    key = crypto.PrivateKey.from_secret(42)
    digests = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    sign_rate, _ = rate(lambda: len([key.sign_digest(d) for d in digests]), repeats)
    sigs = [key.sign_digest(d) for d in digests]
    raw_sigs = [bytes.fromhex(s) for s in sigs]
    row("sign (RFC 6979, low-S DER)", sign_rate, "sig/s")

    plain = VerifyingKey.from_string(bytes.fromhex(key.public_hex), curve=SECP256k1, hashfunc=hashlib.sha256)

    def verify_plain() -> int:
        for s, d in zip(raw_sigs, digests):
            assert plain.verify_digest(s, d, sigdecode=sigdecode_der)
        return n

    def verify_ours() -> int:
        for s, d in zip(sigs, digests):
            crypto.verify(key.public_hex, d, s)
        return n

    plain_rate, _ = rate(verify_plain, repeats)
    ours_rate, _ = rate(verify_ours, repeats)
    row("verify, VerifyingKey.from_string (no precompute)", plain_rate, "sig/s")
    row("verify, crypto.verify (cached precomputed key)", ours_rate, "sig/s", f"{ours_rate / plain_rate:.2f}x")
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    except ImportError:
        return
    ossl = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), bytes.fromhex(key.public_hex))
    algo = ec.ECDSA(Prehashed(hashes.SHA256()))

    def verify_openssl() -> int:
        for s, d in zip(raw_sigs, digests):
            ossl.verify(s, d, algo)
        return n
    row("verify, cryptography/OpenSSL (reference)", rate(verify_openssl, repeats)[0], "sig/s")


# --- block validation ------------------------------------------------------------------
def sample_block(n_txs: int) -> bytes:
    rng = np.random.default_rng(0)
    txs = []
    for i in range(n_txs):
        weights = {name: rng.standard_normal(shape).astype(np.float32) for name, (_, shape) in MLP_SPEC.items()}
        txs.append(UpdateTx.create(crypto.PrivateKey.from_secret(1000 + i), round=1, base="00" * 32,
                                   weights=weights, num_samples=100 + i, metrics={"accuracy": 0.9},
                                   timestamp=1_700_000_000_000 + i))
    block = make_block(1, "11" * 32, 1_700_000_000_000, EASY, crypto.PrivateKey.from_secret(1).public_hex,
                       tuple(txs), commitment={"round": 1})
    nonce, _ = search(block.header.prefix(), EASY, 0, 1 << 20)
    block = Block(block.header.with_nonce(nonce), block.txs, block.commitment, block.config)
    block.check_structure()
    return block.serialize()


def validate(raw: bytes, verify_signature: bool) -> int:
    block = Block.parse(parse_json(raw))
    block.check_structure()
    for tx in block.txs:
        tx.check(MLP_SPEC, MAX_TX_BYTES, verify_signature=verify_signature)
    return len(block.txs)


def bench_block(n_txs: int, repeats: int) -> None:
    raw = sample_block(n_txs)
    print(f"Block validation, {n_txs} digits-MLP update txs ({len(raw):,} bytes), median of {repeats}; "
          f"parse + check_structure + tx.check")
    crypto._verifying_key.cache_clear()
    with_sig, first = rate(lambda: validate(raw, True), repeats)
    without, _ = rate(lambda: validate(raw, False), repeats)
    row("signatures checked in the mempool (verify_signature=False)", without, "tx/s",
        f"{1000 * n_txs / without:.1f} ms/block")
    row("signatures verified again (verify_signature=True)", with_sig, "tx/s",
        f"{1000 * n_txs / with_sig:.1f} ms/block")
    row("  same, first run (100 sender keys precomputed on the fly)", first, "tx/s",
        f"{1000 * n_txs / first:.1f} ms/block")


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "signatures": lambda a: bench_signatures(a.signatures, a.repeats),
    "block": lambda a: bench_block(a.txs, a.repeats),
    # "chain": contextual block validation, once learningchain.chain exists.
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Signature and block-validation rates.")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these sections")
    parser.add_argument("--signatures", type=int, default=1000)
    parser.add_argument("--txs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name in args.only or SECTIONS:
        SECTIONS[name](args)
        print()


if __name__ == "__main__":
    main()

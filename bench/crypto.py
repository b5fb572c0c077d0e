"""Signature rates: ECDSA secp256k1/SHA-256 verification with python-ecdsa, a
plain ``VerifyingKey.from_string`` key vs :func:`learningchain.core.crypto.verify`
(cached key, strict DER/low-S checks included) with each backend (libsecp256k1
through coincurve, python-ecdsa with a precomputed key); whether gmpy2 is
active; signing rates; OpenSSL (``cryptography``) for reference.

Block validation (the ledger issue's "transactions per second for a block of
100 update transactions whose signatures were already checked when they
entered the mempool") is measured through the chain itself, warm and cold
signature caches, by ``bench/ledger.py``; this script used to time a
parse + ``tx.check`` stand-in from before :mod:`learningchain.ledger.chain` existed,
which that benchmark supersedes.

Run: ``.venv/bin/python bench/crypto.py [--signatures 1000] [--repeats 5]``.
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
from ecdsa import SECP256k1, VerifyingKey  # noqa: E402
from ecdsa.util import sigdecode_der  # noqa: E402

from learningchain.core import crypto  # noqa: E402



def rate(fn: Callable[[], int], repeats: int) -> tuple[float, float]:
    """(median items/s, first run items/s); ``fn`` returns the number of items it did."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), rates[0]


def row(label: str, value: float, unit: str, note: str = "") -> None:
    print(f"  {label:<70}{value:>10,.0f} {unit}{('  ' + note) if note else ''}")


# --- signatures ----------------------------------------------------------------------
def bench_signatures(n: int, repeats: int) -> None:
    print(f"ECDSA secp256k1 / SHA-256, python-ecdsa {ecdsa.__version__}, "
          f"gmpy2 active: {bool(ecdsa.ellipticcurve.GMPY)}; {n} signatures, median of {repeats}")
    key = crypto.PrivateKey.from_secret(42)
    digests = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    sigs = [key.sign_digest(d) for d in digests]
    raw_sigs = [bytes.fromhex(s) for s in sigs]

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
    row("verify, VerifyingKey.from_string (no precompute)", plain_rate, "sig/s")
    before = crypto.backend()
    try:
        for name in crypto.BACKENDS:
            crypto.use_backend(name)
            sign_rate, _ = rate(lambda: len([key.sign_digest(d) for d in digests]), repeats)
            ours_rate, _ = rate(verify_ours, repeats)
            row(f"sign, crypto backend {name} (RFC 6979, low-S DER)", sign_rate, "sig/s")
            row(f"verify, crypto.verify, backend {name} (cached key, strict checks)", ours_rate, "sig/s",
                f"{ours_rate / plain_rate:.2f}x plain python-ecdsa")
    finally:
        crypto.use_backend(before)
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


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "signatures": lambda a: bench_signatures(a.signatures, a.repeats),
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Signature rates (block validation: bench/ledger.py).")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these sections")
    parser.add_argument("--signatures", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name in args.only or SECTIONS:
        SECTIONS[name](args)
        print()


if __name__ == "__main__":
    main()

"""Our signatures against an independent implementation (OpenSSL through the
``cryptography`` package): same curve, same hash, same DER, and the low-S rule
that makes every library agree. Also key parsing (key files: tests/node/test_keyfile.py)."""
from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature as OpenSSLInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (Prehashed, decode_dss_signature,
                                                             encode_dss_signature)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings, strategies as st

from learningchain.core import crypto

P = SECP256K1_P = 2**256 - 2**32 - 977
N = crypto.ORDER


def openssl_public(pubkey_hex: str) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), bytes.fromhex(pubkey_hex))


def compressed_hex(public: ec.EllipticCurvePublicKey) -> str:
    return public.public_bytes(Encoding.X962, PublicFormat.CompressedPoint).hex()


# --- (a) ours -> OpenSSL -------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(message=st.binary(max_size=200), secret=st.integers(min_value=1, max_value=2**64))
def test_our_signature_verifies_in_openssl(message, secret):
    key = crypto.PrivateKey.from_secret(secret)
    sig = bytes.fromhex(key.sign_digest(hashlib.sha256(message).digest()))
    public = openssl_public(key.public_hex)
    public.verify(sig, message, ec.ECDSA(hashes.SHA256()))  # raises if invalid
    public.verify(sig, hashlib.sha256(message).digest(), ec.ECDSA(Prehashed(hashes.SHA256())))
    _r, s = decode_dss_signature(sig)
    assert s <= N // 2  # we only ever produce low S
    with pytest.raises(OpenSSLInvalidSignature):
        public.verify(sig, message + b"!", ec.ECDSA(hashes.SHA256()))


# --- (b) OpenSSL -> ours, and the low-S rule ---------------------------------------------
def openssl_high_s_signature():
    """An OpenSSL key and a message whose OpenSSL signature has high S (about
    half do; OpenSSL does not normalise)."""
    private = ec.generate_private_key(ec.SECP256K1())
    for i in range(200):
        message = f"update {i}".encode()
        der = private.sign(message, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        if s > N // 2:
            return private, message, der, r, s
    raise AssertionError("200 OpenSSL signatures without a high S")


def test_openssl_high_s_is_rejected_and_its_low_s_twin_accepted():
    private, message, der, r, s = openssl_high_s_signature()
    pub_hex = compressed_hex(private.public_key())
    digest = hashlib.sha256(message).digest()
    with pytest.raises(crypto.InvalidSignature, match="high S"):
        crypto.verify(pub_hex, digest, der.hex())
    twin = encode_dss_signature(r, N - s)
    crypto.verify(pub_hex, digest, twin.hex())  # accepted
    private.public_key().verify(twin, message, ec.ECDSA(hashes.SHA256()))  # and OpenSSL agrees
    with pytest.raises(crypto.InvalidSignature, match="does not verify"):
        crypto.verify(pub_hex, hashlib.sha256(message + b"!").digest(), twin.hex())


@settings(max_examples=20, deadline=None)
@given(message=st.binary(max_size=200))
def test_openssl_signatures_normalised_to_low_s_verify_with_ours(message):
    private = ec.generate_private_key(ec.SECP256K1())
    r, s = decode_dss_signature(private.sign(message, ec.ECDSA(hashes.SHA256())))
    low = encode_dss_signature(r, min(s, N - s))
    crypto.verify(compressed_hex(private.public_key()), hashlib.sha256(message).digest(), low.hex())


# --- (c) strict DER ------------------------------------------------------------------
KEY = crypto.PrivateKey.from_secret(5)
DIGEST = hashlib.sha256(b"strict der").digest()
SIG = bytes.fromhex(KEY.sign_digest(DIGEST))


def der_int(value: int, pad: int = 0) -> bytes:
    body = value.to_bytes((value.bit_length() + 8) // 8, "big")  # minimal, with a sign byte if needed
    body = b"\x00" * pad + body
    return b"\x02" + bytes([len(body)]) + body


def test_the_canonical_signature_verifies():
    crypto.verify(KEY.public_hex, DIGEST, SIG.hex())


@pytest.mark.parametrize("variant", ["trailing byte", "padded r", "padded s", "long-form length",
                                     "wrong sequence length", "truncated"])
def test_non_minimal_or_trailing_der_is_rejected(variant):
    r, s = decode_dss_signature(SIG)
    assert encode_dss_signature(r, s) == SIG
    body = der_int(r) + der_int(s)
    bad = {
        "trailing byte": SIG + b"\x00",
        "padded r": b"\x30" + bytes([len(body) + 1]) + der_int(r, pad=1) + der_int(s),
        "padded s": b"\x30" + bytes([len(body) + 1]) + der_int(r) + der_int(s, pad=1),
        "long-form length": b"\x30\x81" + bytes([len(body)]) + body,
        "wrong sequence length": b"\x30" + bytes([len(body) - 1]) + body,
        "truncated": SIG[:-1],
    }[variant]
    with pytest.raises(crypto.InvalidSignature):
        crypto.verify(KEY.public_hex, DIGEST, bad.hex())


def test_signature_hex_form_is_strict():
    for bad in (SIG.hex().upper(), SIG.hex() + "0", "zz" + SIG.hex()[2:], "", 5):
        with pytest.raises(crypto.InvalidSignature):
            crypto.verify(KEY.public_hex, DIGEST, bad)


# --- (d) public keys ---------------------------------------------------------------------
def x_not_on_curve() -> int:
    """The smallest x with no y on secp256k1 (x^3 + 7 is not a square mod p)."""
    x = 1
    while pow((x ** 3 + 7) % P, (P - 1) // 2, P) == 1:
        x += 1
    return x


def test_public_key_parsing_rejects_bad_keys():
    public = openssl_public(KEY.public_hex)
    uncompressed = public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint).hex()
    assert compressed_hex(public) == KEY.public_hex
    bad = {
        "uncompressed": uncompressed,
        "off the curve": "02" + x_not_on_curve().to_bytes(32, "big").hex(),
        "x >= p": "02" + (P + 1).to_bytes(32, "big").hex(),
        "too short": KEY.public_hex[:-2],
        "too long": KEY.public_hex + "00",
        "wrong prefix": "05" + KEY.public_hex[2:],
        "non-hex": "0g" + KEY.public_hex[2:],
        "uppercase": KEY.public_hex.upper(),
        "empty": "",
    }
    for name, pubkey in bad.items():
        with pytest.raises(crypto.InvalidKey):
            crypto.parse_public_key(pubkey)
        with pytest.raises(crypto.InvalidKey):
            crypto.verify(pubkey, DIGEST, SIG.hex())
    with pytest.raises(crypto.InvalidKey):
        crypto.parse_public_key(bytes.fromhex(KEY.public_hex))  # bytes, not hex text
    # OpenSSL agrees the off-curve point is no key
    with pytest.raises(ValueError):
        openssl_public(bad["off the curve"])


def test_secret_scalar_is_the_key_behind_the_public_key():
    from learningchain.core import ec as points
    key = crypto.PrivateKey.from_secret(4242)
    assert points.point_hex(points.base_mul(key.secret_scalar())) == key.public_hex


# --- (e) the two backends: libsecp256k1 (coincurve) and python-ecdsa agree on everything ---
@pytest.fixture
def restore_backend():
    before = crypto.backend()
    yield
    crypto.use_backend(before)


def outcome(backend: str, pubkey, digest, signature) -> str:
    """'ok' or the exception's class and message, verified by ``backend``."""
    crypto.use_backend(backend)
    try:
        crypto.verify(pubkey, digest, signature)
    except (crypto.InvalidKey, crypto.InvalidSignature) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def negative_r_signature() -> bytes:
    """SIG with r's sign byte dropped (an INTEGER with the high bit set reads as negative), if r has one."""
    r, s = decode_dss_signature(SIG)
    for key_secret in range(5, 200):
        key = crypto.PrivateKey.from_secret(key_secret)
        sig = bytes.fromhex(key.sign_digest(DIGEST))
        r, s = decode_dss_signature(sig)
        if r.bit_length() == 256:  # DER needs 33 bytes for r: 00 + high bit
            body = b"\x02\x20" + r.to_bytes(32, "big") + der_int(s)
            return key.public_hex, b"\x30" + bytes([len(body)]) + body
    raise AssertionError("no key with a high-bit r")


def vectors() -> dict[str, tuple]:
    """(pubkey, digest, signature) cases: valid, and every way to be wrong."""
    r, s = decode_dss_signature(SIG)
    other = crypto.PrivateKey.from_secret(6)
    public = openssl_public(KEY.public_hex)
    body = der_int(r) + der_int(s)
    neg_key, neg_sig = negative_r_signature()
    cases = {
        "valid": (KEY.public_hex, DIGEST, SIG.hex()),
        "valid, other key": (other.public_hex, DIGEST, other.sign_digest(DIGEST)),
        "high S twin": (KEY.public_hex, DIGEST, encode_dss_signature(r, N - s).hex()),
        "wrong key": (other.public_hex, DIGEST, SIG.hex()),
        "wrong digest": (KEY.public_hex, hashlib.sha256(b"other").digest(), SIG.hex()),
        "short digest": (KEY.public_hex, DIGEST[:31], SIG.hex()),
        "r = 0": (KEY.public_hex, DIGEST, encode_dss_signature(0, s).hex()),
        "s = 0": (KEY.public_hex, DIGEST, encode_dss_signature(r, 0).hex()),
        "r = n": (KEY.public_hex, DIGEST, encode_dss_signature(N, s).hex()),
        "r + n": (KEY.public_hex, DIGEST, encode_dss_signature(r + N, s).hex()),
        "s = n/2 + 1": (KEY.public_hex, DIGEST, encode_dss_signature(r, N // 2 + 1).hex()),
        "negative r": (neg_key, DIGEST, neg_sig.hex()),
        "trailing byte": (KEY.public_hex, DIGEST, (SIG + b"\x00").hex()),
        "padded r": (KEY.public_hex, DIGEST, (b"\x30" + bytes([len(body) + 1]) + der_int(r, pad=1)
                                              + der_int(s)).hex()),
        "long-form length": (KEY.public_hex, DIGEST, (b"\x30\x81" + bytes([len(body)]) + body).hex()),
        "wrong tag": (KEY.public_hex, DIGEST, (b"\x31" + SIG[1:]).hex()),
        "truncated": (KEY.public_hex, DIGEST, SIG[:-1].hex()),
        "uppercase signature": (KEY.public_hex, DIGEST, SIG.hex().upper()),
        "too long signature": (KEY.public_hex, DIGEST, "30" * 73),
        "signature not a string": (KEY.public_hex, DIGEST, SIG),
        "uncompressed key": (public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint).hex(),
                             DIGEST, SIG.hex()),
        "off-curve key": ("02" + x_not_on_curve().to_bytes(32, "big").hex(), DIGEST, SIG.hex()),
        "x >= p": ("03" + (P + 1).to_bytes(32, "big").hex(), DIGEST, SIG.hex()),
        "uppercase key": (KEY.public_hex.upper(), DIGEST, SIG.hex()),
        "key as bytes": (bytes.fromhex(KEY.public_hex), DIGEST, SIG.hex()),
    }
    rng = __import__("random").Random(13)
    for i in range(20):  # garbage of every length a signature can have
        cases[f"garbage signature {i}"] = (KEY.public_hex, DIGEST, rng.randbytes(rng.randint(0, 72)).hex())
        cases[f"garbage key {i}"] = (bytes([2 + i % 2]) + rng.randbytes(32)).hex(), DIGEST, SIG.hex()
    return cases


def test_both_backends_accept_and_reject_the_same_vectors_with_the_same_messages(restore_backend):
    cases = vectors()
    got = {name: (outcome("coincurve", *case), outcome("python-ecdsa", *case)) for name, case in cases.items()}
    for name, (ours, fallback) in got.items():
        assert ours == fallback, name
    accepted = {name for name, (ours, _) in got.items() if ours == "ok"}
    assert accepted == {"valid", "valid, other key"}
    assert "high S" in got["high S twin"][0] and "does not verify" in got["wrong key"][0]
    assert got["negative r"][0].startswith("InvalidSignature")
    assert got["off-curve key"][0] == "InvalidKey: public key is not a point on secp256k1"
    # about half of random x are on the curve, and those keys parse, then the signature fails
    assert {got[f"garbage key {i}"][0] for i in range(20)} == {
        "InvalidKey: public key is not a point on secp256k1",
        "InvalidSignature: signature does not verify against the sender's key"}


@settings(max_examples=30, deadline=None)
@given(message=st.binary(max_size=64), secret=st.integers(min_value=1, max_value=2**256))
def test_both_backends_sign_byte_identically_and_verify_each_other(message, secret):
    before = crypto.backend()
    digest = hashlib.sha256(message).digest()
    try:
        key = crypto.PrivateKey.from_secret(secret)
        sigs = {}
        for name in crypto.BACKENDS:
            crypto.use_backend(name)
            sigs[name] = key.sign_digest(digest)
        assert sigs["coincurve"] == sigs["python-ecdsa"]
        for name in crypto.BACKENDS:
            crypto.use_backend(name)
            crypto.verify(key.public_hex, digest, sigs["coincurve"])
    finally:
        crypto.use_backend(before)


def run_python(code: str, **env: str):
    import os
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_the_backend_is_chosen_by_environment_and_falls_back_without_coincurve():
    show = "from learningchain.core import crypto; print(crypto.backend())"
    env = crypto.ENV_VAR
    assert run_python(show, **{env: ""}).stdout.strip() == "coincurve"
    assert run_python(show, **{env: "python-ecdsa"}).stdout.strip() == "python-ecdsa"
    blocked = "import sys; sys.modules['coincurve'] = None; " + show  # coincurve not importable
    assert run_python(blocked, **{env: ""}).stdout.strip() == "python-ecdsa"
    bad = run_python(show, **{env: "openssl"})
    assert bad.returncode != 0 and "must be one of coincurve, python-ecdsa" in bad.stderr


def test_an_unknown_backend_is_refused(restore_backend):
    with pytest.raises(ValueError, match="must be one of"):
        crypto.use_backend("openssl")

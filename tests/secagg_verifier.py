"""The aggregate of a secure-aggregation round recomputed from docs/protocol.md
section 14 alone: no learningchain import; secp256k1 in plain Python integers,
the PRG from `cryptography`'s ChaCha20, numpy as uint32 / float64 arithmetic.
Input: the round's txs in wire form (dicts), the sets of its commitment, G(r-1)."""
from __future__ import annotations

import base64
import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from tests.independent_verifier import weights_digest

P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def decompress(hex66: str) -> tuple[int, int]:
    x = int(hex66[2:], 16)
    y = pow((x * x * x + 7) % P, (P + 1) // 4, P)
    if y % 2 != int(hex66[:2], 16) % 2:
        y = P - y
    return x, y


def compress(pt: tuple[int, int]) -> bytes:
    return bytes([2 + pt[1] % 2]) + pt[0].to_bytes(32, "big")


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    lam = ((3 * a[0] * a[0]) * pow(2 * a[1], -1, P) if a == b else (b[1] - a[1]) * pow(b[0] - a[0], -1, P)) % P
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def mul(pt, k: int):
    out = None
    for bit in bin(k % N)[2:]:
        out = _add(out, out)
        if bit == "1":
            out = _add(out, pt)
    return out


def lagrange0(shares: dict[int, int]) -> int:
    total = 0
    for i, s in shares.items():
        num = den = 1
        for j in shares:
            if j != i:
                num, den = num * -j % N, den * (i - j) % N
        total = (total + s * num * pow(den, -1, N)) % N
    return total


def prg(seed: bytes, d: int) -> np.ndarray:
    stream = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor().update(bytes(4 * d))
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32)


def pair_seed(r: int, point: bytes) -> bytes:
    return hashlib.sha256(b"learningchain-secagg-pair" + r.to_bytes(8, "big") + point).digest()


def aggregate(txs: list[dict], sa: dict, roster: list[str], t: int, scale: int, model: dict) -> tuple[str, str]:
    """(sum_digest, model_digest) of section 14.6 for a successful round."""
    r = txs[0]["round"]
    index = {k: i + 1 for i, k in enumerate(sorted(roster))}
    by = {(x["type"], x["sender"]): x for x in txs}
    unmasks = [by[k] for k in sorted(by) if k[0] == "sa-unmask"]  # sender-key order
    C, XD, D = sa["counted"], sa["dropped"], sa["disqualified"]
    X = sorted(set(XD) | set(D))

    def first_t(field: str, j: int) -> int:
        got: dict[int, int] = {}
        for u in unmasks:
            if u[field][j] is not None and len(got) < t:
                got[index[u["sender"]]] = int(u[field][j], 16)
        return lagrange0(got)

    m = {u: first_t("mask_shares", j) for j, u in enumerate(XD)}
    d = sum(int(np.prod(a.shape)) for a in model.values())
    total = np.zeros(d, dtype=np.uint32)
    for pos, v in enumerate(C):
        raw = base64.b64decode(by[("sa-input", v)]["input"]["data"])
        y = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
        b = first_t("self_shares", pos)
        y = y - prg(hashlib.sha256(b"learningchain-secagg-self" + b.to_bytes(32, "big")).digest(), d)
        mv = decompress(by[("sa-setup", v)]["mask_key"])
        for u in X:
            if u in m:
                point = compress(mul(mv, m[u]))
            else:
                point = bytes.fromhex(by[("sa-unmask", v)]["seeds"][D.index(u)]["point"])
            mask = prg(pair_seed(r, point), d)
            y = y - mask if v < u else y + mask
        total = total + y
    signed = total.astype(np.int64)
    signed[signed >= 2**31] -= 2**32
    avg = signed.astype(np.float64) / float(scale * len(C))
    out, off = {}, 0
    for name in sorted(model):
        a = model[name]
        out[name] = (a.astype(np.float64) + avg[off:off + a.size].reshape(a.shape)).astype(np.float32)
        off += a.size
    return hashlib.sha256(total.astype("<u4").tobytes()).hexdigest(), weights_digest(out)

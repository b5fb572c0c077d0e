"""An independent chain verifier written from docs/protocol.md alone.

It imports nothing from `learningchain`: JSON, hashlib, base64, numpy and the
`cryptography` package (OpenSSL) for ECDSA. If the document and the code ever
disagree, tests/system/test_protocol_conformance.py fails. It checks one branch given
in height order (genesis first). The commitments of every rule (FedAvg,
median, trimmed mean, Krum, Multi-Krum, Bulyan, l-nearest) are recomputed in
full from section 7.1 (accepted, rejected with their reason strings, model
digest), with exact scores only (no fast path) and numpy used as plain
elementwise float64 arithmetic: sums, medians and orders are written out here.
Also followed: skip txs (section 11: counted toward the quorum once the round
has an update, never aggregated, listed in `skipped`), the genesis stamp and
claim cap (section 6: `stamp_bits`, `max_samples`), torch models (sections 3,
6 and 7: the arrays and G(0) of a genesis `layout`, no PyTorch). Not covered: compressed
updates and selection policies (section 11) in plain mode.

Secure aggregation (section 14, a genesis with `privacy`): the genesis refusals
of 14.1 a verifier can see; each SA tx read (14.3), checked in context and
context-free in the order of 14.4 (every refusal is an `SaInvalid` whose `code`
is the section's reason code); complaints (DLEQ, HKDF + ChaCha20-Poly1305,
Feldman), unmask shares (Feldman) and seeds (DLEQ); the phase rules of 14.5;
the aggregate (Lagrange, the ChaCha20 masks, mod 2^32, one float64 division,
one float32 cast) and the commitment of 14.6 byte for byte, failed rounds
included; 14.6's records (and section 11's `spent_nj` charge and
`last_selected`) under `random-k`, `top-k` and `energy-aware` selection.
secp256k1 is plain Python integers here (Jacobian, and a 4-bit window table
for G); OpenSSL only verifies the ECDSA signatures.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature, encode_dss_signature

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
GENESIS_MINER = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


class Invalid(Exception):
    code: str | None = None  # the reason code of section 14, where one is named


METRIC = re.compile(r"-?(0|[1-9][0-9]{0,17})\.[0-9]{6}")  # section 3: a full match


def mtp(branch: list[dict]) -> int:
    """Median time past of the last header of ``branch`` (section 4 step 6)."""
    last = sorted(a["timestamp"] for a in branch[-11:])
    return last[len(last) // 2]


def canon(doc) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def decode_array(a) -> np.ndarray:
    raw = base64.b64decode(a["data"], validate=True)
    return np.frombuffer(raw, dtype=a["dtype"]).reshape(a["shape"])


def weights_digest(arrays: dict) -> str:
    summary = {name: {"dtype": arr.dtype.str, "shape": list(arr.shape),
                      "sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()}
               for name, arr in arrays.items()}
    return sha(canon(summary)).hex()


def model_shapes(model: dict) -> dict:
    """Section 3: name -> shape of every array of the model (all "<f4")."""
    if model.get("backend", "numpy") == "torch":  # the layout's entries, nothing else of the spec
        return {name: tuple(dims) for name, dims in sorted(model["layout"])}
    sizes = [model["n_features"], *model["hidden"], model["n_outputs"]]
    out = {}
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        out[f"W{i}"], out[f"b{i}"] = (fi, fo), (fo,)
    return out


def _uniform(seed: int, name: str, count: int) -> np.ndarray:
    """Section 7's u_k, k = 0 .. count - 1, keyed by ``name``."""
    prefix = b"learningchain-g0" + seed.to_bytes(8, "big") + name.encode("utf-8") + b"\x00"
    return np.array([(int.from_bytes(sha(prefix + k.to_bytes(8, "big"))[:8], "big") >> 11) * 2.0 ** -53
                     for k in range(count)], dtype=np.float64)


def g0(model: dict) -> dict:
    out = {}
    if model.get("backend", "numpy") == "torch":  # section 7, the layout rule
        for name, shape in model_shapes(model).items():
            if len(shape) >= 2:
                r = math.prod(shape[2:])
                fan_in, fan_out = shape[1] * r, shape[0] * r
                u = _uniform(model["seed"], name, math.prod(shape))
                out[name] = ((2.0 * u - 1.0) * math.sqrt(6.0 / (fan_in + fan_out))).astype("<f4").reshape(shape)
            else:
                ones = name.endswith("weight") or name.endswith("running_var")
                out[name] = np.full(shape, 1.0 if ones else 0.0, dtype="<f4")
        return out
    for name, shape in model_shapes(model).items():
        if name.startswith("W") and model["kind"] == "mlp":
            fi, fo = shape
            out[name] = ((2.0 * _uniform(model["seed"], name, fi * fo) - 1.0)
                         * math.sqrt(6.0 / (fi + fo))).reshape(fi, fo).astype("<f4")
        else:
            out[name] = np.zeros(shape, dtype="<f4")
    return out


def header_bytes(h: dict) -> bytes:
    return (struct.pack(">IQ", h["version"], h["height"]) + bytes.fromhex(h["prev_hash"])
            + bytes.fromhex(h["merkle_root"]) + bytes.fromhex(h["commitment_hash"])
            + struct.pack(">Q", h["timestamp"]) + bytes.fromhex(h["target"]) + bytes.fromhex(h["miner"])
            + struct.pack(">Q", h["nonce"]))


def merkle(ids: list[bytes]) -> bytes:
    if not ids:
        return bytes(32)
    level = [sha(b"\x00" + i) for i in ids]
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def verify_signature(pubkey_hex: str, digest: bytes, sig_hex: str) -> None:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), bytes.fromhex(pubkey_hex))
    sig = bytes.fromhex(sig_hex)
    r, s = decode_dss_signature(sig)
    if not (1 <= r < N and 1 <= s <= N // 2) or encode_dss_signature(r, s) != sig:
        raise Invalid("signature not canonical low-S DER")
    try:
        key.verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        raise Invalid("bad signature") from None


def median(values: np.ndarray) -> np.ndarray:
    """Section 7.1 `median` along axis 0: the middle value (or the mean of the
    two middle ones) of the sorted values, then + 0.0 (a zero median is +0.0)."""
    s = np.sort(values, axis=0)
    n = s.shape[0]
    mid = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0
    return mid + 0.0


def _pairwise(c: list[float]) -> float:
    n = len(c)
    if n < 8:
        acc = -0.0
        for x in c:
            acc = acc + x
        return acc
    if n <= 128:
        r = c[:8]
        for k in range(1, n // 8):
            r = [r[j] + c[8 * k + j] for j in range(8)]
        acc = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for x in c[8 * (n // 8):]:
            acc = acc + x
        return acc
    h = n // 2 - (n // 2) % 8
    return _pairwise(c[:h]) + _pairwise(c[h:])


def nsum(c) -> float:
    """Section 7.1 `nsum`: numpy's pairwise sum, written out."""
    return 0.0 + _pairwise([float(x) for x in c])


def fedavg(updates: list[dict], cap_factor: str, max_samples: int | None = None) -> dict:
    """Section 7.1 fedavg: claims capped at genesis max_samples (section 6), then
    counts capped at cap_factor x median, rows in id order."""
    updates = sorted(updates, key=lambda u: u["id"])
    claims = [u["tx"]["num_samples"] for u in updates]
    if max_samples is not None:
        claims = [min(c, max_samples) for c in claims]
    counts = np.array(claims, dtype=np.float64)
    counts = np.minimum(counts, float(cap_factor) * float(median(counts)))
    coef = counts / nsum(counts)
    names = sorted(updates[0]["weights"])
    rows = [np.concatenate([u["weights"][n].astype(np.float64).ravel() for n in names]) for u in updates]
    acc = np.zeros_like(rows[0])
    for c, row in zip(coef, rows):
        acc += c * row
    out, at = {}, 0
    for n in names:
        shape = updates[0]["weights"][n].shape
        size = int(np.prod(shape))
        out[n] = acc[at:at + size].astype("<f4").reshape(shape)
        at += size
    return out


def _rows(updates: list[dict]) -> tuple[np.ndarray, list[str], list[tuple[str, tuple]]]:
    """Section 7.1 inputs: float64 rows in id order, the ids, and the array layout."""
    updates = sorted(updates, key=lambda u: u["id"])
    names = sorted(updates[0]["weights"])
    layout = [(n, updates[0]["weights"][n].shape) for n in names]
    X = np.array([np.concatenate([u["weights"][n].astype(np.float64).ravel() for n in names])
                  for u in updates])
    return X, [u["id"] for u in updates], layout


def _unrows(v: np.ndarray, layout) -> dict:
    out, at = {}, 0
    for n, shape in layout:
        size = int(np.prod(shape))
        out[n] = v[at:at + size].astype("<f4").reshape(shape)
        at += size
    return out


def _sum_in_order(rows) -> np.ndarray:
    acc = np.zeros(rows.shape[1])
    for row in rows:
        acc = acc + row
    return acc


def xsum(v: np.ndarray) -> float:
    """Section 7.1: pad to a power of two, add the right half to the left half."""
    w = 1 << max(0, (len(v) - 1).bit_length())
    acc = np.zeros(w)
    acc[:len(v)] = v
    while w > 1:
        w //= 2
        acc = acc[:w] + acc[w:2 * w]
    return float(acc[0])


def _ranked(scores: list[float], ids: list[str], among: list[int]) -> list[int]:
    """Section 7.1: ascending (score, tx id); equal scores go to the smaller id."""
    return sorted(among, key=lambda i: (scores[i], ids[i]))


def _krum_scores(d: list[list[float]], among: list[int], k: int) -> list[float]:
    """fsum of the k smallest dx(i, j), j in `among`, j != i (all if fewer)."""
    scores = [0.0] * len(d)
    for i in among:
        scores[i] = math.fsum(sorted(d[i][j] for j in among if j != i)[:k])
    return scores


def trimmed_mean_min(beta: float) -> int:
    """{N} of the trimmed-mean refusal (section 7.1)."""
    n = max(1, int(1 / beta) - 1)
    while math.floor(beta * n) < 1:
        n += 1
    return n


def robust(rule: str, params: dict, updates: list[dict]):
    """(model or None, accepted, rejected) for every rule but fedavg (section
    7.1); model None means the rule cannot run and G(r-1) stays."""
    X, ids, layout = _rows(updates)
    n = len(ids)

    def refuse(reason: str):
        return None, [], {i: reason for i in ids}

    def done(v: np.ndarray, chosen: list[int], rejected: dict):
        return _unrows(v, layout), sorted(ids[i] for i in chosen), rejected

    if rule == "median":
        return done(median(X), list(range(n)), {})
    if rule == "trimmed-mean":
        beta = float(params.get("beta", "0.1"))
        k = math.floor(beta * n)
        if beta > 0 and k == 0:
            return refuse(f"trimmed-mean with beta={format(beta, 'g')} needs at least "
                          f"{trimmed_mean_min(beta)} updates to trim one per side, got {n} "
                          f"(floor(beta * n) = 0)")
        return done(_sum_in_order(np.sort(X, axis=0)[k:n - k]) / (n - 2 * k), list(range(n)), {})
    if rule == "l-nearest":
        l = int(params.get("l", 3))
        if n < l:
            return refuse(f"l-nearest with l={l} needs at least {l} updates, got {n}")
        ref, name = median(X), "the coordinate-wise median"  # never a chosen sender
        dist = [xsum((X[i] - ref) ** 2) for i in range(n)]
        ranked = _ranked(dist, ids, list(range(n)))
        chosen = sorted(ranked[:l])
        return done(_sum_in_order(X[chosen]) / l, chosen,
                    {ids[i]: f"l-nearest: distance rank {p + 1} to {name}, not among the l={l} nearest"
                     for p, i in enumerate(ranked) if p >= l})
    d = [[xsum((X[i] - X[j]) ** 2) for j in range(n)] for i in range(n)]  # dx(i, j)
    f = int(params.get("f", 1))
    if rule == "bulyan":
        if n < 4 * f + 3:
            return refuse(f"bulyan with f={f} needs at least {4 * f + 3} updates, got {n} "
                          f"(Bulyan requires n >= 4f + 3)")
        theta, beta = n - 2 * f, n - 4 * f
        R, S = list(range(n)), []
        for _ in range(theta):
            pick = _ranked(_krum_scores(d, R, max(len(R) - f - 2, 1)), ids, R)[0]
            R.remove(pick)
            S.append(pick)
        rows = X[sorted(S)]
        med = median(rows)
        v = np.empty(X.shape[1])
        for c in range(X.shape[1]):
            closest = sorted(range(theta), key=lambda t: (abs(rows[t, c] - med[c]), t))[:beta]
            acc = 0.0
            for value in sorted(rows[t, c] for t in closest):
                acc = acc + value
            v[c] = acc / beta
        return done(v, S, {ids[i]: f"bulyan: not among the theta={theta} updates selected by "
                                   f"recursive krum (f={f})" for i in R})
    m = 1 if rule == "krum" else int(params.get("m", 0))
    if n < 2 * f + 3:
        return refuse(f"{rule} with f={f} needs at least {2 * f + 3} updates, got {n} "
                      f"(Krum requires n > 2f + 2)")
    m = n - f if m == 0 else m
    if m > n - f:
        return refuse(f"multi-krum with f={f}, m={m} needs m <= n - f = {n - f}")
    ranked = _ranked(_krum_scores(d, list(range(n)), n - f - 2), ids, list(range(n)))
    chosen = sorted(ranked[:m])
    return done(_sum_in_order(X[chosen]) / m, chosen,
                {ids[i]: f"{rule}: score rank {p + 1} of {n}, not among the m={m} lowest"
                 for p, i in enumerate(ranked) if p >= m})


def verify_chain(blocks: list[dict], now_ms: int) -> dict:
    """Verify a branch; return {"height", "tip", "model_digest", "rounds_closed"}."""
    genesis = blocks[0]
    config = genesis["config"]
    gh = genesis["header"]
    if sha(canon({"commitment": None, "config": config})).hex() != gh["commitment_hash"]:
        raise Invalid("genesis commitment hash")
    if gh["miner"] != GENESIS_MINER or gh["height"] != 0 or gh["prev_hash"] != "00" * 32:
        raise Invalid("genesis header fields")
    max_future = config.get("max_future_ms", 4 * config["target_block_ms"])
    if not 1 <= max_future <= 4 * config["target_block_ms"]:
        raise Invalid("genesis max_future_ms above 4 block intervals")
    model, digest = g0(config["model"]), None
    digest = weights_digest(model)
    state = {"round": 1, "start": 0, "pending": []}
    prev, ancestors, closed = gh, [gh], 0
    prev_hash = sha(header_bytes(gh)).hex()
    sa = sa_genesis(config)  # section 14: secure aggregation replaces sections 3 and 7's tx and close rules
    if sa is not None:
        sa_state, records = sa_start(config, prev_hash)
        ctx = {"config": config, "sa": sa, "model": model, "digest": digest, "records": records,
               "d": sum(a.size for a in model.values())}
    for block in blocks[1:]:
        h = block["header"]
        raw = header_bytes(h)
        bhash = sha(raw)
        where = f"block {h['height']}"
        if type(h["version"]) is not int or h["version"] != 1:  # JSON integer 1: not true, not 1.0
            raise Invalid(f"{where}: header version")
        if h["prev_hash"] != prev_hash or h["height"] != prev["height"] + 1:
            raise Invalid(f"{where}: link")
        target = int(h["target"], 16)
        if int.from_bytes(bhash, "big") >= target:
            raise Invalid(f"{where}: proof of work")
        # retarget (protocol.md section 5)
        window = config["retarget_window"]
        if h["height"] % window:
            expected_target = int(prev["target"], 16)
        else:  # spans between median times past, windows sharing end points, clamp 2x
            start = max(0, h["height"] - 1 - window)
            exp = window * config["target_block_ms"]
            actual = min(max(mtp(ancestors) - mtp(ancestors[max(0, start - 10):start + 1]), exp // 2), exp * 2)
            expected_target = max(1, min(int(prev["target"], 16) * actual // exp, int(config["pow_limit"], 16)))
        if target != expected_target:
            raise Invalid(f"{where}: target")
        if not mtp(ancestors) < h["timestamp"] <= now_ms + max_future:
            raise Invalid(f"{where}: timestamp")
        ids = [sha(canon({k: v for k, v in tx.items() if k != "signature"})) for tx in block["txs"]]
        if merkle(ids).hex() != h["merkle_root"]:
            raise Invalid(f"{where}: merkle root")
        if sha(canon({"commitment": block["commitment"], "config": block["config"]})).hex() != h["commitment_hash"]:
            raise Invalid(f"{where}: commitment hash")
        if block["config"] is not None or len(canon(block)) > config["max_block_bytes"]:
            raise Invalid(f"{where}: config or size")
        if sa is not None:
            sa_state, ended = sa_block(block, ids, sa_state, ctx, where)
            closed += ended
            digest = ctx["digest"]
            prev, prev_hash = h, bhash.hex()
            ancestors.append(h)
            continue
        senders = {u["tx"]["sender"] for u in state["pending"]}
        for tx, txid in zip(block["txs"], ids):
            if type(tx["version"]) is not int or tx["version"] != 1:
                raise Invalid(f"{where}: tx version")
            if not all(len(k) <= 32 and METRIC.fullmatch(v) for k, v in tx["metrics"].items()):
                raise Invalid(f"{where}: tx metrics")
            if tx["round"] != state["round"] or tx["base"] != digest:
                raise Invalid(f"{where}: tx round or base")
            if config["allow_list"] is not None and tx["sender"] not in config["allow_list"]:
                raise Invalid(f"{where}: unknown sender")
            if tx["sender"] in senders:
                raise Invalid(f"{where}: duplicate sender")
            senders.add(tx["sender"])
            bits = config.get("stamp_bits")  # section 6: the id starts with that many zero bits
            if bits and int.from_bytes(txid, "big") >> (256 - bits) != 0:
                raise Invalid(f"{where}: tx lacks the stamp")
            verify_signature(tx["sender"], txid, tx["signature"])
            if tx["type"] == "skip":  # section 11: counted toward the quorum, never aggregated
                state["pending"].append({"id": txid.hex(), "tx": tx, "skip": True})
                continue
            weights = {n: decode_array(a) for n, a in tx["weights"].items()}
            expected = model_shapes(config["model"])
            if set(weights) != set(expected) \
                    or any(weights[n].shape != expected[n] or weights[n].dtype.str != "<f4" for n in expected):
                raise Invalid(f"{where}: shapes")
            if not all(np.isfinite(w).all() for w in weights.values()):
                raise Invalid(f"{where}: non-finite")
            state["pending"].append({"id": txid.hex(), "tx": tx, "weights": weights})
        skips = sorted(u["id"] for u in state["pending"] if u.get("skip"))
        pending = [u for u in state["pending"] if not u.get("skip")]
        # section 7: skips count toward the quorum only once the round holds an update,
        # and only in a permissioned network (allow_list or participants)
        permissioned = config["allow_list"] is not None or config.get("participants") is not None
        counted = len(pending) + (len(skips) if permissioned else 0)
        closes = (bool(pending) and counted >= config["quorum"]) \
            or h["height"] - state["start"] >= config["round_timeout"]
        c = block["commitment"]
        if not closes:
            if c is not None:
                raise Invalid(f"{where}: unexpected commitment")
        else:
            if c is None:
                raise Invalid(f"{where}: missing commitment")
            rule = config["aggregation"]["rule"]
            if (c["round"], c["rule"], c["params"]) != (state["round"], rule, config["aggregation"]["params"]):
                raise Invalid(f"{where}: commitment header fields")
            if c["updates"] != sorted(u["id"] for u in pending) or c.get("skipped", []) != skips \
                    or ("skipped" in c and not skips):
                raise Invalid(f"{where}: commitment updates or skipped")
            if rule == "fedavg" and pending:
                new = fedavg(pending, config["aggregation"]["params"]["cap_factor"], config.get("max_samples"))
                if c["accepted"] != c["updates"] or c["rejected"] != {} or weights_digest(new) != c["model_digest"]:
                    raise Invalid(f"{where}: fedavg commitment differs from the recomputed aggregate")
                model = new
            elif pending:
                new, accepted, rejected = robust(rule, config["aggregation"]["params"], pending)
                want_digest = digest if new is None else weights_digest(new)
                if (c["accepted"], c["rejected"], c["model_digest"]) != (accepted, rejected, want_digest):
                    raise Invalid(f"{where}: {rule} commitment differs from the recomputed one")
                model = new if new is not None else model
            elif not pending and (c["accepted"] != [] or c["rejected"] != {} or c["model_digest"] != digest):
                raise Invalid(f"{where}: a round closed without updates must keep G(r-1)")
            digest = c["model_digest"]
            state = {"round": state["round"] + 1, "start": h["height"], "pending": []}
            closed += 1
        prev, prev_hash = h, bhash.hex()
        ancestors.append(h)
    return {"height": prev["height"], "tip": prev_hash, "model_digest": digest, "rounds_closed": closed}


# ======================================================================================
# Secure aggregation (docs/protocol.md section 14), from the text alone: secp256k1 in
# plain Python integers (Jacobian coordinates), HKDF / ChaCha20-Poly1305 / ChaCha20 from
# `cryptography`, numpy as uint32 / int64 / float64 arithmetic.
# ======================================================================================
from decimal import Decimal, InvalidOperation  # noqa: E402

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402
from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: E402
from cryptography.exceptions import InvalidTag  # noqa: E402

FP = 2**256 - 2**32 - 977
GPT = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
       0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)
DISQUALIFIED = "secure-aggregation: sender disqualified by a proven complaint"
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX66 = re.compile(r"0[23][0-9a-f]{64}")


class SaInvalid(Invalid):
    """A refusal of section 14 with its reason code (``code``)."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


# --- secp256k1 (14.2) ----------------------------------------------------------------
# A point is an affine (x, y) tuple, the point at infinity None.

def _jdouble(p):
    x, y, z = p
    if z == 0 or y == 0:
        return (0, 1, 0)
    yy = y * y % FP
    s = 4 * x * yy % FP
    m = 3 * x * x % FP
    x3 = (m * m - 2 * s) % FP
    return x3, (m * (s - x3) - 8 * yy * yy) % FP, 2 * y * z % FP


def _jadd_affine(p, q):
    """Jacobian p plus affine q (q not infinity)."""
    x1, y1, z1 = p
    if z1 == 0:
        return q[0], q[1], 1
    zz = z1 * z1 % FP
    u2, s2 = q[0] * zz % FP, q[1] * zz * z1 % FP
    h, r = (u2 - x1) % FP, (s2 - y1) % FP
    if h == 0:
        return _jdouble(p) if r == 0 else (0, 1, 0)
    hh = h * h % FP
    hhh = h * hh % FP
    v = x1 * hh % FP
    x3 = (r * r - hhh - 2 * v) % FP
    return x3, (r * (v - x3) - y1 * hhh) % FP, z1 * h % FP


def _affine(p):
    x, y, z = p
    if z == 0:
        return None
    zi = pow(z, -1, FP)
    return x * zi * zi % FP, y * zi * zi * zi % FP


def ec_mul(k: int, pt):
    """k·pt (double and add, most significant bit first)."""
    k %= N
    if pt is None or k == 0:
        return None
    acc = (0, 1, 0)
    for bit in bin(k)[2:]:
        acc = _jdouble(acc)
        if bit == "1":
            acc = _jadd_affine(acc, pt)
    return _affine(acc)


_GTAB: list = []


def g_mul(k: int):
    """k·G with a table of b·16^j·G (4-bit windows): 64 additions, no doublings."""
    k %= N
    if not _GTAB:
        base = (GPT[0], GPT[1], 1)
        for _ in range(64):
            row, acc = [None], (0, 1, 0)
            for _ in range(15):
                acc = _jadd_affine(acc, _affine(base))
                row.append(_affine(acc))
            _GTAB.append(row)
            for _ in range(4):
                base = _jdouble(base)
    acc = (0, 1, 0)
    for j in range(64):
        b = (k >> (4 * j)) & 15
        if b:
            acc = _jadd_affine(acc, _GTAB[j][b])
    return _affine(acc)


def ec_add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return _affine(_jadd_affine((a[0], a[1], 1), b))


def ec_neg(a):
    return None if a is None else (a[0], (-a[1]) % FP)


def point(text):
    """A point as it travels (14.2): 66 lowercase hex, prefix 02/03, x on the curve; else None."""
    if not isinstance(text, str) or not HEX66.fullmatch(text):
        return None
    x = int(text[2:], 16)
    if x >= FP:
        return None
    rhs = (x * x * x + 7) % FP
    y = pow(rhs, (FP + 1) // 4, FP)
    if y * y % FP != rhs:
        return None
    if y % 2 != int(text[1]) % 2:
        y = FP - y
    return x, y


def pt33(p) -> bytes:
    return bytes([2 + p[1] % 2]) + p[0].to_bytes(32, "big")


def scalar(text):
    """A scalar as it travels: 64 lowercase hex, value in [0, n); else None."""
    if not isinstance(text, str) or not HEX64.fullmatch(text):
        return None
    v = int(text, 16)
    return v if v < N else None


def H(tag: bytes, *parts: bytes) -> bytes:
    return sha(tag + b"".join(parts))


def feldman_ok(share: int, i: int, commitments: list) -> bool:
    """share·G == Σ_j (i^j mod n)·C_j (Horner: C_0 + i·(C_1 + i·(...)))."""
    right = None
    for c in reversed(commitments):
        right = ec_add(ec_mul(i, right) if right is not None else None, c)
    return g_mul(share) == right


def lagrange0(shares: dict[int, int]) -> int:
    total = 0
    for i, s in shares.items():
        num = den = 1
        for j in shares:
            if j != i:
                num, den = num * (-j) % N, den * (i - j) % N
        total = (total + s * num * pow(den, -1, N)) % N
    return total


def dleq_ok(A, P, K, proof) -> bool:
    if not isinstance(proof, dict) or set(proof) != {"c", "z"}:
        return False
    c, z = scalar(proof["c"]), scalar(proof["z"])
    if not c or not z:  # None, or 0: both in [1, n)
        return False
    U = ec_add(g_mul(z), ec_neg(ec_mul(c, A)))
    V = ec_add(ec_mul(z, P), ec_neg(ec_mul(c, K)))
    if U is None or V is None:
        return False
    return c == int.from_bytes(H(b"learningchain-dleq", pt33(A), pt33(P), pt33(K), pt33(U), pt33(V)), "big") % N


def pok_ok(P, rnd: int, sender: str, proof) -> bool:
    """Schnorr proof of knowledge of log_G(P) (14.2): R' = z·G - c·P, c == H(round, sender, P, R')."""
    if not isinstance(proof, dict) or set(proof) != {"c", "z"}:
        return False
    c, z = scalar(proof["c"]), scalar(proof["z"])
    if not c or not z:
        return False
    R = ec_add(g_mul(z), ec_neg(ec_mul(c, P)))
    if R is None:
        return False
    return c == int.from_bytes(H(b"learningchain-secagg-pok", rnd.to_bytes(8, "big"), bytes.fromhex(sender),
                                 pt33(P), pt33(R)), "big") % N


def share_key(ecdh_point, rnd: int, dealer: str, recipient: str) -> bytes:
    info = b"learningchain-secagg-share" + rnd.to_bytes(8, "big") + bytes.fromhex(dealer) + bytes.fromhex(recipient)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ecdh_point[0].to_bytes(32, "big"))


def prg(seed32: bytes, d: int) -> np.ndarray:
    stream = Cipher(algorithms.ChaCha20(seed32, bytes(16)), mode=None).encryptor().update(bytes(4 * d))
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32)


def self_seed(b: int) -> bytes:
    return H(b"learningchain-secagg-self", b.to_bytes(32, "big"))


def pair_seed(rnd: int, p) -> bytes:
    return H(b"learningchain-secagg-pair", rnd.to_bytes(8, "big"), pt33(p))


def _canonical_b64(text: str):
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        return None
    return raw if base64.b64encode(raw).decode() == text else None


# --- genesis (14.1) ------------------------------------------------------------------

def _json_int(v) -> bool:
    return type(v) is int


def candidates(config: dict) -> list[str]:
    if config.get("allow_list") is not None:
        return sorted(config["allow_list"])
    return sorted(p["pubkey"] for p in config.get("participants") or [])


def sa_genesis(config: dict) -> dict | None:
    """The secure_aggregation parameters, with the refusals of 14.1 a verifier can
    see (raised as Invalid in the document's order); None in plain mode."""
    privacy = config.get("privacy")
    if privacy is None:
        return None
    if not isinstance(privacy, dict) or set(privacy) != {"secure_aggregation"}:
        raise Invalid("genesis: privacy must be {\"secure_aggregation\": {...}}")
    sa = privacy["secure_aggregation"]
    if not isinstance(sa, dict) or set(sa) != {"threshold", "clip", "scale", "phase_timeout"}:
        raise Invalid("genesis: secure_aggregation needs exactly threshold, clip, scale, phase_timeout")
    t, clip, scale, k = sa["threshold"], sa["clip"], sa["scale"], sa["phase_timeout"]
    try:
        dclip = Decimal(clip) if isinstance(clip, str) else None
    except InvalidOperation:
        dclip = None
    if not (_json_int(t) and _json_int(scale) and scale >= 1 and _json_int(k) and k >= 1
            and dclip is not None and dclip.is_finite() and dclip > 0 and str(dclip) == clip):
        raise Invalid("genesis: secure_aggregation field malformed")
    if config.get("allow_list") is None and config.get("participants") is None:
        raise Invalid("secure aggregation needs a known roster: write genesis with --allow-list or --participants")
    rule = config["aggregation"]["rule"]
    if rule != "fedavg":
        raise Invalid(f"robust rule {rule} cannot run under secure aggregation")
    n = len(candidates(config))
    if not n // 2 + 1 <= t <= n:
        raise Invalid("genesis: secure_aggregation threshold out of [floor(N/2)+1, N]")
    if n * math.ceil(dclip * scale) > 2**30:
        raise Invalid("genesis: secure_aggregation N * ceil(clip * scale) > 2^30")
    if config["quorum"] < t:
        raise Invalid("genesis: quorum below the secure_aggregation threshold")
    sel = config.get("selection")
    if sel is not None and sel["policy"] != "all":
        p = sel.get("params", {})
        if p.get("min_k", p.get("k")) < t:
            raise Invalid("genesis: a selection policy may select fewer than t")
    return {"t": t, "clip": clip, "scale": scale, "phase_timeout": k}


# --- selection (section 11: random-k, top-k, energy-aware) -----------------------------

DEFAULT_PROFILE = {"train_nj": 24000, "send_nj": 400, "recv_nj": 200, "hash_nj": 4000}


def _record(records: dict, key: str) -> dict:
    return records.setdefault(key, {"score": 0, "accepted": 0, "rejected": 0, "outliers": 0, "rounds": 0,
                                    "samples": 0, "spent_nj": 0, "last_selected": 0})


def _profiles(config: dict) -> dict:
    return {p["pubkey"]: p["energy"] for p in config.get("participants") or []}


def cost(config: dict, records: dict, key: str, green_round: int | None = None, discount: int = 0) -> int:
    """Section 11's cost(k); with ``green_round``, discounted if that round is green for k."""
    prof = _profiles(config).get(key, DEFAULT_PROFILE)
    known = sorted(r["samples"] for r in records.values() if r["samples"] > 0)
    own = records.get(key, {}).get("samples", 0)
    samples = own if own > 0 else (known[(len(known) - 1) // 2] if known else 1)
    size = sum(4 * math.ceil(4 * math.prod(s) / 3) + 64 for s in model_shapes(config["model"]).values())
    c = prof["train_nj"] * samples * config["model"]["epochs"] + prof["send_nj"] * size + prof["recv_nj"] * size
    ren = prof.get("renewable")
    if green_round is not None and ren is not None and (green_round - 1) % ren["period"] in ren["on"]:
        c = c * (100 - discount) // 100
    return c


def _energy_aware(config, records, cands, draw, params, next_round) -> list[str]:
    k = min(params["k"], len(cands))
    min_k = min(params.get("min_k", params["k"]), len(cands))
    explore, sw = params.get("explore", 1), params.get("security_weight", 64)
    gd, tol = params.get("green_discount", 50), params.get("tolerance", 4)
    max_age = params.get("max_age", 0) or math.ceil(2 * len(cands) / k)
    rec = {c: records.get(c, {"score": 0, "outliers": 0, "rounds": 0, "spent_nj": 0, "last_selected": 0})
           for c in cands}
    prof = _profiles(config)
    cst = {c: cost(config, records, c, next_round, gd) for c in cands}

    def in_budget(c):
        b = prof.get(c, {}).get("budget_nj")
        return b is None or rec[c]["spent_nj"] + cst[c] <= b

    def key(c):
        return cst[c] * 1024 // max(1, 1024 + sw * rec[c]["score"])

    trusted = [c for c in cands if rec[c]["score"] >= -tol and rec[c]["outliers"] * 4 <= rec[c]["rounds"]
               and in_budget(c)]
    chosen: list[str] = []
    overdue = sorted((c for c in trusted if next_round - rec[c]["last_selected"] >= max_age
                      and rec[c]["rounds"] >= 1 and rec[c]["score"] > 0),
                     key=lambda c: (rec[c]["last_selected"], key(c), draw[c]))
    chosen += overdue[:k - explore]
    for c in sorted(trusted, key=lambda c: (key(c), draw[c])):
        if len(chosen) >= k - explore:
            break
        if c not in chosen:
            chosen.append(c)
    others = [c for c in trusted if c not in chosen]
    ordered = sorted((c for c in others if rec[c]["score"] >= 0), key=lambda c: draw[c]) \
        + sorted((c for c in others if rec[c]["score"] < 0), key=lambda c: (-rec[c]["score"], draw[c]))
    chosen += ordered[:k - len(chosen)]
    if len(chosen) < min_k:
        distrusted = [c for c in cands if c not in trusted]
        fill = sorted((c for c in distrusted if in_budget(c)), key=lambda c: (-rec[c]["score"], draw[c])) \
            + sorted((c for c in distrusted if not in_budget(c)), key=lambda c: (rec[c]["spent_nj"], draw[c]))
        chosen += fill[:min_k - len(chosen)]
    return sorted(chosen)


def select(config: dict, records: dict, parent: str, next_round: int) -> list[str] | None:
    sel = config.get("selection")
    if sel is None or sel["policy"] == "all":
        return None
    cands = candidates(config)
    seed = sha(b"learningchain-select" + bytes.fromhex(parent) + next_round.to_bytes(8, "big"))
    draw = {c: sha(seed + bytes.fromhex(c)) for c in cands}
    params = sel.get("params", {})
    k = min(params["k"], len(cands))
    score = {c: records.get(c, {}).get("score", 0) for c in cands}
    if sel["policy"] == "random-k":
        return sorted(sorted(cands, key=lambda c: draw[c])[:k])
    if sel["policy"] == "top-k":
        explore = params.get("explore", 0)
        by_score = sorted(cands, key=lambda c: (-score[c], draw[c]))
        first = by_score[:k - explore]
        rest = [c for c in by_score if c not in first]
        explored = sorted((c for c in rest if score[c] >= 0), key=lambda c: draw[c])[:explore]
        tail = [c for c in rest if c not in explored]
        return sorted((first + explored + tail)[:k])
    if sel["policy"] == "energy-aware":
        return _energy_aware(config, records, cands, draw, params, next_round)
    raise Invalid(f"selection policy {sel['policy']} is not covered by this verifier")


# --- transactions (14.3, 14.4) ---------------------------------------------------------
TYPE_PHASE = {"sa-setup": "setup", "sa-input": "input", "sa-unmask": "unmask"}
PHASES = ("setup", "input", "unmask")
COMMON = {"type", "version", "sender", "round", "base", "timestamp", "signature"}
EXTRA = {"sa-setup": {"mask_key", "enc_key", "proofs", "roster", "commitments", "shares"},
         "sa-input": {"input", "num_samples", "complaints", "setups"},
         "sa-unmask": {"self_shares", "mask_shares", "seeds", "inputs"}}
BINDS = {"sa-setup": "roster", "sa-input": "setups", "sa-unmask": "inputs"}


def _is_str_list(v, nulls=False) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) or (nulls and x is None) for x in v)


def _is_proof(p) -> bool:
    return isinstance(p, dict) and set(p) == {"c", "z"} and all(isinstance(p[k], str) for k in p)


def sa_read(tx) -> None:
    """The read stage of 14.3 (tx-malformed, then tx-malformed-key, tx-bad-signature)."""
    bad = SaInvalid("tx-malformed")
    if not isinstance(tx, dict) or tx.get("type") not in EXTRA or set(tx) != COMMON | EXTRA[tx["type"]]:
        raise bad
    if not (_json_int(tx["version"]) and tx["version"] == 1
            and all(_json_int(tx[f]) and 0 <= tx[f] < 2**53 for f in ("round", "timestamp"))
            and isinstance(tx["base"], str) and HEX64.fullmatch(tx["base"])):
        raise bad
    kind = tx["type"]
    if not (isinstance(tx[BINDS[kind]], str) and HEX64.fullmatch(tx[BINDS[kind]])):
        raise bad
    if kind == "sa-setup":
        c, pr = tx["commitments"], tx["proofs"]
        if not (isinstance(tx["mask_key"], str) and isinstance(tx["enc_key"], str) and isinstance(c, dict)
                and set(c) == {"self", "mask"} and _is_str_list(c["self"]) and _is_str_list(c["mask"])
                and _is_str_list(tx["shares"]) and isinstance(pr, dict) and set(pr) == {"mask", "enc"}
                and _is_proof(pr["mask"]) and _is_proof(pr["enc"])):
            raise bad
    elif kind == "sa-input":
        cs = tx["complaints"]
        if not (isinstance(tx["input"], dict) and _json_int(tx["num_samples"]) and 0 <= tx["num_samples"] < 2**53
                and isinstance(cs, list)
                and all(isinstance(x, dict) and set(x) == {"against", "point", "proof"}
                        and isinstance(x["against"], str) and isinstance(x["point"], str) and _is_proof(x["proof"])
                        for x in cs)):
            raise bad
    else:
        if not (_is_str_list(tx["self_shares"], True) and _is_str_list(tx["mask_shares"], True)
                and isinstance(tx["seeds"], list)
                and all(s is None or (isinstance(s, dict) and set(s) == {"point", "proof"}
                                      and isinstance(s["point"], str) and _is_proof(s["proof"]))
                        for s in tx["seeds"])):
            raise bad
    try:
        canon(tx)
    except (TypeError, ValueError):
        raise bad from None
    if not isinstance(tx["sender"], str):
        raise SaInvalid("tx-malformed-key")
    if not isinstance(tx["signature"], str):
        raise SaInvalid("tx-bad-signature")


class SaRound:
    """The round state of sections 7 and 14.5 under secure aggregation."""

    def __init__(self, rnd: int, start: int, roster: list[str], selected):
        self.round, self.round_start = rnd, start
        self.phase, self.phase_start = "setup", start
        self.roster, self.selected = roster, selected
        self.pending: list[dict] = []
        self.sset: list[str] = []
        self.C: list[str] = []
        self.D: list[str] = []
        self.X: list[str] = []

    def index(self, key: str) -> int:
        return self.roster.index(key) + 1

    def of(self, kind: str, sender: str, extra=()):
        for r in list(self.pending) + list(extra):
            if r["type"] == kind and r["sender"] == sender:
                return r
        return None


def sa_check_tx(tx: dict, txid: bytes, st: SaRound, ctx: dict, earlier: list[dict]) -> dict:
    """Every check of 14.3 and 14.4 in the document's order; returns the parsed tx."""
    config = ctx["config"]
    if isinstance(tx, dict) and tx.get("type") in ("update", "skip"):
        pass  # read by section 3's parser; refused below as sa-plain-tx
    else:
        sa_read(tx)
    # 14.4, against the parent's state
    if tx["round"] < st.round:
        raise SaInvalid("tx-late")
    if tx["round"] > st.round:
        raise SaInvalid("tx-round-not-open")
    if tx["base"] != ctx["digest"]:
        raise SaInvalid("tx-wrong-base-model")
    allowed = config["allow_list"] if config.get("allow_list") is not None else \
        [p["pubkey"] for p in config.get("participants") or []]
    if tx["sender"] not in allowed:
        raise SaInvalid("tx-unknown-sender")
    if tx["type"] in ("update", "skip"):
        raise SaInvalid("sa-plain-tx")
    sender, kind = tx["sender"], tx["type"]
    if sender not in st.roster:
        raise SaInvalid("sa-not-in-roster")
    want, have = PHASES.index(TYPE_PHASE[kind]), PHASES.index(st.phase)
    if want < have:
        raise SaInvalid("sa-phase-closed", f"the {PHASES[want]} phase of round {st.round} is closed: "
                                           f"its {st.phase} phase opened at height {st.phase_start}")
    if want > have:
        raise SaInvalid("sa-phase-not-open")
    if st.of(kind, sender, earlier) is not None:
        raise SaInvalid("tx-duplicate-sender-round")
    if kind != "sa-setup" and st.of("sa-setup", sender) is None:
        raise SaInvalid("sa-no-setup")
    if kind == "sa-setup":
        context = sha(canon(sorted(st.roster))).hex()
    else:
        of = "sa-setup" if kind == "sa-input" else "sa-input"
        context = sha(",".join(sorted(r["id"] for r in st.pending if r["type"] == of)).encode()).hex()
    if tx[BINDS[kind]] != context:
        raise SaInvalid("sa-wrong-context", f"{kind} {BINDS[kind]} is not this round's")
    bits = config.get("stamp_bits")
    if bits and int.from_bytes(txid, "big") >> (256 - bits) != 0:
        raise SaInvalid("tx-insufficient-stamp")
    # 14.3, context-free
    me = point(sender)
    if me is None:
        raise SaInvalid("tx-malformed-key")
    if len(canon(tx)) > config["max_tx_bytes"]:
        raise SaInvalid("tx-too-large")
    rec = {"id": txid.hex(), "type": kind, "sender": sender, "tx": tx}
    t = ctx["sa"]["t"]
    if kind == "sa-setup":
        pts = [point(tx["mask_key"]), point(tx["enc_key"])] + [point(c) for c in tx["commitments"]["self"]] \
            + [point(c) for c in tx["commitments"]["mask"]]
        if any(p is None for p in pts):
            raise SaInvalid("sa-bad-point")
        if len(tx["commitments"]["self"]) != t or len(tx["commitments"]["mask"]) != t:
            raise SaInvalid("sa-malformed", "commitments not of length t")
        if tx["commitments"]["mask"][0] != tx["mask_key"]:
            raise SaInvalid("sa-malformed", "mask[0] != mask_key")
        shares = []
        for j, s in enumerate(tx["shares"]):
            raw = _canonical_b64(s)
            if raw is None or len(raw) != 80:
                raise SaInvalid("sa-malformed", f"share {j}")
            shares.append(raw)
        for name, P in (("mask", pts[0]), ("enc", pts[1])):
            if not pok_ok(P, tx["round"], sender, tx["proofs"][name]):
                raise SaInvalid("sa-bad-proof", f"proofs.{name}")
        rec.update(M=pts[0], E=pts[1], self=pts[2:2 + t], mask=pts[2 + t:], shares=shares)
    elif kind == "sa-input":
        if tx["num_samples"] < 1:
            raise SaInvalid("tx-bad-sample-count")
        for c in tx["complaints"]:
            if point(c["point"]) is None or point(c["against"]) is None:
                raise SaInvalid("sa-bad-point")
        against = [c["against"] for c in tx["complaints"]]
        if any(a >= b for a, b in zip(against, against[1:])):
            raise SaInvalid("sa-malformed", "complaints not strictly sorted")
        if sender in against:
            raise SaInvalid("sa-malformed", "complaint against the sender")
        arr = tx["input"]
        if arr.get("shape") != [ctx["d"]]:
            raise SaInvalid("tx-shape-mismatch")
        if arr.get("dtype") != "<u4":
            raise SaInvalid("tx-dtype-mismatch")
        raw = _canonical_b64(arr.get("data")) if isinstance(arr.get("data"), str) else None
        if set(arr) != {"data", "dtype", "shape"} or raw is None or len(raw) != 4 * ctx["d"]:
            raise SaInvalid("tx-malformed", "input undecodable")
        rec["y"] = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
    else:
        for s in tx["self_shares"] + tx["mask_shares"]:
            if s is not None and scalar(s) is None:
                raise SaInvalid("sa-bad-point")
        for s in tx["seeds"]:
            if s is not None and point(s["point"]) is None:
                raise SaInvalid("sa-bad-point")
    try:
        verify_signature(sender, txid, tx["signature"])
    except (Invalid, ValueError):
        raise SaInvalid("tx-bad-signature") from None
    # 14.4, after the context-free checks
    if kind == "sa-setup":
        if len(tx["shares"]) != len(st.roster) - 1:
            raise SaInvalid("sa-malformed", "shares not of length N_r - 1")
    elif kind == "sa-input":
        for c in tx["complaints"]:
            dealer = st.of("sa-setup", c["against"])
            if dealer is None:
                raise SaInvalid("sa-no-setup", "complaint against a member without setup")
            K = point(c["point"])
            if not dleq_ok(me, dealer["E"], K, c["proof"]):
                raise SaInvalid("sa-bad-proof")
            pos = [m for m in st.roster if m != c["against"]].index(sender)
            try:
                plain = ChaCha20Poly1305(share_key(K, st.round, c["against"], sender)).decrypt(
                    bytes(12), dealer["shares"][pos], None)
            except InvalidTag:
                plain = None
            if plain is not None:
                f, g = int.from_bytes(plain[:32], "big"), int.from_bytes(plain[32:], "big")
                i = st.index(sender)
                if feldman_ok(f, i, dealer["self"]) and feldman_ok(g, i, dealer["mask"]):
                    raise SaInvalid("sa-false-complaint")
    else:
        XD = [u for u in st.X if u not in st.D]
        if (len(tx["self_shares"]), len(tx["mask_shares"]), len(tx["seeds"])) != (len(st.C), len(XD), len(st.D)):
            raise SaInvalid("sa-malformed", "unmask lengths")
        if sender not in st.C and any(s is not None for s in tx["seeds"]):
            raise SaInvalid("sa-malformed", "a seed from a sender not counted")
        i = st.index(sender)
        for v, s in zip(st.C, tx["self_shares"]):
            if s is not None and not feldman_ok(scalar(s), i, st.of("sa-setup", v)["self"]):
                raise SaInvalid("sa-bad-share", f"self share for {v[:16]}")
        for u, s in zip(XD, tx["mask_shares"]):
            if s is not None and not feldman_ok(scalar(s), i, st.of("sa-setup", u)["mask"]):
                raise SaInvalid("sa-bad-share", f"mask share for {u[:16]}")
        M = st.of("sa-setup", sender)["M"]
        for u, s in zip(st.D, tx["seeds"]):
            if s is not None and not dleq_ok(M, st.of("sa-setup", u)["M"], point(s["point"]), s["proof"]):
                raise SaInvalid("sa-bad-seed", f"seed for {u[:16]}")
    return rec


# --- phases, the aggregate and the commitment (14.5, 14.6) ----------------------------

def _first_t(unmasks: list[dict], field: str, pos: int, st: SaRound, t: int):
    """Lagrange at 0 over the first t non-null shares at ``pos``, unmasks in sender-key order."""
    got: dict[int, int] = {}
    for u in unmasks:
        s = u["tx"][field][pos]
        if s is not None and len(got) < t:
            got[st.index(u["sender"])] = scalar(s)
    return lagrange0(got) if len(got) == t else None


def sa_sum(st: SaRound, pending: list[dict], ctx: dict):
    """The mod 2^32 sum of 14.6, or None if it is not computable from ``pending``."""
    t, d, r = ctx["sa"]["t"], ctx["d"], st.round
    unmasks = sorted((p for p in pending if p["type"] == "sa-unmask"), key=lambda p: p["sender"])
    XD = [u for u in st.X if u not in st.D]
    b = {v: _first_t(unmasks, "self_shares", j, st, t) for j, v in enumerate(st.C)}
    m = {u: _first_t(unmasks, "mask_shares", j, st, t) for j, u in enumerate(XD)}
    by_sender = {p["sender"]: p for p in unmasks}
    if any(x is None for x in list(b.values()) + list(m.values())):
        return None
    for v in st.C:
        if st.D and (v not in by_sender or any(s is None for s in by_sender[v]["tx"]["seeds"])):
            return None
    total = np.zeros(d, dtype=np.uint32)
    for v in st.C:
        y = st.of("sa-input", v, pending)["y"] - prg(self_seed(b[v]), d)
        Mv = st.of("sa-setup", v)["M"]
        for u in st.X:
            if u in m:
                p = ec_mul(m[u], Mv)
            else:
                p = point(by_sender[v]["tx"]["seeds"][st.D.index(u)]["point"])
            mask = prg(pair_seed(r, p), d)
            y = y - mask if v < u else y + mask
        total = total + y
    return total


def sa_model(model: dict, total: np.ndarray, scale: int, count: int) -> dict:
    signed = total.astype(np.int64)
    signed = np.where(signed >= 2**31, signed - 2**32, signed)
    avg = signed.astype(np.float64) / float(scale * count)
    out, at = {}, 0
    for name in sorted(model):
        a = model[name]
        out[name] = (a.astype(np.float64) + avg[at:at + a.size].reshape(a.shape)).astype("<f4")
        at += a.size
    return out


def sa_update_records(config: dict, records: dict, st: SaRound, pending: list[dict], success: bool,
                      input_closed: bool):
    """14.6: the reputation update that replaces section 11's under secure aggregation."""
    for s in sorted(st.sset):
        rec = _record(records, s)
        decay = rec["score"] - rec["score"] // 8
        if success and s in st.C:
            rec["score"], rec["accepted"] = decay + 1, rec["accepted"] + 1
            rec["samples"] = st.of("sa-input", s, pending)["tx"]["num_samples"]
        elif input_closed and s in st.D:
            rec["score"], rec["rejected"] = decay - 8, rec["rejected"] + 1
        else:
            rec["score"] = decay
        rec["rounds"] += 1
    charges = {s: cost(config, records, s) for s in st.sset}  # records after the update, no discount
    for s, c in charges.items():
        records[s]["spent_nj"] += c


def sa_block(block: dict, ids: list[bytes], st: SaRound, ctx: dict, where: str):
    """Check block ``block`` under secure aggregation; returns the state after it
    (the same object, or a new round's) and whether it ended a round."""
    config, sa = ctx["config"], ctx["sa"]
    h = block["header"]["height"]
    known = {p["id"] for p in st.pending}
    seen: list[dict] = []
    for index, (tx, txid) in enumerate(zip(block["txs"], ids)):
        if txid.hex() in known or any(s["id"] == txid.hex() for s in seen):
            raise SaInvalid("block-duplicate-tx", f"{where}: tx {index}")
        try:
            seen.append(sa_check_tx(tx, txid, st, ctx, seen))
        except SaInvalid as e:
            raise SaInvalid(e.code, f"{where}: block-bad-tx: tx {index} ({txid.hex()}): {e}") from None
    pending = st.pending + seen
    timed_out = h - st.phase_start >= sa["phase_timeout"]
    t = sa["t"]
    failed = None
    ends = False
    input_closed = False
    total = None
    if st.phase == "setup":
        setups = sorted(p["sender"] for p in pending if p["type"] == "sa-setup")
        quorum = config["quorum"] if st.selected is None else max(1, min(config["quorum"], len(st.selected)))
        if len(setups) >= quorum or timed_out:
            st.sset = setups
            if len(setups) < t:
                failed, ends = f"{len(setups)} setups, fewer than the threshold t={t}", True
            else:
                st.phase, st.phase_start = "input", h
    elif st.phase == "input":
        inputs = {p["sender"] for p in pending if p["type"] == "sa-input"}
        if set(st.sset) <= inputs or timed_out:
            input_closed = True
            st.D = sorted({c["against"] for p in pending if p["type"] == "sa-input" for c in p["tx"]["complaints"]})
            st.C = sorted(s for s in st.sset if s not in st.D and s in inputs)
            st.X = sorted(s for s in st.sset if s not in st.C)
            left = len([s for s in st.sset if s not in st.D])
            if not st.C:
                failed, ends = "no input counted", True
            elif left < t:
                failed, ends = f"{left} setups not disqualified, fewer than the threshold t={t}", True
            else:
                st.phase, st.phase_start = "unmask", h
    else:
        input_closed = True
        total = sa_sum(st, pending, ctx)
        if total is not None:
            ends = True
        elif timed_out:
            failed, ends = f"the sum was not computable at the unmask timeout (height {h})", True
    c = block["commitment"]
    if not ends:
        if c is not None:
            raise SaInvalid("block-unexpected-commitment", where)
        st.pending = pending
        return st, False
    if c is None:
        raise SaInvalid("block-missing-commitment", where)
    inputs = {p["sender"]: p["id"] for p in pending if p["type"] == "sa-input"}
    XD = [u for u in st.X if u not in st.D]
    want = {"round": st.round, "rule": "fedavg", "params": config["aggregation"]["params"],
            "updates": sorted(inputs.values())}
    sets = {"setups": st.sset, "counted": st.C, "dropped": XD, "disqualified": st.D} if input_closed else \
        {"setups": st.sset, "counted": [], "dropped": [], "disqualified": []}
    if failed is None:
        new = sa_model(ctx["model"], total, sa["scale"], len(st.C))
        want.update(accepted=sorted(inputs[v] for v in st.C),
                    rejected={inputs[u]: DISQUALIFIED for u in st.D if u in inputs},
                    model_digest=weights_digest(new),
                    secure_aggregation={**sets, "sum_digest": sha(total.astype("<u4").tobytes()).hex()})
    else:
        new = ctx["model"]
        want.update(accepted=[], rejected={i: failed for i in inputs.values()}, model_digest=ctx["digest"],
                    failed=failed, secure_aggregation={**sets, "sum_digest": None})
    records, selected = ctx["records"], None
    if config.get("selection") is not None and config["selection"]["policy"] != "all":
        sa_update_records(config, records, st, pending, failed is None, input_closed)
        selected = select(config, records, block["header"]["prev_hash"], st.round + 1)
        for key in selected:
            _record(records, key)["last_selected"] = st.round + 1
        want["selected_next"] = selected
    if canon(c) != canon(want):
        differ = sorted(k for k in set(c) | set(want) if c.get(k) != want.get(k)) if isinstance(c, dict) else ["*"]
        raise SaInvalid("block-bad-commitment", f"{where}: differs in {', '.join(differ)}")
    ctx["model"], ctx["digest"] = new, want["model_digest"]
    roster = candidates(config) if selected is None else sorted(selected)
    return SaRound(st.round + 1, h, roster, selected), True


def sa_start(config: dict, genesis_hash: str) -> tuple[SaRound, dict]:
    records: dict = {}
    selected = select(config, records, genesis_hash, 1)
    for key in selected or ():
        _record(records, key)["last_selected"] = 1
    roster = candidates(config) if selected is None else sorted(selected)
    return SaRound(1, 0, roster, selected), records

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
claim cap (section 6: `stamp_bits`, `max_samples`). Not covered: compressed
updates and selection policies (section 11).
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
    pass


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


def g0(model: dict) -> dict:
    sizes = [model["n_features"], *model["hidden"], model["n_outputs"]]
    out = {}
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        if model["kind"] == "mlp":
            prefix = b"learningchain-g0" + model["seed"].to_bytes(8, "big") + f"W{i}".encode() + b"\x00"
            u = np.array([(int.from_bytes(sha(prefix + k.to_bytes(8, "big"))[:8], "big") >> 11) * 2.0 ** -53
                          for k in range(fi * fo)])
            W = ((2.0 * u - 1.0) * math.sqrt(6.0 / (fi + fo))).reshape(fi, fo)
        else:
            W = np.zeros((fi, fo))
        out[f"W{i}"] = W.astype("<f4")
        out[f"b{i}"] = np.zeros(fo, dtype="<f4")
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
            expected = g0(config["model"])
            if any(weights[n].shape != expected[n].shape or weights[n].dtype.str != "<f4" for n in expected) \
                    or set(weights) != set(expected):
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

"""Secure aggregation's arithmetic (learningchain/learning/secagg.py): fixed point
within the clipping range, masks that cancel in the sum, and the decoded
average equal to the mean of the quantized deltas."""
import numpy as np

from learningchain.core.secagg_crypto import prg
from learningchain.learning import secagg

D = 2410


def test_quantize_clips_scales_and_wraps_negatives():
    q = secagg.quantize(np.array([0.25, -0.25, 3.0, -3.0, 1e-9]), clip=0.5, scale=1000)
    assert q.dtype == np.uint32
    assert list(q) == [250, 2**32 - 250, 500, 2**32 - 500, 0]


def _members(n):
    keys = sorted(f"02{i:064x}" for i in range(1, n + 1))
    seed = {(u, v): bytes([i % 256, i // 256]) * 16 for i, (u, v) in
            enumerate((u, v) for u in keys for v in keys if u < v)}
    pair = lambda u, v: prg(seed[min(u, v), max(u, v)], D)  # noqa: E731
    self_mask = {u: prg(bytes([200 + i]) * 32, D) for i, u in enumerate(keys)}
    return keys, pair, self_mask


def test_masks_cancel_and_dropped_members_masks_are_removed():
    keys, pair, self_mask = _members(6)
    rng = np.random.default_rng(0)
    deltas = {u: rng.normal(0, 0.05, D) for u in keys}
    q = {u: secagg.quantize(deltas[u], 0.5, 1 << 16) for u in keys}
    y = {u: secagg.mask(q[u], self_mask[u], {v: pair(u, v) for v in keys if v != u}, u) for u in keys}
    counted, dropped = keys[:4], keys[4:]
    clean = [secagg.unmask(y[v], self_mask[v], {u: pair(v, u) for u in dropped}, v) for v in counted]
    total = secagg.add_mod(clean, D)
    assert np.array_equal(total, secagg.add_mod((q[v] for v in counted), D))
    avg = secagg.decode_average(total, len(counted), 1 << 16)
    exact = np.mean([np.rint(np.clip(deltas[v], -0.5, 0.5) * (1 << 16)) for v in counted], axis=0) / (1 << 16)
    assert np.array_equal(avg, exact)


def test_a_masked_input_alone_says_nothing_of_its_delta():
    keys, pair, self_mask = _members(3)
    delta = np.linspace(-0.4, 0.4, D)
    q = secagg.quantize(delta, 0.5, 1 << 16)
    y = secagg.mask(q, self_mask[keys[0]], {v: pair(keys[0], v) for v in keys[1:]}, keys[0])
    signed = lambda a: np.where(a >= 2**31, a.astype(np.int64) - 2**32, a.astype(np.int64))  # noqa: E731
    assert abs(np.corrcoef(signed(y), signed(q))[0, 1]) < 0.1
    assert abs(np.corrcoef(signed(q), delta)[0, 1]) > 0.99  # the test would see a leak

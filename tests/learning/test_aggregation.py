"""Aggregation rules: determinism, known answers, robustness, parameter refusal."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from learningchain.learning.aggregation import (RULES, AggregationError, AggregationResult, Update,
                                       aggregate, check_params, default_params, min_updates)
from learningchain.core.encoding import canonical_json, weights_digest
from learningchain.core.errors import ConfigError


def U(i: int, values, n: int = 10, sender: str | None = None) -> Update:
    arr = np.asarray(values, dtype=np.float32)
    return Update(id=f"{i:064x}", sender=sender or f"s{i}", weights={"w": arr}, num_samples=n)


def rand_updates(n: int, seed: int = 0, d: int = 5) -> list[Update]:
    rng = np.random.default_rng(seed)
    return [Update(id=f"{rng.integers(2**62):064x}", sender=f"s{i}",
                   weights={"W0": rng.normal(size=(d, 2)).astype(np.float32),
                            "b0": rng.normal(size=2).astype(np.float32)},
                   num_samples=int(rng.integers(1, 100))) for i in range(n)]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(RULES), data=st.data())
def test_permutation_invariance_to_the_bit(seed, rule, data):
    ups = rand_updates(9, seed)
    perm = data.draw(st.permutations(ups))
    a = aggregate(rule, ups, default_params(rule, 9))
    b = aggregate(rule, perm, default_params(rule, 9))
    assert weights_digest(a.weights) == weights_digest(b.weights)
    assert a.accepted == b.accepted and a.rejected == b.rejected


def test_result_shape_and_dtype():
    res = aggregate("fedavg", rand_updates(3), {})
    assert isinstance(res, AggregationResult)
    assert list(res.weights) == ["W0", "b0"]
    assert all(a.dtype == np.float32 for a in res.weights.values())
    assert list(res.accepted) == sorted(res.accepted)


def test_fedavg_known_answer_sample_weighted():
    res = aggregate("fedavg", [U(1, [0.0, 0.0], n=1), U(2, [4.0, 8.0], n=3)], {})
    np.testing.assert_array_equal(res.weights["w"], [3.0, 6.0])
    assert res.rejected == {}


def test_fedavg_caps_self_reported_counts():
    honest = [U(i, [0.0], n=10) for i in range(4)]
    liar = U(9, [100.0], n=10**9)
    res = aggregate("fedavg", honest + [liar], {})
    # capped at 2 x median (10) = 20 -> 100 * 20 / 60
    np.testing.assert_allclose(res.weights["w"], [100 * 20 / 60], rtol=1e-6)
    res3 = aggregate("fedavg", honest + [liar], {"cap_factor": "3"})
    np.testing.assert_allclose(res3.weights["w"], [100 * 30 / 70], rtol=1e-6)


def test_median_and_trimmed_mean_known_answers():
    ups = [U(i, [v, -v]) for i, v in enumerate([1.0, 2.0, 3.0, 4.0, 100.0])]
    np.testing.assert_array_equal(aggregate("median", ups, {}).weights["w"], [3.0, -3.0])
    tm = aggregate("trimmed-mean", ups, {"beta": "0.2"})
    np.testing.assert_allclose(tm.weights["w"], [3.0, -3.0])
    tm0 = aggregate("trimmed-mean", ups, {"beta": 0})
    np.testing.assert_allclose(tm0.weights["w"], [22.0, -22.0])
    assert len(tm.accepted) == 5 and tm.rejected == {}


def test_krum_picks_the_central_update():
    vals = [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [50.0, 50.0]]
    ups = [U(i, v) for i, v in enumerate(vals)]
    res = aggregate("krum", ups, {"f": 1})
    assert len(res.accepted) == 1 and ups[4].id in res.rejected
    assert res.weights["w"][0] < 1.0
    assert "krum: score" in res.rejected[ups[4].id]
    mk = aggregate("multi-krum", ups, {"f": 1, "m": 4})
    np.testing.assert_allclose(mk.weights["w"], [0.05, 0.05], rtol=1e-6)
    assert set(mk.rejected) == {ups[4].id}


def test_multi_krum_default_m_is_n_minus_f():
    ups = [U(i, [float(i)]) for i in range(6)]
    assert len(aggregate("multi-krum", ups, {"f": 1}).accepted) == 5


def test_bulyan_known_answer_and_outliers():
    rng = np.random.default_rng(1)
    honest = [U(i, rng.normal(0, 0.1, size=4)) for i in range(6)]
    bad = [U(10, [1e6] * 4)]
    res = aggregate("bulyan", honest + bad, {"f": 1})
    assert len(res.accepted) == 5 and bad[0].id in res.rejected
    assert np.abs(res.weights["w"]).max() < 1.0
    # identical honest updates: Bulyan returns them exactly
    same = [U(i, [1.0, 2.0]) for i in range(6)] + [U(9, [-50.0, 80.0])]
    np.testing.assert_array_equal(aggregate("bulyan", same, {"f": 1}).weights["w"], [1.0, 2.0])


def test_l_nearest_reference_is_the_median_of_the_updates():
    """No sender is the reference (issue 10 item 11): three colluders at 10-11
    beside two at 0-2 cannot choose the reference; the median does."""
    ups = [U(0, [0.0]), U(1, [1.0]), U(2, [2.0]), U(3, [10.0], sender="miner"), U(4, [11.0])]
    med = aggregate("l-nearest", ups, {"l": 3})
    np.testing.assert_allclose(med.weights["w"], [1.0])  # median 2 -> nearest 1, 2, 0
    assert "to the coordinate-wise median" in med.rejected[ups[4].id]


@pytest.mark.parametrize("rule", ["median", "trimmed-mean", "krum", "multi-krum", "bulyan",
                                  "l-nearest"])
def test_robust_rules_ignore_a_huge_outlier_fedavg_does_not(rule):
    rng = np.random.default_rng(3)
    honest = [U(i, 1.0 + rng.normal(0, 0.05, size=3)) for i in range(8)]
    outlier = U(99, [1e8] * 3, n=1000)
    res = aggregate(rule, honest + [outlier], {"beta": "0.2"} if rule == "trimmed-mean" else
                    ({"l": 5} if rule == "l-nearest" else {}))
    assert np.abs(res.weights["w"] - 1.0).max() < 0.2
    fed = aggregate("fedavg", honest + [outlier], {})
    assert np.abs(fed.weights["w"]).min() > 1e6


def test_refusals():
    with pytest.raises(AggregationError, match="krum with f=1 needs at least 5 updates, got 3"):
        aggregate("krum", [U(i, [0.0]) for i in range(3)], {"f": 1})
    with pytest.raises(AggregationError, match="bulyan with f=1 needs at least 7"):
        aggregate("bulyan", [U(i, [0.0]) for i in range(6)], {"f": 1})
    with pytest.raises(AggregationError, match=r"multi-krum with f=1, m=5 needs m <= n - f = 4"):
        aggregate("multi-krum", [U(i, [float(i)]) for i in range(5)], {"f": 1, "m": 5})
    with pytest.raises(AggregationError, match=r"beta=0.1 needs at least 10 updates .*got 9"):
        aggregate("trimmed-mean", [U(i, [float(i)]) for i in range(9)], {"beta": "0.1"})
    with pytest.raises(AggregationError, match="l=3 needs at least 3"):
        aggregate("l-nearest", [U(i, [0.0]) for i in range(2)], {"l": 3})
    with pytest.raises(AggregationError, match="no updates"):
        aggregate("fedavg", [], {})
    with pytest.raises(AggregationError, match="shape"):
        aggregate("fedavg", [U(0, [0.0]), U(1, [0.0, 1.0])], {})
    with pytest.raises(AggregationError, match="NaN"):
        aggregate("median", [U(0, [np.nan])], {})
    with pytest.raises(AggregationError, match="duplicate"):
        aggregate("median", [U(0, [0.0]), U(0, [1.0])], {})
    assert issubclass(AggregationError, ConfigError)


@pytest.mark.parametrize("rule,params,match", [
    ("nope", {}, "unknown aggregation rule"),
    ("krum", {"g": 1}, "unknown parameter"),
    ("krum", {"f": -1}, "f must be >= 0"),
    ("krum", {"f": "x"}, "must be an integer"),
    ("krum", {"f": True}, "must be an integer"),
    ("trimmed-mean", {"beta": "0.5"}, "beta must be in"),
    ("trimmed-mean", {"beta": "nan"}, "finite"),
    ("fedavg", {"cap_factor": "0.5"}, "cap_factor"),
    ("l-nearest", {"l": 0}, "l must be >= 1"),
])
def test_check_params_refuses(rule, params, match):
    with pytest.raises(ConfigError, match=match):
        check_params(rule, params)


def test_params_accept_strings_and_numbers_and_defaults_are_canonical():
    for rule in RULES:
        canonical_json(default_params(rule))
        check_params(rule, default_params(rule))
    check_params("trimmed-mean", {"beta": 0.1})
    check_params("krum", {"f": "2"})
    assert min_updates("krum", {"f": 2}) == 7
    assert min_updates("bulyan", {"f": 1}) == 7
    assert min_updates("multi-krum", {"f": 1, "m": 6}) == 7
    assert min_updates("l-nearest", {"l": 4}) == 4
    assert min_updates("fedavg", {}) == 1
    for rule in RULES:  # min_updates is honoured
        n = min_updates(rule, default_params(rule))
        aggregate(rule, rand_updates(n), default_params(rule))


def test_trimmed_mean_never_silently_becomes_a_plain_mean():
    ups = [U(i, [v]) for i, v in enumerate([1.0, 2.0, 3.0, 100.0])]
    assert min_updates("trimmed-mean", {"beta": "0.25"}) == 4
    assert min_updates("trimmed-mean", {"beta": "0.1"}) == 10
    assert min_updates("trimmed-mean", {"beta": "0.29"}) == 4  # floor(0.29 * 4) = 1
    assert min_updates("trimmed-mean", {"beta": 0}) == 1
    np.testing.assert_allclose(aggregate("trimmed-mean", ups, {"beta": "0.25"}).weights["w"], [2.5])
    np.testing.assert_allclose(aggregate("trimmed-mean", ups, {"beta": "0"}).weights["w"], [26.5])
    with pytest.raises(AggregationError, match="floor"):
        aggregate("trimmed-mean", ups, {"beta": "0.2"})
    # defaults sized to the expected number of updates trim one per side
    assert default_params("trimmed-mean") == {"beta": "0.1"}
    assert default_params("trimmed-mean", 4) == {"beta": "0.25"}
    assert default_params("trimmed-mean", 3) == {"beta": "0.34"}
    assert default_params("trimmed-mean", 20) == {"beta": "0.1"}
    for n in range(3, 30):
        params = default_params("trimmed-mean", n)
        assert min_updates("trimmed-mean", params) <= n
        aggregate("trimmed-mean", rand_updates(n), params)


def test_gram_distances_stay_within_their_bound_and_exact_rows_are_exact():
    from learningchain.learning.aggregation.common import Distances
    rng = np.random.default_rng(5)
    X = 1e3 + rng.normal(0, 1e-3, size=(12, 300))  # far from 0: cancellation-prone
    X[3] = X[4]  # an exact duplicate
    dist = Distances(X)
    for i in range(12):
        exact = dist.exact_row(i)
        assert np.all(np.abs(dist.approx[i] - exact) <= dist.err[i])
        assert exact[i] == 0.0
    assert dist.exact_row(3)[4] == 0.0


def test_deterministic_order_ignores_last_bits_within_the_bound():
    """What another CPU or BLAS could do: move every approximate score anywhere
    within its bound. The order is always the exact one (ties by index), and only
    near-ties are rescored."""
    from learningchain.learning.aggregation.common import deterministic_order
    rng = np.random.default_rng(7)
    exact = np.array([5.0, 1.0, 3.0, 3.0 + 1e-13, 2.0, 1.0, 9.0])
    err = np.full(7, 1e-12)
    want = list(np.lexsort((np.arange(7), exact)))
    for _ in range(50):
        approx = exact + rng.uniform(-1, 1, 7) * err
        asked = []
        order = deterministic_order(approx, err, lambda idx: (asked.extend(idx), exact[idx])[1])
        assert list(order) == want
        assert sorted(asked) == [1, 2, 3, 5]  # the two near-tied pairs only


def test_krum_ranks_duplicates_by_id_and_rescores_only_near_ties():
    from learningchain.learning.aggregation.common import Distances
    from learningchain.learning.aggregation.krum import krum_order
    ups = rand_updates(8, seed=11)
    X = np.stack([np.concatenate([u.weights["W0"].ravel(), u.weights["b0"]]) for u in ups]).astype(np.float64)
    dist = Distances(X)
    krum_order(dist, range(8), 5)
    assert dist.exact_rows_computed == 0  # generic data: the fast path decides
    X[5] = X[2]  # two identical updates: a tie only exact scores settle
    dist = Distances(X)
    order = list(krum_order(dist, range(8), 5))
    assert order.index(2) + 1 == order.index(5) and dist.exact_rows_computed >= 2


def _exact_krum_order(X: np.ndarray, rows: list[int], k: int) -> list[int]:
    """Krum's order by definition (docs/protocol.md section 7.1): every score
    exact, ties by position. No Gram product, no bound."""
    from learningchain.learning.aggregation.common import fixed_order_sum, sum_smallest
    k = max(min(k, len(rows) - 1), 0)
    keys = []
    for p, i in enumerate(rows):
        diff = X[rows] - X[i]
        row = fixed_order_sum(diff * diff)
        row[p] = np.inf
        keys.append(sum_smallest(row, k))
    return [int(p) for p in np.lexsort((np.arange(len(rows)), keys))]


def _hard_rows(rng: np.random.Generator) -> np.ndarray:
    """Small update matrices built to be hard to rank: exact and one-ulp
    duplicates, small integers (many exactly tied scores), a large common
    offset (cancellation in the Gram product), rows scaled by up to 1e8."""
    n, d = int(rng.integers(2, 13)), int(rng.integers(1, 30))
    if rng.random() < 0.3:
        X = rng.integers(-2, 3, size=(n, d)).astype(np.float64)
    else:
        X = rng.normal(0, 1, size=(n, d))
    if rng.random() < 0.3:
        X = 1e3 + 1e-6 * X
    for _ in range(int(rng.integers(0, 3))):
        i, j = rng.integers(n, size=2)
        X[i] = X[j] if rng.random() < 0.5 else np.nextafter(X[j], np.inf)
    for _ in range(int(rng.integers(0, 3))):
        X[rng.integers(n)] *= 10.0 ** rng.uniform(2, 8)
    return X


def test_krum_order_is_the_exact_order_on_3000_hard_cases():
    """The fast ranking equals the fully exact one, both with this machine's
    Gram distances and with every distance moved anywhere inside its error
    bound (what another CPU or BLAS build could compute)."""
    from learningchain.learning.aggregation.common import Distances
    from learningchain.learning.aggregation.krum import krum_order
    rng = np.random.default_rng(2026)
    for case in range(3000):
        X = _hard_rows(rng)
        n = X.shape[0]
        rows = sorted(int(i) for i in rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False))
        k = int(rng.integers(0, n + 1))
        want = _exact_krum_order(X, rows, k)
        assert list(krum_order(Distances(X), rows, k)) == want, case
        other = Distances(X)
        exact = np.stack([other.exact_row(i) for i in range(n)])
        t = rng.choice([-1.0, 1.0], size=(n, n)) * np.where(rng.random((n, n)) < 0.5, 1.0, rng.random((n, n)))
        other.approx = np.maximum(exact + t * other.err, 0.0)
        np.fill_diagonal(other.approx, 0.0)
        assert list(krum_order(other, rows, k)) == want, case


def test_one_scaled_attacker_triggers_few_exact_rescorings():
    """A single update scaled by 1e6 is nobody's nearest neighbour: its huge
    error bound must not widen the other rows' intervals (it once made Krum
    rescore 19 of 20 rows exactly, O(n^2 d))."""
    from learningchain.learning.aggregation.common import Distances
    from learningchain.learning.aggregation.krum import krum_order
    rng = np.random.default_rng(3)
    n, d = 20, 500
    X = rng.normal(0, 1, size=d) + rng.normal(0, 0.1, size=(n, d))
    X[7] *= 1e6
    dist = Distances(X)
    order = [int(p) for p in krum_order(dist, range(n), n - 1 - 2)]
    assert order[-1] == 7
    assert dist.exact_rows_computed <= 1
    assert order == _exact_krum_order(X, list(range(n)), n - 1 - 2)
